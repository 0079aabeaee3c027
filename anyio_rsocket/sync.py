"""A blocking API for code that is not async: scripts, notebooks, WSGI views, worker threads.

::

    from anyio_rsocket import Payload
    from anyio_rsocket.sync import connect

    with connect("tcp://127.0.0.1:7878") as rs:
        reply = rs.request_response(Payload(b"hi"), timeout=5)
        with rs.request_stream(Payload(b"5"), initial_n=2) as items:
            for item in items:  # credit refilled as items are consumed, as with the async API
                print(item.data)

Threading model: :func:`connect` starts an event loop (asyncio by default, or trio) in a background
thread through AnyIO's blocking portal (:func:`anyio.from_thread.start_blocking_portal`) and opens the
connection there, with :func:`anyio_rsocket.connect`. The connection, its task group and every
interaction live in that thread; each blocking method runs the matching coroutine there and waits for
its result, which is returned (or its exception raised, with the same types as the async API: for
example :class:`~anyio_rsocket.errors.ApplicationError`) in the calling thread. One loop thread per
connection; :meth:`SyncRSocket.close` (or leaving the ``with`` block) closes the connection, stops the
loop and joins its thread. A :class:`SyncRSocket` may be shared by several threads.

Calling any of it from a thread that runs an event loop raises ``RuntimeError`` (it would block that
loop): use the async API there, or call the blocking API in a worker thread. See ``docs/sync.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import ssl
import sys
import threading
import warnings
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .peer._groups import single_exception
from .peer.connection import RSocket
from .peer.options import ConnectOptions
from .peer.requester import DEFAULT_INITIAL_N, RequestChannel, RequestStream
from .peer.session import ConnectionState
from .peer.setup_info import SetupInfo
from .peer.stats import ConnectionStats
from .peer.url import connect as connect_async
from .protocol.errors import InvalidStateError
from .routed import RoutedRequester, RouteOptions
from .wire.errors import ConnectionClosedError
from .wire.payload import Payload

if sys.version_info >= (3, 11):
    from typing import Self, Unpack
else:  # pragma: no cover - Python 3.10
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]
    from typing_extensions import Self, Unpack

__all__ = [
    "FEEDER_JOIN_TIMEOUT",
    "SyncRSocket",
    "SyncRequestChannel",
    "SyncRequestStream",
    "SyncRoutedRequester",
    "connect",
]

T = TypeVar("T")
logger = logging.getLogger("anyio_rsocket.sync")

#: Seconds the end of a channel block waits for the thread iterating a synchronous ``outbound``
#: iterable to notice the end; a thread blocked longer inside the iterable's ``next()`` is left behind
#: (it is a daemon thread and stops, without sending, once ``next()`` returns).
FEEDER_JOIN_TIMEOUT = 2.0


# --- helpers -------------------------------------------------------------------------------------


def _running_event_loop() -> str | None:
    """The event loop running in the calling thread (``"asyncio"`` or ``"trio"``), or ``None``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        return "trio"
    return None


def _check_thread(what: str) -> None:
    """Refuse to block a thread that runs an event loop (it would freeze that loop, or deadlock)."""
    loop = _running_event_loop()
    if loop is not None:
        raise RuntimeError(
            f"anyio_rsocket.sync: {what} blocks, so it cannot be called from a thread running an event "
            f"loop ({loop}); use the async API there (async with anyio_rsocket.connect(...)), or call "
            "the blocking API from a worker thread (anyio.to_thread.run_sync)"
        )


async def _timed(func: Callable[[], Awaitable[T]], timeout: float | None) -> T:
    """Run in the loop thread: await ``func()``, raising TimeoutError past ``timeout`` seconds."""
    if timeout is None:
        return await func()
    with anyio.fail_after(timeout):
        return await func()


