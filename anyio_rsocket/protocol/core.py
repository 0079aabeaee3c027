"""Shared state of the sans-IO connection: the outbox, the stream table, termination.

:class:`ProtocolConnection` (in :mod:`.connection`) is built in three layers, each a small class:
this base (state, the single exit for outgoing frames, stream release, termination), the inbound
layer (:mod:`.inbound`: parsing and dispatching received frames) and the public API (local intents,
timers, SETUP).
"""

from __future__ import annotations

from enum import Enum

from ..wire.errors import ErrorCode, FrameTooLargeError
from ..wire.fragmentation import FragmentableFrame, fragment, needs_fragmentation
from ..wire.frames import (
    FLAG_COMPLETE,
    FLAG_NEXT,
    ErrorFrame,
    Frame,
    KeepaliveFrame,
    PayloadFrame,
    SetupFrame,
    encode_frame,
    encode_payload,
)
from ..wire.framing import FrameBuffer
from .config import ProtocolConfig
from .errors import (
    ConnectionClosingError,
    ConnectionEndedError,
    LocalProtocolError,
    PayloadTooLargeError,
    RemoteProtocolError,
)
from .events import (
    ConnectionEstablished,
    ConnectionTerminated,
    Event,
    SessionResumed,
    StreamEnded,
    TerminationCause,
)
from .ids import StreamIdAllocator
from .keepalive import KeepaliveClock
from .leases import LeaseBook
from .reassembly import ReassemblyTable
from .resumption import SentFrameStore, is_resumable
from .streams import InteractionKind, Stream, StreamInput, StreamState


class Phase(Enum):
    """Where the connection is in its life."""

    IDLE = "idle"  # client before initiate(), server before the first frame
    SETUP_RECEIVED = "setup received"  # server: SETUP valid, waiting for accept_setup()/reject_setup()
    #: server: the connection opened with RESUME; the driver hands it to a session or reject_resume()
    RESUME_RECEIVED = "resume received"
    OPEN = "open"  # requests may flow (draining is a flag on top of this phase)
    CLOSED = "closed"  # terminated; only data_to_send() still has something to give


