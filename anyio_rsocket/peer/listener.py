"""Accepting connections: the listener loop shared by the TCP and WebSocket servers.

The loop is our own rather than AnyIO's ``Listener.serve`` so that

* accepted sockets become streams that stop reading while the connection is not reading
  (:func:`~anyio_rsocket.transports.sockets.wrap_accepted_socket`), on asyncio too;
* ``max_connections`` can stop accepting (new connections wait in the kernel's backlog) until one ends;
* the TLS handshake runs in the connection's own task under ``tls_handshake_timeout``, and a failed
  or stalled handshake costs one DEBUG line (AnyIO's ``TLSListener`` logs a traceback for each: a
  log flood anyone can trigger);
* running out of file descriptors or memory pauses accepting briefly instead of ending the server.
* the server can drain (:mod:`.shutdown`): stop accepting, let connections finish up to a deadline,
  then close the rest;
* with ``reuse_port`` several processes (or servers) listen on one port (``SO_REUSEPORT``): on Linux
  the kernel spreads new connections over them; see ``docs/scaling.md``.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream, TaskGroup, TaskStatus
from anyio.streams.stapled import MultiListener
from anyio.streams.tls import TLSStream

from ..transports.sockets import wrap_accepted_socket
from ._groups import unwrap_exception_groups
from .shutdown import ListenerDrain, ServerShutdown

logger = logging.getLogger("anyio_rsocket.server")

#: Default bound on a TLS handshake, in seconds.
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0
#: How long to wait before accepting again after running out of file descriptors or memory.
_ACCEPT_RETRY_DELAY = 0.1
#: accept() errors that concern one connection only (it was reset before we took it).
_ACCEPT_SKIP = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})
#: accept() errors that mean the process or system is short of resources for now.
_ACCEPT_RETRY = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_HANDSHAKE_ERRORS = (
    ssl.SSLError,
    OSError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


async def serve_listener(
    serve_one: Callable[[ByteStream], Awaitable[None]],
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
    tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    shutdown: ServerShutdown | None = None,
    drain_timeout: float = 0.0,
    reuse_port: bool = False,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Accept TCP (or TLS) connections and run ``serve_one`` for each in its own task.

    Reports the bound port through ``task_status``; a failing connection is logged and never
    disturbs the others. At most ``max_connections`` connections (``None``: no cap) are served at
    once: beyond that the server stops accepting until one ends. With ``ssl_context``, each
    connection's TLS handshake must finish within ``tls_handshake_timeout`` seconds. Shared by the
    TCP and WebSocket servers. What escapes a connection's task (``SystemExit``,
    ``KeyboardInterrupt``) ends the server as itself, not inside an exception group.

    Draining (``shutdown.drain`` or, when cancelled, for ``drain_timeout`` seconds): accepting
    stops and the listening sockets close, connections still before SETUP are closed, RSocket
    connections set up through :func:`~.shutdown.drainable_factory` are asked to finish
    (CONNECTION_CLOSE); the rest of ``serve_one``'s tasks run until they end or the deadline
    cancels them. The call returns (or, when cancelled, re-raises the cancellation) once every
    connection task has ended: nothing is left behind. With ``drain_timeout`` 0 (the default)
    cancellation closes every connection at once.

    ``reuse_port`` sets ``SO_REUSEPORT`` (see :func:`create_listener`), so that other processes or
    servers can listen on the same port; where the platform lacks it, this raises ``OSError``
    before anything is bound.
    """
    if max_connections is not None and max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    if not tls_handshake_timeout > 0:
        raise ValueError("tls_handshake_timeout must be positive")
    if not drain_timeout >= 0:
        raise ValueError("drain_timeout must be zero or more seconds")
    listener = await create_listener(host, port, reuse_port=reuse_port)
    bound_port: int = listener.extra(SocketAttribute.local_port)
    raw_sockets = [each.extra(SocketAttribute.raw_socket) for each in listener.listeners]
    slots = anyio.Semaphore(max_connections) if max_connections is not None else None
    drain = ListenerDrain()

    async def handle(sock: socket.socket) -> None:
        try:
            with drain.track() as connection, connection.scope:
                try:
                    stream: ByteStream = await wrap_accepted_socket(sock)
                except (OSError, ValueError) as exc:  # the peer left before we could start
                    sock.close()
                    logger.debug("dropped a connection that failed at once: %r", exc)
                    return
                except BaseException:
                    sock.close()
                    raise
                if ssl_context is not None:
                    tls_stream = await _tls_handshake(stream, ssl_context, tls_handshake_timeout)
                    if tls_stream is None:
                        return
                    stream = tls_stream
                await serve_one(stream)
        except Exception:
            logger.exception("connection handler failed")
        finally:
            if slots is not None:
                slots.release()

    async def accept(connections: TaskGroup) -> None:
        with drain.accepting:
            async with anyio.create_task_group() as loops:
                for raw_socket in raw_sockets:
                    loops.start_soon(_accept_loop, raw_socket, connections, handle, slots)
        with anyio.CancelScope(shield=True):
            await listener.aclose()  # draining: new connections are refused from now on

    async def run_connections(finished: anyio.Event) -> None:
        try:
            with drain.scope:  # shielded: the server's cancellation reaches it through drain.begin
                async with anyio.create_task_group() as connections:
                    connections.start_soon(accept, connections)
        finally:
            finished.set()

    # "stopped" is set as the very last step (no checkpoint follows): a drain() waiting for it
    # resumes after this call has returned.
    with drain.serving(shutdown):
        async with unwrap_exception_groups(), listener, anyio.create_task_group() as task_group:
            finished = anyio.Event()
            task_group.start_soon(run_connections, finished)
            task_status.started(bound_port)
            try:
                await finished.wait()
            except anyio.get_cancelled_exc_class():
                drain.begin(anyio.current_time() + drain_timeout)
                raise


