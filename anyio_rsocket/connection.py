"""The RSocket connection: one peer's end of a connection, requester and responder at once.

An :class:`RSocket` owns a reader task, a single writer task and a keepalive task (plus a lease task
when leasing is negotiated), all inside the task group of the ``async with`` that opened the
connection, and one task per inbound request. The reader decodes frames and dispatches them
synchronously; it never waits on a slow consumer. The writer drains one outbound queue and hands
every frame that is ready to the transport in a single call, so frames that become ready together are
written together.
"""

from __future__ import annotations

import copy
import logging
import math
import struct
import sys
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from .errors import (
    ConnectionClosedError,
    ErrorCode,
    FrameError,
    ProtocolError,
    RejectedError,
    error_from_code,
)
from .fragmentation import FragmentableFrame, Reassembler, fragment, needs_fragmentation
from .frames import (
    FLAG_COMPLETE,
    FLAG_FOLLOWS,
    FLAG_NEXT,
    MAX_31,
    CancelFrame,
    ErrorFrame,
    ExtFrame,
    Frame,
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
    encode_payload,
    encode_simple_request,
    split_metadata,
)
from .handler import RequestHandler
from .lease import LeaseAllowance, LeaseStrategy, unlimited_lease_strategy
from .options import WRITE_HIGH_WATER, PeerOptions
from .payload import Payload
from .requester import DEFAULT_INITIAL_N, PendingResponse, RequestChannel, RequestStream
from .responder import (
    ResponderChannel,
    ResponderStream,
    ResponderTask,
    run_fire_and_forget,
    run_metadata_push,
    run_request_response,
    run_stream,
)
from .routed import RoutedRequester, RouteOptions, route_requester
from .setup_info import SetupInfo
from .transports.base import Transport
from .workers import WorkerPool

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

logger = logging.getLogger("anyio_rsocket")

#: Queued outbound bytes above which the reader stops reading: a peer that floods us with frames
#: needing answers (keepalives, requests) while not reading our answers gets its input throttled.
READER_PAUSE_BYTES = 8 << 20
#: How long closing may spend flushing queued frames before the transport is closed regardless.
CLOSE_FLUSH_TIMEOUT = 2.0
#: Data of the KEEPALIVE that confirms SETUP (any echo proves the server accepted it).
_SETUP_PROBE = b"anyio-rsocket:setup"

_HEADER = struct.Struct(">IH")
#: A PAYLOAD frame without F (type 0x0A): the type bits plus F must match exactly.
_PAYLOAD_MASK = 0xFC00 | FLAG_FOLLOWS
_PAYLOAD_WORD = 0x2800
_REQUEST_RESPONSE_WORD = 0x1000
_REQUEST_FNF_WORD = 0x1400

HandlerFactory = Callable[["RSocket"], "RequestHandler | Awaitable[RequestHandler]"]


