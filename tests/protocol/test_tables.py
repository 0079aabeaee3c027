"""The per-kind transition tables are consistent with each other and with the wire."""

from __future__ import annotations

import pytest

from anyio_rsocket.protocol import TRANSITIONS, InteractionKind, StreamInput, StreamState
from anyio_rsocket.protocol.streams import PAYLOAD_MOVES, RECV_PAYLOAD_INPUTS

I = StreamInput  # noqa: E741
S = StreamState
SENT_AS = {
    I.SEND_REQUEST: I.RECV_REQUEST,
    I.SEND_REQUEST_COMPLETE: I.RECV_REQUEST_COMPLETE,
    I.SEND_NEXT: I.RECV_NEXT,
    I.SEND_NEXT_COMPLETE: I.RECV_NEXT_COMPLETE,
    I.SEND_COMPLETE: I.RECV_COMPLETE,
    I.SEND_REQUEST_N: I.RECV_REQUEST_N,
    I.SEND_CANCEL: I.RECV_CANCEL,
    I.SEND_STOP: I.RECV_STOP,
    I.SEND_ERROR: I.RECV_ERROR,
}
MIRROR = {
    S.IDLE: S.IDLE,
    S.OPEN: S.OPEN,
    S.HALF_CLOSED_LOCAL: S.HALF_CLOSED_REMOTE,
    S.HALF_CLOSED_REMOTE: S.HALF_CLOSED_LOCAL,
    S.CLOSED: S.CLOSED,
}


@pytest.mark.parametrize("kind", list(InteractionKind))
def test_what_one_side_sends_the_other_side_accepts_mirrored(kind: InteractionKind) -> None:
    """(state, SEND_X) -> t on one side implies (mirror(state), RECV_X) -> mirror(t) on the other."""
    table = TRANSITIONS[kind]
    for (state, event), target in table.items():
        if event in SENT_AS:
            assert table.get((MIRROR[state], SENT_AS[event])) is MIRROR[target], (kind, state, event)


@pytest.mark.parametrize("kind", list(InteractionKind))
def test_closed_is_terminal_and_every_state_is_reachable(kind: InteractionKind) -> None:
    table = TRANSITIONS[kind]
    assert not [key for key in table if key[0] is S.CLOSED]
    reached = {S.IDLE}
    frontier = [S.IDLE]
    while frontier:
        state = frontier.pop()
        for (source, _), target in table.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    expected = {S.IDLE, S.CLOSED} if kind is InteractionKind.FIRE_AND_FORGET else set(S) - {S.OPEN}
    if kind is InteractionKind.REQUEST_CHANNEL:
        expected = set(S)
    assert reached == expected


def test_the_payload_fast_path_agrees_with_the_tables() -> None:
    for kind, table in TRANSITIONS.items():
        for state in S:
            for flags, event in RECV_PAYLOAD_INPUTS.items():
                assert PAYLOAD_MOVES[kind][state][flags >> 5] is table.get((state, event))