def reuse_port_supported() -> bool:
    """Whether this platform has ``SO_REUSEPORT`` (Linux, macOS, the BSDs; not Windows)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform != "win32"


async def create_listener(
    host: str | None, port: int, *, reuse_port: bool = False
) -> MultiListener[SocketStream]:
    """``anyio.create_tcp_listener`` on ``host``:``port``, with ``SO_REUSEPORT`` when ``reuse_port``.

    With ``reuse_port`` every socket bound to the port with the option set (by the same user) listens
    at once: on Linux (and DragonFly BSD) the kernel spreads new connections over them by a hash of
    the client's address and port; on macOS and the other BSDs the option lets them bind, but new
    connections are not balanced (one socket tends to get them all). Raises ``OSError`` (errno
    ``ENOPROTOOPT``) with a clear message where the platform (or kernel) lacks the option.
    """
    if reuse_port and not reuse_port_supported():
        raise OSError(errno.ENOPROTOOPT, f"reuse_port needs SO_REUSEPORT, which {sys.platform} lacks")
    try:
        return await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=reuse_port)
    except OSError as exc:
        if reuse_port and exc.errno == errno.ENOPROTOOPT:
            raise OSError(errno.ENOPROTOOPT, f"reuse_port: this kernel refused SO_REUSEPORT ({exc})") from exc
        raise


async def _accept_loop(
    raw_socket: socket.socket,
    task_group: TaskGroup,
    handle: Callable[[socket.socket], Coroutine[Any, Any, None]],
    slots: anyio.Semaphore | None,
) -> None:
    """Accept connections on one listening socket, each handled in its own task (which frees its slot)."""
    short_of_resources = False
    while True:
        if slots is not None:
            await slots.acquire()
        try:
            while True:
                await anyio.wait_readable(raw_socket)
                try:
                    sock, _address = raw_socket.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # nothing to accept after all
                except OSError as exc:
                    if exc.errno in _ACCEPT_SKIP:
                        continue
                    if exc.errno not in _ACCEPT_RETRY:
                        raise
                    if not short_of_resources:  # one line per episode, not one per attempt
                        logger.warning("cannot accept connections for now: %s", exc)
                        short_of_resources = True
                    await anyio.sleep(_ACCEPT_RETRY_DELAY)
                    continue
                break
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        short_of_resources = False
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task_group.start_soon(handle, sock)


async def _tls_handshake(stream: ByteStream, ssl_context: ssl.SSLContext, timeout: float) -> TLSStream | None:
    """The server side of a TLS handshake within ``timeout``; ``None`` (stream closed) if it failed.

    A failure is the client's doing (wrong protocol, untrusted certificate, gone, too slow), so it
    is logged as one DEBUG line, never with a traceback.
    """
    peer = stream.extra(SocketAttribute.remote_address, "unknown peer")
    tls_stream: TLSStream | None = None
    try:
        with anyio.move_on_after(timeout) as scope:
            try:
                tls_stream = await TLSStream.wrap(stream, server_side=True, ssl_context=ssl_context)
            except _HANDSHAKE_ERRORS as exc:
                reason = exc.__cause__ if exc.__cause__ is not None else exc
                logger.debug("TLS handshake with %s failed: %r", peer, reason)
        if scope.cancelled_caught:
            logger.debug("TLS handshake with %s timed out after %g s", peer, timeout)
    finally:
        if tls_stream is None:  # failed, timed out or cancelled: never leave the socket open
            await anyio.aclose_forcefully(stream)
    return tls_stream