class CoreBase:
    """State and bookkeeping shared by the inbound and the local halves of the core."""

    def __init__(self, *, client: bool, config: ProtocolConfig | None = None) -> None:
        config = config or ProtocolConfig()
        self.config = config
        self._fragment_size = config.fragment_size
        self._client = client
        self._ids = StreamIdAllocator(client, config.max_stream_id)
        self._our_parity = 1 if client else 0  # stream ids we open are odd (client) or even (ID1)
        self._streams: dict[int, Stream] = {}
        self._inbound_live = 0  # registered streams the peer opened (admission limit)
        self._reassembly = ReassemblyTable(config.max_reassembled_size)
        self._outbox: list[bytes] = []
        #: Bytes of the frames queued and not yet taken by :meth:`data_to_send` (back-pressure).
        #: A plain attribute (read it, never set it): drivers read it after every item they send.
        self.bytes_to_send = 0
        self._events: list[Event] = []
        self._phase = Phase.IDLE
        self._established = False
        self._draining = False
        self._drain_local = False  # we sent the CONNECTION_CLOSE that started draining
        self._setup: SetupFrame | None = None
        self._held: list[bytes] = []  # frames after SETUP, held until accept_setup()
        self._keepalive = KeepaliveClock()
        self._lease = LeaseBook()
        self._now = 0.0
        self._termination: ConnectionTerminated | None = None
        self._frame_buffer: FrameBuffer | None = None
        # Resumption (checklist section 14); all idle unless the session is resumable.
        self._store: SentFrameStore | None = None  # resumable frames sent and not yet confirmed (R3)
        self._received_position = 0  # implied position of what we received (R2)
        self._resume_token: bytes | None = None
        self._session_deadline: float | None = None  # set while detached: when the session ends
        self._resuming = False  # client: RESUME sent on a new transport, RESUME_OK awaited (R4)
        self._position_asked = False  # store past half full: we asked the peer for its position
        #: The resume store holds ``resume_store_size`` bytes or more: producers must wait for the
        #: peer's confirmation. A plain attribute (read it, never set it), for the same reason as
        #: ``bytes_to_send``.
        self.store_full = False
        #: The last keepalive round trip in seconds (None before the first echo came back).
        self.rtt: float | None = None
        self._ping_sent_at: float | None = None  # when our unanswered KEEPALIVE(R) went out

    # --- read-only view ------------------------------------------------------------------------

    @property
    def is_client(self) -> bool:
        return self._client

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def established(self) -> bool:
        """Client: the server accepted SETUP (S4). Server: accept_setup() was called."""
        return self._established

    @property
    def draining(self) -> bool:
        """CONNECTION_CLOSE was sent or received while streams were live (E2)."""
        return self._draining

    @property
    def closed(self) -> bool:
        return self._phase is Phase.CLOSED

    @property
    def termination(self) -> ConnectionTerminated | None:
        """The event that ended the connection, once it has ended."""
        return self._termination

    @property
    def setup(self) -> SetupFrame | None:
        """The SETUP sent (client) or received (server)."""
        return self._setup

    @property
    def resumable(self) -> bool:
        """The session was set up with a resume token (R1): it may outlive its transport."""
        return self._store is not None

    @property
    def detached(self) -> bool:
        """A resumable session without a transport, waiting to be resumed (see :meth:`detach`)."""
        return self._session_deadline is not None

    @property
    def resume_token(self) -> bytes | None:
        return self._resume_token

    @property
    def received_position(self) -> int:
        """Implied position of the resumable frames received so far (R2)."""
        return self._received_position

    @property
    def sent_position(self) -> int:
        """Implied position of the resumable frames sent so far (0 unless resumable)."""
        return 0 if self._store is None else self._store.position

    @property
    def unconfirmed_bytes(self) -> int:
        """Bytes of sent frames the peer has not confirmed (what ``resume_store_size`` bounds)."""
        return 0 if self._store is None else self._store.size

    def store_has_room(self) -> bool:
        """Whether a producer may queue another frame now (always, unless resumable and full).

        A frame is admitted while the store holds less than its capacity, so the store exceeds its
        capacity by at most the last frame admitted; an empty store takes any frame.
        """
        return not self.store_full

    @property
    def lease_enabled(self) -> bool:
        return self._lease.enabled

    @property
    def inbound_requests(self) -> int:
        """Live streams the peer opened (what ``max_concurrent_requests`` limits)."""
        return self._inbound_live

    @property
    def open_streams(self) -> int:
        """How many streams are live."""
        return len(self._streams)

    def stream_ids(self) -> list[int]:
        """Ids of every registered (live) stream."""
        return list(self._streams)

    def stream_state(self, stream_id: int) -> StreamState | None:
        """A live stream's state; None when the id is not registered."""
        stream = self._streams.get(stream_id)
        return None if stream is None else stream.state

    def stream_kind(self, stream_id: int) -> InteractionKind | None:
        stream = self._streams.get(stream_id)
        return None if stream is None else stream.kind

    def send_credit(self, stream_id: int) -> int:
        """Items we may still send on a live stream (2^31-1: unbounded); 0 for unknown ids."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.send_credit.value

    def recv_credit(self, stream_id: int) -> int:
        """Items the peer may still send us on a live stream (2^31-1: unbounded); 0 for unknown ids."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.recv_credit.value

    # --- output --------------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """The encoded frames queued so far (unprefixed, in order); the queue is emptied.

        Nothing while a resumable session is detached: its frames wait in the store for the
        replay that follows the resume.
        """
        if self._session_deadline is not None:
            return []
        frames, self._outbox = self._outbox, []
        self.bytes_to_send = 0
        return frames

    def pop_events(self) -> list[Event]:
        """Events caused by local calls (a stream released, a drain finished) not yet returned.

        ``receive_frames``, ``handle_timer`` and the other event-returning calls include these too,
        in order; this is for a driver that needs them before its next input.
        """
        events, self._events = self._events, []
        return events

    def _queue(self, frame: bytes) -> None:
        """The exit of every outgoing frame.

        Three hot paths (a request-response sent, its answer, a stream item) append to the outbox
        themselves; each is marked ``# _queue, inlined`` and keeps its frame as this does. On a
        resumable session, resumable frames (R2) advance the implied send position and are kept
        until the peer's KEEPALIVE confirms them (R3).
        """
        if self._store is not None and is_resumable(frame):
            self._keep(frame)
        self._outbox.append(frame)
        self.bytes_to_send += len(frame)

    def _keep(self, frame: bytes) -> None:
        """Keep a resumable frame for replay; past half the store, ask the peer where it is.

        KEEPALIVE(R) makes the peer echo with its received position (K4), so the store is trimmed
        even when the peer's own keepalives are rare or have stopped (rsocket-js after a resume).
        """
        store = self._store
        assert store is not None
        store.add(frame)
        if store.size >= store.capacity:
            self.store_full = True
        if not self._position_asked and store.size * 2 > store.capacity and self._session_deadline is None:
            self._position_asked = True
            keepalive = encode_frame(KeepaliveFrame(True, self._received_position))
            self._outbox.append(keepalive)
            self.bytes_to_send += len(keepalive)

    def _confirm(self, position: int) -> None:
        """The peer reports receiving everything up to ``position``: trim the store (R3)."""
        store = self._store
        assert store is not None
        if position > store.position:
            raise RemoteProtocolError(
                f"the peer reports position {position}, beyond the {store.position} we sent"
            )
        store.confirm(position)
        self.store_full = store.size >= store.capacity
        if store.size * 2 <= store.capacity:
            self._position_asked = False

    def _reattach(self, replay: list[bytes], now: float) -> None:
        """Continue on the new transport: replay, restart keepalives, report SessionResumed.

        What was queued while detached is dropped from the outbox: its resumable frames are in
        ``replay``, and the rest (keepalives, a lease) meant nothing to the old transport.
        """
        if self._client:
            self._outbox = []
            self.bytes_to_send = 0
        for frame in replay:
            self._outbox.append(frame)  # already kept and counted: never through _queue again
            self.bytes_to_send += len(frame)
        self._session_deadline = None
        self._resuming = False
        self._keepalive.restart(now)
        self._events.append(SessionResumed())

    # --- encoding ------------------------------------------------------------------------------

    def _encode_item(self, frame: FragmentableFrame) -> list[bytes]:
        """Encode a request or PAYLOAD, fragmented when it exceeds ``fragment_size`` (FG2)."""
        size = self.config.fragment_size
        try:
            if size is not None and needs_fragmentation(frame, size):
                return [encode_frame(piece) for piece in fragment(frame, size)]
            return [encode_frame(frame)]
        except FrameTooLargeError as exc:
            raise PayloadTooLargeError(str(exc)) from exc
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(f"cannot encode the frame: {exc}") from exc

    def _encode_payload(self, stream_id: int, data: bytes, metadata: bytes | None, flags: int) -> list[bytes]:
        """PAYLOAD frames for one item (the hot path of streams), fragmented as configured."""
        size = self.config.fragment_size
        if size is None or len(data) + (len(metadata) + 3 if metadata is not None else 0) + 6 <= size:
            try:
                return [encode_payload(stream_id, data, metadata, flags)]
            except FrameTooLargeError as exc:
                raise PayloadTooLargeError(str(exc)) from exc
            except TypeError as exc:
                raise LocalProtocolError(f"cannot encode the payload: {exc}") from exc
        frame = PayloadFrame(
            stream_id, data, metadata, complete=bool(flags & FLAG_COMPLETE), next=bool(flags & FLAG_NEXT)
        )
        return self._encode_item(frame)

    def _queue_frame(self, frame: Frame) -> None:
        """Encode and queue a frame that cannot fail to encode (control frames we build ourselves)."""
        self._queue(encode_frame(frame))

    # --- streams -------------------------------------------------------------------------------

    def _set_state(self, stream: Stream, state: StreamState) -> None:
        """Move ``stream`` to ``state``; a CLOSED stream is released (its id becomes free)."""
        stream.state = state
        if state is StreamState.CLOSED:
            self._release(stream)

    def _release(self, stream: Stream) -> None:
        stream_id = stream.stream_id
        if self._streams.get(stream_id) is not stream:
            return
        del self._streams[stream_id]
        if not stream.local:
            self._inbound_live -= 1
        if self._reassembly.partials:
            self._reassembly.discard(stream_id)
        stream.state = StreamState.CLOSED
        stream.sink = None
        self._events.append(StreamEnded(stream_id))
        if self._draining and not self._streams:
            if self._drain_local:
                self._terminate(
                    ErrorCode.CONNECTION_CLOSE, "connection closed locally", TerminationCause.LOCAL
                )
            else:
                self._terminate(
                    ErrorCode.CONNECTION_CLOSE,
                    "connection closed by peer (CONNECTION_CLOSE)",
                    TerminationCause.PEER_CLOSED,
                )

    def _live_stream(self, stream_id: int) -> Stream:
        """The registered stream ``stream_id`` for a local intent, or LocalProtocolError."""
        self._check_not_ended()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is not open")
        return stream

    def _require(self, stream: Stream, event: StreamInput) -> StreamState:
        """The state a local ``event`` leads to; LocalProtocolError when the table forbids it."""
        state = stream.next_state(event)
        if state is None:
            role = "requester" if stream.local else "responder"
            raise LocalProtocolError(
                f"cannot {event.value} on {stream.kind.value} stream {stream.stream_id} "
                f"as {role} in state {stream.state.value}"
            )
        return state

    # --- connection state ----------------------------------------------------------------------

    def _check_not_ended(self) -> None:
        if self._phase is Phase.CLOSED:
            reason = self._termination.message if self._termination is not None else "closed"
            raise ConnectionEndedError(f"the connection has ended: {reason}")
        if self._phase is not Phase.OPEN:
            what = "initiate()" if self._client else "accept_setup()"
            raise ConnectionEndedError(f"the connection is not open yet: call {what} first")

    def _check_can_request(self) -> None:
        self._check_not_ended()
        if self._draining:
            raise ConnectionClosingError("the connection is closing (CONNECTION_CLOSE): no new requests")

    def _mark_established(self) -> None:
        if not self._established:
            self._established = True
            if self._client:
                self._events.append(ConnectionEstablished())

    def _violation(self, message: str) -> None:
        """The peer broke the protocol: tell it (ERROR[CONNECTION_ERROR] on stream 0) and end."""
        if self._phase is Phase.CLOSED:
            return
        self._queue_frame(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, message.encode("utf-8", "replace")))
        self._terminate(ErrorCode.CONNECTION_ERROR, message, TerminationCause.PEER_VIOLATION)

    def _terminate(self, error_code: int, message: str, cause: TerminationCause) -> None:
        """End the connection once: every live stream ends with it; queued frames stay to be sent."""
        if self._phase is Phase.CLOSED:
            return
        self._phase = Phase.CLOSED
        self._streams.clear()
        self._inbound_live = 0
        self._reassembly.clear()
        self._held.clear()
        self._keepalive.stop()
        self._lease.stop()
        self._session_deadline = None
        self._resuming = False
        event = ConnectionTerminated(error_code, message, cause)
        self._termination = event
        self._events.append(event)

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
