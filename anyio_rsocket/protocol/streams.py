"""Per-stream state machines: one transition table per interaction kind (checklist section 7).

Every stream has two halves: ours (what we send) and the peer's (what we receive). States name which
halves are still open, as in h2: ``OPEN`` (both), ``HALF_CLOSED_LOCAL`` (we sent our last item),
``HALF_CLOSED_REMOTE`` (the peer sent its last item), ``CLOSED`` (the stream is over and its id is
released). A request-response or request-stream requester starts half-closed-local: its request was
its only item; the responder starts half-closed-remote for the same reason.

Each table maps ``(state, input) -> new state``. For an input we *send*, a missing entry is API misuse
(:class:`~.errors.LocalProtocolError`). For an input we *receive*, a missing entry means the frame is
ignored (U2: the protocol is lenient about frames that make no sense in a stream's state; U4: a
PAYLOAD with neither N nor C carries nothing and ends nothing, except on request-response, IX2).

CANCEL means different things depending on who sends it, so it is two inputs per direction:

- ``SEND_CANCEL`` / ``RECV_CANCEL``: the requester abandons the whole stream (IX1, IX4, IX5);
- ``SEND_STOP`` / ``RECV_STOP``: a channel responder stops consuming the requester's half only
  ([java] behaviour the checklist says to accept, IX5); the responder's own half stays open.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import ClassVar, cast

from ..wire.frames import FLAG_COMPLETE, FLAG_NEXT
from .credit import Credit


class InteractionKind(Enum):
    """The four request types (checklist section 7)."""

    REQUEST_RESPONSE = "request-response"
    FIRE_AND_FORGET = "fire-and-forget"
    REQUEST_STREAM = "request-stream"
    REQUEST_CHANNEL = "request-channel"

    __hash__ = object.__hash__  # members are singletons: identity hashing is exact and cheaper


class StreamState(Enum):
    """Which halves of a stream are still open."""

    IDLE = "idle"
    OPEN = "open"
    HALF_CLOSED_LOCAL = "half-closed-local"
    HALF_CLOSED_REMOTE = "half-closed-remote"
    CLOSED = "closed"

    __hash__ = object.__hash__  # members are singletons: identity hashing is exact and cheaper


class StreamInput(Enum):
    """What can happen to a stream: a frame we send (SEND_*) or receive (RECV_*)."""

    SEND_REQUEST = "send request"
    SEND_REQUEST_COMPLETE = "send request with C"  # REQUEST_CHANNEL whose only element is the first
    RECV_REQUEST = "receive request"
    RECV_REQUEST_COMPLETE = "receive request with C"
    SEND_NEXT = "send PAYLOAD N"
    SEND_NEXT_COMPLETE = "send PAYLOAD N|C"
    SEND_COMPLETE = "send PAYLOAD C"
    RECV_NEXT = "receive PAYLOAD N"
    RECV_NEXT_COMPLETE = "receive PAYLOAD N|C"
    RECV_COMPLETE = "receive PAYLOAD C"
    RECV_EMPTY = "receive PAYLOAD without N or C"  # U4
    SEND_REQUEST_N = "send REQUEST_N"
    RECV_REQUEST_N = "receive REQUEST_N"
    SEND_CANCEL = "send CANCEL (requester)"
    RECV_CANCEL = "receive CANCEL (as responder)"
    SEND_STOP = "send CANCEL (channel responder)"
    RECV_STOP = "receive CANCEL (as requester)"
    SEND_ERROR = "send ERROR"
    RECV_ERROR = "receive ERROR"

    __hash__ = object.__hash__


S = StreamState
I = StreamInput  # noqa: E741 - the tables read better with one-letter names
OPEN, HCL, HCR, CLOSED, IDLE = S.OPEN, S.HALF_CLOSED_LOCAL, S.HALF_CLOSED_REMOTE, S.CLOSED, S.IDLE

Table = dict[tuple[StreamState, StreamInput], StreamState]

#: IX1, IX2: one request, one answer (a PAYLOAD with or without N or C ends it), or CANCEL / ERROR.
REQUEST_RESPONSE_TRANSITIONS: Table = {
    (IDLE, I.SEND_REQUEST): HCL,
    (IDLE, I.RECV_REQUEST): HCR,
    # requester
    (HCL, I.RECV_NEXT): CLOSED,  # IX2: a PAYLOAD without C ends request-response too
    (HCL, I.RECV_NEXT_COMPLETE): CLOSED,
    (HCL, I.RECV_COMPLETE): CLOSED,  # C only: an answer without a value
    (HCL, I.RECV_EMPTY): CLOSED,  # neither N nor C: an empty answer, like the AnyIO peer
    (HCL, I.RECV_ERROR): CLOSED,
    (HCL, I.SEND_CANCEL): CLOSED,
    # responder (RN7: REQUEST_N is ignored; an inbound PAYLOAD means nothing)
    (HCR, I.SEND_NEXT_COMPLETE): CLOSED,
    (HCR, I.SEND_COMPLETE): CLOSED,
    (HCR, I.SEND_ERROR): CLOSED,
    (HCR, I.RECV_CANCEL): CLOSED,
    (HCR, I.RECV_ERROR): CLOSED,
}

#: IX3: a single frame; the stream is over on both sides at once and its id is never registered.
FIRE_AND_FORGET_TRANSITIONS: Table = {
    (IDLE, I.SEND_REQUEST): CLOSED,
    (IDLE, I.RECV_REQUEST): CLOSED,
}

#: IX4: items from the responder within credit, ended by COMPLETE or ERROR, or by the requester's CANCEL.
REQUEST_STREAM_TRANSITIONS: Table = {
    (IDLE, I.SEND_REQUEST): HCL,
    (IDLE, I.RECV_REQUEST): HCR,
    # requester
    (HCL, I.RECV_NEXT): HCL,
    (HCL, I.RECV_NEXT_COMPLETE): CLOSED,
    (HCL, I.RECV_COMPLETE): CLOSED,
    (HCL, I.RECV_ERROR): CLOSED,
    (HCL, I.SEND_REQUEST_N): HCL,
    (HCL, I.SEND_CANCEL): CLOSED,
    # responder
    (HCR, I.SEND_NEXT): HCR,
    (HCR, I.SEND_NEXT_COMPLETE): CLOSED,
    (HCR, I.SEND_COMPLETE): CLOSED,
    (HCR, I.SEND_ERROR): CLOSED,
    (HCR, I.RECV_REQUEST_N): HCR,
    (HCR, I.RECV_CANCEL): CLOSED,
    (HCR, I.RECV_ERROR): CLOSED,
}

#: IX5: two half-streams on one id; over once both completed, or at once on ERROR or requester CANCEL.
REQUEST_CHANNEL_TRANSITIONS: Table = {
    (IDLE, I.SEND_REQUEST): OPEN,
    (IDLE, I.SEND_REQUEST_COMPLETE): HCL,
    (IDLE, I.RECV_REQUEST): OPEN,
    (IDLE, I.RECV_REQUEST_COMPLETE): HCR,
    # both halves open
    (OPEN, I.SEND_NEXT): OPEN,
    (OPEN, I.SEND_NEXT_COMPLETE): HCL,
    (OPEN, I.SEND_COMPLETE): HCL,
    (OPEN, I.RECV_NEXT): OPEN,
    (OPEN, I.RECV_NEXT_COMPLETE): HCR,
    (OPEN, I.RECV_COMPLETE): HCR,
    (OPEN, I.SEND_REQUEST_N): OPEN,
    (OPEN, I.RECV_REQUEST_N): OPEN,
    (OPEN, I.SEND_CANCEL): CLOSED,
    (OPEN, I.RECV_CANCEL): CLOSED,
    (OPEN, I.SEND_STOP): HCR,  # we (responder) stop consuming the requester's half
    (OPEN, I.RECV_STOP): HCL,  # the responder stopped consuming our half; we keep receiving
    (OPEN, I.SEND_ERROR): CLOSED,
    (OPEN, I.RECV_ERROR): CLOSED,
    # our half complete: we still receive
    (HCL, I.RECV_NEXT): HCL,
    (HCL, I.RECV_NEXT_COMPLETE): CLOSED,
    (HCL, I.RECV_COMPLETE): CLOSED,
    (HCL, I.SEND_REQUEST_N): HCL,
    (HCL, I.RECV_REQUEST_N): HCL,
    (HCL, I.SEND_CANCEL): CLOSED,
    (HCL, I.RECV_CANCEL): CLOSED,
    (HCL, I.SEND_STOP): CLOSED,
    (HCL, I.RECV_STOP): HCL,
    (HCL, I.SEND_ERROR): CLOSED,  # IX5: the requester may send ERROR even after completing
    (HCL, I.RECV_ERROR): CLOSED,
    # the peer's half complete: we still send
    (HCR, I.SEND_NEXT): HCR,
    (HCR, I.SEND_NEXT_COMPLETE): CLOSED,
    (HCR, I.SEND_COMPLETE): CLOSED,
    (HCR, I.RECV_REQUEST_N): HCR,
    (HCR, I.SEND_CANCEL): CLOSED,
    (HCR, I.RECV_CANCEL): CLOSED,
    (HCR, I.RECV_STOP): CLOSED,  # our half stopped and theirs done: nothing is left
    (HCR, I.SEND_ERROR): CLOSED,
    (HCR, I.RECV_ERROR): CLOSED,
}

TRANSITIONS: dict[InteractionKind, Table] = {
    InteractionKind.REQUEST_RESPONSE: REQUEST_RESPONSE_TRANSITIONS,
    InteractionKind.FIRE_AND_FORGET: FIRE_AND_FORGET_TRANSITIONS,
    InteractionKind.REQUEST_STREAM: REQUEST_STREAM_TRANSITIONS,
    InteractionKind.REQUEST_CHANNEL: REQUEST_CHANNEL_TRANSITIONS,
}

#: Received PAYLOAD flags (N and C bits of the type word) -> input.
RECV_PAYLOAD_INPUTS: dict[int, StreamInput] = {
    FLAG_NEXT: I.RECV_NEXT,
    FLAG_NEXT | FLAG_COMPLETE: I.RECV_NEXT_COMPLETE,
    FLAG_COMPLETE: I.RECV_COMPLETE,
    0: I.RECV_EMPTY,
}


def _payload_moves(table: Table) -> dict[StreamState, tuple[StreamState | None, ...]]:
    """For each state, the target of a received PAYLOAD indexed by ``(flags & (N | C)) >> 5``.

    Derived from the tables (they stay the only source of truth) so that the hot path looks up a
    tuple instead of hashing a ``(state, input)`` pair.
    """
    return {
        state: tuple(table.get((state, RECV_PAYLOAD_INPUTS[flags << 5])) for flags in range(4))
        for state in StreamState
    }


PAYLOAD_MOVES = {kind: _payload_moves(table) for kind, table in TRANSITIONS.items()}
#: States in which a received PAYLOAD with N only leaves the state as it is (the receiving hot path).
KEEPS_ON_NEXT = {
    kind: frozenset(state for state, moves in PAYLOAD_MOVES[kind].items() if moves[1] is state)
    for kind in TRANSITIONS
}
#: States in which we may send PAYLOAD N, which never changes the state (the sending hot path).
SENDS_NEXT = {
    kind: frozenset(state for state in StreamState if table.get((state, I.SEND_NEXT)) is state)
    for kind, table in TRANSITIONS.items()
}

#: ``sink(data, metadata, flags)``: a driver's per-stream callback for PAYLOADs (flags: N and C bits).
PayloadSink = Callable[[bytes, "bytes | None", int], None]


class Stream:
    """One live stream: its kind, our role, the state of both halves and the credit each way.

    ``send_credit`` is what the peer allows us to send; ``recv_credit`` is what we allowed the peer
    (inbound items beyond it are a stream violation, RN6). ``sink``, when set by a driver, receives
    this stream's PAYLOADs instead of :class:`~.events.PayloadReceived` events.

    Each interaction kind has its own subclass (see :data:`STREAM_TYPES` and :func:`new_stream`)
    holding that kind's tables as class attributes: a stream is created per request, so its
    constructor sets only what differs between streams.
    """

    __slots__ = ("local", "recv_credit", "send_credit", "sink", "state", "stream_id")

    kind: ClassVar[InteractionKind]
    table: ClassVar[Table]
    payload_moves: ClassVar[dict[StreamState, tuple[StreamState | None, ...]]]
    keeps_on_next: ClassVar[frozenset[StreamState]]
    sends_next: ClassVar[frozenset[StreamState]]

    def __init__(
        self, stream_id: int, local: bool, state: StreamState, send_credit: int = 0, recv_credit: int = 0
    ) -> None:
        self.stream_id = stream_id
        self.local = local  # we are the requester
        self.state = state
        self.send_credit = Credit(send_credit)
        self.recv_credit = Credit(recv_credit)
        self.sink: PayloadSink | None = None

    def next_state(self, event: StreamInput) -> StreamState | None:
        """The state ``event`` leads to, or None when the table has no entry for it."""
        return self.table.get((self.state, event))

    def __repr__(self) -> str:
        role = "requester" if self.local else "responder"
        return f"<Stream {self.stream_id} {self.kind.value} {role} {self.state.value}>"


#: The :class:`Stream` subclass of each interaction kind.
STREAM_TYPES: dict[InteractionKind, type[Stream]] = {
    kind: cast(
        "type[Stream]",
        type(
            f"{kind.name.title().replace('_', '')}Stream",
            (Stream,),
            {
                "__slots__": (),
                "kind": kind,
                "table": TRANSITIONS[kind],
                "payload_moves": PAYLOAD_MOVES[kind],
                "keeps_on_next": KEEPS_ON_NEXT[kind],
                "sends_next": SENDS_NEXT[kind],
            },
        ),
    )
    for kind in InteractionKind
}


def _without_credit_objects(
    self: Stream, stream_id: int, local: bool, state: StreamState, send_credit: int = 0, recv_credit: int = 0
) -> None:
    self.stream_id = stream_id
    self.local = local
    self.state = state
    self.sink = None


def _request_response_type(local: bool) -> type[Stream]:
    """Request-response streams carry one item each way, which the state table alone enforces, so
    they share their (never changed) credit values instead of allocating two per request."""
    return cast(
        "type[Stream]",
        type(
            "RequestResponseRequesterStream" if local else "RequestResponseResponderStream",
            (STREAM_TYPES[InteractionKind.REQUEST_RESPONSE],),
            {
                "__slots__": (),
                "__init__": _without_credit_objects,
                "send_credit": Credit(0 if local else 1),
                "recv_credit": Credit(0),
            },
        ),
    )


#: The stream types of a request-response we sent (requester) and one we received (responder).
RR_REQUESTER_STREAM = _request_response_type(local=True)
RR_RESPONDER_STREAM = _request_response_type(local=False)


def _requester_credit_only(
    self: Stream, stream_id: int, local: bool, state: StreamState, send_credit: int = 0, recv_credit: int = 0
) -> None:
    self.stream_id = stream_id
    self.local = local
    self.state = state
    self.recv_credit = Credit(recv_credit)
    self.sink = None


def _responder_credit_only(
    self: Stream, stream_id: int, local: bool, state: StreamState, send_credit: int = 0, recv_credit: int = 0
) -> None:
    self.stream_id = stream_id
    self.local = local
    self.state = state
    self.send_credit = Credit(send_credit)
    self.sink = None


def _request_stream_type(local: bool) -> type[Stream]:
    """Request-stream items go one way: the requester never sends one and the responder never
    receives one (the state table refuses both before credit is looked at, as it refuses REQUEST_N
    the other way), so that unused credit is one shared zero instead of an object per stream."""
    unused = "send_credit" if local else "recv_credit"
    return cast(
        "type[Stream]",
        type(
            "RequestStreamRequesterStream" if local else "RequestStreamResponderStream",
            (STREAM_TYPES[InteractionKind.REQUEST_STREAM],),
            {
                "__slots__": (),
                "__init__": _requester_credit_only if local else _responder_credit_only,
                unused: Credit(0),
            },
        ),
    )


#: The stream types of a request-stream we sent (requester) and one we received (responder).
STREAM_REQUESTER_STREAM = _request_stream_type(local=True)
STREAM_RESPONDER_STREAM = _request_stream_type(local=False)


def new_stream(
    stream_id: int,
    kind: InteractionKind,
    local: bool,
    opened_by: StreamInput,
    send_credit: int = 0,
    recv_credit: int = 0,
) -> Stream:
    """A stream of ``kind`` in the state its opening request (sent or received) leads to."""
    if kind is InteractionKind.REQUEST_STREAM:
        cls = STREAM_REQUESTER_STREAM if local else STREAM_RESPONDER_STREAM
    elif kind is InteractionKind.REQUEST_RESPONSE:
        cls = RR_REQUESTER_STREAM if local else RR_RESPONDER_STREAM
    else:
        cls = STREAM_TYPES[kind]
    return cls(stream_id, local, cls.table[(StreamState.IDLE, opened_by)], send_credit, recv_credit)
