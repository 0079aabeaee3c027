"""Server entry points: accept connections and answer them with a handler per connection."""

from __future__ import annotations

import inspect
import logging
import ssl
import sys

import anyio
from anyio.abc import ByteStream, TaskStatus

from ..protocol import ProtocolConnection, ResumeReceived, SetupReceived
from ..transports.base import Transport
from ..transports.tcp import ByteStreamTransport
from ..transports.tracing import traced
from ..wire.errors import ConnectionClosedError, FrameError, RejectedSetupError, SetupError
from ..wire.frames import MAX_FRAME_SIZE, ErrorFrame, encode_frame
from ._groups import unwrap_exception_groups
from .connection import HandlerFactory, RSocket, protocol_config
from .handler import RequestHandler
from .listener import DEFAULT_TLS_HANDSHAKE_TIMEOUT, serve_listener
from .options import DEFAULT_DRAIN_TIMEOUT, DEFAULT_FRAME_TIMEOUT, PeerOptions, ServerOptions
from .sessions import DEFAULT_MAX_DETACHED_SESSIONS, SessionRegistry
from .setup_info import SetupInfo
from .shutdown import ServerShutdown, drainable_factory, finish_handlers, note_resumed

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

logger = logging.getLogger("anyio_rsocket.server")

#: How long a new connection may take to send its SETUP before it is dropped.
SETUP_TIMEOUT = 30.0


async def _refuse(transport: Transport, error: SetupError, core: ProtocolConnection | None = None) -> None:
    """Answer SETUP with ERROR[``error.code``]: through the core once it has seen the SETUP, directly
    when not even one frame could be read."""
    if core is None:
        frame = ErrorFrame(0, error.code, error.message.encode("utf-8", "replace"))
        await _send_quietly(transport, [encode_frame(frame)])
    else:
        core.reject_setup(error.code, error.message)
        await _flush(transport, core)


async def _flush(transport: Transport, core: ProtocolConnection) -> None:
    await _send_quietly(transport, core.data_to_send())


async def _send_quietly(transport: Transport, frames: list[bytes]) -> None:
    try:
        with anyio.move_on_after(2):
            await transport.send(frames)
    except ConnectionClosedError:
        pass


async def serve_connection(
    transport: Transport,
    handler_factory: HandlerFactory,
    *,
    sessions: SessionRegistry | None = None,
    **options: Unpack[ServerOptions],
) -> None:
    """Serve one accepted connection until it ends; never raises for a peer's misbehaviour.

    Reads SETUP, calls ``handler_factory(rsocket)`` (which may be async or raise
    :class:`RejectedSetupError`), then answers requests until the connection closes. See
    :class:`~anyio_rsocket.options.ServerOptions` for the options.

    With ``resume``, resumable sessions are kept in ``sessions``, which every connection of one
    server must share (``serve_tcp`` and the other servers make one); a connection that opens with
    RESUME continues its session, in this call, until that transport is lost. The handler factory
    runs once per session, never on RESUME.
    """
    setup_timeout = options.get("setup_timeout", SETUP_TIMEOUT)
    transport = traced(transport)  # the "anyio_rsocket.frames" logger, when it is on
    defaults = PeerOptions()
    peer_options = PeerOptions(
        fragment_size=options.get("fragment_size"),
        max_reassembled_size=options.get("max_reassembled_size", defaults.max_reassembled_size),
        max_concurrent_requests=options.get("max_concurrent_requests", defaults.max_concurrent_requests),
        max_stream_id=options.get("max_stream_id", defaults.max_stream_id),
        send_keepalives=options.get("send_keepalives", False),
        lease_strategy=options.get("lease"),
        expose_errors=options.get("expose_errors", False),
        max_lifetime_cap=options.get("max_lifetime_cap"),
        keepalive_interval_cap=options.get("keepalive_interval_cap"),
        resume=options.get("resume"),
        interceptors=tuple(options.get("interceptors", ())),
        deadlines=options.get("deadlines", True),
    )
    if peer_options.resume is not None and sessions is None:
        sessions = registry_for(options)
    try:
        async with unwrap_exception_groups():
            await _serve_connection(transport, handler_factory, setup_timeout, peer_options, sessions)
    except ConnectionClosedError:
        pass
    finally:
        with anyio.CancelScope(shield=True):
            await transport.aclose()


def registry_for(options: ServerOptions) -> SessionRegistry | None:
    """The session registry a server with these options shares among its connections."""
    resume = options.get("resume")
    if resume is None:
        return None
    return SessionRegistry(resume, options.get("max_detached_sessions", DEFAULT_MAX_DETACHED_SESSIONS))


