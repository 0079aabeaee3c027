"""Requester-side interactions: the objects a caller holds while a request is in flight.

The connection's reader feeds these objects synchronously (``_on_payload`` and friends) and never
blocks on them: inbound items go into a buffer that can only hold what the consumer granted as
credit, so a slow consumer slows its own stream and never the connection (design property 3).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.abc import ObjectReceiveStream, ObjectStream, TaskGroup

from ._groups import unwrap_exception_groups
from .errors import ConnectionClosedError, ErrorCode, InvalidError, RSocketError, error_from_code
from .frames import (
    FLAG_COMPLETE,
    FLAG_NEXT,
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestNFrame,
    RequestStreamFrame,
    encode_frame,
)
from .payload import Payload

if TYPE_CHECKING:
    from .connection import RSocket

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
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return min(n, MAX_REQUEST_N)  # RN5: never emit more than 2^31-1


class PendingResponse:
    """The state of one request-response call while it waits for its answer."""

    __slots__ = ("connection", "done", "error", "event", "result", "stream_id")

    def __init__(self, connection: RSocket) -> None:
        self.connection = connection
        self.stream_id = 0
        self.event = anyio.Event()
        self.result: Payload | None = None
        self.error: BaseException | None = None
        self.done = False

    def _settle(self) -> None:
        self.done = True
        self.connection._release(self.stream_id, self)
        self.event.set()

    def _on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        # IX2: a PAYLOAD for request-response ends it whether or not C is set; C-only is "no value".
        self.result = Payload(data, metadata) if flags & FLAG_NEXT else Payload()
        self._settle()

    def _on_error(self, frame: ErrorFrame) -> None:
        self.error = error_from_code(frame.error_code, frame.message)
        self._settle()

    def _on_request_n(self, frame: RequestNFrame) -> None:
        pass  # RN7: no effect on request-response

    def _on_cancel(self, frame: CancelFrame) -> None:
        pass

    def _on_connection_closed(self, error: ConnectionClosedError) -> None:
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

    def __init__(
        self,
        connection: RSocket,
        payload: Payload,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
    ) -> None:
        self._connection = connection
        self._payload = payload
        self._initial_n = _check_credit("initial_n", initial_n)
        self._auto_request = auto_request
        self._refill_threshold = max(1, self._initial_n // 2)
        self._consumed = 0
        self._outstanding = self._initial_n
        self._unbounded = self._initial_n >= MAX_REQUEST_N
        # The buffer's bound is the credit itself: the reader never pushes more than was granted.
        self._items: deque[Payload] = deque()
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

    def _request_frame(self, stream_id: int) -> RequestStreamFrame | RequestChannelFrame:
        return RequestStreamFrame(stream_id, self._initial_n, self._payload.data, self._payload.metadata)

    async def _start(self) -> None:
        """Send the request (after spending a lease unit when leasing is on)."""
        if self._started:
            return
        await self._connection._acquire_lease()
        if self._started:  # another task started us while we waited for a lease
            return
        self._started = True
        self.stream_id = self._connection._open_stream(self, self._request_frame)

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
            self._connection._send_if_open(encode_frame(CancelFrame(self.stream_id)))
        self._consumer_closed = True
        self._items.clear()
        self._buffered_cost = 0
        self._relieve()

    def _relieve(self) -> None:
        if self._congested:
            self._congested = False
            self._connection._stream_relieved()

    async def aclose(self) -> None:
        """Stop the interaction; sends CANCEL if the stream has not completed yet."""
        self._abort()
        await anyio.lowlevel.checkpoint()

    def _finish(self, error: BaseException | None) -> None:
        """The interaction is over on the wire: release the stream id and wake the consumer."""
        self._finished = True
        self._inbound_done = True
        if error is not None and self._error is None:
            self._error = error
        self._connection._release(self.stream_id, self)
        self._wake_consumer()

    # --- consumer side ---------------------------------------------------------------------------

    def _wake_consumer(self) -> None:
        waiter = self._item_waiter
        if waiter is not None:
            self._item_waiter = None
            waiter.set()

    def _push(self, item: Payload) -> None:
        self._items.append(item)
        cost = self._buffered_cost = self._buffered_cost + len(item.data) + _ITEM_OVERHEAD
        if cost > STREAM_HIGH_WATER and not self._congested:
            self._congested = True
            self._connection._stream_congested()
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
        items = self._items
        while not items:
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
        item = items.popleft()
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
            raise RuntimeError("open the stream with 'async with' before requesting more items")
        if self._inbound_done or self._unbounded:
            return
        total = self._outstanding + n
        if total >= MAX_REQUEST_N:
            # RN4: saturated credit means "unbounded"; nothing more needs to be requested.
            self._unbounded = True
            n = MAX_REQUEST_N - self._outstanding if self._outstanding < MAX_REQUEST_N else 0
            self._outstanding = MAX_REQUEST_N
            if n == 0:
                return
        else:
            self._outstanding = total
        self._connection._send_frame(encode_frame(RequestNFrame(self.stream_id, n)))

    @property
    def buffered(self) -> int:
        """Items received and not yet consumed (never more than the credit granted)."""
        return len(self._items)

    # --- reader callbacks (synchronous, never block) --------------------------------------------

    def _on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        if self._inbound_done:
            return
        if flags & FLAG_NEXT:
            if not self._unbounded:
                if self._outstanding <= 0:
                    # RN6 (our rule): a responder exceeding credit is cancelled and the consumer
                    # gets InvalidError; we never buffer beyond what was granted.
                    self._fail_locally(InvalidError("responder sent more items than requested"))
                    return
                self._outstanding -= 1
            self._push(Payload(data, metadata))
        if flags & FLAG_COMPLETE:
            self._on_inbound_complete()

    def _on_inbound_complete(self) -> None:
        self._finish(None)

    def _on_error(self, frame: ErrorFrame) -> None:
        self._finish(error_from_code(frame.error_code, frame.message))

    def _on_request_n(self, frame: RequestNFrame) -> None:
        pass

    def _on_cancel(self, frame: CancelFrame) -> None:
        pass

    def _on_connection_closed(self, error: ConnectionClosedError) -> None:
        self._finish(error)

    def _fail_locally(self, error: RSocketError) -> None:
        self._finish(error)
        self._connection._send_if_open(encode_frame(CancelFrame(self.stream_id)))


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

    def __init__(
        self,
        connection: RSocket,
        payload: Payload,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
        outbound: AsyncIterable[Payload] | None = None,
    ) -> None:
        super().__init__(connection, payload, initial_n, auto_request)
        if outbound is not None and complete:
            raise ValueError("complete=True sends only the first element; it cannot have an outbound source")
        self._outbound = outbound
        self._task_group: TaskGroup | None = None
        self._outbound_done = complete
        self._outbound_cancelled = False
        self._send_credit = 0
        self._send_unbounded = False
        self._credit_event: anyio.Event | None = None

    def _request_frame(self, stream_id: int) -> RequestStreamFrame | RequestChannelFrame:
        return RequestChannelFrame(
            stream_id,
            self._initial_n,
            self._payload.data,
            self._payload.metadata,
            complete=self._outbound_done,
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
                message = (str(exc) or type(exc).__name__).encode("utf-8", "replace")
                self._connection._send_if_open(
                    encode_frame(ErrorFrame(self.stream_id, ErrorCode.APPLICATION_ERROR, message))
                )
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

    def _on_request_n(self, frame: RequestNFrame) -> None:
        if frame.request_n <= 0:
            return  # RN6 (our rule): a zero request-n is ignored
        credit = self._send_credit + frame.request_n
        if credit >= MAX_REQUEST_N:
            self._send_unbounded = True  # RN4
        self._send_credit = min(credit, MAX_REQUEST_N)
        self._wake_senders()

    def _on_cancel(self, frame: CancelFrame) -> None:
        # [java] the responder stops consuming our half; we keep receiving.
        self._outbound_cancelled = True
        self._wake_senders()
        if self._inbound_done:
            self._finish(None)
        return

    async def send(self, item: Payload) -> None:
        """Send one element, waiting while the responder has granted no credit."""
        if not self._started:
            await self._start()
        while True:
            if self._outbound_done:
                raise anyio.ClosedResourceError("send_eof() was already called on this channel")
            if self._finished and self._error is not None:
                raise self._error
            if self._outbound_cancelled or self._finished:
                raise anyio.BrokenResourceError("the responder no longer accepts elements")
            if self._send_unbounded or self._send_credit > 0:
                break
            event = self._credit_event
            if event is None:
                event = self._credit_event = anyio.Event()
            await event.wait()
        if not self._send_unbounded:
            self._send_credit -= 1
        self._connection._send_payload(self.stream_id, item.data, item.metadata, FLAG_NEXT)
        await self._connection._wait_writable()

    async def send_eof(self) -> None:
        """Complete our half of the channel; receiving continues until the responder completes."""
        if not self._started:
            await self._start()
        if self._outbound_done or self._finished or self._outbound_cancelled:
            self._outbound_done = True
            return
        self._outbound_done = True
        self._connection._send_frame(encode_frame(PayloadFrame(self.stream_id, complete=True)))
        if self._inbound_done:
            self._finish(None)
        await anyio.lowlevel.checkpoint()
