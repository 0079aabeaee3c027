"""Responder side: the per-request state the reader feeds, and the tasks that run user handlers.

Each inbound request gets a state object (a :class:`~.link.StreamOwner` the connection feeds
synchronously) and a job on the connection's worker pool that runs the user's handler. Stream and
channel handlers are async generators advanced only while the requester has credit. Everything goes
to the wire through the connection's :class:`~.link.StreamLink` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import math
import sys
import types
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import anyio

from ..wire.errors import CONNECTION_ERROR_CODES, ErrorCode, RSocketError
from ..wire.frames import FLAG_COMPLETE, FLAG_NEXT
from ..wire.payload import Payload
from .handler import RequestHandler
from .link import StreamLink
from .settings import WRITE_HIGH_WATER
from .workers import WORKER_SCOPE, WorkerScope

logger = logging.getLogger("anyio_rsocket")
#: Every failure of a user's handler is logged here once, with its traceback.
handler_logger = logging.getLogger("anyio_rsocket.handler")

#: Credit a channel responder grants the requester at once (the core sends it, IX5), topped up as
#: the handler consumes.
RESPONDER_CHANNEL_WINDOW = 256


def error_for(exc: BaseException, expose: bool = False) -> tuple[int, str]:
    """The code and message of the ERROR that reports ``exc`` from a responder.

    An ``RSocketError`` keeps its code and message. Anything else becomes APPLICATION_ERROR whose
    message is the exception's type name, or its text too when ``expose`` is true (exception text
    can hold paths, keys or SQL, so servers opt in with ``expose_errors=True``).
    """
    code = stream_error_code(exc)
    if code is not None:
        message = str(getattr(exc, "message", ""))
    else:
        code = ErrorCode.APPLICATION_ERROR
        name = type(exc).__name__
        text = str(exc) if expose else ""
        message = f"{name}: {text}" if text else name
    return code, message


def stream_error_code(exc: BaseException) -> int | None:
    """The code of an ``RSocketError`` that may end a stream, or None.

    A code that cannot go on a stream (not an integer, out of range, a connection-level code) is
    the handler's mistake: it must fail that request only, as APPLICATION_ERROR, never the
    connection.
    """
    code = getattr(exc, "code", None)
    if (
        isinstance(exc, RSocketError)
        and isinstance(code, int)
        and 0 < code <= 0xFFFFFFFF
        and code not in CONNECTION_ERROR_CODES
    ):
        return code
    return None


def is_handler_failure(exc: BaseException) -> bool:
    """Whether ``exc`` escaping a handler fails only its request (else it must propagate).

    Ordinary exceptions do. So does the backend's cancellation exception when the handler raised it
    itself (no enclosing scope of ours is cancelled: the effective deadline is not -inf); a real
    cancellation, ``KeyboardInterrupt`` and ``SystemExit`` propagate.
    """
    if isinstance(exc, Exception):
        return True
    stray_cancellation = isinstance(exc, anyio.get_cancelled_exc_class())
    return stray_cancellation and anyio.current_effective_deadline() != -math.inf


def log_handler_failure(kind: str, stream_id: int, exc: BaseException) -> None:
    """Log a handler's failure once, with its traceback, on the ``anyio_rsocket.handler`` logger.

    ``RSocketError``s a handler raises on purpose (ApplicationError, RejectedError, ...) are part of
    the protocol, so they are logged at DEBUG; anything else is an ERROR record.
    """
    level = logging.DEBUG if isinstance(exc, RSocketError) else logging.ERROR
    handler_logger.log(level, "%s handler failed (stream %d)", kind, stream_id, exc_info=exc)


#: Streams park only while the connection has more interactions than this running or held: a
#: waiting task costs a few kilobytes, while each park and resume costs a cancel scope and a task
#: switch (about 7% of a fast stream's throughput on Trio when every credit round parks).
PARK_ABOVE = 64


class ResponderTask:
    """A request-response being answered: cancelling it cancels the handler's task."""

    __slots__ = ("_scope", "link", "live", "stream_id", "worker_scope")

    def __init__(self, link: StreamLink, stream_id: int) -> None:
        self.link = link
        self.stream_id = stream_id
        self._scope: anyio.CancelScope | None = None
        #: While the handler runs directly in its worker's scope: that scope (see run_request_response).
        self.worker_scope: WorkerScope | None = None
        self.live = True  # we may still send our answer (or items)

    @property
    def scope(self) -> anyio.CancelScope:
        """The request's own cancel scope, made on first use (a deadline, or a cancellation
        before the handler started); a handler running in its worker's scope has none."""
        scope = self._scope
        if scope is None:
            scope = self._scope = anyio.CancelScope()
        return scope

    def on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        pass

    def on_error(self, error: BaseException) -> None:
        self.on_cancel()

    def on_request_n(self, n: int) -> None:
        pass  # RN7

    def on_cancel(self) -> None:
        if self.live:
            self.live = False
            self._cancel()

    def on_connection_closed(self, error: BaseException) -> None:
        self.live = False
        self._cancel()

    def _cancel(self) -> None:
        worker_scope = self.worker_scope
        if worker_scope is not None:
            worker_scope.cancel()
        else:
            self.scope.cancel()

    def end(self) -> None:
        """Our terminal frame went out: the interaction is over."""
        self.live = False


