"""Client entry points: connect to an RSocket server and get a requester for one ``async with``."""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import anyio

from ..protocol.errors import InvalidArgumentError
from ..protocol.policy import Backoff, Resume
from ..transports.base import Transport
from ..transports.sockets import connect_socket_stream, connect_timeout_error
from ..transports.tcp import ByteStreamTransport
from ..transports.tracing import traced
from ..wire.errors import ConnectionClosedError
from ..wire.fragmentation import DEFAULT_MAX_REASSEMBLED_SIZE
from ..wire.frames import MAX_31, MAX_FRAME_SIZE, encode_frame
from ..wire.framing import FrameBuffer
from ..wire.lease import LeaseStrategy
from ..wire.payload import Payload
from ._groups import unwrap_exception_groups
from .connection import RSocket
from .handler import RequestHandler
from .interaction import Interceptor
from .options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    ConnectOptions,
    PeerOptions,
    split_connect_options,
)
from .session import Redial
from .setup_info import SetupInfo

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

HandlerArgument = RequestHandler | Callable[[RSocket], RequestHandler] | None


@asynccontextmanager
async def open_client(
    transport: Transport,
    *,
    data_mime_type: str = "application/octet-stream",
    metadata_mime_type: str = "application/octet-stream",
    keepalive_interval: float = 20.0,
    max_lifetime: float = 90.0,
    setup_payload: Payload | None = None,
    handler: HandlerArgument = None,
    confirm_setup: bool = True,
    lease: bool | LeaseStrategy = False,
    lease_wait: bool = False,
    fragment_size: int | None = None,
    max_reassembled_size: int = DEFAULT_MAX_REASSEMBLED_SIZE,
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
    max_stream_id: int = MAX_31,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    expose_errors: bool = False,
    resume: Resume | None = None,
    reconnect: Backoff | None = None,
    redial: Redial | None = None,
    interceptors: Sequence[Interceptor] = (),
    deadlines: bool = True,
) -> AsyncIterator[RSocket]:
    """Run the client side of RSocket over an already connected ``transport``.

    Sends SETUP (version 1.0) and, with ``confirm_setup`` (the default), a KEEPALIVE whose echo
    proves the server accepted it: a refused SETUP then raises
    :class:`~anyio_rsocket.errors.RejectedSetupError` (or another ``SetupError``) right here rather
    than from the first request, and a server that does not answer within ``connect_timeout``
    seconds raises :class:`~anyio_rsocket.errors.ConnectTimeoutError` ("SETUP confirmation").
    Leaving the block closes the connection, ends every interaction and
    leaves no task behind. The transport is closed in every case. See
    :class:`~anyio_rsocket.options.ClientOptions` for the options.

    ``resume`` (a :class:`~anyio_rsocket.Resume`) keeps the session across transport loss and
    ``reconnect`` (a :class:`~anyio_rsocket.Backoff`) starts a new connection after one; both need
    ``redial``, which opens a new transport to the same server (the ``connect_*`` entry points
    supply it). Without ``redial`` a resumable session ends with its first transport.
    """
    if keepalive_interval <= 0 or max_lifetime <= 0:
        raise InvalidArgumentError("keepalive_interval and max_lifetime must be positive")
    if resume is not None and reconnect is not None:
        raise InvalidArgumentError("choose resume= or reconnect=, not both")
    if reconnect is not None and redial is None:
        raise InvalidArgumentError("reconnect= needs redial= (a way to open a new transport)")
    if resume is not None and lease:
        raise InvalidArgumentError("resume= cannot be combined with lease=")
    options = PeerOptions(
        fragment_size=fragment_size,
        max_reassembled_size=max_reassembled_size,
        max_concurrent_requests=max_concurrent_requests,
        max_stream_id=max_stream_id,
        send_keepalives=True,
        lease_strategy=lease if isinstance(lease, LeaseStrategy) else None,
        lease_wait=lease_wait,
        expose_errors=expose_errors,
        resume=resume,
        interceptors=tuple(interceptors),
        deadlines=deadlines,
    )
    setup = SetupInfo(
        data_mime_type=data_mime_type,
        metadata_mime_type=metadata_mime_type,
        keepalive_interval=keepalive_interval,
        max_lifetime=max_lifetime,
        payload=setup_payload,
        lease=bool(lease),
        resume_token=None if resume is None else resume.token,
    )
    encode_frame(setup.to_frame())  # invalid options fail before any I/O
    transport = traced(transport)  # the "anyio_rsocket.frames" logger, when it is on
    if redial is not None:
        untraced = redial

        async def redial_traced() -> Transport:
            return traced(await untraced())

        redial = redial_traced
    async with unwrap_exception_groups():
        try:
            async with anyio.create_task_group() as task_group:
                rsocket = RSocket(transport, task_group, is_client=True, setup=setup, options=options)
                if handler is not None:
                    rsocket._handler = handler if isinstance(handler, RequestHandler) else handler(rsocket)
                if resume is not None:
                    rsocket._enable_resume(resume, redial, connect_timeout)
                elif reconnect is not None and redial is not None:
                    rsocket._enable_reconnect(reconnect, redial, connect_timeout)
                rsocket._start(probe=confirm_setup)
                try:
                    if confirm_setup:
                        await _confirm_setup(rsocket, connect_timeout)
                    yield rsocket
                finally:
                    await rsocket.aclose()
                    task_group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await transport.aclose()


