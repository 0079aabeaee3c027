"""Requester-side interactions: the objects a caller holds while a request is in flight.

The connection's reader feeds these objects synchronously (the :class:`~.link.StreamOwner` methods,
``on_payload`` and friends) and never blocks on them; they reach the wire only through the
connection's :class:`~.link.StreamLink` methods. Inbound items go into a buffer that can only hold
what the consumer granted as credit, so a slow consumer slows its own stream and never the
connection (design property 3).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable
from types import TracebackType

import anyio
from anyio.abc import ObjectReceiveStream, ObjectStream, TaskGroup

from ..protocol.errors import InvalidArgumentError, InvalidStateError
from ..protocol.streams import InteractionKind
from ..wire.errors import ErrorCode, RSocketError
from ..wire.frames import FLAG_COMPLETE, FLAG_NEXT, MAX_REQUEST_N
from ..wire.payload import NO_VALUE, Payload
from ._groups import unwrap_exception_groups
from .link import StreamLink
from .settings import WRITE_HIGH_WATER
from .waiter import Waiter

#: Credit a stream or channel grants when the caller does not choose (see README, "Credit").
DEFAULT_INITIAL_N = 256
#: Bytes an unread stream buffer may hold (items cost their size plus ``_ITEM_OVERHEAD``) before the
#: connection stops reading, whatever the credit: large credit must not mean unbounded memory.
STREAM_HIGH_WATER = 4 << 20
#: Reading resumes once the consumer has brought the buffer below this.
STREAM_LOW_WATER = STREAM_HIGH_WATER // 2
_ITEM_OVERHEAD = 128


def _check_credit(name: str, n: int) -> int:
    if not isinstance(n, int) or n < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {n!r}")
    return min(n, MAX_REQUEST_N)  # RN5: never emit more than 2^31-1


class PendingResponse:
    """The state of one request-response call while it waits for its answer."""

    __slots__ = ("done", "error", "event", "result", "stream_id")

    def __init__(self, event: Waiter) -> None:
        self.stream_id = 0
        self.event = event
        self.result: Payload | None = None
        self.error: BaseException | None = None
        self.done = False

    def _settle(self) -> None:
        self.done = True
        self.event.set()

    def on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        # IX2: a PAYLOAD for request-response ends it whether or not C is set; C-only is "no value".
        self.result = Payload(data, metadata) if flags & FLAG_NEXT else NO_VALUE
        self._settle()

    def on_error(self, error: BaseException) -> None:
        self.error = error
        self._settle()

    def on_request_n(self, n: int) -> None:
        pass  # RN7: no effect on request-response

    def on_cancel(self) -> None:
        pass

    def on_connection_closed(self, error: BaseException) -> None:
        self.error = error
        self.done = True
        self.event.set()


class RequestStream(ObjectReceiveStream[Payload]):
    """The inbound side of a request-stream: an AnyIO object receive stream of payloads.

    Use it as ``async with rs.request_stream(payload) as stream: async for item in stream: ...``.
    Entering sends REQUEST_STREAM with ``initial_n`` credit. With ``auto_request`` (the default)
    credit is topped up as items are consumed, so at most ``initial_n`` items are ever outstanding;
    with ``auto_request=False`` only :meth:`request` grants more. Leaving the block (or
    :meth:`aclose`) before the stream completes sends CANCEL. A peer ERROR is raised from
    :meth:`receive` as the matching :class:`~anyio_rsocket.errors.RSocketError` subclass.
    """

    # Slots: thousands of streams may be open at once (an empty deque alone is about 760 bytes,
    # hence _next and a _more made only when needed).
    __slots__ = (
        "_auto_request",
        "_buffered_cost",
        "_congested",
        "_consumed",
        "_consumer_closed",
        "_error",
        "_finished",
        "_inbound_done",
        "_initial_n",
        "_item_waiter",
        "_link",
        "_more",
        "_next",
        "_payload",
        "_refill_threshold",
        "_since_checkpoint",
        "_started",
        "_unbounded",
        "stream_id",
    )

    def __init__(
        self,
        link: StreamLink,
        payload: Payload,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
    ) -> None:
        self._link = link
        self._payload = payload
        self._initial_n = _check_credit("initial_n", initial_n)
        self._auto_request = auto_request
        self._refill_threshold = max(1, self._initial_n // 2)
        self._consumed = 0
        self._unbounded = self._initial_n >= MAX_REQUEST_N
        # Received items not consumed yet: the oldest in _next, any others after it in _more (made
        # when a second item arrives while one waits). Invariant: _more is empty when _next is None.
        # The buffer's bound is the credit itself: the core never delivers more than was granted.
        self._next: Payload | None = None
        self._more: deque[Payload] | None = None
        self._buffered_cost = 0  # bytes of buffered items plus a fixed overhead each
        self._congested = False  # over the high-water mark: the connection has paused its reader
        self._item_waiter: anyio.Event | None = None
        self._consumer_closed = False
        self._since_checkpoint = 0
        self._error: BaseException | None = None
        self._inbound_done = False
        self._started = False
        self._finished = False
        self.stream_id = 0

    # --- lifecycle -------------------------------------------------------------------------------

    def _open(self) -> int:
        """Send the request; return its stream id."""
        return self._link.open_stream(self, InteractionKind.REQUEST_STREAM, self._payload, self._initial_n)

    async def _start(self) -> None:
        """Send the request (after spending a lease unit when leasing is on)."""
        if self._started:
            return
        await self._link.admit()
        if self._started:  # another task started us while we waited for a lease
            return
        self._started = True
        self.stream_id = self._open()

    async def __aenter__(self) -> RequestStream:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            self._abort()

    def _abort(self) -> None:
        """End the interaction now: CANCEL if the peer may still send, and close the buffer."""
        if self._started and not self._finished:
            self._finish(None)
            self._link.cancel(self.stream_id)
        self._consumer_closed = True
        self._next = self._more = None
        self._buffered_cost = 0
        self._relieve()

    def _relieve(self) -> None:
        if self._congested:
            self._congested = False
            self._link.stream_relieved()

    async def aclose(self) -> None:
        """Stop the interaction; sends CANCEL if the stream has not completed yet."""
        self._abort()
        await anyio.lowlevel.checkpoint()

    def _finish(self, error: BaseException | None) -> None:
        """The interaction is over (the core releases its stream id): wake the consumer."""
        self._finished = True
        self._inbound_done = True
        if error is not None and self._error is None:
            self._error = error
        self._wake_consumer()

    # --- consumer side ---------------------------------------------------------------------------

    def _wake_consumer(self) -> None:
        waiter = self._item_waiter
        if waiter is not None:
            self._item_waiter = None
            waiter.set()

    def _push(self, item: Payload) -> None:
        if self._next is None:
            self._next = item
        else:
            more = self._more
            if more is None:
                more = self._more = deque()
            more.append(item)
        cost = self._buffered_cost = self._buffered_cost + len(item.data) + _ITEM_OVERHEAD
        if cost > STREAM_HIGH_WATER and not self._congested:
            self._congested = True
            self._link.stream_congested()
        if self._item_waiter is not None:
            self._wake_consumer()

    async def receive(self) -> Payload:
        """Wait for the next item; cancelling this wait loses nothing.

        Buffered items are returned without a trip through the event loop (a checkpoint is taken
        every 64 items so a fast stream cannot starve other tasks); ``EndOfStream`` follows the
        last item of a completed stream, and a peer ERROR is raised as its typed exception.
        """
        if not self._started:
            await self._start()
        item = self._next
        while item is None:
            if self._consumer_closed:
                raise anyio.ClosedResourceError
            if self._inbound_done:
                if self._error is not None:
                    raise self._error
                raise anyio.EndOfStream
            waiter = self._item_waiter
            if waiter is None:
                waiter = self._item_waiter = anyio.Event()
            await waiter.wait()
            self._since_checkpoint = 0
            item = self._next
        more = self._more
        self._next = more.popleft() if more else None
        self._buffered_cost -= len(item.data) + _ITEM_OVERHEAD
        if self._congested and self._buffered_cost <= STREAM_LOW_WATER:
            self._relieve()
        self._since_checkpoint += 1
        if self._since_checkpoint >= 64:
            self._since_checkpoint = 0
            await anyio.lowlevel.checkpoint()
        if self._auto_request and not self._unbounded and not self._inbound_done:
            self._consumed += 1
            if self._consumed >= self._refill_threshold:
                consumed, self._consumed = self._consumed, 0
                self.request(consumed)
        return item

    def request(self, n: int) -> None:
        """Grant the responder ``n`` more items (queues a REQUEST_N; credits are additive, RN1)."""
        n = _check_credit("n", n)
        if not self._started:
            raise InvalidStateError("open the stream with 'async with' before requesting more items")
        if self._inbound_done or self._unbounded:
            return
        link = self._link
        link.request_n(self.stream_id, n)  # the core caps the total at 2^31-1 (RN4)
        if link.recv_unbounded(self.stream_id):
            self._unbounded = True  # saturated credit means "unbounded": nothing more to request

    @property
    def buffered(self) -> int:
        """Items received and not yet consumed (never more than the credit granted)."""
        if self._next is None:
            return 0
        more = self._more
        return 1 + len(more) if more else 1

    # --- StreamOwner: called by the connection's reader (synchronous, never block) ---------------

    def on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        """An item and/or the end of the responder's half (the core already checked credit: a
        responder exceeding it is cancelled and the consumer gets InvalidError, RN6)."""
        if self._inbound_done:
            return
        if flags & FLAG_NEXT:
            # _push, inlined (once per received item)
            item = Payload(data, metadata)
            if self._next is None:
                self._next = item
            else:
                more = self._more
                if more is None:
                    more = self._more = deque()
                more.append(item)
            cost = self._buffered_cost = self._buffered_cost + len(data) + _ITEM_OVERHEAD
            if cost > STREAM_HIGH_WATER and not self._congested:
                self._congested = True
                self._link.stream_congested()
            if self._item_waiter is not None:
                self._wake_consumer()
        if flags & FLAG_COMPLETE:
            self._on_inbound_complete()

    def _on_inbound_complete(self) -> None:
        self._finish(None)

    def on_error(self, error: BaseException) -> None:
        self._finish(error)

    def on_request_n(self, n: int) -> None:
        pass

    def on_cancel(self) -> None:
        pass

    def on_connection_closed(self, error: BaseException) -> None:
        self._finish(error)


class RequestChannel(RequestStream, ObjectStream[Payload]):
    """Both halves of a request-channel: send to the responder and receive from it.

    The first element travels in the REQUEST_CHANNEL frame; :meth:`send` then waits until the
    responder has granted credit (REQUEST_N). :meth:`send_eof` completes our half; receiving works
    as for :class:`RequestStream`. Leaving the block completes our half if the responder already
    completed its own, and otherwise sends CANCEL. If the responder cancels our half, :meth:`send`
    raises :class:`anyio.BrokenResourceError`; after :meth:`send_eof` it raises
    :class:`anyio.ClosedResourceError`.

    With ``outbound`` (an async iterable of payloads), a task in the interaction's own task group
    sends its elements (each waiting for credit) and then completes our half, while the block
    receives. Leaving the block stops that task. If the iterable raises, the responder gets
    ERROR[APPLICATION_ERROR] and the exception propagates out of the ``async with``.
    """

    __slots__ = (
        "_credit_event",
        "_outbound",
        "_outbound_cancelled",
        "_outbound_done",
        "_produced",
        "_task_group",
    )

    def __init__(
        self,
        link: StreamLink,
        payload: Payload,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
        outbound: AsyncIterable[Payload] | None = None,
    ) -> None:
        super().__init__(link, payload, initial_n, auto_request)
        if outbound is not None and complete:
            raise InvalidArgumentError(
                "complete=True sends only the first element; it cannot have an outbound source"
            )
        self._outbound = outbound
        self._task_group: TaskGroup | None = None
        self._outbound_done = complete
        self._outbound_cancelled = False
        self._credit_event: anyio.Event | None = None
        self._produced = 0  # elements sent, for the periodic cancellation check of send()

    def _open(self) -> int:
        return self._link.open_stream(
            self, InteractionKind.REQUEST_CHANNEL, self._payload, self._initial_n, self._outbound_done
        )

    async def __aenter__(self) -> RequestChannel:
        await self._start()
        if self._outbound is not None:
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            self._task_group = task_group
            task_group.start_soon(self._pump_outbound, self._outbound)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            task_group.cancel_scope.cancel()  # leaving the block stops the sender
            try:
                async with unwrap_exception_groups():
                    await task_group.__aexit__(exc_type, exc_val, exc_tb)
            except BaseException:
                self._abort()
                raise
        await super().__aexit__(exc_type, exc_val, exc_tb)

    async def _pump_outbound(self, outbound: AsyncIterable[Payload]) -> None:
        try:
            async for item in outbound:
                await self.send(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, RSocketError):
            return  # the responder stopped our half, or the stream ended: receiving reports it
        except Exception as exc:
            # IX5: a requester may end the whole channel with ERROR[APPLICATION_ERROR].
            if self._started and not self._finished:
                self._finish(exc)
                message = str(exc) or type(exc).__name__
                self._link.send_error(self.stream_id, ErrorCode.APPLICATION_ERROR, message)
            raise
        await self.send_eof()

    async def aclose(self) -> None:
        """End the interaction: complete our half if only it is open, otherwise CANCEL."""
        if self._started and not self._finished and self._inbound_done and not self._outbound_done:
            await self.send_eof()
        self._abort()
        await anyio.lowlevel.checkpoint()

    def _wake_senders(self) -> None:
        event = self._credit_event
        if event is not None:
            self._credit_event = None
            event.set()

    def _finish(self, error: BaseException | None) -> None:
        super()._finish(error)
        self._wake_senders()

    def _on_inbound_complete(self) -> None:
        # The responder finished its half; the stream lives on while ours is open (IX5).
        self._inbound_done = True
        self._wake_consumer()
        if self._outbound_done or self._outbound_cancelled:
            self._finish(None)

    def on_request_n(self, n: int) -> None:
        self._wake_senders()  # the core keeps the credit (RN1, RN4, RN6)

    def on_cancel(self) -> None:
        # [java] the responder stops consuming our half; we keep receiving.
        self._outbound_cancelled = True
        self._wake_senders()
        if self._inbound_done:
            self._finish(None)

    async def send(self, item: Payload) -> None:
        """Send one element, waiting while the responder has granted no credit."""
        if not self._started:
            await self._start()
        link, stream_id = self._link, self.stream_id
        while True:
            if self._outbound_done:
                raise anyio.ClosedResourceError("send_eof() was already called on this channel")
            if self._finished and self._error is not None:
                raise self._error
            if self._outbound_cancelled or self._finished:
                raise anyio.BrokenResourceError("the responder no longer accepts elements")
            if link.send_next(stream_id, item):
                break
            event = self._credit_event
            if event is None:
                event = self._credit_event = anyio.Event()
            await event.wait()
        if link.write_backlog > WRITE_HIGH_WATER:
            await link.wait_writable()  # back-pressure
        else:
            # As wait_writable below its limit, without a coroutine per element: a cancellation
            # check every 32nd element, never a scheduling point (elements are written in batches).
            produced = self._produced = self._produced + 1
            if not produced & 31:
                await anyio.lowlevel.checkpoint_if_cancelled()

    async def send_eof(self) -> None:
        """Complete our half of the channel; receiving continues until the responder completes."""
        if not self._started:
            await self._start()
        if self._outbound_done or self._finished or self._outbound_cancelled:
            self._outbound_done = True
            return
        self._outbound_done = True
        self._link.send_complete(self.stream_id)
        if self._inbound_done:
            self._finish(None)
        await anyio.lowlevel.checkpoint()