def _wait(future: concurrent.futures.Future[T]) -> T:
    """Wait in the calling thread for a call running in the loop thread.

    If the wait itself is interrupted (KeyboardInterrupt), the call is cancelled in the loop thread
    before the exception propagates: a request in flight gets CANCEL.
    """
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        # Only closing the connection (stopping the portal) cancels a call from the loop's side.
        raise ConnectionClosedError("connection closed locally") from None
    except BaseException:
        if not future.done():
            future.cancel()
        raise


def _stop_portal(portal: BlockingPortal, portal_cm: AbstractContextManager[BlockingPortal]) -> None:
    """Cancel whatever still runs in the portal, stop its loop and join its thread."""
    try:
        portal.call(portal.stop, True)
    except RuntimeError:
        pass  # already stopped
    finally:
        portal_cm.__exit__(None, None, None)  # joins the loop thread


class _StandIn(Exception):
    """Passed to an interaction's ``__aexit__`` in place of the calling thread's exception.

    The caller's own exception (a KeyboardInterrupt, say) never enters the event loop thread: an
    interaction only needs to know that its block failed (it then sends CANCEL).
    """


class _LoopBlock(Generic[T]):
    """An async context manager run in the loop thread by ``portal.wrap_async_context_manager``.

    It creates the wrapped context in the loop thread (``open_``), enters it there (within
    ``enter_timeout`` seconds, else ``TimeoutError``), and leaves it with a :class:`_StandIn` for the
    calling thread's exception, which it then swallows; any other exception of the wrapped
    ``__aexit__`` propagates to the calling thread. ``on_exit`` runs last, in the loop thread.

    The timeout is a cancel scope around the whole block (entered first, left last, its deadline
    lifted once the wrapped context is entered), so a context that opens a task group of its own
    (a channel with an outbound source) still nests properly.
    """

    def __init__(
        self,
        open_: Callable[[], AbstractAsyncContextManager[T]],
        on_exit: Callable[[], None] | None = None,
        enter_timeout: float | None = None,
    ) -> None:
        self._open = open_
        self._on_exit = on_exit
        self._enter_timeout = enter_timeout
        self._cm: AbstractAsyncContextManager[T] | None = None
        self._scope: anyio.CancelScope | None = None

    async def __aenter__(self) -> T:
        scope = self._scope = anyio.CancelScope()  # created here: it needs the loop
        if self._enter_timeout is not None:
            scope.deadline = anyio.current_time() + self._enter_timeout
        scope.__enter__()
        try:
            cm = self._open()
            self._cm = cm
            value = await cm.__aenter__()
        except BaseException as exc:
            self._cleanup()
            if scope.__exit__(type(exc), exc, exc.__traceback__):
                raise TimeoutError(f"not opened within {self._enter_timeout} s") from None
            raise
        scope.deadline = math.inf
        return value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        assert self._cm is not None and self._scope is not None
        scope = self._scope
        try:
            await self._exit_wrapped(self._cm, exc_val)
        except BaseException as exc:
            self._cleanup()
            scope.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._cleanup()
        scope.__exit__(None, None, None)
        return False

    @staticmethod
    async def _exit_wrapped(cm: AbstractAsyncContextManager[T], exc_val: BaseException | None) -> None:
        if exc_val is None:
            await cm.__aexit__(None, None, None)
            return
        stand_in = _StandIn("the with block raised an exception")
        try:
            await cm.__aexit__(_StandIn, stand_in, None)
        except _StandIn as raised:
            if raised is not stand_in:
                raise
        except BaseExceptionGroup as group:
            _, rest = group.split(lambda exc: exc is stand_in)
            if rest is not None:
                leaf = single_exception(rest)
                if leaf is None:
                    raise rest from None
                raise leaf from leaf.__cause__

    def _cleanup(self) -> None:
        on_exit, self._on_exit = self._on_exit, None
        if on_exit is not None:
            on_exit()