async def _confirm_setup(rsocket: RSocket, timeout: float) -> None:
    """Wait for the server to accept SETUP; past ``timeout`` raise ConnectTimeoutError."""
    with anyio.move_on_after(max(timeout, 0.0)):
        await rsocket._confirm_setup()
        return
    error = connect_timeout_error("SETUP confirmation", "the server", timeout)
    rsocket._terminate(error)
    raise error


def check_transport_limits(max_frame_size: int, frame_timeout: float, connect_timeout: float) -> None:
    """Refuse invalid transport limits before any I/O."""
    FrameBuffer(max_frame_size)  # raises ValueError for an impossible limit
    if not frame_timeout > 0:
        raise ValueError("frame_timeout must be positive")
    if not connect_timeout > 0:
        raise ValueError("connect_timeout must be positive")


def remaining_time(deadline: float) -> float:
    """Seconds left until ``deadline`` (never negative)."""
    return max(deadline - anyio.current_time(), 0.0)


async def open_tcp_transport(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_frame_size: int = MAX_FRAME_SIZE,
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> ByteStreamTransport:
    """Connect (and do the TLS handshake) within ``connect_timeout``; return the frame transport.

    Raises :class:`~anyio_rsocket.errors.ConnectionClosedError` when the server cannot be reached
    (its ``__cause__`` is the ``ssl.SSLError`` when the TLS handshake failed), and
    :class:`~anyio_rsocket.errors.ConnectTimeoutError` when a step stalled.
    """
    check_transport_limits(max_frame_size, frame_timeout, connect_timeout)
    try:
        stream = await connect_socket_stream(
            host, port, ssl_context=ssl_context, tls_hostname=host, timeout=connect_timeout
        )
    except (OSError, anyio.BrokenResourceError) as exc:
        # A failed TLS handshake raises ssl.SSLError (an OSError), or BrokenResourceError from one.
        tls_error = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
        if isinstance(tls_error, ssl.SSLError):
            raise ConnectionClosedError(
                f"TLS handshake with {host}:{port} failed: {tls_error}"
            ) from tls_error
        raise ConnectionClosedError(f"cannot connect to {host}:{port}: {exc}") from exc
    return ByteStreamTransport(stream, max_frame_size=max_frame_size, frame_timeout=frame_timeout)


@asynccontextmanager
async def connect_tcp(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **options: Unpack[ConnectOptions],
) -> AsyncIterator[RSocket]:
    """Connect to an RSocket server over TCP (TLS with ``ssl_context``) for one ``async with``.

    Options are those of :func:`open_client` (:class:`~anyio_rsocket.options.ClientOptions`): SETUP
    MIME types, ``keepalive_interval`` and ``max_lifetime`` in seconds, ``setup_payload``,
    ``handler`` (answers the server's requests: a :class:`RequestHandler` or a factory taking the
    :class:`RSocket`), leasing, fragmentation and limits; ``max_frame_size`` and ``frame_timeout``
    limit what the server may send (:class:`~anyio_rsocket.options.ConnectOptions`). Raises
    :class:`~anyio_rsocket.errors.ConnectionClosedError` when the server cannot be reached; when the
    TLS handshake failed, its ``__cause__`` is the ``ssl.SSLError`` (e.g. ``SSLCertVerificationError``).
    ``connect_timeout`` (default 10 s) bounds the TCP connect, TLS handshake and SETUP confirmation
    together; past it, :class:`~anyio_rsocket.errors.ConnectTimeoutError` is raised, whose
    ``__cause__`` is a ``TimeoutError`` naming the step that stalled.
    """
    client_options, max_frame_size, frame_timeout = split_connect_options(options)
    connect_timeout = client_options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    deadline = anyio.current_time() + connect_timeout
    transport = await open_tcp_transport(
        host,
        port,
        ssl_context=ssl_context,
        max_frame_size=max_frame_size,
        frame_timeout=frame_timeout,
        connect_timeout=connect_timeout,
    )
    client_options["connect_timeout"] = remaining_time(deadline)  # SETUP confirmation gets the rest

    async def redial() -> Transport:
        return await open_tcp_transport(
            host,
            port,
            ssl_context=ssl_context,
            max_frame_size=max_frame_size,
            frame_timeout=frame_timeout,
            connect_timeout=connect_timeout,
        )

    async with (
        closing_unless_entered(transport),
        open_client(transport, redial=redial, **client_options) as rsocket,
    ):
        yield rsocket


@asynccontextmanager
async def closing_unless_entered(transport: Transport) -> AsyncIterator[None]:
    """Close ``transport`` if the block fails before :func:`open_client` took it over.

    ``open_client`` closes its transport in every case once entered, but refuses bad options first.
    """
    try:
        yield
    except BaseException:
        with anyio.CancelScope(shield=True):
            await transport.aclose()
        raise