class _StreamState(Protocol):
    """What the reader needs from any live stream (requester or responder side)."""

    def _on_payload(self, data: bytes, metadata: bytes | None, flags: int) -> None: ...
    def _on_error(self, frame: ErrorFrame) -> None: ...
    def _on_request_n(self, frame: RequestNFrame) -> None: ...
    def _on_cancel(self, frame: CancelFrame) -> None: ...
    def _on_connection_closed(self, error: ConnectionClosedError) -> None: ...


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
        options: PeerOptions | None = None,
    ) -> None:
        options = options or PeerOptions()
        self._transport = transport
        self._task_group = task_group
        self._is_client = is_client
        self._setup = setup
        self._handler: RequestHandler = handler if handler is not None else RequestHandler()
        self._options = options
        self._fragment_size = options.fragment_size
        self._first_stream_id = 1 if is_client else 2
        self._next_stream_id = self._first_stream_id
        self._streams: dict[int, Any] = {}
        self._reassembly: dict[int, Reassembler] = {}
        self._workers = WorkerPool(task_group)
        self._outbox: list[bytes] = []
        self._outbox_size = 0
        self._produced = 0  # frames queued by producers, for cheap periodic cancellation checks
        self._writer_wakeup: anyio.Event | None = None
        self._writable: anyio.Event | None = None
        self._error: ConnectionClosedError | None = None
        self._draining = False
        self._closed = anyio.Event()
        self._writer_done = anyio.Event()
        self._established = anyio.Event()
        self._heard = False  # a frame arrived since the keepalive task last looked (K3)
        self._reading_paused = False  # the reader waits for our consumers or handlers (not K3 silence)
        self._congested_streams = 0  # requester streams whose unread buffer is over high water
        self._uncongested: anyio.Event | None = None
        self._reader_scope = anyio.CancelScope()
        self._keepalive_scope = anyio.CancelScope()
        self._writer_scope = anyio.CancelScope()
        self._lease_scope = anyio.CancelScope()
        # Leasing (section 9): what the peer allows us, and what we allow the peer.
        self._lease_enabled = setup.lease
        self._lease_received = LeaseAllowance()
        self._lease_granted = LeaseAllowance()
        self._lease_event: anyio.Event | None = None
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

    @property
    def transport(self) -> Transport:
        """The transport carrying this connection's frames."""
        return self._transport

    def route(self, route: str, *more_tags: str, **options: Unpack[RouteOptions]) -> RoutedRequester:
        """Bind ``route`` once: ``rs.route("user.get").request_response(data)`` (see :mod:`.routed`).

        The bound requester builds composite metadata with the routing tag (plus optional
        authentication and per-request MIME entries) and encodes data with the codec for the
        connection's data MIME type.
        """
        return route_requester(self, route, *more_tags, **options)

    async def wait_closed(self) -> None:
        """Wait until the connection has ended (locally or by the peer)."""
        await self._closed.wait()

    async def request_response(self, payload: Payload) -> Payload:
        """Send a request and wait for its single answer.

        Raises the peer's error as an :class:`~anyio_rsocket.errors.RSocketError` subclass. If the
        waiting task is cancelled, CANCEL is sent and the cancellation propagates.
        """
        if self._lease_enabled:
            await self._acquire_lease()
        pending = PendingResponse(self)
        pending.stream_id = self._open_simple_request(pending, _REQUEST_RESPONSE_WORD, payload)
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
        if self._lease_enabled:
            await self._acquire_lease()
        self._open_simple_request(None, _REQUEST_FNF_WORD, payload)
        await self._wait_writable()

    async def metadata_push(self, metadata: bytes) -> None:
        """Push connection-level metadata to the peer; returns once the frame is queued (MP1)."""
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
        outbound: AsyncIterable[Payload] | None = None,
    ) -> RequestChannel:
        """Open a request-channel whose first element is ``payload``; use as an async context manager.

        Credit options are those of :meth:`request_stream`. ``complete=True`` sends only the first
        element (C flag on REQUEST_CHANNEL). ``outbound`` is an async iterable whose elements a task
        of the interaction sends after the first one (see :class:`RequestChannel`).
        """
        return RequestChannel(self, payload, initial_n, auto_request, complete, outbound)

    async def aclose(self) -> None:
        """Close the connection: every live interaction ends with ConnectionClosedError.

        Frames already queued (for example fire-and-forget requests) are flushed first, for at most
        a couple of seconds.
        """
        self._terminate(ConnectionClosedError("connection closed locally"))
        with anyio.CancelScope(shield=True):
            await self._writer_done.wait()

    # --- leasing (requester side) ----------------------------------------------------------------

    async def _acquire_lease(self) -> None:
        """Spend one request of the peer's lease, or wait/fail per ``lease_wait`` (L2, S6)."""
        if not self._lease_enabled:
            return
        while True:
            self._check_open()
            if self._lease_received.try_spend(anyio.current_time()):
                return
            if not self._options.lease_wait:
                if not self._lease_received.received:
                    raise RejectedError("no LEASE received from the peer yet (S6)")
                raise RejectedError("the peer's lease allows no more requests now (L2)")
            event = self._lease_event
            if event is None:
                event = self._lease_event = anyio.Event()
            with anyio.move_on_after(max(0.0, self._lease_received.expires_at - anyio.current_time())):
                await event.wait()

    # --- stream bookkeeping ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise copy.copy(self._error)
        if self._draining:
            raise ConnectionClosedError("the peer is closing the connection (CONNECTION_CLOSE)")

    def _allocate_stream_id(self) -> int:
        """Next free id of our parity, wrapping after the maximum and skipping live ids (ID1, ID2)."""
        stream_id = self._next_stream_id
        limit = self._options.max_stream_id
        for _ in range(len(self._streams) + 1):
            following = stream_id + 2
            if following > limit:
                following = self._first_stream_id
            if stream_id not in self._streams:
                self._next_stream_id = following
                return stream_id
            stream_id = following
        # Nothing was sent, so like a refused lease this is RejectedError: retry later or elsewhere.
        raise RejectedError("every stream id is in use on this connection; wait for one to end")

    def _open_stream(self, state: object, make_frame: Callable[[int], FragmentableFrame]) -> int:
        """Register ``state`` under a fresh stream id and queue the request frame it makes."""
        self._check_open()
        stream_id = self._allocate_stream_id()
        frames = self._encode_item(make_frame(stream_id))  # an oversized request registers nothing
        self._streams[stream_id] = state
        for frame in frames:
            self._send_frame(frame)
        return stream_id

    def _open_simple_request(self, state: object | None, type_word: int, payload: Payload) -> int:
        """Queue a REQUEST_RESPONSE or REQUEST_FNF; register ``state`` unless it is None (FNF)."""
        self._check_open()
        stream_id = self._allocate_stream_id()
        data, metadata = payload.data, payload.metadata
        size = self._fragment_size
        if size is None or len(data) + (len(metadata) + 3 if metadata is not None else 0) + 6 <= size:
            frames = [encode_simple_request(type_word, stream_id, data, metadata)]
        elif type_word == _REQUEST_RESPONSE_WORD:
            frames = self._encode_item(RequestResponseFrame(stream_id, data, metadata))
        else:
            frames = self._encode_item(RequestFireAndForgetFrame(stream_id, data, metadata))
        if state is not None:
            self._streams[stream_id] = state
        for frame in frames:
            self._send_frame(frame)
        return stream_id

    def _release(self, stream_id: int, state: object) -> None:
        if self._streams.get(stream_id) is state:
            del self._streams[stream_id]
            self._reassembly.pop(stream_id, None)
            if self._draining and not self._streams:
                self._terminate(ConnectionClosedError("connection closed by peer (CONNECTION_CLOSE)"))

    # --- reader back-pressure from slow consumers ----------------------------------------------

    def _stream_congested(self) -> None:
        """A stream's unread buffer passed its high-water mark: the reader pauses after this batch."""
        self._congested_streams += 1

    def _stream_relieved(self) -> None:
        self._congested_streams -= 1
        event = self._uncongested
        if event is not None and not self._congested_streams:
            self._uncongested = None
            event.set()

    async def _wait_uncongested(self) -> None:
        while self._congested_streams and self._error is None:
            event = self._uncongested
            if event is None:
                event = self._uncongested = anyio.Event()
            await event.wait()

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

    def _encode_item(self, frame: FragmentableFrame) -> list[bytes]:
        """Encode a request or PAYLOAD, fragmenting it when it exceeds ``fragment_size`` (FG2)."""
        size = self._fragment_size
        if size is not None and needs_fragmentation(frame, size):
            return [encode_frame(piece) for piece in fragment(frame, size)]
        return [encode_frame(frame)]

    def _send_payload(self, stream_id: int, data: bytes, metadata: bytes | None, flags: int) -> None:
        """Queue a PAYLOAD (the hot path of streams and channels), fragmented as configured."""
        size = self._fragment_size
        if size is None or len(data) + (len(metadata) + 3 if metadata is not None else 0) + 6 <= size:
            self._send_frame(encode_payload(stream_id, data, metadata, flags))
        else:
            frame = PayloadFrame(
                stream_id, data, metadata, complete=bool(flags & FLAG_COMPLETE), next=bool(flags & FLAG_NEXT)
            )
            for piece in self._encode_item(frame):
                self._send_frame(piece)

    async def _wait_writable(self, limit: int = WRITE_HIGH_WATER) -> None:
        """Back-pressure: wait while the outbound queue holds more than ``limit`` bytes.

        Without a wait it is a cancellation point every 32nd call (never a scheduling point, so
        producers that queue many frames in a row get them written in large batches).
        """
        if self._outbox_size <= limit:
            # A cancellation check costs about a microsecond: do it every 32nd frame only.
            self._produced += 1
            if not self._produced & 31:
                await anyio.lowlevel.checkpoint_if_cancelled()
            return
        while self._outbox_size > limit and self._error is None:
            event = self._writable
            if event is None:
                event = self._writable = anyio.Event()
            await event.wait()

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
                    if self._outbox_size > READER_PAUSE_BYTES:
                        await self._wait_writable(READER_PAUSE_BYTES)
                    frames = await receive()
                    self._heard = True  # cheaper than reading the clock for every batch
                    self._handle_frames(frames)
                    workers = self._workers
                    if workers.backlog:
                        await workers.relieve()
                    if self._congested_streams or workers.active > self._options.max_concurrent_requests:
                        # TCP back-pressure for our own slowness: a consumer far behind its stream,
                        # or handlers over the limit (only requests that cannot be refused get past
                        # it, see _accept_request), stop reading until they catch up. The peer is
                        # not silent meanwhile, we are deaf, so this does not count towards K3.
                        self._reading_paused = True
                        try:
                            await self._wait_uncongested()
                            await workers.wait_below(self._options.max_concurrent_requests + 1)
                        finally:
                            self._reading_paused = False
        except ConnectionClosedError as exc:
            self._terminate(exc)
        except FrameError as exc:  # the transport refused a frame (too large, text message, ...)
            self._protocol_violation(str(exc))
        except Exception as exc:
            logger.exception("reader failed")
            self._protocol_violation(f"internal error while reading: {exc!r}")

    def _handle_frames(self, frames: list[bytes]) -> None:
        dispatch = self._dispatch
        streams = self._streams
        for raw in frames:
            # Fast path for the bulk of traffic: a whole PAYLOAD goes to its stream without
            # building a frame object (same validation as decode_frame).
            if len(raw) >= 6 and not self._reassembly:
                stream_id, word = _HEADER.unpack_from(raw)
                if word & _PAYLOAD_MASK == _PAYLOAD_WORD:
                    try:
                        metadata, data = split_metadata(raw, 6, word, "PAYLOAD")
                    except FrameError as exc:
                        if exc.ignorable:
                            continue
                        self._protocol_violation(str(exc))
                        return
                    state = streams.get(stream_id & MAX_31)
                    if state is not None:  # U2: frames for unknown or finished streams are dropped
                        state._on_payload(data, metadata, word)
                        if self._error is not None:
                            return
                    continue
            try:
                frame = decode_frame(raw)
            except FrameError as exc:
                if exc.ignorable:  # MD2, U1: frames with the IGNORE flag may be dropped
                    continue
                self._protocol_violation(str(exc))
                return
            if self._reassembly or getattr(frame, "follows", False):
                try:
                    reassembled = self._reassemble(frame)
                except FrameError as exc:
                    self._protocol_violation(str(exc))
                    return
                if reassembled is None:
                    continue
                frame = reassembled
            dispatch[type(frame)](frame)
            if self._error is not None:
                return

    def _reassemble(self, frame: Frame) -> Frame | None:
        """Feed fragments per stream (FG2, FG6); return a frame to dispatch, or None while partial."""
        stream_id = frame.stream_id
        partial = self._reassembly.get(stream_id)
        if partial is not None:
            if isinstance(frame, PayloadFrame):
                whole = partial.add(frame)
                self._check_reassembly_budget()
                if whole is not None:
                    del self._reassembly[stream_id]
                return whole
            if isinstance(frame, (CancelFrame, ErrorFrame)):
                del self._reassembly[stream_id]  # FG7: the partial item is discarded
            return frame  # REQUEST_N, CANCEL, ERROR, another request: dispatched as usual (FG6)
        if not getattr(frame, "follows", False) or stream_id == 0:
            return frame
        if isinstance(frame, PayloadFrame):
            if frame.complete:
                return frame  # U3: F with C is the last (and only) fragment
            if stream_id not in self._streams:
                return None  # U2: fragments for unknown streams are dropped
        elif stream_id in self._streams:
            return None  # ID5: a request on a live id is ignored, fragmented or not
        assert isinstance(
            frame,
            (
                PayloadFrame,
                RequestResponseFrame,
                RequestFireAndForgetFrame,
                RequestStreamFrame,
                RequestChannelFrame,
            ),
        )
        self._reassembly[stream_id] = Reassembler(frame, self._options.max_reassembled_size)
        self._check_reassembly_budget()
        return None

    def _check_reassembly_budget(self) -> None:
        total = sum(partial.size for partial in self._reassembly.values())
        if total > 4 * self._options.max_reassembled_size:
            raise FrameError("fragments held for all streams exceed the connection's reassembly budget (FG7)")

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
            flags = (FLAG_COMPLETE if frame.complete else 0) | (FLAG_NEXT if frame.next else 0)
            state._on_payload(frame.data, frame.metadata, flags)

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
        # Over the concurrency limit a push is still taken (it cannot be refused); the reader then
        # pauses until the handlers catch up.
        self._spawn(run_metadata_push, self._handler, frame.metadata)

    def _on_lease(self, frame: LeaseFrame) -> None:
        self._mark_established()  # S4
        if not self._lease_enabled:
            return  # leasing was not negotiated: a stray LEASE changes nothing
        self._lease_received.grant(frame.ttl, frame.number_of_requests, anyio.current_time())
        event = self._lease_event
        if event is not None:
            self._lease_event = None
            event.set()

    def _on_setup(self, frame: SetupFrame) -> None:
        pass  # S9: a SETUP after establishment (or at a client) is ignored

    def _on_resume(self, frame: ResumeFrame | ResumeOkFrame) -> None:
        self._protocol_violation("resumption was not negotiated on this connection")

    def _on_ext(self, frame: ExtFrame) -> None:
        if not frame.ignore:  # U1 (our rule): an extension we do not know is fatal without I
            self._protocol_violation(f"unsupported extension frame type {frame.extended_type}")

    # --- inbound requests (responder side) ------------------------------------------------------

    def _accept_request(self, stream_id: int, answerable: bool = True) -> bool:
        """Whether a request on ``stream_id`` starts a new responder (ID5, L3, limits)."""
        if stream_id == 0 or stream_id % 2 == self._first_stream_id % 2:
            # ID5 gap (our rule): a request on stream 0 or on our own parity is a protocol error.
            self._protocol_violation(f"request on stream {stream_id}, which the peer may not open")
            return False
        if stream_id in self._streams:
            return False  # ID5: a duplicate request leaves the live stream untouched
        self._mark_established()
        reason = None
        if self._draining:
            reason = b"connection is closing"
        elif self._lease_enabled and not self._lease_granted.try_spend(anyio.current_time()):
            reason = b"request exceeds the lease granted to the requester (L3)"
        elif answerable and self._workers.active >= self._options.max_concurrent_requests:
            # A request we can refuse is refused (the requester may retry elsewhere); a
            # fire-and-forget cannot be, so it is taken and the reader pauses instead.
            reason = b"too many concurrent requests on this connection"
        if reason is None:
            return True
        if answerable:
            self._send_frame(encode_frame(ErrorFrame(stream_id, ErrorCode.REJECTED, reason)))
        return False

    def _spawn(self, function: Callable[..., Awaitable[None]], *args: Any) -> None:
        self._workers.submit(function, *args)

    def _on_request_response(self, frame: RequestResponseFrame) -> None:
        if not self._accept_request(frame.stream_id):
            return
        state = ResponderTask(self, frame.stream_id)
        self._streams[frame.stream_id] = state
        self._spawn(run_request_response, self, self._handler, state, Payload(frame.data, frame.metadata))

    def _on_fire_and_forget(self, frame: RequestFireAndForgetFrame) -> None:
        if not self._accept_request(frame.stream_id, answerable=False):
            return  # IX3: never answer a fire-and-forget, not even with ERROR
        self._spawn(run_fire_and_forget, self._handler, Payload(frame.data, frame.metadata))

    def _on_request_stream(self, frame: RequestStreamFrame) -> None:
        if not self._accept_request(frame.stream_id):
            return
        state = ResponderStream(self, frame.stream_id, frame.initial_request_n)
        self._streams[frame.stream_id] = state
        self._spawn(run_stream, self, self._handler, state, Payload(frame.data, frame.metadata), None)

    def _on_request_channel(self, frame: RequestChannelFrame) -> None:
        if not self._accept_request(frame.stream_id):
            return
        state = ResponderChannel(self, frame.stream_id, frame.initial_request_n, frame.complete)
        self._streams[frame.stream_id] = state
        self._spawn(
            run_stream, self, self._handler, state, Payload(frame.data, frame.metadata), state.inbound
        )

    # --- keepalive and lease tasks ---------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        """Send keepalives (K1) and end the connection after max-lifetime of silence (K3).

        The reader only raises a flag per batch of frames; this task turns it into a time when it
        wakes, at least four times per lifetime, so silence is noticed at most a quarter of the
        lifetime late.
        """
        interval, lifetime, send_keepalives = self._keepalive_plan()
        with self._keepalive_scope:
            now = anyio.current_time()
            next_keepalive = now + interval if send_keepalives else math.inf
            last_heard = now
            while self._error is None:
                now = anyio.current_time()
                if self._heard or self._reading_paused:
                    self._heard = False
                    last_heard = now
                elif now - last_heard >= lifetime:
                    # K3: silence for max-lifetime means the peer (or the path to it) is dead.
                    self._terminate(ConnectionClosedError(f"no frame from the peer for {lifetime:g} s (K3)"))
                    return
                if now >= next_keepalive:
                    self._send_if_open(encode_frame(KeepaliveFrame(True)))
                    next_keepalive = now + interval
                wake = min(now + lifetime / 4, last_heard + lifetime, next_keepalive)
                await anyio.sleep(max(0.0, wake - now))

    def _keepalive_plan(self) -> tuple[float, float, bool]:
        """Our keepalive interval, the silence we tolerate, and whether we send KEEPALIVEs.

        A server holds the client to its caps: silence is judged against the capped lifetime, and
        if the client's own keepalives would come too rarely for that, we send KEEPALIVE(R) often
        enough that its echoes keep the connection alive.
        """
        options = self._options
        requested = interval = self._setup.keepalive_interval
        lifetime = self._setup.max_lifetime
        lifetime_cap, interval_cap = options.max_lifetime_cap, options.keepalive_interval_cap
        capped = False
        if lifetime_cap is not None and lifetime > lifetime_cap:
            lifetime, capped = lifetime_cap, True
        if interval_cap is not None and interval > interval_cap:
            interval, capped = interval_cap, True
        if capped:
            interval = min(interval, lifetime / 2)
        return interval, lifetime, options.send_keepalives or interval < requested

    def _grant_lease(self, strategy: LeaseStrategy) -> None:
        frame = strategy.next_lease().to_frame()
        self._lease_granted.grant(frame.ttl, frame.number_of_requests, anyio.current_time())
        self._send_if_open(encode_frame(frame))

    async def _lease_loop(self, strategy: LeaseStrategy) -> None:
        """Refresh the peer's lease on the strategy's schedule."""
        with self._lease_scope:
            while self._error is None:
                await anyio.sleep(strategy.refresh_interval)
                self._grant_lease(strategy)

    # --- start and stop --------------------------------------------------------------------------

    def _start(self, initial_frames: list[bytes] | None = None) -> None:
        if self._lease_enabled:
            # S6: the responder MUST send a LEASE after SETUP; queue it before reading anything so
            # that it precedes every answer (a client may treat any answer as acceptance, S4).
            strategy = self._options.lease_strategy or unlimited_lease_strategy()
            self._grant_lease(strategy)
            self._task_group.start_soon(self._lease_loop, strategy)
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
        self._reassembly.clear()
        for state in streams:
            state._on_connection_closed(error)
        self._closed.set()
        self._reader_scope.cancel()
        self._keepalive_scope.cancel()
        self._lease_scope.cancel()
        self._writer_scope.deadline = anyio.current_time() + CLOSE_FLUSH_TIMEOUT
        for event in (self._writer_wakeup, self._writable, self._lease_event, self._uncongested):
            if event is not None:
                event.set()
        self._writer_wakeup = self._writable = self._lease_event = self._uncongested = None