class ResponderStream(ResponderTask):
    """A request-stream being answered: waits for the requester's credit (the core counts it).

    A stream whose handler is suspended at a ``yield`` while there is no credit for the item it
    yielded is *parked*: it keeps only its generator and that item (``held``), no task. REQUEST_N
    resumes it on whichever worker is free; CANCEL, ERROR or the end of the connection close its
    generator (its ``finally`` blocks run, shielded, for at most a second). So a handler must not
    count on staying on one task across a ``yield`` (context variables it set before one are not
    seen after it), except that one yielding from inside a cancel scope or task group of its own
    keeps its task. So does a stream whose whole run interceptors wrap (``pinned``) or a deadline
    bounds: it waits for credit on its task.
    """

    __slots__ = ("_credit_event", "generator", "held", "pinned")

    #: The interaction's name in log records.
    kind = "request-stream"

    def __init__(self, link: StreamLink, stream_id: int, pinned: bool = False) -> None:
        super().__init__(link, stream_id)
        self._credit_event: anyio.Event | None = None
        self.generator: Any = None  # the handler's async iterator, once made
        self.held: Payload | None = None  # parked: the item pulled ahead, waiting for credit
        self.pinned = pinned

    def park(self, item: Payload) -> bool:
        """Hold ``item`` (no credit for it) and let the running job end, if this stream may park.

        Called by the job driving the stream, inside its scope, with no checkpoint between its
        last look at ``live`` and here.
        """
        scope = self._scope
        if self.pinned or (scope is not None and scope.deadline != math.inf):
            return False
        if self.link.workers.active <= PARK_ABOVE:
            return False  # few interactions: a task costs less than parking and resuming
        if inside_with_block(self.generator):
            return False
        self.held = item
        self._scope = None  # the job's scope ends with it; a resumed job makes a new one
        self.link.workers.hold()  # still a live interaction: counted until resumed or closed
        return True

    def _close_parked(self) -> None:
        self.held = None
        self.link.workers.finalize(close_generator, self.generator, self.kind, self.stream_id)

    def on_request_n(self, n: int) -> None:
        held = self.held
        if held is not None:
            # Parked: a worker sends the held item and goes on pulling from the generator. Until
            # it runs, this stream counts as running (its CANCEL cancels that job's scope).
            self.held = None
            self.link.workers.resume(run_stream, self.link, None, self, None, None, held)
            return
        event = self._credit_event
        if event is not None:
            self._credit_event = None
            event.set()

    def on_cancel(self) -> None:
        if self.live and self.held is not None:
            self.live = False
            self._close_parked()
        else:
            super().on_cancel()

    def on_connection_closed(self, error: BaseException) -> None:
        if self.held is not None:
            self.live = False
            self._close_parked()
        else:
            super().on_connection_closed(error)

    async def wait_for_credit(self) -> None:
        link, stream_id = self.link, self.stream_id
        while link.send_credit(stream_id) <= 0:
            event = self._credit_event
            if event is None:
                event = self._credit_event = anyio.Event()
            await event.wait()

    def outbound_complete(self) -> None:
        """Our COMPLETE went out: for a stream that ends the interaction."""
        self.end()