class _Failure:
    """What the feeder thread hands the loop when a synchronous ``outbound`` iterable raised."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Bridged:
    """The async iterable a channel's outbound task reads: items a feeder thread pulled from a
    synchronous iterable (an async iterator class, not an async generator: nothing to finalize)."""

    def __init__(self, receive: MemoryObjectReceiveStream[Payload | _Failure]) -> None:
        self._receive = receive

    def __aiter__(self) -> _Bridged:
        return self

    async def __anext__(self) -> Payload:
        try:
            item = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None
        if isinstance(item, _Failure):
            raise item.error
        return item


# --- the connection ------------------------------------------------------------------------------


def connect(
    url: str,
    *,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    client: httpx.AsyncClient | None = None,
    subprotocols: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    **options: Unpack[ConnectOptions],
) -> SyncRSocket:
    """Connect to the RSocket server at ``url`` and return a blocking requester.

    Use it as ``with connect(url) as rs: ...``, or call :meth:`SyncRSocket.close` yourself. The URL
    schemes and options are those of :func:`anyio_rsocket.connect` (``tcp://``, ``tcps://``,
    ``ws://``, ``wss://``; ``connect_timeout``, ``setup_payload``, ``handler``, ...). ``backend``
    (``"asyncio"`` or ``"trio"``) and ``backend_options`` choose the event loop run in the
    connection's background thread, as for :func:`anyio.run`. A ``handler`` (answering the server's
    requests) and an httpx ``client`` are used in that thread.

    Blocks until the connection is usable (at most ``connect_timeout`` seconds, default 10). Raises
    what :func:`anyio_rsocket.connect` raises: :class:`~anyio_rsocket.errors.ConnectionClosedError`
    when the server cannot be reached, :class:`~anyio_rsocket.errors.ConnectTimeoutError`,
    ``ValueError`` for a bad URL; the loop thread is stopped and joined before it is raised. Raises
    ``RuntimeError`` when called from a thread that runs an event loop.
    """
    _check_thread("connect()")

    def open_connection() -> AbstractAsyncContextManager[RSocket]:
        return connect_async(
            url, ssl_context=ssl_context, client=client, subprotocols=subprotocols, headers=headers, **options
        )

    portal_cm = start_blocking_portal(backend, backend_options, name=f"anyio-rsocket {url}")
    portal = portal_cm.__enter__()
    try:
        block = portal.wrap_async_context_manager(_LoopBlock(open_connection))
        rsocket = block.__enter__()
    except BaseException:
        _stop_portal(portal, portal_cm)
        raise
    return SyncRSocket(portal, portal_cm, block, rsocket, url=url, backend=backend)


class SyncRSocket:
    """A connection used from ordinary (non-async) code; returned by :func:`connect`.

    Every method blocks the calling thread until the call completes in the connection's event loop
    thread, and raises the same exceptions as the async :class:`~anyio_rsocket.RSocket`. ``timeout``
    arguments (seconds, ``None`` for no limit) raise ``TimeoutError`` when exceeded; what a timeout
    leaves behind is described on each method. If the waiting thread is interrupted (Ctrl-C), the
    call is cancelled in the loop thread (a request gets CANCEL) before ``KeyboardInterrupt``
    propagates, and leaving the ``with`` block still closes the connection and stops its thread.

    After :meth:`close`, requests raise :class:`~anyio_rsocket.errors.ConnectionClosedError`; the
    properties keep their last values.
    """

    def __init__(
        self,
        portal: BlockingPortal,
        portal_cm: AbstractContextManager[BlockingPortal],
        block: AbstractContextManager[RSocket],
        rsocket: RSocket,
        *,
        url: str,
        backend: str,
    ) -> None:
        self._portal = portal
        self._portal_cm = portal_cm
        self._block = block
        self._rsocket = rsocket
        self._url = url
        self._backend = backend
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        status = "closed" if self._closed else "open"
        return f"<SyncRSocket {self._url} ({self._backend}, {status})>"

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(
                f"unclosed {self!r}: call close() or use it in a with block",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is None:
            self.close()
            return
        try:
            self.close()
        except Exception:  # the block's own exception wins
            logger.warning("error while closing %r after an exception", self, exc_info=True)

    def close(self) -> None:
        """Close the connection, stop its event loop and join its thread (idempotent).

        Frames already queued (fire-and-forget requests, say) are flushed first, for at most a couple
        of seconds, as by ``RSocket.aclose``; every interaction still open ends with
        :class:`~anyio_rsocket.errors.ConnectionClosedError`, and calls other threads are blocked in
        raise it. If closing is interrupted, the loop is still stopped and its thread joined.
        """
        _check_thread("close()")
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._block.__exit__(None, None, None)
        finally:
            _stop_portal(self._portal, self._portal_cm)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (see :attr:`state` for the connection itself)."""
        return self._closed

    def wait_closed(self, *, timeout: float | None = None) -> None:
        """Block until the connection has ended (closed by the peer, lost, or closed locally).

        Raises ``TimeoutError`` when it is still open after ``timeout`` seconds.
        """
        if self._closed:
            return
        self._call(self._rsocket.wait_closed, timeout)

    # --- escape hatches --------------------------------------------------------------------------

    @property
    def portal(self) -> BlockingPortal:
        """The blocking portal of the connection's loop thread: ``rs.portal.call(async_fn, ...)``
        runs anything else there (for example ``rs.portal.call(rs.rsocket.state_changed)``)."""
        return self._portal

    @property
    def rsocket(self) -> RSocket:
        """The async connection; use it only in the loop thread (through :attr:`portal`)."""
        return self._rsocket

    @property
    def backend(self) -> str:
        """The event loop running the connection: ``"asyncio"`` or ``"trio"``."""
        return self._backend

    # --- calls into the loop thread --------------------------------------------------------------

    def _submit(
        self, func: Callable[[], Awaitable[T]], timeout: float | None
    ) -> concurrent.futures.Future[T]:
        _check_thread("this call")
        if self._closed:
            raise ConnectionClosedError("connection closed locally")
        try:
            return self._portal.start_task_soon(_timed, func, timeout)
        except RuntimeError:
            if self._closed:  # closed by another thread meanwhile
                raise ConnectionClosedError("connection closed locally") from None
            raise

    def _call(self, func: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        return _wait(self._submit(func, timeout))

    def _read(self, func: Callable[[], T]) -> T:
        """Read live state in the loop thread (directly once the loop has stopped)."""
        if self._closed:
            return func()
        _check_thread("reading connection state")
        try:
            return self._portal.call(func)
        except RuntimeError:
            if self._closed:
                return func()
            raise

    # --- state -----------------------------------------------------------------------------------

    @property
    def setup(self) -> SetupInfo:
        """What the client sent in SETUP (MIME types, keepalive, lifetime, setup payload, flags)."""
        return self._rsocket.setup

    @property
    def state(self) -> ConnectionState:
        """Where the connection is (:class:`~anyio_rsocket.ConnectionState`); ``CLOSED`` after close."""
        return self._read(lambda: self._rsocket.state)

    @property
    def stats(self) -> ConnectionStats:
        """A snapshot of the connection's counters (:class:`~anyio_rsocket.ConnectionStats`)."""
        return self._read(lambda: self._rsocket.stats)

    @property
    def close_reason(self) -> ConnectionClosedError | None:
        """Why the connection ended (``None`` while it is open)."""
        return self._read(lambda: self._rsocket.close_reason)

    @property
    def available(self) -> bool:
        """Whether a new request would go out now (see ``RSocket.available``)."""
        return self._read(lambda: self._rsocket.available)

    @property
    def is_client(self) -> bool:
        """Always true: :func:`connect` opens the client side."""
        return self._rsocket.is_client

    # --- interactions ----------------------------------------------------------------------------

    def request_response(self, payload: Payload, *, timeout: float | None = None) -> Payload:
        """Send a request and block until its answer; raise the peer's error as its typed exception.

        On ``timeout`` (or an interrupted wait) the request is cancelled: CANCEL is sent, a late
        answer is discarded, and the connection stays usable.
        """
        rsocket = self._rsocket
        return self._call(lambda: rsocket.request_response(payload), timeout)

    def fire_and_forget(self, payload: Payload, *, timeout: float | None = None) -> None:
        """Send a request that gets no answer; returns once the frame is queued for writing.

        ``timeout`` bounds the wait for room in the write buffer (and for a lease, with leasing);
        when it fires the request may still have been queued, and then it is sent.
        """
        rsocket = self._rsocket
        self._call(lambda: rsocket.fire_and_forget(payload), timeout)

    def metadata_push(self, metadata: bytes, *, timeout: float | None = None) -> None:
        """Push connection-level metadata; returns once the frame is queued for writing.

        As for :meth:`fire_and_forget`, a ``timeout`` may fire after the frame was queued.
        """
        rsocket = self._rsocket
        self._call(lambda: rsocket.metadata_push(metadata), timeout)

    def request_stream(
        self,
        payload: Payload,
        *,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        timeout: float | None = None,
    ) -> SyncRequestStream:
        """Open a request-stream; use the result in a ``with`` block and iterate it.

        ``initial_n`` and ``auto_request`` are those of ``RSocket.request_stream``: credit is enforced
        exactly as with the async API (with ``auto_request=False`` only ``items.request(n)`` grants
        more). ``timeout`` bounds opening the stream and each wait for an item (see
        :meth:`SyncRequestStream.receive`).
        """
        rsocket = self._rsocket
        return SyncRequestStream(
            self,
            lambda: rsocket.request_stream(payload, initial_n=initial_n, auto_request=auto_request),
            timeout,
        )

    def request_channel(
        self,
        payload: Payload,
        *,
        outbound: Iterable[Payload] | AsyncIterable[Payload] | None = None,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
        timeout: float | None = None,
    ) -> SyncRequestChannel:
        """Open a request-channel whose first element is ``payload``; use the result in a ``with`` block.

        Iterating the result receives the responder's elements; :meth:`SyncRequestChannel.send` and
        :meth:`~SyncRequestChannel.send_eof` send ours. ``outbound`` sends the elements of an
        iterable after the first one, each once the responder has granted credit, then completes our
        half: a synchronous iterable is iterated in a thread of its own (so a generator may block or
        compute without stalling the connection), an async iterable in the loop thread. If it raises,
        the responder gets ERROR[APPLICATION_ERROR] and the exception is raised in the calling thread
        (from the iteration, and from the end of the ``with`` block). Credit options and ``complete``
        are those of ``RSocket.request_channel``; ``timeout`` is as for :meth:`request_stream` and
        also bounds each :meth:`~SyncRequestChannel.send`.
        """
        return SyncRequestChannel(
            self,
            payload,
            outbound=outbound,
            initial_n=initial_n,
            auto_request=auto_request,
            complete=complete,
            timeout=timeout,
        )

    def route(self, route: str, *more_tags: str, **options: Unpack[RouteOptions]) -> SyncRoutedRequester:
        """Bind ``route`` once: ``rs.route("user.get").retrieve({"id": 7})`` (see ``RSocket.route``)."""
        return SyncRoutedRequester(self, self._rsocket.route(route, *more_tags, **options))


# --- streams and channels ------------------------------------------------------------------------


class SyncRequestStream(Iterator[Payload]):
    """A request-stream used from ordinary code: ``with rs.request_stream(p) as items: for item in items``.

    Entering the block sends REQUEST_STREAM (the async stream's context is entered in the loop
    thread); each ``next()`` waits for the next item (:meth:`receive`), and iteration stops when the
    responder completes the stream. A peer ERROR is raised as its typed exception. Leaving the block
    before the stream completed, normally or by an exception (KeyboardInterrupt included), sends
    CANCEL. Iterating outside the block raises :class:`~anyio_rsocket.InvalidStateError`.
    """

    def __init__(
        self,
        owner: SyncRSocket,
        open_: Callable[[], AbstractAsyncContextManager[RequestStream]],
        timeout: float | None,
    ) -> None:
        self._owner = owner
        self._open = open_
        self._timeout = timeout
        self._block: AbstractContextManager[RequestStream] | None = None
        self._stream: RequestStream | None = None
        self._left = False

    def _on_exit(self) -> None:
        """Run in the loop thread once the interaction's context is left."""

    def __enter__(self) -> Self:
        if self._block is not None or self._left:
            raise InvalidStateError("a stream's with block can be entered only once")
        owner = self._owner
        _check_thread("opening a stream")
        if owner.closed:
            raise ConnectionClosedError("connection closed locally")
        try:
            block = owner.portal.wrap_async_context_manager(
                _LoopBlock(self._open, self._on_exit, self._timeout)
            )
            stream = block.__enter__()
        except RuntimeError:
            if owner.closed:
                raise ConnectionClosedError("connection closed locally") from None
            raise
        self._block, self._stream = block, stream
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        block, self._block = self._block, None
        self._left = True
        self._stream = None
        if block is None or self._owner.closed:
            return  # closing the connection already ended the interaction
        try:
            block.__exit__(exc_type, exc_val, exc_tb)
        except RuntimeError:
            if not self._owner.closed:  # the portal stopped meanwhile: nothing is left to end
                raise

    def close(self) -> None:
        """Leave the interaction now (as leaving the ``with`` block does)."""
        self.__exit__(None, None, None)

    def _live(self) -> RequestStream:
        stream = self._stream
        if stream is None:
            if self._left:
                raise anyio.ClosedResourceError("this stream's with block has ended")
            raise InvalidStateError("use the stream in a with block: with rs.request_stream(...) as items:")
        return stream

    def __next__(self) -> Payload:
        try:
            return self.receive()
        except anyio.EndOfStream:
            raise StopIteration from None

    def receive(self, *, timeout: float | None = None) -> Payload:
        """Block until the next item and return it; raise ``anyio.EndOfStream`` after the last one.

        ``timeout`` (default: the stream's ``timeout``; pass ``math.inf`` for none) raises
        ``TimeoutError``; a timed-out wait loses nothing: the stream stays open, an item arriving
        later is kept for the next call, and credit is unchanged.
        """
        stream = self._live()
        return self._owner._call(stream.receive, self._timeout if timeout is None else timeout)

    def request(self, n: int) -> None:
        """Grant the responder ``n`` more items (a REQUEST_N; credits add up). Does not block."""
        stream = self._live()
        self._owner._read(lambda: stream.request(n))

    @property
    def buffered(self) -> int:
        """Items received and not yet consumed (never more than the credit granted)."""
        stream = self._live()
        return self._owner._read(lambda: stream.buffered)

    @property
    def stream_id(self) -> int:
        """The interaction's stream id (0 before the block is entered)."""
        stream = self._stream
        return 0 if stream is None else stream.stream_id


class SyncRequestChannel(SyncRequestStream):
    """A request-channel used from ordinary code; iterate it for the responder's elements.

    :meth:`send` sends one element (waiting for the responder's credit) and :meth:`send_eof`
    completes our half. Leaving the block completes our half if only it is still open, and otherwise
    sends CANCEL (always CANCEL when the block raised). A synchronous ``outbound`` iterable is
    iterated by a daemon thread that this block starts and joins at its end (for up to
    :data:`FEEDER_JOIN_TIMEOUT` seconds when it is blocked inside ``next()``); at most one element is
    pulled from it ahead of the responder's credit.
    """

    def __init__(
        self,
        owner: SyncRSocket,
        payload: Payload,
        *,
        outbound: Iterable[Payload] | AsyncIterable[Payload] | None,
        initial_n: int,
        auto_request: bool,
        complete: bool,
        timeout: float | None,
    ) -> None:
        super().__init__(owner, self._open_channel, timeout)
        self._payload = payload
        self._outbound = outbound
        self._initial_n = initial_n
        self._auto_request = auto_request
        self._complete = complete
        self._feed_send: MemoryObjectSendStream[Payload | _Failure] | None = None
        self._feed_receive: MemoryObjectReceiveStream[Payload | _Failure] | None = None
        self._feeder: threading.Thread | None = None
        self._stop_feeding = threading.Event()

    def _open_channel(self) -> RequestChannel:
        """In the loop thread: the async channel, with a bridge from the feeder thread if needed."""
        outbound = self._outbound
        source: AsyncIterable[Payload] | None
        if outbound is None or isinstance(outbound, AsyncIterable):
            source = outbound
        else:
            send, receive = anyio.create_memory_object_stream[Payload | _Failure](0)
            self._feed_send, self._feed_receive = send, receive
            source = _Bridged(receive)
        return self._owner.rsocket.request_channel(
            self._payload,
            initial_n=self._initial_n,
            auto_request=self._auto_request,
            complete=self._complete,
            outbound=source,
        )

    def _on_exit(self) -> None:
        # In the loop thread, after the channel's context: a feeder blocked handing over an element
        # gets BrokenResourceError, and its next hand-over ClosedResourceError; either stops it.
        receive, send = self._feed_receive, self._feed_send
        if receive is not None and send is not None:
            receive.close()
            send.close()  # the feeder's next hand-over fails and it stops

    def __enter__(self) -> Self:
        super().__enter__()
        send, outbound = self._feed_send, self._outbound
        if send is not None and outbound is not None and not isinstance(outbound, AsyncIterable):
            iterator = iter(outbound)
            feeder = threading.Thread(
                target=self._feed,
                args=(iterator, send),
                name=f"anyio-rsocket outbound {self._owner!r}",
                daemon=True,
            )
            self._feeder = feeder
            feeder.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._stop_feeding.set()
        try:
            super().__exit__(exc_type, exc_val, exc_tb)
        finally:
            feeder, self._feeder = self._feeder, None
            if feeder is not None:
                feeder.join(FEEDER_JOIN_TIMEOUT)

    def _hand_over(self, func: Callable[[], Awaitable[None]]) -> bool:
        """In the feeder thread: run ``func`` in the loop; false once the channel or loop is gone."""
        try:
            self._owner.portal.call(func)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, concurrent.futures.CancelledError):
            return False
        except RuntimeError:  # the portal has stopped
            return False
        return True

    def _feed(self, iterator: Iterator[Payload], send: MemoryObjectSendStream[Payload | _Failure]) -> None:
        """The feeder thread: pull from the synchronous iterable, hand each element to the loop."""
        stop = self._stop_feeding
        while not stop.is_set():
            try:
                item = next(iterator)
            except StopIteration:
                self._hand_over(send.aclose)  # the outbound task then completes our half
                return
            except BaseException as exc:
                error = exc if isinstance(exc, Exception) else RuntimeError(f"outbound raised {exc!r}")
                self._hand_over(partial(send.send, _Failure(error)))
                return
            if not isinstance(item, Payload):
                failure = _Failure(TypeError(f"outbound elements must be Payload, got {type(item).__name__}"))
                self._hand_over(partial(send.send, failure))
                return
            if stop.is_set() or not self._hand_over(partial(send.send, item)):
                return

    def send(self, item: Payload, *, timeout: float | None = None) -> None:
        """Send one element, blocking while the responder has granted no credit.

        ``timeout`` (default: the channel's) raises ``TimeoutError``: while waiting for credit the
        element was not sent; while waiting for write-buffer room it was queued and will be sent.
        Raises ``anyio.BrokenResourceError`` once the responder cancelled our half and
        ``anyio.ClosedResourceError`` after :meth:`send_eof`.
        """
        channel = self._channel()
        self._owner._call(lambda: channel.send(item), self._timeout if timeout is None else timeout)

    def send_eof(self) -> None:
        """Complete our half of the channel; receiving continues until the responder completes."""
        channel = self._channel()
        self._owner._call(channel.send_eof)

    def _channel(self) -> RequestChannel:
        stream = self._live()
        assert isinstance(stream, RequestChannel)
        return stream


