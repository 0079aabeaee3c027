"""Tunables of one connection that are not part of SETUP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from .fragmentation import DEFAULT_MAX_REASSEMBLED_SIZE, MIN_FRAGMENT_SIZE
from .frames import MAX_31, MAX_FRAME_SIZE
from .lease import LeaseStrategy
from .payload import Payload

if TYPE_CHECKING:
    from .connection import RSocket
    from .handler import RequestHandler

#: Queued outbound bytes above which producers (responders, channel senders, fire-and-forget) wait.
WRITE_HIGH_WATER = 1 << 20
#: Default bound on reaching a usable connection (connect, TLS, upgrade, SETUP confirmation).
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Default limit on receiving one whole frame once its first byte has arrived.
DEFAULT_FRAME_TIMEOUT = 60.0
#: Default cap on requests a peer may have us working on at once (each is a task).
DEFAULT_MAX_CONCURRENT_REQUESTS = 10_000


@dataclass(frozen=True)
class PeerOptions:
    """Per-connection limits and behaviours.

    - ``fragment_size``: split outgoing requests and payloads into frames of at most this many bytes
      (not counting the TCP length prefix; at least 64). ``None`` sends each item in one frame.
    - ``max_reassembled_size``: largest payload (metadata + data) accepted from fragments; more is a
      protocol error. Fragments held for all streams together are capped at four times this.
    - ``max_concurrent_requests``: inbound requests handled at once; more are answered with
      ERROR[REJECTED]. Fire-and-forget and metadata-push cannot be refused, so beyond the limit
      they are still taken and the connection stops reading until handlers finish.
    - ``max_stream_id``: where our stream ids wrap around (ID2); lowered only by tests.
    - ``send_keepalives``: send KEEPALIVE every interval (clients always do, servers by option).
    - ``lease_strategy``: the leases our responder grants when SETUP negotiated leasing.
    - ``lease_wait``: when our requester has no lease allowance, wait for one instead of failing
      with RejectedError.
    - ``expose_errors``: when a handler raises an exception that is not an ``RSocketError``, send
      its text to the peer. Off by default: the peer sees only the exception's type name, because
      messages can hold paths, keys or SQL. ``RSocketError`` messages are always sent.
    - ``max_lifetime_cap`` / ``keepalive_interval_cap``: the most the peer's SETUP may ask for
      (servers only). Silence is judged against the capped lifetime, and when the peer's own
      keepalives would come too rarely for it, we send KEEPALIVEs asking for an echo instead.
    """

    fragment_size: int | None = None
    max_reassembled_size: int = DEFAULT_MAX_REASSEMBLED_SIZE
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    max_stream_id: int = MAX_31
    send_keepalives: bool = True
    lease_strategy: LeaseStrategy | None = None
    lease_wait: bool = False
    expose_errors: bool = False
    max_lifetime_cap: float | None = None
    keepalive_interval_cap: float | None = None

    def __post_init__(self) -> None:
        if self.fragment_size is not None and not MIN_FRAGMENT_SIZE <= self.fragment_size <= MAX_FRAME_SIZE:
            raise ValueError(f"fragment_size must be between {MIN_FRAGMENT_SIZE} and {MAX_FRAME_SIZE} bytes")
        if self.max_reassembled_size < 1:
            raise ValueError("max_reassembled_size must be positive")
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be positive")
        for cap in (self.max_lifetime_cap, self.keepalive_interval_cap):
            if cap is not None and cap <= 0:
                raise ValueError("max_lifetime_cap and keepalive_interval_cap must be positive")
        if not 3 <= self.max_stream_id <= MAX_31:
            raise ValueError(f"max_stream_id must be between 3 and {MAX_31}")


class ClientOptions(TypedDict, total=False):
    """Keyword options shared by every client entry point (``connect_tcp``, ``open_client``, ...).

    SETUP: ``data_mime_type`` and ``metadata_mime_type`` (default ``application/octet-stream``),
    ``keepalive_interval`` (20 s) and ``max_lifetime`` (90 s), ``setup_payload``. ``handler``
    answers the server's requests. ``confirm_setup`` (default true) waits for the server to accept
    SETUP. ``lease`` negotiates leasing: ``True`` honours the server's leases and grants it an
    unlimited one, a :class:`~anyio_rsocket.lease.LeaseStrategy` also chooses what we grant.
    ``connect_timeout`` (default 10 s) bounds everything up to a usable connection: TCP connect,
    TLS handshake, WebSocket upgrade and SETUP confirmation. The rest are :class:`PeerOptions`
    fields.
    """

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


class ConnectOptions(ClientOptions, total=False):
    """:class:`ClientOptions` plus the limits of the transport that ``connect_*`` builds."""

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
    - ``max_lifetime_cap`` / ``keepalive_interval_cap``: the largest max lifetime and keepalive
      interval a client may ask for (default ``None``, no cap); a client asking for more is held
      to the cap.
    - ``expose_errors``: see :class:`PeerOptions`.

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
    max_lifetime_cap: float | None
    keepalive_interval_cap: float | None
    expose_errors: bool