class ResponderChannel(ResponderStream):
    """A request-channel being answered: credit for our half, a bounded buffer for theirs."""

    __slots__ = ("_inbound_closed", "_inbound_done", "_items", "_waiter", "inbound")

    kind = "request-channel"

    def __init__(
        self, link: StreamLink, stream_id: int, requester_complete: bool, pinned: bool = False
    ) -> None:
        super().__init__(link, stream_id, pinned)
        # Bounded by the credit we grant (the core sent the first RESPONDER_CHANNEL_WINDOW, IX5, and
        # refuses items beyond it, RN6); the reader appends without ever blocking.
        self._items: deque[Payload] = deque()
        self._waiter: anyio.Event | None = None
        self._inbound_closed = False  # no more items will arrive
        self._inbound_done = requester_complete
        self.inbound = self._iterate_inbound()
        if requester_complete:
            self._close_inbound()

    def _close_inbound(self) -> None:
        self._inbound_closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def _iterate_inbound(self) -> AsyncIterator[Payload]:
        consumed = 0
        refill = max(1, RESPONDER_CHANNEL_WINDOW // 2)
        items = self._items
        while True:
            while not items:
                if self._inbound_closed:
                    return
                waiter = self._waiter
                if waiter is None:
                    waiter = self._waiter = anyio.Event()
                await waiter.wait()
            yield items.popleft()
            consumed += 1
            if consumed >= refill and not self._inbound_done and self.live:
                self.link.request_n(self.stream_id, consumed)
                consumed = 0

    def on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        if self._inbound_done:
            return
        if flags & FLAG_NEXT:
            self._items.append(Payload(data, metadata))
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                waiter.set()
        if flags & FLAG_COMPLETE:
            self._inbound_done = True
            self._close_inbound()

    def on_error(self, error: BaseException) -> None:
        self._close_inbound()
        self.on_cancel()

    def on_cancel(self) -> None:
        self._close_inbound()
        super().on_cancel()

    def outbound_complete(self) -> None:
        if not self._inbound_done:
            # [java] our handler is done, so nobody will consume the requester's half: stop it.
            self._inbound_done = True
            self._close_inbound()
            self.link.cancel(self.stream_id)
        self.end()

    def on_connection_closed(self, error: BaseException) -> None:
        self._close_inbound()
        super().on_connection_closed(error)


def _fail_stream(link: StreamLink, state: ResponderTask, kind: str, exc: BaseException) -> None:
    """A handler failed: log it and, if the requester still listens, send ERROR on its stream."""
    log_handler_failure(kind, state.stream_id, exc)
    if state.live:
        state.end()
        link.send_error(state.stream_id, *error_for(exc, link.expose_errors))


async def run_request_response(
    link: StreamLink, handler: RequestHandler, state: ResponderTask, payload: Payload
) -> None:
    """Answer one request-response, on a worker.

    Usually the handler runs in the worker's own cancel scope (:data:`.workers.WORKER_SCOPE`), which
    CANCEL or the end of the connection cancel while it runs: entering a scope per request would
    cost more than most handlers. A request that already has a scope of its own (a deadline, or it
    was cancelled before its handler started) runs in that one.
    """
    if state._scope is None:
        worker_scope = WORKER_SCOPE.get(None)
        if worker_scope is not None:
            state.worker_scope = worker_scope
            try:
                await _answer_request(link, handler, state, payload)
            finally:
                state.worker_scope = None
            return
    with state.scope:
        await _answer_request(link, handler, state, payload)


async def _answer_request(
    link: StreamLink, handler: RequestHandler, state: ResponderTask, payload: Payload
) -> None:
    try:
        result = await handler.request_response(payload)
        if result is not None and not isinstance(result, Payload):
            raise TypeError(f"request_response handler returned {type(result).__name__}, not a Payload")
        if state.live:
            if link.write_backlog > WRITE_HIGH_WATER:
                await link.wait_writable()
            if state.live and not link.is_closed:
                # Encoding may fail (oversized payload, wrong types): that fails this request only.
                if result is None:
                    link.send_complete(state.stream_id)
                else:
                    link.send_payload(state.stream_id, result, complete=True)
                state.end()
    except BaseException as exc:
        if not is_handler_failure(exc):
            raise
        _fail_stream(link, state, "request-response", exc)


async def run_fire_and_forget(handler: RequestHandler, payload: Payload) -> None:
    try:
        await handler.fire_and_forget(payload)
    except BaseException as exc:
        if not is_handler_failure(exc):
            raise
        log_handler_failure("fire-and-forget", 0, exc)


async def run_metadata_push(handler: RequestHandler, metadata: bytes) -> None:
    try:
        await handler.metadata_push(metadata)
    except BaseException as exc:
        if not is_handler_failure(exc):
            raise
        log_handler_failure("metadata-push", 0, exc)


_EXIT_NAMES = frozenset(("__exit__", "__aexit__"))
#: What a ``with`` / ``async with`` block keeps on the stack of a suspended frame: its ``__exit__``
#: bound (3.10-3.13), or the function and the instance apart (3.14).
_EXIT_KINDS = (
    types.MethodType,
    types.BuiltinMethodType,
    types.FunctionType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
)
_SUSPENDED_KINDS = (types.AsyncGeneratorType, types.CoroutineType, types.GeneratorType, types.FrameType)


def inside_with_block(generator: object) -> bool:
    """Whether a generator suspended at a ``yield`` is inside a ``with`` or ``async with`` block,
    its own or one in a generator it is iterating (True as well when it cannot tell).

    Such a stream does not park: what the block entered may belong to the task it runs on (a native
    ``asyncio.timeout()`` cancels that task when it expires, a lock knows its owner), and a parked
    stream resumes on another task while the first one goes on with other jobs. The block's
    ``__exit__`` sits on the suspended frame's stack, which the garbage collector's view of the
    generator includes.
    """
    if type(generator) is not types.AsyncGeneratorType:
        return True  # an async iterator of some other kind: nothing to look into
    pending: list[object] = [generator]
    seen = 0
    while pending:
        seen += 1
        if seen > 64:
            return True
        for referent in gc.get_referents(pending.pop()):
            if isinstance(referent, _EXIT_KINDS) and getattr(referent, "__name__", None) in _EXIT_NAMES:
                return True
            if isinstance(referent, _SUSPENDED_KINDS):
                pending.append(referent)
    return False


def innermost_cancel_scope() -> object:
    """The running task's innermost cancel scope as the backend tracks it: an opaque token.

    A handler whose generator yields from inside a cancel scope or task group of its own must stay
    on its task (the scope can only be left there), so a stream parks only if this is unchanged
    since its job entered its scope. Backend internals: when they are not as expected this returns
    a new object each time, which never matches, and nothing parks.
    """
    scope: object = None
    if asyncio._get_running_loop() is not None:
        states = getattr(sys.modules.get("anyio._backends._asyncio"), "_task_states", None)
        if states is not None:
            scope = getattr(states.get(asyncio.current_task()), "cancel_scope", None)
    else:
        trio: Any = sys.modules.get("trio")
        with contextlib.suppress(AttributeError, RuntimeError):  # not trio, or not its internals
            scope = trio.lowlevel.current_task()._cancel_status
    return scope if scope is not None else object()


async def close_generator(generator: Any, kind: str, stream_id: int) -> None:
    """Close a handler's generator so that its ``finally`` blocks run: shielded, for at most 1 s."""
    aclose = getattr(generator, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                await aclose()
            except Exception as exc:
                log_handler_failure(kind, stream_id, exc)


async def run_stream(
    link: StreamLink,
    handler: RequestHandler | None,
    state: ResponderStream,
    payload: Payload | None,
    inbound: AsyncIterator[Payload] | None,
    held: Payload | None = None,
) -> None:
    """Drive a stream or channel handler; with ``held``, resume a parked one where it stopped.

    The generator is pulled one item ahead of the requester's credit: the pulled item is held until
    credit arrives, so the end of the stream is noticed (and COMPLETE sent, which needs no credit)
    as soon as the generator finishes, even when the last item used the last credit. While it waits
    for that credit the stream parks (see :class:`ResponderStream`) and this job ends; the
    generator is closed here only when the interaction is over.
    """
    stream_id = state.stream_id
    with state.scope:
        # A generator suspended inside a cancel scope (or task group) of its own makes this differ
        # when it yields: it must then stay on this task, so the stream does not park.
        outer = None if state.pinned else innermost_cancel_scope()
        try:
            generator = state.generator
            if generator is None:  # starting: make the handler's generator
                assert handler is not None and payload is not None
                if inbound is None:
                    generator = handler.request_stream(payload)
                else:
                    generator = handler.request_channel(payload, inbound)
                if inspect.isawaitable(generator):
                    generator = await generator
                state.generator = generator
            next_item = generator.__anext__
            send_next = link.send_next
            wait_writable = link.wait_writable
            checkpoint_if_cancelled = anyio.lowlevel.checkpoint_if_cancelled
            produced = 0
            item: Any = held
            pull = held is None
            while True:
                if pull:
                    try:
                        item = await next_item()
                    except StopAsyncIteration:
                        break
                pull = True
                if not state.live:
                    break
                if not send_next(stream_id, item):  # no credit: hold the item until some arrives
                    if outer is innermost_cancel_scope() and state.park(item):
                        return  # REQUEST_N resumes a worker here; CANCEL closes the generator
                    await state.wait_for_credit()
                    send_next(stream_id, item)
                if link.write_backlog > WRITE_HIGH_WATER:
                    await wait_writable()  # back-pressure
                else:
                    # As wait_writable below its limit, without a coroutine per item: a cancellation
                    # check every 32nd item, never a scheduling point (items are written in batches).
                    produced += 1
                    if not produced & 31:
                        await checkpoint_if_cancelled()
            if state.live:
                link.send_complete(stream_id)
                state.outbound_complete()
        except BaseException as exc:
            if not is_handler_failure(exc):
                raise
            _fail_stream(link, state, state.kind, exc)
        finally:
            if state.held is None:  # not parked: the interaction is over
                await close_generator(state.generator, state.kind, stream_id)
