"""A hypothesis state machine over a pair of cores: random intents on both sides, hostile input, loss.

Invariants, checked after every step:

- nothing is delivered beyond the credit the receiver granted (RN2, RN6);
- a side's registered streams are exactly those it opened or accepted and has not reported ended
  (StreamEnded), so no stream stays registered after it ended, and ids are never reused while live;
- with honest peers and nothing lost, both sides agree on which streams live and in which state;
- only LocalProtocolError escapes a call; a violation ends in ConnectionTerminated, exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import (
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
    SetupFrame,
    encode_frame,
)
from anyio_rsocket.payload import Payload
from anyio_rsocket.protocol import (
    ConnectionTerminated,
    Event,
    InteractionKind,
    LocalProtocolError,
    PayloadReceived,
    ProtocolConfig,
    ProtocolConnection,
    RequestReceived,
    StreamEnded,
    StreamState,
)

from .helpers import Pair

SIDES = ("client", "server")
KINDS = list(InteractionKind)
MIRROR = {
    StreamState.OPEN: StreamState.OPEN,
    StreamState.HALF_CLOSED_LOCAL: StreamState.HALF_CLOSED_REMOTE,
    StreamState.HALF_CLOSED_REMOTE: StreamState.HALF_CLOSED_LOCAL,
}

stream_ids = st.integers(0, 9)
small_bytes = st.binary(max_size=6)
metadata = st.none() | small_bytes
error_codes = st.sampled_from([0x201, 0x202, 0x203, 0x204, 0x101, 0x102, 0x001, 0x003, 0xFFFFFFFE])
frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(PayloadFrame, stream_ids, small_bytes, metadata, st.booleans(), st.booleans(), st.booleans()),
    st.builds(RequestNFrame, stream_ids, st.integers(0, MAX_31)),
    st.builds(CancelFrame, stream_ids),
    st.builds(ErrorFrame, stream_ids, error_codes, small_bytes),
    st.builds(RequestResponseFrame, stream_ids, small_bytes, metadata, st.booleans()),
    st.builds(RequestFireAndForgetFrame, stream_ids, small_bytes, metadata, st.booleans()),
    st.builds(RequestStreamFrame, stream_ids, st.integers(0, MAX_31), small_bytes, metadata, st.booleans()),
    st.builds(
        RequestChannelFrame,
        stream_ids,
        st.integers(0, 5),
        small_bytes,
        metadata,
        st.booleans(),
        st.booleans(),
    ),
    st.builds(KeepaliveFrame, st.booleans(), st.just(0), small_bytes),
    st.builds(LeaseFrame, st.integers(0, 5000), st.integers(0, 5), metadata),
    st.builds(MetadataPushFrame, small_bytes, stream_ids),
    st.builds(ExtFrame, stream_ids, st.integers(1, 9), small_bytes, metadata, st.booleans()),
    st.just(SetupFrame(1000, 5000, "a", "b")),
    st.just(ResumeFrame(b"t", 0, 0)),
)
encoded = frames.map(encode_frame)
raw_frames = st.one_of(
    encoded,
    encoded,  # well-formed frames twice as likely as broken ones
    encoded.flatmap(lambda data: st.integers(0, len(data)).map(lambda n: data[:n])),  # truncated
    st.binary(max_size=16),  # garbage
)


@dataclass
class Side:
    """What the test knows about one side, built only from its calls and its events."""

    live: set[int] = field(default_factory=set)
    granted: dict[int, int] = field(default_factory=dict)  # credit we gave the peer per stream
    received: dict[int, int] = field(default_factory=dict)  # items the peer sent us per stream
    terminations: int = 0


class CorePair(RuleBasedStateMachine):
    pair: Pair

    def __init__(self) -> None:
        super().__init__()
        self.sides = {"client": Side(), "server": Side()}
        self.tainted = False  # raw frames were injected or frames lost: the peers may disagree

    @initialize(fragment=st.booleans())
    def connect(self, fragment: bool) -> None:
        fragment_size = 64 if fragment else None
        client_config = ProtocolConfig(
            max_stream_id=15,
            keepalive_interval=10.0,
            max_lifetime=40.0,
            fragment_size=fragment_size,
            responder_channel_window=2,
        )
        server_config = ProtocolConfig(
            max_stream_id=16,
            max_concurrent_requests=4,
            responder_channel_window=3,
            fragment_size=fragment_size,
            max_reassembled_size=150,
        )
        self.pair = Pair(client_config, server_config)
        self._absorb()

    def conn(self, side: str) -> ProtocolConnection:
        return self.pair.client if side == "client" else self.pair.server

    # --- bookkeeping from events -----------------------------------------------------------------

    def _absorb(self) -> None:
        for side in SIDES:
            self._apply(side, self.pair.take(side))
            self._apply(side, self.conn(side).pop_events())

    def _apply(self, side: str, events: list[Event]) -> None:
        model = self.sides[side]
        for event in events:
            if isinstance(event, RequestReceived) and event.kind is not InteractionKind.FIRE_AND_FORGET:
                assert event.stream_id not in model.live
                model.live.add(event.stream_id)
                model.received[event.stream_id] = 0
                channel = event.kind is InteractionKind.REQUEST_CHANNEL and not event.complete
                window = self.conn(side).config.responder_channel_window
                model.granted[event.stream_id] = window if channel else 0
            elif isinstance(event, PayloadReceived) and event.next:
                model.received[event.stream_id] = model.received.get(event.stream_id, 0) + 1
            elif isinstance(event, StreamEnded):
                assert event.stream_id in model.live, (side, event)
                model.live.discard(event.stream_id)
            elif isinstance(event, ConnectionTerminated):
                model.terminations += 1
                model.live.clear()

    def _call(self, side: str, action: str, *args: object, **kwargs: object) -> object:
        try:
            result = getattr(self.conn(side), action)(*args, **kwargs)
        except LocalProtocolError:
            return None
        finally:
            self._apply(side, self.conn(side).pop_events())
        if isinstance(result, list):  # close() returns its events
            self._apply(side, result)
        return result

    def _pick(self, side: str, index: int) -> int | None:
        live = sorted(self.conn(side).stream_ids())
        return live[index % len(live)] if live else None

    # --- rules -----------------------------------------------------------------------------------

    @rule(
        side=st.sampled_from(SIDES),
        kind=st.sampled_from(KINDS),
        n=st.integers(1, 4),
        complete=st.booleans(),
        size=st.sampled_from([0, 3, 100, 200]),
        pump_after=st.booleans(),
    )
    def open_request(
        self, side: str, kind: InteractionKind, n: int, complete: bool, size: int, pump_after: bool
    ) -> None:
        conn = self.conn(side)
        before = set(conn.stream_ids())
        payload = Payload(b"r" * size, b"m" * (size // 4) if size else None)
        if kind is InteractionKind.REQUEST_RESPONSE:
            stream_id = self._call(side, "request_response", payload)
        elif kind is InteractionKind.FIRE_AND_FORGET:
            stream_id = self._call(side, "fire_and_forget", payload)
        elif kind is InteractionKind.REQUEST_STREAM:
            stream_id = self._call(side, "request_stream", payload, n)
        else:
            stream_id = self._call(side, "request_channel", payload, n, complete)
        if isinstance(stream_id, int):
            assert stream_id not in before  # ids are unique among live streams (ID1, ID2)
            assert stream_id % 2 == (1 if side == "client" else 0)
            if kind is not InteractionKind.FIRE_AND_FORGET:
                model = self.sides[side]
                model.live.add(stream_id)
                model.received[stream_id] = 0
                model.granted[stream_id] = n
        if pump_after:
            self.pump()

    @rule(
        side=st.sampled_from(SIDES),
        index=st.integers(0, 20),
        complete=st.booleans(),
        only_with_credit=st.booleans(),
        size=st.sampled_from([0, 4, 120, 200]),
        pump_after=st.booleans(),
    )
    def send_payload(
        self, side: str, index: int, complete: bool, only_with_credit: bool, size: int, pump_after: bool
    ) -> None:
        conn = self.conn(side)
        live = sorted(conn.stream_ids())
        if only_with_credit:  # mostly aim at streams that can take an item; sometimes misuse the API
            live = [stream_id for stream_id in live if conn.send_credit(stream_id)]
        if live:
            self._call(side, "send_payload", live[index % len(live)], Payload(b"i" * size), complete)
        if pump_after:
            self.pump()

    @rule(side=st.sampled_from(SIDES), finish=st.booleans(), size=st.sampled_from([1, 150]))
    def send_while_credit_lasts(self, side: str, finish: bool, size: int) -> None:
        """Every stream of ``side`` that may send gets items up to its credit (at most 5), then maybe C."""
        conn = self.conn(side)
        for stream_id in sorted(conn.stream_ids()):
            for _ in range(5):
                if not conn.send_credit(stream_id) or stream_id not in conn.stream_ids():
                    break
                self._call(side, "send_payload", stream_id, Payload(b"s" * size))
            if finish and stream_id in conn.stream_ids():
                self._call(side, "send_complete", stream_id)
        self.pump()

    @rule(side=st.sampled_from(SIDES), n=st.integers(1, 3))
    def grant_everywhere(self, side: str, n: int) -> None:
        for stream_id in sorted(self.conn(side).stream_ids()):
            added = self._call(side, "request_n", stream_id, n)
            if isinstance(added, int):
                model = self.sides[side]
                model.granted[stream_id] = min(MAX_31, model.granted.get(stream_id, 0) + added)
        self.pump()

    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 20))
    def send_complete(self, side: str, index: int) -> None:
        stream_id = self._pick(side, index)
        if stream_id is not None:
            self._call(side, "send_complete", stream_id)

    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 20), code=error_codes)
    def send_error(self, side: str, index: int, code: int) -> None:
        stream_id = self._pick(side, index)
        if stream_id is not None:
            self._call(side, "send_error", stream_id, code, "err")

    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 20), n=st.integers(-1, MAX_31 + 1))
    def request_n(self, side: str, index: int, n: int) -> None:
        stream_id = self._pick(side, index)
        if stream_id is None:
            return
        added = self._call(side, "request_n", stream_id, n)
        if isinstance(added, int):
            model = self.sides[side]
            model.granted[stream_id] = min(MAX_31, model.granted.get(stream_id, 0) + added)

    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 20))
    def cancel(self, side: str, index: int) -> None:
        stream_id = self._pick(side, index)
        if stream_id is not None:
            self._call(side, "cancel", stream_id)

    @rule(side=st.sampled_from(SIDES), index=st.integers(0, 20))
    def use_a_payload_sink(self, side: str, index: int) -> None:
        stream_id = self._pick(side, index)
        if stream_id is None:
            return

        def sink(
            data: bytes, metadata: bytes | None, flags: int, side: str = side, sid: int = stream_id
        ) -> None:
            if flags & 0x20:
                received = self.sides[side].received
                received[sid] = received.get(sid, 0) + 1

        self._call(side, "set_payload_sink", stream_id, sink)

    @rule(side=st.sampled_from(SIDES), metadata=small_bytes)
    def metadata_push(self, side: str, metadata: bytes) -> None:
        self._call(side, "metadata_push", metadata)

    @rule()
    def pump(self) -> None:
        self.pair.pump()
        self._absorb()

    @rule(seconds=st.floats(0.5, 30.0))
    def advance_time(self, seconds: float) -> None:
        self.pair.advance(seconds)
        self._absorb()
        self.pair.pump()
        self._absorb()
        self.tainted = True  # one side may time out (K3) before the other hears of it

    @rule(
        side=st.sampled_from(SIDES), raws=st.lists(raw_frames, min_size=1, max_size=4), dice=st.integers(0, 2)
    )
    def inject_raw_frames(self, side: str, raws: list[bytes], dice: int) -> None:
        if dice:
            return  # destructive rules run a quarter of the time, so that streams get to carry items
        self.tainted = True
        events = self.conn(side).receive_frames(raws, self.pair.now)  # must never raise
        self._apply(side, events)

    @rule(
        side=st.sampled_from(SIDES),
        mode=st.sampled_from(["silent", "error", "drain"]),
        lose=st.lists(st.booleans(), max_size=12),
        dice=st.integers(0, 3),
    )
    def close_and_lose_frames_in_flight(self, side: str, mode: str, lose: list[bool], dice: int) -> None:
        if dice:
            return
        conn = self.conn(side)
        if mode == "silent":
            self._call(side, "close")
        elif mode == "error":
            self._call(side, "close", ErrorCode.CONNECTION_ERROR, "bye")
        else:
            self._call(side, "close", None, "draining", drain=True)
        losses = iter(lose)
        self.tainted = True
        self.pair.pump(drop=lambda direction, frame: next(losses, False))
        self._absorb()
        assert conn.closed or conn.draining

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def nothing_beyond_credit(self) -> None:
        for side in SIDES:
            model = self.sides[side]
            conn = self.conn(side)
            for stream_id in model.live:
                kind = conn.stream_kind(stream_id)
                if kind in (InteractionKind.REQUEST_STREAM, InteractionKind.REQUEST_CHANNEL):
                    granted = model.granted.get(stream_id, 0)
                    if granted < MAX_31:
                        assert model.received.get(stream_id, 0) <= granted, (side, stream_id)

    @invariant()
    def registered_streams_match_the_events(self) -> None:
        for side in SIDES:
            conn = self.conn(side)
            assert set(conn.stream_ids()) == self.sides[side].live, side
            assert self.sides[side].terminations == (1 if conn.closed else 0)
            if conn.closed:
                assert conn.next_deadline() is None and conn.stream_ids() == []

    @invariant()
    def honest_peers_agree_on_live_streams(self) -> None:
        client, server = self.pair.client, self.pair.server
        if self.tainted or client.closed or server.closed or client.bytes_to_send or server.bytes_to_send:
            return
        assert set(client.stream_ids()) == set(server.stream_ids())
        for stream_id in client.stream_ids():
            mine, theirs = client.stream_state(stream_id), server.stream_state(stream_id)
            assert mine is not None and MIRROR[mine] is theirs, (stream_id, mine, theirs)


CorePair.TestCase.settings = settings(
    max_examples=75,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_core_pair_state_machine = CorePair.TestCase
