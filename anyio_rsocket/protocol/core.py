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
    PayloadFrame,
    SetupFrame,
    encode_frame,
    encode_payload,
)
from ..wire.framing import FrameBuffer
from .config import ProtocolConfig
from .errors import ConnectionClosingError, ConnectionEndedError, LocalProtocolError, PayloadTooLargeError
from .events import ConnectionEstablished, ConnectionTerminated, Event, StreamEnded, TerminationCause
from .ids import StreamIdAllocator
from .keepalive import KeepaliveClock
from .leases import LeaseBook
from .reassembly import ReassemblyTable
from .streams import InteractionKind, Stream, StreamInput, StreamState


class Phase(Enum):
    """Where the connection is in its life."""

    IDLE = "idle"  # client before initiate(), server before the first frame
    SETUP_RECEIVED = "setup received"  # server: SETUP valid, waiting for accept_setup()/reject_setup()
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
    def lease_enabled(self) -> bool:
        return self._lease.enabled

    @property
    def inbound_requests(self) -> int:
        """Live streams the peer opened (what ``max_concurrent_requests`` limits)."""
        return self._inbound_live

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
        """The encoded frames queued so far (unprefixed, in order); the queue is emptied."""
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
        themselves; each is marked ``# _queue, inlined``. Resumption hooks in here and at those
        marks: frames on streams other than 0 advance the implied send position and are kept in a
        sent-frame store until the peer's KEEPALIVE confirms them.
        """
        self._outbox.append(frame)
        self.bytes_to_send += len(frame)

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
        event = ConnectionTerminated(error_code, message, cause)
        self._termination = event
        self._events.append(event)

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events
