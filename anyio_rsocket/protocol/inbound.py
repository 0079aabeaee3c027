"""The inbound half of the core: parse received frames and turn them into state changes and events.

Behaviour follows the AnyIO peer's reader (``RSocket._handle_frames`` and the ``_on_*`` methods of
the connection, requester and responder objects) rule for rule; the checklist IDs are in comments.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ..wire.errors import ErrorCode, FrameError, SetupError
from ..wire.frames import (
    FLAG_COMPLETE,
    FLAG_FOLLOWS,
    FLAG_METADATA,
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
    split_metadata,
)
from ..wire.framing import FrameBuffer
from ..wire.payload import Payload
from .config import ProtocolConfig
from .core import CoreBase, Phase
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    CancelReceived,
    ConnectionDraining,
    ErrorReceived,
    Event,
    KeepaliveReceived,
    LeaseReceived,
    MetadataPushReceived,
    PayloadReceived,
    RequestNReceived,
    RequestReceived,
    RequestRejected,
    ResumeReceived,
    SetupReceived,
    StreamFailed,
    TerminationCause,
)
from .resumption import is_resumable
from .setup import validate_setup
from .streams import RR_RESPONDER_STREAM, InteractionKind, Stream, StreamInput, StreamState, new_stream

_HEADER = struct.Struct(">IH")
#: A PAYLOAD frame without F (type 0x0A): the type bits plus F must match exactly.
_PAYLOAD_MASK = 0xFC00 | FLAG_FOLLOWS
_PAYLOAD_WORD = 0x2800
#: REQUEST_RESPONSE and REQUEST_FNF without F, under the same mask.
_REQUEST_RESPONSE_WORD = 0x1000
_REQUEST_FNF_WORD = 0x1400
_FNF = InteractionKind.FIRE_AND_FORGET
_NC = FLAG_NEXT | FLAG_COMPLETE
_SETUP_ERROR_CODES = frozenset(
    {
        ErrorCode.INVALID_SETUP,
        ErrorCode.UNSUPPORTED_SETUP,
        ErrorCode.REJECTED_SETUP,
        ErrorCode.REJECTED_RESUME,
    }
)
_RR = InteractionKind.REQUEST_RESPONSE


class InboundCore(CoreBase):
    """Received bytes and frames -> state changes, frames to send, events."""

    def __init__(self, *, client: bool, config: ProtocolConfig | None = None) -> None:
        super().__init__(client=client, config=config)
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

    # --- input ---------------------------------------------------------------------------------

    def receive_frames(self, frames: list[bytes], now: float) -> list[Event]:
        """Feed encoded frames (unprefixed, as message transports deliver them) received at ``now``."""
        phase = self._phase
        if phase is Phase.CLOSED:
            return self._take_events()
        self._now = now
        if not frames:
            return self._take_events()
        self._keepalive.heard(now)  # K3: any frame proves the peer alive
        if self._resuming:
            frames = self._on_resume_answer(frames, now)
            phase = self._phase
        if phase is Phase.IDLE:
            if self._client:
                raise LocalProtocolError("call initiate() before feeding received frames")
            self._on_first_frame(frames[0])
            frames = frames[1:]
            phase = self._phase
        if phase is Phase.SETUP_RECEIVED:
            self._held.extend(frames)
        elif phase is Phase.OPEN:
            self._process(frames)
        return self._take_events()

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes of a length-prefixed stream (TCP, T1); frames are cut out with ``FrameBuffer``."""
        if self._phase is Phase.CLOSED:
            return self._take_events()
        buffer = self._frame_buffer
        if buffer is None:
            buffer = self._frame_buffer = FrameBuffer(self.config.max_frame_size)
        try:
            frames = buffer.feed(data)
        except FrameError as exc:
            self._now = now
            self._framing_error(exc)
            return self._take_events()
        events = self.receive_frames(frames, now)
        try:
            buffer.raise_pending()
        except FrameError as exc:
            self._framing_error(exc)
            events.extend(self._take_events())
        return events

    def mark_alive(self, now: float) -> None:
        """Count ``now`` as a sign of life (K3): for a driver that paused reading for its own reasons."""
        self._keepalive.heard(now)

    def _framing_error(self, exc: FrameError) -> None:
        if self._phase is Phase.IDLE and not self._client:
            self._refuse_setup(SetupError(f"malformed SETUP: {exc}"))
        else:
            self._violation(str(exc))

    def _on_first_frame(self, raw: bytes) -> None:
        """Server: the first frame must be an acceptable SETUP (S1, S2, S7, F2), or RESUME when we
        keep sessions (R4)."""
        try:
            setup = validate_setup(raw, resumable=self.config.resume_store_size is not None)
        except SetupError as exc:
            self._refuse_setup(exc)
            return
        if isinstance(setup, ResumeFrame):
            self._phase = Phase.RESUME_RECEIVED
            self._events.append(
                ResumeReceived(
                    setup.resume_token,
                    setup.last_received_server_position,
                    setup.first_available_client_position,
                )
            )
            return
        self._setup = setup
        self._phase = Phase.SETUP_RECEIVED
        self._events.append(SetupReceived(setup))

    def _on_resume_answer(self, frames: list[bytes], now: float) -> list[bytes]:
        """Client: the first frame after our RESUME must be RESUME_OK (R4, R6); what follows it
        is the server's replay and goes on as usual."""
        try:
            frame: Frame | None = decode_frame(frames[0])
        except FrameError:
            frame = None
        if isinstance(frame, ResumeOkFrame):
            assert self._store is not None
            position = frame.last_received_client_position
            replay = self._store.frames_after(position)
            if replay is not None:
                self._confirm(position)
                self._reattach(replay, now)
                return frames[1:]
            reason = (
                f"the server resumed from position {position}, but we hold "
                f"{self._store.first_available} to {self._store.position}"
            )
            self._queue_frame(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, reason.encode()))
        elif isinstance(frame, ErrorFrame) and frame.stream_id == 0:
            reason = f"the server refused to resume the session: {frame.message}"
        else:
            reason = "the server did not answer RESUME with RESUME_OK"
            self._queue_frame(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, reason.encode()))
        self._terminate(ErrorCode.REJECTED_RESUME, reason, TerminationCause.RESUME_REJECTED)
        return []

    def _refuse_setup(self, error: SetupError) -> None:
        self._queue_frame(ErrorFrame(0, error.code, error.message.encode("utf-8", "replace")))
        self._terminate(error.code, error.message, TerminationCause.PEER_VIOLATION)

    def _process(self, frames: list[bytes]) -> None:
        streams = self._streams
        partials = self._reassembly.partials
        dispatch = self._dispatch
        unpack_header = _HEADER.unpack_from
        if self._phase is not Phase.OPEN:
            return
        if self._store is not None:
            # R2: the implied position of what we received, counted per batch so connections
            # that do not resume pay nothing per frame.
            position = self._received_position
            for raw in frames:
                if is_resumable(raw):
                    position += len(raw)
            self._received_position = position
        for raw in frames:
            if type(raw) is not bytes:
                raw = bytes(raw)
            try:
                # Fast path for the bulk of traffic: a whole PAYLOAD goes to its stream without
                # building a frame object (the same validation as decode_frame).
                masked = 0
                if len(raw) >= 6:
                    stream_id, word = unpack_header(raw)
                    stream_id &= MAX_31
                    # Fragments in progress (anywhere) take the general path.
                    masked = word & _PAYLOAD_MASK if not partials else 0
                if masked == _PAYLOAD_WORD:
                    if word & FLAG_METADATA:
                        metadata, data = split_metadata(raw, 6, word, "PAYLOAD")
                    else:  # the common case, without the call
                        metadata, data = None, raw[6:]
                    stream = streams.get(stream_id)
                    if stream is None:
                        continue  # U2: unknown or finished streams are dropped
                    flags = word & _NC
                    sink = stream.sink
                    if flags == FLAG_NEXT and sink is not None and stream.state in stream.keeps_on_next:
                        # An item that leaves the state as it is (N only, not request-response):
                        # spend one credit (RN2) and hand it to the sink. Such a frame cannot end
                        # the connection, so the loop goes straight on.
                        credit = stream.recv_credit
                        value = credit.value
                        if value > 0:
                            if value < MAX_31:
                                credit.value = value - 1
                            sink(data, metadata, flags)
                            continue
                    self._deliver(stream, data, metadata, flags)
                elif masked == _REQUEST_RESPONSE_WORD:
                    # Unfragmented simple requests skip the frame objects too (as decode_frame).
                    if word & FLAG_METADATA:
                        metadata, data = split_metadata(raw, 6, word, "REQUEST_RESPONSE")
                    else:
                        metadata, data = None, raw[6:]
                    self._request_response(stream_id, data, metadata)
                elif masked == _REQUEST_FNF_WORD:
                    if word & FLAG_METADATA:
                        metadata, data = split_metadata(raw, 6, word, "REQUEST_FNF")
                    else:
                        metadata, data = None, raw[6:]
                    self._fire_and_forget(stream_id, data, metadata)
                else:
                    decoded = decode_frame(raw)
                    frame: Frame | None = decoded
                    if partials or getattr(decoded, "follows", False):
                        frame = self._reassembly.feed(decoded, streams)  # None while partial
                    if frame is not None:
                        dispatch[type(frame)](frame)
            except RemoteProtocolError as exc:
                if exc.stream_id:
                    self._fail_stream(exc)
                else:
                    self._violation(exc.message)
            except FrameError as exc:
                if not exc.ignorable:  # MD2, U1: frames with the IGNORE flag may be dropped
                    self._violation(str(exc))
            if self._phase is not Phase.OPEN:
                return

    # --- frames on existing streams ------------------------------------------------------------

    def _deliver(self, stream: Stream, data: bytes, metadata: bytes | None, flags: int) -> None:
        """A PAYLOAD (whole or reassembled) for a live stream; ``flags`` holds its N and C bits."""
        target = stream.payload_moves[stream.state][flags >> 5]
        if target is None:
            return  # the peer's half is already complete, or the kind takes no inbound items
        if stream.kind is _RR:
            flags |= FLAG_COMPLETE  # IX2: whatever arrives ends request-response
        elif flags & FLAG_NEXT and not stream.recv_credit.consume():
            if stream.local:
                message = "responder sent more items than requested"
            else:
                message = "requester sent more channel elements than granted"
            raise RemoteProtocolError(message, stream_id=stream.stream_id, code=ErrorCode.INVALID)
        stream.state = target
        sink = stream.sink
        if sink is not None:
            sink(data, metadata, flags)
        else:
            payload = Payload(data, metadata) if flags & FLAG_NEXT else None
            self._events.append(
                PayloadReceived(
                    stream.stream_id, payload, bool(flags & FLAG_NEXT), bool(flags & FLAG_COMPLETE)
                )
            )
        if target is StreamState.CLOSED:
            self._release(stream)

    def _fail_stream(self, error: RemoteProtocolError) -> None:
        """RN6 (our rule): a credit violation ends the stream; the requester CANCELs, the responder ERRORs."""
        stream = self._streams.get(error.stream_id)
        if stream is None:
            return
        if stream.local:
            self._queue_frame(CancelFrame(stream.stream_id))
        else:
            self._queue_frame(
                ErrorFrame(stream.stream_id, error.code, error.message.encode("utf-8", "replace"))
            )
        self._events.append(StreamFailed(stream.stream_id, error.code, error.message))
        self._set_state(stream, StreamState.CLOSED)

    def _on_payload(self, frame: PayloadFrame) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is not None:
            flags = (FLAG_COMPLETE if frame.complete else 0) | (FLAG_NEXT if frame.next else 0)
            self._deliver(stream, frame.data, frame.metadata, flags)

    def _on_request_n(self, frame: RequestNFrame) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is None:
            return
        target = stream.next_state(StreamInput.RECV_REQUEST_N)
        if target is None:
            return  # RN7: no effect on request-response, nor where we do not send
        added = stream.send_credit.grant(frame.request_n)  # RN6: zero ignored; RN4: saturates
        stream.state = target
        if added:
            self._events.append(RequestNReceived(stream.stream_id, added, stream.send_credit.unbounded))

    def _on_cancel(self, frame: CancelFrame) -> None:
        stream = self._streams.get(frame.stream_id)
        if stream is None:
            return
        event = StreamInput.RECV_STOP if stream.local else StreamInput.RECV_CANCEL
        target = stream.next_state(event)
        if target is None:
            return
        self._events.append(CancelReceived(stream.stream_id))
        self._set_state(stream, target)

    def _on_error(self, frame: ErrorFrame) -> None:
        if frame.stream_id != 0:
            stream = self._streams.get(frame.stream_id)
            if stream is None:
                return  # E2: an ERROR on an unknown stream is ignored
            target = stream.next_state(StreamInput.RECV_ERROR)
            if target is not None:
                self._events.append(ErrorReceived(stream.stream_id, frame.error_code, frame.message))
                self._set_state(stream, target)
            return
        code = frame.error_code
        if code in _SETUP_ERROR_CODES and (not self._client or self._established):
            return  # S10: setup errors only matter to a client still establishing
        if code == ErrorCode.CONNECTION_CLOSE and self._streams:
            if not self._draining:
                self._draining = True  # E2: let live streams finish, refuse new ones
                self._events.append(ConnectionDraining(frame.message))
            return
        self._terminate(code, frame.message, TerminationCause.PEER_CLOSED)

    # --- connection-level frames ---------------------------------------------------------------

    def _on_keepalive(self, frame: KeepaliveFrame) -> None:
        if self._store is not None:
            self._confirm(frame.last_received_position)  # R3: trim what the peer has
        if frame.respond:  # K2: echo with identical data (and our position), never answer an answer
            self._queue_frame(KeepaliveFrame(False, self._received_position, frame.data))
        elif self._ping_sent_at is not None:
            self.rtt = self._now - self._ping_sent_at  # the echo of our last KEEPALIVE(R)
            self._ping_sent_at = None
        self._mark_established()
        self._events.append(KeepaliveReceived(frame.data, frame.respond))

    def _on_metadata_push(self, frame: MetadataPushFrame) -> None:
        if frame.stream_id == 0:  # MP2: ignored on other streams
            self._events.append(MetadataPushReceived(frame.metadata))

    def _on_lease(self, frame: LeaseFrame) -> None:
        self._mark_established()  # S4
        if not self._lease.enabled:
            return  # leasing was not negotiated: a stray LEASE changes nothing
        self._lease.received.grant(frame.ttl, frame.number_of_requests, self._now)
        self._events.append(LeaseReceived(frame.ttl / 1000, frame.number_of_requests, frame.metadata))

    def _on_setup(self, frame: SetupFrame) -> None:
        pass  # S9: a SETUP after establishment (or at a client) is ignored

    def _on_resume(self, frame: ResumeFrame | ResumeOkFrame) -> None:
        raise RemoteProtocolError("resumption was not negotiated on this connection")

    def _on_ext(self, frame: ExtFrame) -> None:
        if not frame.ignore:  # U1 (our rule): an extension we do not know is fatal without I
            raise RemoteProtocolError(f"unsupported extension frame type {frame.extended_type}")

    # --- inbound requests ----------------------------------------------------------------------

    def _accept_request(self, stream_id: int, kind: InteractionKind, answerable: bool = True) -> bool:
        """Whether a request on ``stream_id`` opens a stream (ID5, E2, L3, admission limit)."""
        if stream_id == 0 or stream_id & 1 == self._our_parity:
            # ID5 gap (our rule): a request on stream 0 or on our own parity is a protocol error.
            raise RemoteProtocolError(f"request on stream {stream_id}, which the peer may not open")
        if stream_id in self._streams:
            return False  # ID5: a duplicate request leaves the live stream untouched
        if not self._established:
            self._mark_established()
        if (
            not self._draining
            and not self._lease.enabled
            and (not answerable or self._inbound_live < self.config.max_concurrent_requests)
        ):
            return True  # the common case, without the checks below
        reason = None
        if self._draining:
            reason = "connection is closing"
        elif self._lease.enabled and not self._lease.granted.try_spend(self._now):
            reason = "request exceeds the lease granted to the requester"
        elif answerable and self._inbound_live >= self.config.max_concurrent_requests:
            reason = "too many concurrent requests on this connection"
        if reason is None:
            return True
        if answerable:  # IX3: never answer a fire-and-forget, not even with ERROR
            self._queue_frame(ErrorFrame(stream_id, ErrorCode.REJECTED, reason.encode()))
        self._events.append(RequestRejected(kind, stream_id, reason, answerable))
        return False

    def _open_inbound(
        self, stream_id: int, kind: InteractionKind, event: StreamInput, send_credit: int
    ) -> Stream:
        stream = new_stream(stream_id, kind, False, event, send_credit)
        self._streams[stream_id] = stream
        self._inbound_live += 1
        return stream

    def _on_request_response(self, frame: RequestResponseFrame) -> None:
        self._request_response(frame.stream_id, frame.data, frame.metadata)

    def _request_response(self, stream_id: int, data: bytes, metadata: bytes | None) -> None:
        if self._accept_request(stream_id, _RR):
            self._streams[stream_id] = RR_RESPONDER_STREAM(stream_id, False, StreamState.HALF_CLOSED_REMOTE)
            self._inbound_live += 1
            self._events.append(RequestReceived(_RR, stream_id, Payload(data, metadata)))

    def _on_fire_and_forget(self, frame: RequestFireAndForgetFrame) -> None:
        self._fire_and_forget(frame.stream_id, frame.data, frame.metadata)

    def _fire_and_forget(self, stream_id: int, data: bytes, metadata: bytes | None) -> None:
        if self._accept_request(stream_id, _FNF, answerable=False):
            # (IDLE, RECV_REQUEST) -> CLOSED: the stream is over at once and never registered.
            self._events.append(RequestReceived(_FNF, stream_id, Payload(data, metadata)))

    def _on_request_stream(self, frame: RequestStreamFrame) -> None:
        kind = InteractionKind.REQUEST_STREAM
        if self._accept_request(frame.stream_id, kind):
            # RN6 (our rule): a zero initial request-n grants nothing; the requester must send REQUEST_N.
            self._open_inbound(frame.stream_id, kind, StreamInput.RECV_REQUEST, frame.initial_request_n)
            payload = Payload(frame.data, frame.metadata)
            self._events.append(RequestReceived(kind, frame.stream_id, payload, frame.initial_request_n))

    def _on_request_channel(self, frame: RequestChannelFrame) -> None:
        kind = InteractionKind.REQUEST_CHANNEL
        if not self._accept_request(frame.stream_id, kind):
            return
        event = StreamInput.RECV_REQUEST_COMPLETE if frame.complete else StreamInput.RECV_REQUEST
        stream = self._open_inbound(frame.stream_id, kind, event, frame.initial_request_n)
        payload = Payload(frame.data, frame.metadata)
        self._events.append(
            RequestReceived(kind, frame.stream_id, payload, frame.initial_request_n, frame.complete)
        )
        window = self.config.responder_channel_window
        if not frame.complete and window:
            # IX5: the responder MUST answer REQUEST_CHANNEL with a REQUEST_N.
            stream.recv_credit.grant(window)
            self._queue_frame(RequestNFrame(frame.stream_id, window))