async def _serve_connection(
    transport: Transport,
    handler_factory: HandlerFactory,
    setup_timeout: float,
    options: PeerOptions,
    sessions: SessionRegistry | None,
) -> None:
    frames: list[bytes] = []
    with anyio.move_on_after(setup_timeout):
        try:
            frames = await transport.receive()
        except FrameError as exc:  # not even one well-formed frame: the SETUP is unusable
            await _refuse(transport, SetupError(f"malformed SETUP: {exc}"))
            return
    if not frames:
        return  # no SETUP in time: drop the connection
    core = ProtocolConnection(client=False, config=protocol_config(options))
    events = core.receive_frames(frames[:1], anyio.current_time())
    if events and isinstance(events[0], ResumeReceived):
        session = sessions.find(events[0].token) if sessions is not None else None
        if session is None:
            core.reject_resume("no session found for this resume token")
            await _flush(transport, core)
        else:
            note_resumed(session)
            await session.take_over(transport, events[0], frames[1:])
        return
    if not events or not isinstance(events[0], SetupReceived):
        await _flush(transport, core)  # the core refused the SETUP (S1, S2, S7, F2)
        return
    async with anyio.create_task_group() as task_group:
        rsocket = RSocket(
            transport,
            task_group,
            is_client=False,
            setup=SetupInfo.from_frame(events[0].setup),
            options=options,
            core=core,
        )
        try:
            handler = handler_factory(rsocket)
            if inspect.isawaitable(handler):
                handler = await handler
        except SetupError as exc:
            await _refuse(transport, exc, core)
            task_group.cancel_scope.cancel()
            return
        except Exception as exc:
            logger.exception("handler factory failed")
            reason = f"{type(exc).__name__}: {exc}" if options.expose_errors else type(exc).__name__
            await _refuse(transport, RejectedSetupError(f"server failed to set up ({reason})"), core)
            task_group.cancel_scope.cancel()
            return
        if not isinstance(handler, RequestHandler):
            logger.error("handler factory returned %s, not a RequestHandler", type(handler).__name__)
            await _refuse(transport, RejectedSetupError("server failed to set up (bad handler)"), core)
            task_group.cancel_scope.cancel()
            return
        token = events[0].setup.resume_token
        if token is not None and (sessions is None or not sessions.register(token, rsocket)):
            await _refuse(transport, RejectedSetupError("this resume token is already in use"), core)
            task_group.cancel_scope.cancel()
            return
        rsocket._start(handler, frames[1:])
        try:
            await rsocket.wait_closed()
            await finish_handlers(rsocket)
        finally:
            await rsocket.aclose()
            task_group.cancel_scope.cancel()


async def serve_stream(
    stream: ByteStream,
    handler_factory: HandlerFactory,
    *,
    sessions: SessionRegistry | None = None,
    **options: Unpack[ServerOptions],
) -> None:
    """Serve RSocket over one accepted byte stream (length-prefixed frames).

    ``max_frame_size`` and ``frame_timeout`` (see :class:`~anyio_rsocket.options.ServerOptions`)
    apply to the stream; the other options to the connection. ``sessions`` is as for
    :func:`serve_connection`.
    """
    transport = ByteStreamTransport(
        stream,
        max_frame_size=options.get("max_frame_size", MAX_FRAME_SIZE),
        frame_timeout=options.get("frame_timeout", DEFAULT_FRAME_TIMEOUT),
    )
    await serve_connection(transport, handler_factory, sessions=sessions, **options)


async def serve_tcp(
    handler_factory: HandlerFactory,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl_context: ssl.SSLContext | None = None,
    shutdown: ServerShutdown | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerOptions],
) -> None:
    """Serve RSocket over TCP (TLS with ``ssl_context``) until cancelled or drained.

    Use it with ``port = await task_group.start(serve_tcp, factory, host, 0)``: the bound port is
    reported once the listener accepts connections. Each connection runs in its own task group, so a
    failing connection never disturbs the others. ``max_connections``, ``tls_handshake_timeout``,
    ``drain_timeout`` and ``reuse_port`` (see :class:`~anyio_rsocket.options.ServerOptions`) apply to
    the listener: with ``reuse_port=True`` several processes can serve the same port (see
    ``docs/scaling.md``).

    Stopping: ``await shutdown.drain(timeout)`` on the :class:`~anyio_rsocket.ServerShutdown` passed
    as ``shutdown`` stops accepting, sends CONNECTION_CLOSE to every connection so that in-flight
    interactions finish while new requests are refused, closes what is left at the deadline, and
    then this call returns. Cancelling the call drains the same way for ``drain_timeout`` seconds
    (default 0: every connection is closed at once), shielded from the cancellation, then re-raises
    it. Either way no connection or task outlives the call.
    """
    factory = drainable_factory(handler_factory)
    sessions = registry_for(options)

    async def serve_one(stream: ByteStream) -> None:
        await serve_stream(stream, factory, sessions=sessions, **options)

    await serve_listener(
        serve_one,
        host,
        port,
        ssl_context=ssl_context,
        max_connections=options.get("max_connections"),
        tls_handshake_timeout=options.get("tls_handshake_timeout", DEFAULT_TLS_HANDSHAKE_TIMEOUT),
        shutdown=shutdown,
        drain_timeout=options.get("drain_timeout", DEFAULT_DRAIN_TIMEOUT),
        reuse_port=options.get("reuse_port", False),
        task_status=task_status,
    )


__all__ = ["RSocket", "ServerShutdown", "serve_connection", "serve_listener", "serve_stream", "serve_tcp"]
