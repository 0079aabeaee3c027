"""Keyword options of the entry points, and the per-connection tunables (:class:`PeerOptions`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypedDict

from ..protocol.policy import Backoff, Resume
from ..wire.frames import MAX_FRAME_SIZE
from ..wire.lease import LeaseStrategy
from ..wire.payload import Payload
from .interaction import Interceptor
from .settings import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    WRITE_HIGH_WATER,
    PeerOptions,
)

if TYPE_CHECKING:
    from .connection import RSocket
    from .handler import RequestHandler

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_FRAME_TIMEOUT",
    "DEFAULT_MAX_CONCURRENT_REQUESTS",
    "WRITE_HIGH_WATER",
    "ClientOptions",
    "ConnectOptions",
    "PeerOptions",
    "ServerOptions",
    "TargetOptions",
    "split_connect_options",
]


#: Default ``drain_timeout``: a cancelled server closes its connections at once.
DEFAULT_DRAIN_TIMEOUT = 0.0


class _SessionOptions(TypedDict, total=False):
    """The options of one client connection that a pool's targets share too (see ClientOptions)."""

    data_mime_type: str
    metadata_mime_type: str
    keepalive_interval: float
    max_lifetime: float
    setup_payload: Payload | None
    handler: RequestHandler | Callable[[RSocket], RequestHandler] | None
    confirm_setup: bool
    lease: bool | LeaseStrategy
    lease_wait: bool
    fragment_size: int | None
    max_reassembled_size: int
    max_concurrent_requests: int
    max_stream_id: int
    connect_timeout: float
    expose_errors: bool
    resume: Resume | None
    interceptors: Sequence[Interceptor]
    deadlines: bool


class ClientOptions(_SessionOptions, total=False):
    """Keyword options shared by every client entry point (``connect_tcp``, ``open_client``, ...).

    SETUP: ``data_mime_type`` and ``metadata_mime_type`` (default ``application/octet-stream``),
    ``keepalive_interval`` (20 s) and ``max_lifetime`` (90 s), ``setup_payload``. ``handler``
    answers the server's requests. ``confirm_setup`` (default true) waits for the server to accept
    SETUP. ``lease`` negotiates leasing: ``True`` honours the server's leases and grants it an
    unlimited one, a :class:`~anyio_rsocket.lease.LeaseStrategy` also chooses what we grant.
    ``connect_timeout`` (default 10 s) bounds everything up to a usable connection: TCP connect,
    TLS handshake, WebSocket upgrade and SETUP confirmation. ``resume`` makes the session
    survive transport loss (:class:`~anyio_rsocket.Resume`); ``reconnect`` dials a new connection
    after a loss instead (:class:`~anyio_rsocket.Backoff`); see ``docs/resumption.md``.
    ``interceptors`` wrap every interaction (:class:`~anyio_rsocket.Interceptor`); ``deadlines``
    (default true) sends the caller's remaining time with each request, on connections whose
    metadata is composite metadata. See ``docs/observability.md``. The rest are
    :class:`PeerOptions` fields.
    """

    reconnect: Backoff | None


class ConnectOptions(ClientOptions, total=False):
    """:class:`ClientOptions` plus the limits of the transport that ``connect_*`` builds."""

    max_frame_size: int
    frame_timeout: float


class TargetOptions(_SessionOptions, total=False):
    """The options :func:`~anyio_rsocket.connect_pool` passes to every target's connection: those of
    :class:`ConnectOptions` except ``reconnect`` (the pool re-dials its targets itself)."""

    max_frame_size: int
    frame_timeout: float


def split_connect_options(options: ConnectOptions) -> tuple[ClientOptions, int, float]:
    """Separate the transport limits (max frame size, frame timeout) from the client options."""
    rest = ConnectOptions(**options)
    max_frame_size = rest.pop("max_frame_size", MAX_FRAME_SIZE)
    frame_timeout = rest.pop("frame_timeout", DEFAULT_FRAME_TIMEOUT)
    return rest, max_frame_size, frame_timeout


class ServerOptions(TypedDict, total=False):
    """Keyword options shared by every server entry point (``serve_tcp``, ``serve_connection``, ...).

    ``send_keepalives`` makes the server send KEEPALIVEs too (K1, off by default); ``lease`` is the
    strategy for clients that negotiate leasing (unlimited leases when omitted); ``setup_timeout``
    bounds how long a new connection may take to send SETUP.

    Limits against hostile or broken clients:

    - ``max_frame_size``: largest frame accepted (default and maximum 16,777,215 bytes); a larger
      announced frame is a protocol error before any of it is buffered.
    - ``frame_timeout``: seconds a frame may take to arrive in full once its first byte has
      (default 60); a stalled frame closes the connection.
    - ``max_connections``: connections served at once (default ``None``, no cap); beyond it the
      server stops accepting until one ends, leaving new ones in the kernel's backlog.
    - ``tls_handshake_timeout``: seconds a TLS handshake may take (default 10).
    - ``reuse_port`` (``serve_tcp`` and ``serve_websocket`` only): set ``SO_REUSEPORT`` on the
      listening sockets (default false) so that several processes, each with ``reuse_port=True``,
      listen on the same port; on Linux the kernel spreads new connections over them. Where the
      platform lacks ``SO_REUSEPORT`` (Windows) the server raises ``OSError`` at start. See
      ``docs/scaling.md`` (resumable sessions are per process).
    - ``max_lifetime_cap`` / ``keepalive_interval_cap``: the largest max lifetime and keepalive
      interval a client may ask for (default ``None``, no cap); a client asking for more is held
      to the cap.
    - ``expose_errors``: see :class:`PeerOptions`.

    Stopping (listeners only, see :class:`~anyio_rsocket.ServerShutdown` and ``docs/shutdown.md``):

    - ``drain_timeout``: when a ``serve_*`` call is cancelled, seconds it spends draining before it
      closes what is left (default 0: every connection is closed at once). Draining stops
      accepting, sends CONNECTION_CLOSE so that in-flight interactions finish while new requests
      are refused, and is shielded from the cancellation, which is re-raised afterwards.

    Resumption (see ``docs/resumption.md``):

    - ``resume``: keep each resumable client's session for ``resume.session_duration`` seconds
      after its transport is lost, waiting for RESUME (:class:`~anyio_rsocket.Resume`; its
      ``store_size`` bounds the frames kept per session). SETUP without a resume token is served
      as usual.
    - ``max_detached_sessions``: detached sessions kept at once per server (default 1,024); past
      it the one detached longest ends. With ``resume.store_size`` this bounds what detached
      sessions hold.

    The rest are :class:`PeerOptions` fields.
    """

    send_keepalives: bool
    lease: LeaseStrategy | None
    setup_timeout: float
    fragment_size: int | None
    max_reassembled_size: int
    max_concurrent_requests: int
    max_stream_id: int
    max_frame_size: int
    frame_timeout: float
    max_connections: int | None
    tls_handshake_timeout: float
    reuse_port: bool
    max_lifetime_cap: float | None
    keepalive_interval_cap: float | None
    expose_errors: bool
    drain_timeout: float
    resume: Resume | None
    max_detached_sessions: int
    interceptors: Sequence[Interceptor]
    deadlines: bool
