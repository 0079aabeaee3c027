"""The sans-IO RSocket connection: frames and time in, frames and events out.

A driver (the AnyIO peer, a test, another event loop) owns the transport and the clock and runs::

    events = conn.receive_frames(frames, now)   # or receive_data(chunk, now) for a byte stream
    ...act on events...
    transport.send(conn.data_to_send())
    sleep until conn.next_deadline(), then events = conn.handle_timer(now)

and calls the local intents (``request_stream``, ``send_payload``, ``request_n``, ``cancel``, ...)
for its users. Misuse raises :class:`~.errors.LocalProtocolError` with nothing changed; peer
violations never raise, they become events.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ..wire.errors import CONNECTION_ERROR_CODES, ErrorCode, FrameTooLargeError
from ..wire.fragmentation import FragmentableFrame
from ..wire.frames import (
    FLAG_COMPLETE,
    FLAG_NEXT,
    MAX_FRAME_SIZE,
    MAX_REQUEST_N,
    CancelFrame,
    ErrorFrame,
    KeepaliveFrame,
    MetadataPushFrame,
    RequestChannelFrame,
    RequestFireAndForgetFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    SetupFrame,
    encode_frame,
    encode_payload,
    encode_simple_request,
)
from ..wire.lease import Lease
from ..wire.payload import Payload
from .config import DEFAULT_RESUME_STORE_SIZE, ProtocolConfig
from .core import Phase
from .errors import InvalidArgumentError, LeaseRefusedError, LocalProtocolError, PayloadTooLargeError
from .events import Event, SessionDetached, TerminationCause
from .keepalive import keepalive_plan
from .resumable import ResumableCore
from .resumption import SentFrameStore
from .setup import SETUP_PROBE, default_setup
from .streams import (
    RR_REQUESTER_STREAM,
    InteractionKind,
    PayloadSink,
    Stream,
    StreamInput,
    StreamState,
    new_stream,
)

_RR = InteractionKind.REQUEST_RESPONSE
_FNF = InteractionKind.FIRE_AND_FORGET
_NC = FLAG_NEXT | FLAG_COMPLETE
_REQUEST_RESPONSE_WORD = 0x1000
_REQUEST_FNF_WORD = 0x1400
#: PAYLOAD with N (type 0x0A): the type word of every item ``send_next`` encodes inline.
_PAYLOAD_NEXT_WORD = 0x2800 | FLAG_NEXT
#: Data of a PAYLOAD without metadata that fits in one frame (the 6-byte header counts).
_MAX_PLAIN_PAYLOAD_DATA = MAX_FRAME_SIZE - 6
_pack_header = struct.Struct(">IH").pack
_SEND_PAYLOAD_INPUTS = {False: StreamInput.SEND_NEXT, True: StreamInput.SEND_NEXT_COMPLETE}


def _check_n(name: str, n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {n!r}")
    return min(n, MAX_REQUEST_N)  # RN5: never emit more than 2^31-1


class ProtocolConnection(ResumableCore):
    """One end of an RSocket connection, without I/O: the client (``client=True``) or the server."""

    def __init__(self, *, client: bool, config: ProtocolConfig | None = None) -> None:
        super().__init__(client=client, config=config)

    # --- establishment -------------------------------------------------------------------------

    def initiate(self, now: float, setup: SetupFrame | None = None, *, probe: bool = True) -> None:
        """Client: queue SETUP (built from the config unless given), our first LEASE if leasing is
        negotiated (S6), and with ``probe`` a KEEPALIVE whose echo confirms SETUP (S4)."""
        if not self._client:
            raise LocalProtocolError("only a client sends SETUP")
        if self._phase is not Phase.IDLE:
            raise LocalProtocolError("initiate() was already called")
        setup = setup or default_setup(self.config)
        if setup.keepalive_interval <= 0 or setup.max_lifetime <= 0:
            raise LocalProtocolError("keepalive interval and max lifetime must be positive")
        try:
            encoded = encode_frame(setup)
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(f"cannot encode SETUP: {exc}") from exc
        if setup.resume_token is not None:
            if not setup.resume_token:
                raise LocalProtocolError("a resume token must not be empty")
            if setup.lease:
                raise LocalProtocolError("resumption together with leasing is not supported")
        self._setup = setup
        self._phase = Phase.OPEN
        self._now = now
        self._queue(encoded)
        self._start(setup, now)
        if probe:
            self._queue_frame(KeepaliveFrame(True, 0, SETUP_PROBE))
            self._ping_sent_at = now

    def accept_setup(self, now: float) -> list[Event]:
        """Server: accept the SETUP reported by SetupReceived; frames that followed it are handled now."""
        if self._phase is not Phase.SETUP_RECEIVED or self._setup is None:
            raise LocalProtocolError("accept_setup() needs a SETUP that was received and not yet answered")
        self._phase = Phase.OPEN
        self._now = now
        self._established = True
        self._start(self._setup, now)
        held, self._held = self._held, []
        self._process(held)
        return self._take_events()

    def reject_setup(self, error_code: int = ErrorCode.REJECTED_SETUP, message: str = "") -> list[Event]:
        """Server: refuse the SETUP (S3) with a setup error code, then end the connection."""
        if self._phase is not Phase.SETUP_RECEIVED:
            raise LocalProtocolError("reject_setup() needs a SETUP that was received and not yet answered")
        if error_code not in CONNECTION_ERROR_CODES:
            raise LocalProtocolError(f"0x{error_code:08X} is not a connection-level error code")
        self._queue_frame(ErrorFrame(0, error_code, message.encode("utf-8", "replace")))
        self._terminate(error_code, message, TerminationCause.LOCAL)
        return self._take_events()

    def _start(self, setup: SetupFrame, now: float) -> None:
        config = self.config
        sending = config.send_keepalives if config.send_keepalives is not None else self._client
        if setup.resume_token is not None:
            # R1: positions count from here. A resumable side always sends KEEPALIVE with its
            # position, so the peer can trim its store whatever its own keepalives do.
            self._resume_token = setup.resume_token
            self._store = SentFrameStore(config.resume_store_size or DEFAULT_RESUME_STORE_SIZE)
            sending = True
        caps = (None, None) if self._client else (config.max_lifetime_cap, config.keepalive_interval_cap)
        interval, lifetime, sending = keepalive_plan(
            setup.keepalive_interval / 1000, setup.max_lifetime / 1000, sending, *caps
        )
        self._keepalive.start(interval, lifetime, sending, now)
        if setup.lease:
            # S6: the responder MUST send a LEASE after SETUP, before any answer (S4).
            self._queue_frame(self._lease.start(config.lease_strategy, now))

    # --- time ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next run (None: no timer while not open)."""
        if self._phase is not Phase.OPEN:
            return None
        if self._session_deadline is not None:
            return self._session_deadline  # detached: nothing is due but the end of the session
        deadlines = [d for d in (self._keepalive.deadline(), self._lease.deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Event]:
        """Run what is due at ``now``: K3 silence check, K1 keepalive, lease renewal."""
        if self._phase is not Phase.OPEN:
            return self._take_events()
        self._now = now
        if self._session_deadline is not None:
            if now >= self._session_deadline:
                message = f"the session was not resumed within {self.config.session_duration:g} s"
                self._terminate(ErrorCode.REJECTED_RESUME, message, TerminationCause.RESUME_REJECTED)
            return self._take_events()
        expired, send_keepalive = self._keepalive.poll(now)
        if expired:
            lifetime = self._keepalive.lifetime
            message = f"no frame from the peer for {lifetime:g} s (its keepalive lifetime)"
            if self._store is not None:
                # Silence on a resumable session is a lost transport, not the end of the session.
                self.detach(now)
                self._events.append(SessionDetached(message))
            else:
                self._terminate(ErrorCode.CONNECTION_CLOSE, message, TerminationCause.TIMEOUT)
            return self._take_events()
        if send_keepalive:
            self._queue_frame(KeepaliveFrame(True, self._received_position))
            if self._ping_sent_at is None:
                self._ping_sent_at = now
        lease = self._lease.poll(now)
        if lease is not None:
            self._queue_frame(lease)
        return self._take_events()

    # --- leasing (requester side) -------------------------------------------------------------

    def lease_allows_request(self, now: float) -> bool:
        """Whether a request may go out at ``now`` (always true unless leasing was negotiated)."""
        lease = self._lease
        return not lease.enabled or lease.received.available(now)

    @property
    def lease_expires_at(self) -> float:
        """When the peer's current lease to us expires (0 before any LEASE arrived)."""
        return self._lease.received.expires_at

    # --- requests ------------------------------------------------------------------------------

    def request_response(
        self, payload: Payload, *, now: float | None = None, sink: PayloadSink | None = None
    ) -> int:
        """Send REQUEST_RESPONSE; return its stream id.

        ``sink`` (here and on the other requests) is set at once, as :meth:`set_payload_sink` would.
        """
        return self._open_simple(_RR, _REQUEST_RESPONSE_WORD, payload, now, sink)

    def fire_and_forget(self, payload: Payload, *, now: float | None = None) -> int:
        """Send REQUEST_FNF; return the stream id it used (never registered, IX3)."""
        return self._open_simple(_FNF, _REQUEST_FNF_WORD, payload, now, None)

    def _open_simple(
        self,
        kind: InteractionKind,
        type_word: int,
        payload: Payload,
        now: float | None,
        sink: PayloadSink | None,
    ) -> int:
        """REQUEST_RESPONSE or REQUEST_FNF: the per-request hot path of :meth:`_open`, which it
        falls back to with leasing on or when the request needs fragmenting."""
        if self._phase is not Phase.OPEN or self._draining:
            self._check_can_request()
        data, metadata = payload.data, payload.metadata
        size = self._fragment_size
        if self._lease.enabled or (
            size is not None and len(data) + (len(metadata) + 3 if metadata is not None else 0) + 6 > size
        ):
            if kind is _RR:
                return self._open(
                    kind, lambda stream_id: RequestResponseFrame(stream_id, data, metadata), now, sink=sink
                )
            return self._open(
                kind, lambda stream_id: RequestFireAndForgetFrame(stream_id, data, metadata), now
            )
        streams = self._streams
        ids = self._ids
        stream_id, following = ids.candidate(streams, len(streams))
        try:  # an oversized request registers nothing and uses no id
            encoded = encode_simple_request(type_word, stream_id, data, metadata)
        except FrameTooLargeError as exc:
            raise PayloadTooLargeError(str(exc)) from exc
        except TypeError as exc:
            raise LocalProtocolError(f"cannot encode the request: {exc}") from exc
        ids.advance(following)
        if kind is _RR:  # (IDLE, SEND_REQUEST) -> CLOSED for FNF: never registered
            stream = streams[stream_id] = RR_REQUESTER_STREAM(stream_id, True, StreamState.HALF_CLOSED_LOCAL)
            stream.sink = sink
        if self._store is not None:
            self._keep(encoded)
        self._outbox.append(encoded)  # _queue, inlined
        self.bytes_to_send += len(encoded)
        return stream_id

    def request_stream(
        self, payload: Payload, initial_n: int, *, now: float | None = None, sink: PayloadSink | None = None
    ) -> int:
        """Send REQUEST_STREAM granting ``initial_n`` items (2^31-1 or more: unbounded, RN4)."""
        n = _check_n("initial_n", initial_n)
        return self._open(
            InteractionKind.REQUEST_STREAM,
            lambda stream_id: RequestStreamFrame(stream_id, n, payload.data, payload.metadata),
            now,
            n,
            sink=sink,
        )

    def request_channel(
        self,
        payload: Payload,
        initial_n: int,
        complete: bool = False,
        *,
        now: float | None = None,
        sink: PayloadSink | None = None,
    ) -> int:
        """Send REQUEST_CHANNEL carrying our first element; ``complete`` also ends our half (IX5).

        The first element is free; further ones need the responder's REQUEST_N.
        """
        n = _check_n("initial_n", initial_n)
        return self._open(
            InteractionKind.REQUEST_CHANNEL,
            lambda stream_id: RequestChannelFrame(
                stream_id, n, payload.data, payload.metadata, complete=complete
            ),
            now,
            n,
            StreamInput.SEND_REQUEST_COMPLETE if complete else StreamInput.SEND_REQUEST,
            sink=sink,
        )

    def _open(
        self,
        kind: InteractionKind,
        make_frame: Callable[[int], FragmentableFrame],
        now: float | None,
        initial_n: int = 0,
        event: StreamInput = StreamInput.SEND_REQUEST,
        sink: PayloadSink | None = None,
    ) -> int:
        """Check, allocate an id, encode and queue a request; register its stream (not for FNF)."""
        if self._phase is not Phase.OPEN or self._draining:
            self._check_can_request()
        now = self._now if now is None else now
        lease = self._lease
        if lease.enabled and not lease.received.available(now):
            if not lease.received.received:
                raise LeaseRefusedError("no LEASE received from the peer yet (leasing was negotiated)")
            raise LeaseRefusedError("the peer's lease allows no more requests now")
        streams = self._streams
        stream_id, following = self._ids.candidate(streams, len(streams))
        frames = self._encode_item(make_frame(stream_id))  # an oversized request registers nothing
        self._ids.advance(following)
        if lease.enabled:
            lease.received.try_spend(now)  # every request type counts once (L2, FG5)
        if kind is not InteractionKind.FIRE_AND_FORGET:  # (IDLE, SEND_REQUEST) -> CLOSED for FNF
            stream = streams[stream_id] = new_stream(stream_id, kind, True, event, 0, initial_n)
            stream.sink = sink
        for encoded in frames:
            self._queue(encoded)
        return stream_id

    # --- stream intents ------------------------------------------------------------------------

    def send_payload(self, stream_id: int, payload: Payload, complete: bool = False) -> None:
        """Send one item (PAYLOAD N, with C when ``complete``), spending one credit.

        A request-response answer always carries C (IX2). Raises LocalProtocolError without credit.
        """
        if complete:
            stream = self._streams.get(stream_id)
            if stream is not None and stream.kind is _RR and stream.state is StreamState.HALF_CLOSED_REMOTE:
                self._answer(stream, payload)  # the hot path of request-response
            else:
                self._send_payload_checked(stream_id, payload, True)
        elif not self.send_next(stream_id, payload):
            self._send_payload_checked(stream_id, payload, False)

    def _answer(self, stream: Stream, payload: Payload) -> None:
        """A responder's request-response answer (PAYLOAD N|C): its one credit, then CLOSED."""
        data, metadata = payload.data, payload.metadata
        size = self._fragment_size
        if size is None or len(data) + (len(metadata) + 3 if metadata is not None else 0) + 6 <= size:
            try:
                encoded = encode_payload(stream.stream_id, data, metadata, _NC)
            except FrameTooLargeError as exc:
                raise PayloadTooLargeError(str(exc)) from exc
            except TypeError as exc:
                raise LocalProtocolError(f"cannot encode the payload: {exc}") from exc
            if self._store is not None:
                self._keep(encoded)
            self._outbox.append(encoded)  # _queue, inlined
            self.bytes_to_send += len(encoded)
        else:
            for encoded in self._encode_payload(stream.stream_id, data, metadata, _NC):
                self._queue(encoded)
        self._release(stream)

    def send_next(self, stream_id: int, payload: Payload) -> bool:
        """Send one item (PAYLOAD N) if the peer's credit allows it now; False (nothing sent) if not.

        The hot path of streams and channels: one call both checks credit and sends. Any other
        reason not to send (no such stream, wrong state, an item that cannot be encoded) raises
        LocalProtocolError as :meth:`send_payload` does.
        """
        stream = self._streams.get(stream_id)
        if stream is not None and stream.state in stream.sends_next:  # never request-response
            credit = stream.send_credit
            value = credit.value
            if value <= 0:
                return False
            data, metadata = payload.data, payload.metadata
            size = self._fragment_size
            if size is None or len(data) + (len(metadata) + 3 if metadata is not None else 0) + 6 <= size:
                try:
                    if metadata is None and len(data) <= _MAX_PLAIN_PAYLOAD_DATA:
                        encoded = _pack_header(stream_id, _PAYLOAD_NEXT_WORD) + data  # encode_payload inlined
                    else:
                        encoded = encode_payload(stream_id, data, metadata, FLAG_NEXT)
                except FrameTooLargeError as exc:
                    raise PayloadTooLargeError(str(exc)) from exc
                except TypeError as exc:
                    raise LocalProtocolError(f"cannot encode the payload: {exc}") from exc
                if value < MAX_REQUEST_N:
                    credit.value = value - 1
                if self._store is not None:
                    self._keep(encoded)
                self._outbox.append(encoded)  # _queue, inlined
                self.bytes_to_send += len(encoded)
                return True
        self._send_payload_checked(stream_id, payload, False)
        return True

    def _send_payload_checked(self, stream_id: int, payload: Payload, complete: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._live_stream(stream_id)  # raises: not open, or the connection ended
        if stream.kind is _RR:
            complete = True
        event = _SEND_PAYLOAD_INPUTS[complete]
        target = stream.table.get((stream.state, event))
        if target is None:
            target = self._require(stream, event)  # raises
        credit = stream.send_credit
        if credit.value <= 0:
            raise LocalProtocolError(f"no credit to send on stream {stream_id}: wait for REQUEST_N")
        flags = FLAG_NEXT | (FLAG_COMPLETE if complete else 0)
        frames = self._encode_payload(stream_id, payload.data, payload.metadata, flags)
        if stream.kind is not _RR:  # one answer: the table allows no second (credit is shared)
            credit.consume()
        for encoded in frames:
            self._queue(encoded)
        self._set_state(stream, target)

    def send_complete(self, stream_id: int) -> None:
        """Complete our half (PAYLOAD C, no credit needed, RN2); on request-response: "no value"."""
        stream = self._live_stream(stream_id)
        target = self._require(stream, StreamInput.SEND_COMPLETE)
        self._queue(self._encode_payload(stream_id, b"", None, FLAG_COMPLETE)[0])
        self._set_state(stream, target)

    def send_error(self, stream_id: int, error_code: int, message: str = "") -> None:
        """End the stream with ERROR (a stream-level code: APPLICATION_ERROR, REJECTED, ... E2)."""
        stream = self._live_stream(stream_id)
        if error_code in CONNECTION_ERROR_CODES or not 0 < error_code <= 0xFFFFFFFF:
            raise LocalProtocolError(f"0x{error_code:08X} is not a stream-level error code")
        target = self._require(stream, StreamInput.SEND_ERROR)
        self._queue_frame(ErrorFrame(stream_id, error_code, message.encode("utf-8", "replace")))
        self._set_state(stream, target)

    def request_n(self, stream_id: int, n: int) -> int:
        """Grant the peer ``n`` more items (RN1); return how many REQUEST_N actually carried.

        0 means nothing was sent: the credit already saturated at 2^31-1 (RN4).
        """
        n = _check_n("n", n)
        stream = self._live_stream(stream_id)
        target = self._require(stream, StreamInput.SEND_REQUEST_N)
        added = stream.recv_credit.grant(n)
        if added:
            self._queue_frame(RequestNFrame(stream_id, added))
        stream.state = target
        return added

    def cancel(self, stream_id: int) -> None:
        """Send CANCEL: a requester abandons the stream; a channel responder stops the requester's half."""
        stream = self._live_stream(stream_id)
        event = StreamInput.SEND_CANCEL if stream.local else StreamInput.SEND_STOP
        target = self._require(stream, event)
        self._queue_frame(CancelFrame(stream_id))
        self._reassembly.discard(stream_id)  # FG7: a partial inbound item is moot
        self._set_state(stream, target)

    def set_payload_sink(self, stream_id: int, sink: PayloadSink | None) -> None:
        """Route this stream's PAYLOADs to ``sink(data, metadata, flags)`` instead of PayloadReceived.

        ``flags`` holds the N and C bits (C always set for request-response). Credit and state are
        handled by the core as usual, and StreamEnded still follows the last item. The sink runs inside
        ``receive_frames`` and must not raise. ``None`` goes back to events.
        """
        self._live_stream(stream_id).sink = sink

    # --- connection intents --------------------------------------------------------------------

    def metadata_push(self, metadata: bytes) -> None:
        """Queue METADATA_PUSH (MP1); not a request: no lease, no stream."""
        self._check_can_request()
        try:
            encoded = encode_frame(MetadataPushFrame(metadata))
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(f"cannot encode METADATA_PUSH: {exc}") from exc
        self._queue(encoded)

    def send_lease(
        self, ttl: float, number_of_requests: int, metadata: bytes | None = None, *, now: float | None = None
    ) -> None:
        """Grant the peer a new lease now (it replaces the previous one, L1); ``ttl`` in seconds."""
        self._check_not_ended()
        if not self._lease.enabled:
            raise LocalProtocolError("leasing was not negotiated in SETUP")
        try:
            lease = Lease(ttl, number_of_requests, metadata)
            frame = self._lease.issue(lease, self._now if now is None else now)
            self._queue_frame(frame)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from exc

    def close(self, error_code: int | None = None, message: str = "", *, drain: bool = False) -> list[Event]:
        """End the connection.

        - ``drain=True``: send ERROR[CONNECTION_CLOSE]; live streams may finish, new requests both
          ways are refused, and the connection ends with the last stream (E2).
        - otherwise: end now, after queueing ERROR[``error_code``] on stream 0 when one is given
          (without one nothing is sent, as the AnyIO peer's ``aclose``).
        """
        if error_code is not None and not 0 <= error_code <= 0xFFFFFFFF:
            raise LocalProtocolError(f"error code {error_code} is not an unsigned 32-bit value")
        if drain and error_code not in (None, ErrorCode.CONNECTION_CLOSE):
            raise LocalProtocolError("draining closes with CONNECTION_CLOSE only")
        if self._phase is Phase.CLOSED or (drain and self._draining):
            return self._take_events()
        if drain:
            error_code = ErrorCode.CONNECTION_CLOSE
        if error_code is not None and (self._phase is not Phase.IDLE or not self._client):
            self._queue_frame(ErrorFrame(0, error_code, message.encode("utf-8", "replace")))
        if drain and self._streams and self._phase is Phase.OPEN:
            self._draining = True
            self._drain_local = True
        else:
            code = ErrorCode.CONNECTION_CLOSE if error_code is None else error_code
            self._terminate(code, message or "connection closed locally", TerminationCause.LOCAL)
        return self._take_events()
