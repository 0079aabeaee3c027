"""Graceful server shutdown: stop accepting, let in-flight interactions finish, then close.

Hand a :class:`ServerShutdown` to :func:`~anyio_rsocket.serve_tcp` or
:func:`~anyio_rsocket.serve_websocket` as ``shutdown=``; ``await shutdown.drain(timeout)`` then
drains every server using it (see :class:`ServerShutdown` and ``docs/shutdown.md``). The
``drain_timeout`` server option drains the same way when the server is cancelled instead.

How a server drains (the machinery is :class:`ListenerDrain`, one per ``serve_listener`` call):

- the listener runs its connections in a task group under a cancel scope of their own, shielded
  from the server's cancellation; draining gives that scope its deadline, so whatever is still
  running then is cancelled (closed) and nothing outlives the server's call;
- the accept loops run under another cancel scope, cancelled when draining begins; the listening
  sockets are closed as soon as they have stopped, so new connections are refused by the kernel;
- each accepted connection has a :class:`TrackedConnection` record, which its own task can reach
  through a context variable. The handler factory wrapper (:func:`drainable_factory`) marks the
  record as set up and notes its :class:`~.connection.RSocket`. When draining begins, connections
  that have not sent SETUP yet are closed at once, connections being set up are refused
  (REJECTED_SETUP) once their factory returns, and set-up ones get ERROR[CONNECTION_CLOSE]: their
  live interactions finish, new requests both ways are refused, and the connection ends with its
  last interaction (E2).
"""

from __future__ import annotations

import enum
import inspect
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import anyio

from ..wire.errors import RejectedSetupError
from .connection import HandlerFactory, RSocket
from .driver import CoreDriver
from .handler import RequestHandler

__all__ = [
    "ListenerDrain",
    "ServerShutdown",
    "TrackedConnection",
    "drainable_factory",
    "finish_handlers",
    "note_resumed",
    "send_connection_close",
]

#: The REJECTED_SETUP message for a client whose SETUP arrives while the server drains.
SHUTTING_DOWN = "the server is shutting down"


