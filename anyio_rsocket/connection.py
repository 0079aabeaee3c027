"""The RSocket connection: one peer's end of a connection, requester and responder at once.

An :class:`RSocket` owns a reader task, a single writer task and a keepalive task, all inside the
task group of the ``async with`` that opened the connection, plus one task per inbound request.
The reader decodes frames and dispatches them synchronously; it never waits on a slow consumer.
The writer drains one outbound queue and hands every frame that is ready to the transport in a
single call, so frames that become ready together are written together.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from .errors import (
    CONNECTION_ERROR_CODES,
    ConnectionClosedError,
    ErrorCode,
    FrameError,
    InvalidError,
    ProtocolError,
    RSocketError,
    error_from_code,
)
from .frames import (
    MAX_31,
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    ExtFrame,
    KeepaliveFrame,
    LeaseFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    ResumeFrame,
    ResumeOkFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from .handler import RequestHandler
from .payload import Payload
from .requester import DEFAULT_INITIAL_N, PendingResponse, RequestChannel, RequestStream
from .setup_info import SetupInfo
from .transports.base import Transport

logger = logging.getLogger("anyio_rsocket")

#: Queued outbound bytes above which producers (stream responders, channel senders) wait.
WRITE_HIGH_WATER = 1 << 20
#: How long closing may spend flushing queued frames before the transport is closed regardless.
CLOSE_FLUSH_TIMEOUT = 2.0
#: Data of the KEEPALIVE that confirms SETUP (any echo proves the server accepted it).
_SETUP_PROBE = b"anyio-rsocket:setup"
#: Credit a channel responder grants the requester, topped up as the handler consumes.
RESPONDER_CHANNEL_WINDOW = 256

HandlerFactory = Callable[["RSocket"], "RequestHandler | Awaitable[RequestHandler]"]


class _StreamState(Protocol):
    """What the reader needs from any live stream (requester or responder side)."""

    def _on_payload(self, frame: PayloadFrame) -> bool: ...
    def _on_error(self, frame: ErrorFrame) -> bool: ...
    def _on_request_n(self, frame: RequestNFrame) -> bool: ...
    def _on_cancel(self, frame: CancelFrame) -> bool: ...
    def _on_connection_closed(self, error: ConnectionClosedError) -> None: ...


def _error_frame_for(stream_id: int, exc: BaseException) -> bytes:
    """The ERROR frame that reports ``exc`` from a responder (codes kept for RSocketError)."""
    if isinstance(exc, RSocketError) and exc.code not in CONNECTION_ERROR_CODES and exc.code:
        code, message = exc.code, exc.message
    else:
        code, message = ErrorCode.APPLICATION_ERROR, str(exc) or type(exc).__name__
    return encode_frame(ErrorFrame(stream_id, code, message.encode("utf-8", "replace")))


class RSocket:
    """One end of an RSocket connection.

    Obtain one from :func:`~anyio_rsocket.connect_tcp` (client) or as the argument of a server's
    handler factory. Requester methods may be called from any task while the connection's block is
    open; once the connection ends they raise :class:`~anyio_rsocket.errors.ConnectionClosedError`.
    """

    def __init__(
        self,
        transport: Transport,
        task_group: TaskGroup,
        *,
        is_client: bool,
        setup: SetupInfo,
        handler: RequestHandler | None = None,
        send_keepalives: bool,
        max_stream_id: int = MAX_31,
    ) -> None:
        self._transport = transport
        self._task_group = task_group
        self._is_client = is_client
        self._setup = setup
        self._handler: RequestHandler = handler if handler is not None else RequestHandler()
        self._send_keepalives = send_keepalives
        self._max_stream_id = max_stream_id
        self._first_stream_id = 1 if is_client else 2
        self._next_stream_id = self._first_stream_id
        self._streams: dict[int, Any] = {}
        self._outbox: list[bytes] = []
        self._outbox_size = 0
        self._writer_wakeup: anyio.Event | None = None
        self._writable: anyio.Event | None = None
        self._error: ConnectionClosedError | None = None
        self._draining = False
        self._closed = anyio.Event()
        self._writer_done = anyio.Event()
        self._established = anyio.Event()
        self._last_received = anyio.current_time()
        self._reader_scope = anyio.CancelScope()
        self._keepalive_scope = anyio.CancelScope()
        self._writer_scope = anyio.CancelScope()
        self._dispatch: dict[type, Callable[[Any], None]] = {
            PayloadFrame: self._on_payload,
            RequestNFrame: self._on_request_n,
            CancelFrame: self._on_cancel,
            ErrorFrame: self._on_error,
            RequestResponseFrame: self._on_request_response,
            RequestFireAndForgetFrame: self._on_fire_and_forget,
            RequestStreamFrame: self._on_request_stream,
            RequestChannelFrame: self._on_request_channel,
            KeepaliveFrame: self._on_keepalive,
            MetadataPushFrame: self._on_metadata_push,
            LeaseFrame: self._on_lease,
            SetupFrame: self._on_setup,
            ResumeFrame: self._on_resume,
            ResumeOkFrame: self._on_resume,
            ExtFrame: self._on_ext,
        }

    # --- public surface --------------------------------------------------------------------------

    @property
    def setup(self) -> SetupInfo:
        """What the client sent in SETUP (MIME types, keepalive, lifetime, setup payload, flags)."""
        return self._setup

    @property
    def is_client(self) -> bool:
        """True on the connecting side (odd stream ids), false on the server side."""
        return self._is_client

    @property
    def is_closed(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self._error is not None

    @property
    def close_reason(self) -> ConnectionClosedError | None:
        """Why the connection ended (``None`` while it is open)."""
        return self._error

    async def wait_closed(self) -> None:
        """Wait until the connection has ended (locally or by the peer)."""
        await self._closed.wait()

    async def request_response(self, payload: Payload) -> Payload:
        """Send a request and wait for its single answer.

        Raises the peer's error as an :class:`~anyio_rsocket.errors.RSocketError` subclass. If the
        waiting task is cancelled, CANCEL is sent and the cancellation propagates.
        """
        pending = PendingResponse(self)
        pending.stream_id = self._open_stream(
            pending,
            lambda stream_id: encode_frame(RequestResponseFrame(stream_id, payload.data, payload.metadata)),
        )
        try:
            await pending.event.wait()
        except BaseException:
            if not pending.done:
                pending.done = True
                self._release(pending.stream_id, pending)
                self._send_if_open(encode_frame(CancelFrame(pending.stream_id)))
            raise
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    async def fire_and_forget(self, payload: Payload) -> None:
        """Send a request that gets no answer; returns once the frame is queued for writing."""
        self._check_open()
        stream_id = self._allocate_stream_id()
        self._send_frame(encode_frame(RequestFireAndForgetFrame(stream_id, payload.data, payload.metadata)))
        await self._wait_writable()

    async def metadata_push(self, metadata: bytes) -> None:
        """Push connection-level metadata to the peer; returns once the frame is queued."""
        self._check_open()
        self._send_frame(encode_frame(MetadataPushFrame(metadata)))
        await self._wait_writable()

    def request_stream(
        self, payload: Payload, *, initial_n: int = DEFAULT_INITIAL_N, auto_request: bool = True
    ) -> RequestStream:
        """Open a request-stream; use the result as an async context manager.

        ``initial_n`` is the credit sent with the request (default 256; 2^31-1 or more means
        unbounded). With ``auto_request`` credit is refilled as items are consumed, keeping at most
        ``initial_n`` outstanding; without it only ``stream.request(n)`` grants more.
        """
        return RequestStream(self, payload, initial_n, auto_request)

    def request_channel(
        self,
        payload: Payload,
        *,
        initial_n: int = DEFAULT_INITIAL_N,
        auto_request: bool = True,
        complete: bool = False,
    ) -> RequestChannel:
        """Open a request-channel whose first element is ``payload``; use as an async context manager.

        Credit options are those of :meth:`request_stream`. ``complete=True`` sends only the first
        element (C flag on REQUEST_CHANNEL).
        """
        return RequestChannel(self, payload, initial_n, auto_request, complete)

    async def aclose(self) -> None:
        """Close the connection: every live interaction ends with ConnectionClosedError.

        Frames already queued (for example fire-and-forget requests) are flushed first, for at most
        a couple of seconds.
        """
        self._terminate(ConnectionClosedError("connection closed locally"))
        with anyio.CancelScope(shield=True):
            await self._writer_done.wait()

    # --- stream bookkeeping ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise copy.copy(self._error)
        if self._draining:
            raise ConnectionClosedError("the peer is closing the connection (CONNECTION_CLOSE)")

    def _allocate_stream_id(self) -> int:
        """Next free id of our parity, wrapping after the maximum and skipping live ids (ID1, ID2)."""
        stream_id = self._next_stream_id
        for _ in range(len(self._streams) + 1):
            following = stream_id + 2
            if following > self._max_stream_id:
                following = self._first_stream_id
            if stream_id not in self._streams:
                self._next_stream_id = following
                return stream_id
            stream_id = following
        raise ConnectionClosedError("every stream id is in use; open a new connection")

    def _open_stream(self, state: _StreamState, make_frame: Callable[[int], bytes]) -> int:
        """Register ``state`` under a fresh stream id and queue the request frame it makes."""
        self._check_open()
        stream_id = self._allocate_stream_id()
        frame = make_frame(stream_id)  # encode first: an oversized request registers nothing
        self._streams[stream_id] = state
        self._send_frame(frame)
        return stream_id

    def _release(self, stream_id: int, state: object) -> None:
        if self._streams.get(stream_id) is state:
            del self._streams[stream_id]
            if self._draining and not self._streams:
                self._terminate(ConnectionClosedError("connection closed by peer (CONNECTION_CLOSE)"))

    # --- writing ---------------------------------------------------------------------------------

    def _send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame for the writer (raises once the connection is closed)."""
        if self._error is not None:
            raise copy.copy(self._error)
        self._outbox.append(frame)
        self._outbox_size += len(frame)
        wakeup = self._writer_wakeup
        if wakeup is not None:
            self._writer_wakeup = None
            wakeup.set()

    def _send_if_open(self, frame: bytes) -> None:
        if self._error is None:
            self._send_frame(frame)

    async def _wait_writable(self) -> None:
        """Back-pressure: wait while the outbound queue holds more than the high-water mark."""
        while self._outbox_size > WRITE_HIGH_WATER and self._error is None:
            event = self._writable
            if event is None:
                event = self._writable = anyio.Event()
            await event.wait()
        if self._outbox_size > WRITE_HIGH_WATER:
            await anyio.lowlevel.checkpoint()

    async def _write_loop(self) -> None:
        transport = self._transport
        try:
            with self._writer_scope:
                while True:
                    if not self._outbox:
                        if self._error is not None:
                            break
                        event = self._writer_wakeup = anyio.Event()
                        await event.wait()
                        continue
                    batch, self._outbox = self._outbox, []
                    self._outbox_size = 0
                    writable = self._writable
                    if writable is not None:
                        self._writable = None
                        writable.set()
                    await transport.send(batch)
        except ConnectionClosedError as exc:
            self._terminate(exc)
        except Exception as exc:  # a bug or a transport error we did not map: never crash the group
            logger.exception("writer failed")
            self._terminate(ConnectionClosedError(f"writer failed: {exc!r}"))
        finally:
            with anyio.move_on_after(CLOSE_FLUSH_TIMEOUT, shield=True):
                await transport.aclose()
            self._writer_done.set()

    # --- reading ---------------------------------------------------------------------------------

    async def _read_loop(self, initial_frames: list[bytes] | None = None) -> None:
        try:
            with self._reader_scope:
                if initial_frames:
                    self._handle_frames(initial_frames)
                receive = self._transport.receive
                while self._error is None:
                    frames = await receive()
                    self._last_received = anyio.current_time()
                    self._handle_frames(frames)
        except ConnectionClosedError as exc:
            self._terminate(exc)
        except Exception as exc:
            logger.exception("reader failed")
            self._protocol_violation(f"internal error while reading: {exc!r}")

    def _handle_frames(self, frames: list[bytes]) -> None:
        dispatch = self._dispatch
        for raw in frames:
            try:
                frame = decode_frame(raw)
            except FrameError as exc:
                if exc.ignorable:  # MD2, U1: frames with the IGNORE flag may be dropped
                    continue
                self._protocol_violation(str(exc))
                return
            dispatch[type(frame)](frame)
            if self._error is not None:
                return

    def _protocol_violation(self, message: str) -> None:
        """Tell the peer what it did wrong (ERROR[CONNECTION_ERROR] on stream 0) and close."""
        self._send_if_open(
            encode_frame(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, message.encode("utf-8", "replace")))
        )
        self._terminate(ProtocolError(f"protocol error: {message}"))

    # --- inbound frames on existing streams ------------------------------------------------------

    def _on_payload(self, frame: PayloadFrame) -> None:
        state = self._streams.get(frame.stream_id)
        if state is not None:  # U2: frames for unknown or finished streams are dropped
            state._on_payload(frame)

    def _on_request_n(self, frame: RequestNFrame) -> None:
        state = self._streams.get(frame.stream_id)
        if state is not None:
            state._on_request_n(frame)

    def _on_cancel(self, frame: CancelFrame) -> None:
        state = self._streams.get(frame.stream_id)
        if state is not None:
            state._on_cancel(frame)

    def _on_error(self, frame: ErrorFrame) -> None:
        if frame.stream_id != 0:
            state = self._streams.get(frame.stream_id)
            if state is not None:
                state._on_error(frame)
            return
        code = frame.error_code
        if code in (
            ErrorCode.INVALID_SETUP,
            ErrorCode.UNSUPPORTED_SETUP,
            ErrorCode.REJECTED_SETUP,
            ErrorCode.REJECTED_RESUME,
        ) and (not self._is_client or self._established.is_set()):
            return  # S10: setup errors only matter to a client still establishing
        if code == ErrorCode.CONNECTION_CLOSE and self._streams:
            self._draining = True  # E2: let live streams finish, refuse new ones
            return
        error = error_from_code(code, frame.message)
        if not isinstance(error, ConnectionClosedError):
            error = ConnectionClosedError(f"peer sent ERROR 0x{code:08X}: {frame.message}", code)
        self._terminate(error)

    # --- connection-level frames -----------------------------------------------------------------

    def _on_keepalive(self, frame: KeepaliveFrame) -> None:
        if frame.respond:  # K2: echo with identical data, never answer an answer
            self._send_frame(encode_frame(KeepaliveFrame(False, 0, frame.data)))
        self._mark_established()

    def _mark_established(self) -> None:
        if not self._established.is_set():
            self._established.set()

    def _on_metadata_push(self, frame: MetadataPushFrame) -> None:
        if frame.stream_id != 0:
            return  # MP2
        self._task_group.start_soon(self._run_metadata_push, frame.metadata)

    def _on_lease(self, frame: LeaseFrame) -> None:
        self._mark_established()  # S4; lease accounting is not negotiated on this connection

    def _on_setup(self, frame: SetupFrame) -> None:
        pass  # S9: a SETUP after establishment (or at a client) is ignored

    def _on_resume(self, frame: ResumeFrame | ResumeOkFrame) -> None:
        self._protocol_violation("resumption was not negotiated on this connection")

    def _on_ext(self, frame: ExtFrame) -> None:
        if not frame.ignore:  # U1 (our rule): an extension we do not know is fatal without I
            self._protocol_violation(f"unsupported extension frame type {frame.extended_type}")

    # --- inbound requests (responder side) ------------------------------------------------------

    def _accept_request_id(self, stream_id: int) -> bool:
        """Whether a request on ``stream_id`` should start a new responder stream (ID5)."""
        if stream_id == 0 or stream_id % 2 == self._first_stream_id % 2:
            # ID5 gap (our rule): a request on stream 0 or on our own parity is a protocol error.
            self._protocol_violation(f"request on stream {stream_id}, which the peer may not open")
            return False
        if stream_id in self._streams:
            return False  # ID5: a duplicate request leaves the live stream untouched
        self._mark_established()
        if self._draining:
            self._send_frame(
                encode_frame(ErrorFrame(stream_id, ErrorCode.REJECTED, b"connection is closing"))
            )
            return False
        return True

    def _reject_fragmented(self, stream_id: int) -> None:
        self._send_frame(
            encode_frame(ErrorFrame(stream_id, ErrorCode.INVALID, b"fragmented requests are not supported"))
        )

    def _on_request_response(self, frame: RequestResponseFrame) -> None:
        if not self._accept_request_id(frame.stream_id):
            return
        if frame.follows:
            self._reject_fragmented(frame.stream_id)
            return
        state = ResponderTask(self, frame.stream_id)
        self._streams[frame.stream_id] = state
        self._task_group.start_soon(self._run_request_response, state, Payload(frame.data, frame.metadata))

    def _on_fire_and_forget(self, frame: RequestFireAndForgetFrame) -> None:
        if not self._accept_request_id(frame.stream_id) or frame.follows:
            return  # IX3: never answer a fire-and-forget, not even with ERROR
        self._task_group.start_soon(self._run_fire_and_forget, Payload(frame.data, frame.metadata))

    def _on_request_stream(self, frame: RequestStreamFrame) -> None:
        if not self._accept_request_id(frame.stream_id):
            return
        if frame.follows:
            self._reject_fragmented(frame.stream_id)
            return
        state = ResponderStream(self, frame.stream_id, frame.initial_request_n)
        self._streams[frame.stream_id] = state
        self._task_group.start_soon(self._run_stream, state, Payload(frame.data, frame.metadata), None)

    def _on_request_channel(self, frame: RequestChannelFrame) -> None:
        if not self._accept_request_id(frame.stream_id):
            return
        if frame.follows:
            self._reject_fragmented(frame.stream_id)
            return
        state = ResponderChannel(self, frame.stream_id, frame.initial_request_n, frame.complete)
        self._streams[frame.stream_id] = state
        self._task_group.start_soon(
            self._run_stream, state, Payload(frame.data, frame.metadata), state.inbound
        )

    async def _run_request_response(self, state: ResponderTask, payload: Payload) -> None:
        with state.scope:
            try:
                result = await self._handler.request_response(payload)
            except Exception as exc:
                if state.live:
                    state.live = False
                    self._send_if_open(_error_frame_for(state.stream_id, exc))
            else:
                if state.live:
                    state.live = False
                    if result is None:
                        frame = PayloadFrame(state.stream_id, complete=True)
                    else:
                        frame = PayloadFrame(
                            state.stream_id, result.data, result.metadata, complete=True, next=True
                        )
                    try:
                        self._send_if_open(encode_frame(frame))
                    except FrameError as error:
                        self._send_if_open(_error_frame_for(state.stream_id, error))
        self._release(state.stream_id, state)

    async def _run_fire_and_forget(self, payload: Payload) -> None:
        try:
            await self._handler.fire_and_forget(payload)
        except Exception:
            logger.exception("fire-and-forget handler failed")

    async def _run_metadata_push(self, metadata: bytes) -> None:
        try:
            await self._handler.metadata_push(metadata)
        except Exception:
            logger.exception("metadata-push handler failed")

    async def _run_stream(
        self, state: ResponderStream, payload: Payload, inbound: AsyncIterator[Payload] | None
    ) -> None:
        """Drive a stream or channel handler, pulling an item only while the requester has credit."""
        generator: Any = None
        with state.scope:
            try:
                if inbound is None:
                    generator = self._handler.request_stream(payload)
                else:
                    generator = self._handler.request_channel(payload, inbound)
                if inspect.isawaitable(generator):
                    generator = await generator
                next_item = generator.__anext__
                stream_id = state.stream_id
                while True:
                    if state.credit <= 0:
                        await state.wait_for_credit()
                    try:
                        item = await next_item()
                    except StopAsyncIteration:
                        break
                    if not state.live:
                        break
                    if not state.unbounded:
                        state.credit -= 1
                    self._send_frame(
                        encode_frame(PayloadFrame(stream_id, item.data, item.metadata, next=True))
                    )
                    await self._wait_writable()
                if state.live:
                    self._send_if_open(encode_frame(PayloadFrame(stream_id, complete=True)))
                    state.outbound_complete()
            except Exception as exc:
                if state.live:
                    state.live = False
                    self._send_if_open(_error_frame_for(state.stream_id, exc))
                    state.end()
            finally:
                aclose = getattr(generator, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                        try:
                            await aclose()
                        except Exception:
                            logger.exception("stream handler failed while closing")
        if not state.live:
            self._release(state.stream_id, state)

    # --- keepalive -------------------------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        interval = self._setup.keepalive_interval
        lifetime = self._setup.max_lifetime
        with self._keepalive_scope:
            next_keepalive = anyio.current_time() + interval
            while self._error is None:
                now = anyio.current_time()
                deadline = self._last_received + lifetime
                if now >= deadline:
                    # K3: silence for max-lifetime means the peer (or the path to it) is dead.
                    self._terminate(ConnectionClosedError(f"no frame from the peer for {lifetime:g} s (K3)"))
                    return
                if self._send_keepalives and now >= next_keepalive:
                    self._send_if_open(encode_frame(KeepaliveFrame(True)))
                    next_keepalive = now + interval
                wake = deadline
                if self._send_keepalives:
                    wake = min(wake, next_keepalive)
                await anyio.sleep(max(0.0, wake - now))

    # --- start and stop --------------------------------------------------------------------------

    def _start(self, initial_frames: list[bytes] | None = None) -> None:
        self._task_group.start_soon(self._write_loop)
        self._task_group.start_soon(self._read_loop, initial_frames)
        self._task_group.start_soon(self._keepalive_loop)

    async def _confirm_setup(self, timeout: float) -> None:
        """Client: probe with a KEEPALIVE so that a rejected SETUP surfaces here (S4)."""
        self._send_frame(encode_frame(KeepaliveFrame(True, 0, _SETUP_PROBE)))
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as waiters:

                async def wait(event: anyio.Event) -> None:
                    await event.wait()
                    waiters.cancel_scope.cancel()

                waiters.start_soon(wait, self._established)
                waiters.start_soon(wait, self._closed)
        if self._error is not None:
            raise copy.copy(self._error)
        if not self._established.is_set():
            error = ConnectionClosedError(f"the server did not answer SETUP within {timeout:g} s")
            self._terminate(error)
            raise error

    def _terminate(self, error: ConnectionClosedError) -> None:
        """End the connection once: fail every live stream, stop the tasks, flush and close."""
        if self._error is not None:
            return
        self._error = error
        streams = list(self._streams.values())
        self._streams.clear()
        for state in streams:
            state._on_connection_closed(error)
        self._closed.set()
        self._reader_scope.cancel()
        self._keepalive_scope.cancel()
        self._writer_scope.deadline = anyio.current_time() + CLOSE_FLUSH_TIMEOUT
        for event in (self._writer_wakeup, self._writable):
            if event is not None:
                event.set()
        self._writer_wakeup = self._writable = None


class ResponderTask:
    """A request-response being answered: cancelling it cancels the handler's task."""

    __slots__ = ("connection", "live", "scope", "stream_id")

    def __init__(self, connection: RSocket, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self.scope = anyio.CancelScope()
        self.live = True

    def _on_payload(self, frame: PayloadFrame) -> bool:
        return False

    def _on_error(self, frame: ErrorFrame) -> bool:
        return self._on_cancel(None)

    def _on_request_n(self, frame: RequestNFrame) -> bool:
        return False  # RN7

    def _on_cancel(self, frame: CancelFrame | None) -> bool:
        if self.live:
            self.live = False
            self.connection._release(self.stream_id, self)
            self.scope.cancel()
        return True

    def _on_connection_closed(self, error: ConnectionClosedError) -> None:
        self.live = False
        self.scope.cancel()


class ResponderStream(ResponderTask):
    """A request-stream being answered: tracks the requester's credit (RN1-RN4)."""

    __slots__ = ("_credit_event", "credit", "unbounded")

    def __init__(self, connection: RSocket, stream_id: int, initial_n: int) -> None:
        super().__init__(connection, stream_id)
        # RN6 (our rule): a zero initial request-n grants nothing; the requester must send REQUEST_N.
        self.credit = initial_n
        self.unbounded = initial_n >= MAX_REQUEST_N
        self._credit_event: anyio.Event | None = None

    def _on_request_n(self, frame: RequestNFrame) -> bool:
        if frame.request_n <= 0 or self.unbounded:
            return True  # RN6: zero is ignored; RN4: nothing to add to unbounded credit
        credit = self.credit + frame.request_n
        if credit >= MAX_REQUEST_N:
            self.unbounded = True
        self.credit = min(credit, MAX_REQUEST_N)
        event = self._credit_event
        if event is not None:
            self._credit_event = None
            event.set()
        return True

    async def wait_for_credit(self) -> None:
        while self.credit <= 0 and not self.unbounded:
            event = self._credit_event
            if event is None:
                event = self._credit_event = anyio.Event()
            await event.wait()

    def outbound_complete(self) -> None:
        """Our COMPLETE went out: for a stream that ends the interaction."""
        self.end()

    def end(self) -> None:
        self.live = False
        self.connection._release(self.stream_id, self)


class ResponderChannel(ResponderStream):
    """A request-channel being answered: credit for our half, a bounded buffer for theirs."""

    __slots__ = ("_granted", "_inbound_done", "_items", "_items_in", "_outbound_done", "inbound")

    def __init__(self, connection: RSocket, stream_id: int, initial_n: int, requester_complete: bool) -> None:
        super().__init__(connection, stream_id, initial_n)
        self._items_in, self._items = anyio.create_memory_object_stream[Payload](math.inf)
        self._inbound_done = requester_complete
        self._outbound_done = False
        self._granted = 0  # credit we gave the requester and it has not used yet
        self.inbound = self._iterate_inbound()
        if requester_complete:
            self._items_in.close()
        else:
            # IX5: the responder MUST answer REQUEST_CHANNEL with a REQUEST_N.
            self._grant(RESPONDER_CHANNEL_WINDOW)

    def _grant(self, n: int) -> None:
        self._granted += n
        self.connection._send_if_open(encode_frame(RequestNFrame(self.stream_id, n)))

    async def _iterate_inbound(self) -> AsyncIterator[Payload]:
        consumed = 0
        refill = max(1, RESPONDER_CHANNEL_WINDOW // 2)
        items = self._items
        while True:
            try:
                item = await items.receive()
            except anyio.EndOfStream:
                return
            yield item
            consumed += 1
            if consumed >= refill and not self._inbound_done and self.live:
                self._grant(consumed)
                consumed = 0

    def _on_payload(self, frame: PayloadFrame) -> bool:
        if self._inbound_done:
            return False
        if frame.follows and not frame.complete:
            self._fail(InvalidError("fragmented payloads are not supported yet"))
            return True
        if frame.next:
            if self._granted <= 0:
                # RN6 (our rule): more elements than we granted is a stream error.
                self._fail(InvalidError("requester sent more channel elements than granted"))
                return True
            self._granted -= 1
            self._items_in.send_nowait(Payload(frame.data, frame.metadata))
        if frame.complete:
            self._inbound_done = True
            self._items_in.close()
            if self._outbound_done:
                self.end()
        return True

    def _fail(self, error: RSocketError) -> None:
        if self.live:
            self.live = False
            self.connection._send_if_open(_error_frame_for(self.stream_id, error))
            self.connection._release(self.stream_id, self)
            self._items_in.close()
            self.scope.cancel()

    def _on_error(self, frame: ErrorFrame) -> bool:
        self._items_in.close()
        return self._on_cancel(None)

    def _on_cancel(self, frame: CancelFrame | None) -> bool:
        self._items_in.close()
        return super()._on_cancel(frame)

    def outbound_complete(self) -> None:
        self._outbound_done = True
        if self._inbound_done:
            self.end()
        else:
            # [java] our handler is done, so nobody will consume the requester's half: stop it.
            self._inbound_done = True
            self._items_in.close()
            self.connection._send_if_open(encode_frame(CancelFrame(self.stream_id)))
            self.end()

    def _on_connection_closed(self, error: ConnectionClosedError) -> None:
        self._items_in.close()
        super()._on_connection_closed(error)
