"""Responder side: the per-request state the reader feeds, and the tasks that run user handlers.

Each inbound request gets a state object (registered under its stream id, fed synchronously by the
reader) and one task in the connection's task group that runs the user's handler. Stream and channel
handlers are async generators advanced only while the requester has credit.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from .errors import (
    CONNECTION_ERROR_CODES,
    ConnectionClosedError,
    ErrorCode,
    InvalidError,
    RSocketError,
)
from .frames import (
    FLAG_COMPLETE,
    FLAG_NEXT,
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    PayloadFrame,
    RequestNFrame,
    encode_frame,
)
from .handler import RequestHandler
from .options import WRITE_HIGH_WATER
from .payload import Payload

if TYPE_CHECKING:
    from .connection import RSocket

logger = logging.getLogger("anyio_rsocket")
#: Every failure of a user's handler is logged here once, with its traceback.
handler_logger = logging.getLogger("anyio_rsocket.handler")

#: Credit a channel responder grants the requester, topped up as the handler consumes.
RESPONDER_CHANNEL_WINDOW = 256


def error_frame_for(stream_id: int, exc: BaseException, expose: bool = False) -> bytes:
    """The ERROR frame that reports ``exc`` from a responder.

    An ``RSocketError`` keeps its code and message. Anything else becomes APPLICATION_ERROR whose
    message is the exception's type name, or its text too when ``expose`` is true (exception text
    can hold paths, keys or SQL, so servers opt in with ``expose_errors=True``).
    """
    if isinstance(exc, RSocketError) and exc.code not in CONNECTION_ERROR_CODES and exc.code:
        code, message = exc.code, exc.message
    else:
        code = ErrorCode.APPLICATION_ERROR
        name = type(exc).__name__
        text = str(exc) if expose else ""
        message = f"{name}: {text}" if text else name
    return encode_frame(ErrorFrame(stream_id, code, message.encode("utf-8", "replace")))


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


class ResponderTask:
    """A request-response being answered: cancelling it cancels the handler's task."""

    __slots__ = ("connection", "live", "scope", "stream_id")

    def __init__(self, connection: RSocket, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.scope = anyio.CancelScope()
        self.live = True

    def _on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        pass

    def _on_error(self, frame: ErrorFrame) -> None:
        self._on_cancel(None)

    def _on_request_n(self, frame: RequestNFrame) -> None:
        pass  # RN7

    def _on_cancel(self, frame: CancelFrame | None) -> None:
        if self.live:
            self.live = False
            self.connection._release(self.stream_id, self)
            self.scope.cancel()

    def _on_connection_closed(self, error: ConnectionClosedError) -> None:
        self.live = False
        self.scope.cancel()

    def end(self) -> None:
        """Our terminal frame went out: the interaction is over."""
        self.live = False
        self.connection._release(self.stream_id, self)


class ResponderStream(ResponderTask):
    """A request-stream being answered: tracks the requester's credit (RN1-RN4)."""

    __slots__ = ("_credit_event", "credit", "unbounded")

    def __init__(self, connection: RSocket, stream_id: int, initial_n: int) -> None:
        super().__init__(connection, stream_id)
        # RN6 (our rule): a zero initial request-n grants nothing; the requester must send REQUEST_N.
        self.credit = initial_n
        self.unbounded = initial_n >= MAX_REQUEST_N
        self._credit_event: anyio.Event | None = None

    def _on_request_n(self, frame: RequestNFrame) -> None:
        if frame.request_n <= 0 or self.unbounded:
            return  # RN6: zero is ignored; RN4: nothing to add to unbounded credit
        credit = self.credit + frame.request_n
        if credit >= MAX_REQUEST_N:
            self.unbounded = True
        self.credit = min(credit, MAX_REQUEST_N)
        event = self._credit_event
        if event is not None:
            self._credit_event = None
            event.set()

    async def wait_for_credit(self) -> None:
        while self.credit <= 0 and not self.unbounded:
            event = self._credit_event
            if event is None:
                event = self._credit_event = anyio.Event()
            await event.wait()

    def outbound_complete(self) -> None:
        """Our COMPLETE went out: for a stream that ends the interaction."""
        self.end()


class ResponderChannel(ResponderStream):
    """A request-channel being answered: credit for our half, a bounded buffer for theirs."""

    __slots__ = (
        "_granted",
        "_inbound_closed",
        "_inbound_done",
        "_items",
        "_outbound_done",
        "_waiter",
        "inbound",
    )

    def __init__(self, connection: RSocket, stream_id: int, initial_n: int, requester_complete: bool) -> None:
        super().__init__(connection, stream_id, initial_n)
        # Bounded by the credit we grant; the reader appends without ever blocking.
        self._items: deque[Payload] = deque()
        self._waiter: anyio.Event | None = None
        self._inbound_closed = False  # no more items will arrive
        self._inbound_done = requester_complete
        self._outbound_done = False
        self._granted = 0  # credit we gave the requester and it has not used yet
        self.inbound = self._iterate_inbound()
        if requester_complete:
            self._close_inbound()
        else:
            # IX5: the responder MUST answer REQUEST_CHANNEL with a REQUEST_N.
            self._grant(RESPONDER_CHANNEL_WINDOW)

    def _grant(self, n: int) -> None:
        self._granted += n
        self.connection._send_if_open(encode_frame(RequestNFrame(self.stream_id, n)))

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
                self._grant(consumed)
                consumed = 0

    def _on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None:
        if self._inbound_done:
            return
        if flags & FLAG_NEXT:
            if self._granted <= 0:
                # RN6 (our rule): more elements than we granted is a stream error.
                self._fail(InvalidError("requester sent more channel elements than granted"))
                return
            self._granted -= 1
            self._items.append(Payload(data, metadata))
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                waiter.set()
        if flags & FLAG_COMPLETE:
            self._inbound_done = True
            self._close_inbound()
            if self._outbound_done:
                self.end()

    def _fail(self, error: RSocketError) -> None:
        if self.live:
            self.live = False
            self.connection._send_if_open(error_frame_for(self.stream_id, error))
            self.connection._release(self.stream_id, self)
            self._close_inbound()
            self.scope.cancel()

    def _on_error(self, frame: ErrorFrame) -> None:
        self._close_inbound()
        self._on_cancel(None)

    def _on_cancel(self, frame: CancelFrame | None) -> None:
        self._close_inbound()
        super()._on_cancel(frame)

    def outbound_complete(self) -> None:
        self._outbound_done = True
        if not self._inbound_done:
            # [java] our handler is done, so nobody will consume the requester's half: stop it.
            self._inbound_done = True
            self._close_inbound()
            self.connection._send_if_open(encode_frame(CancelFrame(self.stream_id)))
        self.end()

    def _on_connection_closed(self, error: ConnectionClosedError) -> None:
        self._close_inbound()
        super()._on_connection_closed(error)


def _fail_stream(connection: RSocket, state: ResponderTask, kind: str, exc: BaseException) -> None:
    """A handler failed: log it and, if the requester still listens, send ERROR on its stream."""
    log_handler_failure(kind, state.stream_id, exc)
    if state.live:
        state.end()
        connection._send_if_open(error_frame_for(state.stream_id, exc, connection._options.expose_errors))


async def run_request_response(
    connection: RSocket, handler: RequestHandler, state: ResponderTask, payload: Payload
) -> None:
    with state.scope:
        try:
            result = await handler.request_response(payload)
            if result is not None and not isinstance(result, Payload):
                raise TypeError(f"request_response handler returned {type(result).__name__}, not a Payload")
            if state.live:
                if connection._outbox_size > WRITE_HIGH_WATER:
                    await connection._wait_writable()
                if state.live and not connection.is_closed:
                    # Encoding may fail (oversized payload, wrong types): that fails this request only.
                    if result is None:
                        connection._send_payload(state.stream_id, b"", None, FLAG_COMPLETE)
                    else:
                        connection._send_payload(
                            state.stream_id, result.data, result.metadata, FLAG_COMPLETE | FLAG_NEXT
                        )
                    state.end()
        except BaseException as exc:
            if not is_handler_failure(exc):
                raise
            _fail_stream(connection, state, "request-response", exc)
    connection._release(state.stream_id, state)


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


async def run_stream(
    connection: RSocket,
    handler: RequestHandler,
    state: ResponderStream,
    payload: Payload,
    inbound: AsyncIterator[Payload] | None,
) -> None:
    """Drive a stream or channel handler.

    The generator is pulled one item ahead of the requester's credit: the pulled item is held until
    credit arrives, so the end of the stream is noticed (and COMPLETE sent, which needs no credit)
    as soon as the generator finishes, even when the last item used the last credit.
    """
    generator: Any = None
    stream_id = state.stream_id
    kind = "request-stream" if inbound is None else "request-channel"
    with state.scope:
        try:
            if inbound is None:
                generator = handler.request_stream(payload)
            else:
                generator = handler.request_channel(payload, inbound)
            if inspect.isawaitable(generator):
                generator = await generator
            next_item = generator.__anext__
            send_payload = connection._send_payload
            while True:
                try:
                    item = await next_item()
                except StopAsyncIteration:
                    break
                if not state.live:
                    break
                if state.credit <= 0:
                    await state.wait_for_credit()
                if not state.unbounded:
                    state.credit -= 1
                send_payload(stream_id, item.data, item.metadata, FLAG_NEXT)
                await connection._wait_writable()
            if state.live:
                connection._send_if_open(encode_frame(PayloadFrame(stream_id, complete=True)))
                state.outbound_complete()
        except BaseException as exc:
            if not is_handler_failure(exc):
                raise
            _fail_stream(connection, state, kind, exc)
        finally:
            aclose = getattr(generator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    try:
                        await aclose()
                    except Exception as exc:
                        log_handler_failure(kind, stream_id, exc)
    if not state.live:
        connection._release(stream_id, state)