class ServerShutdown:
    """A handle to drain one or more servers: stop accepting, let live interactions finish, close.

    Pass it as ``shutdown=`` to :func:`~anyio_rsocket.serve_tcp` and/or
    :func:`~anyio_rsocket.serve_websocket` (one object may serve several servers), then call
    :meth:`drain` (or :meth:`start_drain`) from any task of the same event loop. Draining is
    one-way: a server started with a shutdown that has already drained drains at once.
    """

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._servers: set[ListenerDrain] = set()

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` or :meth:`start_drain` has been called."""
        return self._deadline is not None

    def start_drain(self, timeout: float) -> None:
        """Begin draining every server using this shutdown, without waiting for it to finish.

        Each server stops accepting (its listening sockets close as soon as its accept loops have
        stopped), closes connections that have not finished SETUP, and sends ERROR[CONNECTION_CLOSE]
        to the others: their live interactions may finish, new requests are refused. Connections
        still open ``timeout`` seconds from now are closed (their pending calls fail with
        :class:`~anyio_rsocket.errors.ConnectionClosedError`), and the ``serve_*`` call returns once
        all its connections have ended. ``timeout`` may be ``math.inf`` (no deadline) or ``0``
        (close at once, as cancelling the server without ``drain_timeout`` does). Calling it again
        can only bring the deadline closer.

        Being synchronous, it is also the way to start a drain from inside a request handler, whose
        own interaction the drain would otherwise wait for.
        """
        if math.isnan(timeout) or timeout < 0:
            raise ValueError("timeout must be zero or more seconds")
        deadline = anyio.current_time() + timeout
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline
        for server in list(self._servers):
            server.begin(self._deadline)

    async def drain(self, timeout: float) -> None:
        """:meth:`start_drain`, then wait until every server using this shutdown has returned.

        Returns promptly when no server uses it (or none has live connections). Cancelling this
        call only abandons the wait: the servers go on draining until their deadline.
        """
        self.start_drain(timeout)
        while self._servers:
            await next(iter(self._servers)).stopped.wait()

    @contextmanager
    def _attached(self, server: ListenerDrain) -> Iterator[None]:
        """Let :meth:`start_drain` reach ``server`` while the block runs (one ``serve_*`` call)."""
        self._servers.add(server)
        try:
            if self._deadline is not None:
                server.begin(self._deadline)
            yield
        finally:
            self._servers.discard(server)


class SetupPhase(enum.Enum):
    """How far a connection has got, which decides what draining does to it."""

    WAITING = "waiting"  # TLS handshake, WebSocket upgrade or SETUP still to come: closed at once
    SETTING_UP = "setting up"  # the handler factory runs: refused (REJECTED_SETUP) once it returns
    SERVING = "serving"  # set up: ERROR[CONNECTION_CLOSE], then the connection ends with its last stream


class TrackedConnection:
    """One accepted connection of a server that can drain: its task's cancel scope and its phase."""

    __slots__ = ("phase", "rsocket", "scope", "server")

    def __init__(self, server: ListenerDrain) -> None:
        self.server = server
        self.scope = anyio.CancelScope()
        self.phase = SetupPhase.WAITING
        self.rsocket: CoreDriver | None = None

    def drain(self) -> None:
        """What draining does to this connection now (see :class:`SetupPhase`)."""
        if self.phase is SetupPhase.WAITING:
            self.scope.cancel()
        elif self.phase is SetupPhase.SERVING and self.rsocket is not None:
            send_connection_close(self.rsocket)


#: The record of the connection the current task serves (set by the listener, read by the factory
#: wrapper): the handler factory runs in the connection's own task.
_current: ContextVar[TrackedConnection | None] = ContextVar("anyio_rsocket_connection", default=None)


class ListenerDrain:
    """The drain machinery of one ``serve_listener`` call (internal to the listener and the servers).

    ``scope`` is the connections' cancel scope, shielded from the server's own cancellation: its
    deadline is the drain's, so a drain ends with whatever is left cancelled. ``accepting`` is the
    accept loops' scope. ``stopped`` is set once the server call is over.
    """

    def __init__(self) -> None:
        self.scope = anyio.CancelScope(shield=True)
        self.accepting = anyio.CancelScope()
        self.stopped = anyio.Event()
        self.draining = False
        self._connections: set[TrackedConnection] = set()

    def begin(self, deadline: float) -> None:
        """Start draining (or bring its deadline closer): see :meth:`ServerShutdown.start_drain`.

        A deadline already reached closes every connection at once, without CONNECTION_CLOSE.
        """
        if deadline <= anyio.current_time():
            self.scope.cancel()
        elif deadline < self.scope.deadline:
            self.scope.deadline = deadline
        if self.draining:
            return
        self.draining = True
        self.accepting.cancel()
        if not self.scope.cancel_called:
            for connection in list(self._connections):
                connection.drain()

    @contextmanager
    def serving(self, shutdown: ServerShutdown | None) -> Iterator[None]:
        """The server call's block: reachable from ``shutdown``; ``stopped`` is set on leaving."""
        try:
            if shutdown is None:
                yield
            else:
                with shutdown._attached(self):
                    yield
        finally:
            self.stopped.set()

    @contextmanager
    def track(self) -> Iterator[TrackedConnection]:
        """Register the current task's connection for its lifetime; run it under ``record.scope``.

        A connection arriving while the server drains has its scope cancelled from the start.
        """
        record = TrackedConnection(self)
        if self.draining:
            record.scope.cancel()
        self._connections.add(record)
        token = _current.set(record)
        try:
            yield record
        finally:
            _current.reset(token)
            self._connections.discard(record)


def drainable_factory(handler_factory: HandlerFactory) -> HandlerFactory:
    """Wrap a server's handler factory so that draining knows which connections are set up.

    On a connection task of a listener (see :meth:`ListenerDrain.track`) the wrapper refuses SETUP
    with REJECTED_SETUP while the server drains, also when draining began while ``handler_factory``
    ran (the handler it built is then dropped); otherwise it records the connection's
    :class:`~.connection.RSocket` for :func:`send_connection_close`. Elsewhere it only calls
    ``handler_factory``.
    """

    async def factory(rsocket: RSocket) -> RequestHandler:
        record = _current.get()
        if record is None:
            return await _build(handler_factory, rsocket)
        if record.server.draining:
            raise RejectedSetupError(SHUTTING_DOWN)
        record.phase = SetupPhase.SETTING_UP
        handler = await _build(handler_factory, rsocket)
        if record.server.draining:
            raise RejectedSetupError(SHUTTING_DOWN)
        if isinstance(handler, RequestHandler):
            # serve_connection starts the connection as soon as this returns, with no checkpoint in
            # between: no drain can see the record before the RSocket is running.
            record.phase = SetupPhase.SERVING
            record.rsocket = rsocket
        return handler

    return factory


def note_resumed(session: CoreDriver) -> None:
    """Tell draining that the current connection task now carries ``session`` (after RESUME).

    For ``serve_connection``'s RESUME path, where the handler factory does not run: without it a
    resumed connection would count as one still before SETUP and be closed at once by a drain.
    Outside a listener's connection task, or while the server drains (the connection is then being
    closed already), it does nothing.
    """
    record = _current.get()
    if record is not None and not record.server.draining:
        record.phase = SetupPhase.SERVING
        record.rsocket = session


async def finish_handlers(rsocket: CoreDriver) -> None:
    """After ``rsocket`` has ended: while its server drains, wait for its handlers still running.

    For ``serve_connection``, between ``wait_closed()`` and cancelling the connection's task group:
    a connection ends with its last stream, but fire-and-forget and metadata-push handlers are no
    streams and would be cancelled with the task group. The drain's deadline bounds the wait (the
    connection task runs under the drain's scope); cancelling it leaves the handlers to be cancelled
    with the task group, as before. Outside a draining server it returns at once.
    """
    record = _current.get()
    if record is not None and record.server.draining and record.rsocket is rsocket:
        await rsocket._workers.wait_below(1)


async def _build(handler_factory: HandlerFactory, rsocket: RSocket) -> RequestHandler:
    handler = handler_factory(rsocket)
    if inspect.isawaitable(handler):
        handler = await handler
    return handler


def send_connection_close(rsocket: CoreDriver) -> None:
    """Close ``rsocket`` gracefully: ERROR[CONNECTION_CLOSE] on stream 0 (E2).

    Live interactions may finish; new requests both ways are refused (ours raise
    :class:`~anyio_rsocket.errors.PeerClosedError`, the peer's are answered with REJECTED); the
    connection ends (``wait_closed`` returns) with the last interaction, at once if there is none.
    Does nothing on a connection that has ended. Uses the driver's own members: this is the place
    for a public ``RSocket`` method to take over.
    """
    if rsocket.is_closed:
        return
    rsocket._handle_events(rsocket._core.close(drain=True))
    rsocket._wake_writer()