# --- routes --------------------------------------------------------------------------------------


class SyncRoutedRequester:
    """Requests to one route of a :class:`SyncRSocket` (``rs.route("user.get")``), blocking.

    The same as :class:`~anyio_rsocket.routed.RoutedRequester` (metadata built once, data encoded by
    the connection's codec, :meth:`decode` for answers), with the blocking calls and ``timeout``
    arguments of :class:`SyncRSocket`.
    """

    def __init__(self, owner: SyncRSocket, routed: RoutedRequester) -> None:
        self._owner = owner
        self.routed = routed

    def __repr__(self) -> str:
        return f"SyncRoutedRequester({self.routed.route!r})"

    @property
    def route(self) -> str:
        return self.routed.route

    @property
    def metadata(self) -> bytes:
        return self.routed.metadata

    def payload(self, data: Any = b"") -> Payload:
        """The request payload for ``data``, with this route's metadata."""
        return self.routed.payload(data)

    def element(self, data: Any) -> Payload:
        """A later channel element for ``data`` (encoded, no metadata)."""
        return self.routed.element(data)

    @overload
    def decode(self, payload: Payload, into: type[T]) -> T: ...

    @overload
    def decode(self, payload: Payload, into: Any = ...) -> Any: ...

    def decode(self, payload: Payload, into: Any = object) -> Any:
        """Decode an answer's data (see ``RoutedRequester.decode``)."""
        return self.routed.decode(payload, into)

    def request_response(self, data: Any = b"", *, timeout: float | None = None) -> Payload:
        """Request-response to this route; returns the raw answer (see :meth:`retrieve`)."""
        return self._owner.request_response(self.routed.payload(data), timeout=timeout)

    @overload
    def retrieve(self, data: Any, into: type[T], *, timeout: float | None = ...) -> T: ...

    @overload
    def retrieve(self, data: Any = ..., into: Any = ..., *, timeout: float | None = ...) -> Any: ...

    def retrieve(self, data: Any = b"", into: Any = object, *, timeout: float | None = None) -> Any:
        """Request-response, with the answer decoded into ``into``."""
        return self.routed.decode(self.request_response(data, timeout=timeout), into)

    def fire_and_forget(self, data: Any = b"", *, timeout: float | None = None) -> None:
        """Fire-and-forget to this route."""
        self._owner.fire_and_forget(self.routed.payload(data), timeout=timeout)

    def metadata_push(self, *, timeout: float | None = None) -> None:
        """Push this route's metadata (for ``@router.metadata_push`` handlers)."""
        self._owner.metadata_push(self.routed.metadata, timeout=timeout)

    def request_stream(
        self,
        data: Any = b"",
        *,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        timeout: float | None = None,
    ) -> SyncRequestStream:
        """Request-stream to this route; use the result in a ``with`` block."""
        return self._owner.request_stream(
            self.routed.payload(data), initial_n=initial_n, auto_request=auto_request, timeout=timeout
        )

    def request_channel(
        self,
        data: Any = b"",
        *,
        outbound: Iterable[Any] | None = None,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
        timeout: float | None = None,
    ) -> SyncRequestChannel:
        """Request-channel to this route (``data`` is the first element); ``outbound`` values are
        encoded as :meth:`element` does, in the thread that iterates them."""
        elements = None if outbound is None else (self.routed.element(value) for value in outbound)
        return self._owner.request_channel(
            self.routed.payload(data),
            outbound=elements,
            initial_n=initial_n,
            auto_request=auto_request,
            complete=complete,
            timeout=timeout,
        )
