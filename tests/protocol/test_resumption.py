"""Resumption bookkeeping, loop-free: positions, the sent-frame store and the RESUME decision (R2-R6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anyio_rsocket.frames import (
    CancelFrame,
    ErrorFrame,
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
    encode_frame,
)
from anyio_rsocket.protocol.resumption import (
    ReceivedPosition,
    SentFrameStore,
    decide_resume,
    is_resumable,
)

SETUP = SetupFrame(
    keepalive_interval=1000,
    max_lifetime=5000,
    metadata_mime_type="application/octet-stream",
    data_mime_type="application/octet-stream",
)


def payload(stream_id: int, size: int) -> bytes:
    return encode_frame(PayloadFrame(stream_id, b"x" * size, next=True))


@pytest.mark.parametrize(
    "frame",
    [
        RequestResponseFrame(1, b"a"),
        RequestFireAndForgetFrame(1, b"a"),
        RequestStreamFrame(1, 5, b"a"),
        RequestChannelFrame(1, 5, b"a"),
        RequestNFrame(1, 5),
        CancelFrame(1),
        PayloadFrame(1, b"a", next=True),
        ErrorFrame(1, 0x201, b"no"),
    ],
)
def test_stream_frames_carry_positions_R2(frame: object) -> None:
    assert is_resumable(encode_frame(frame))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "frame",
    [
        SETUP,
        LeaseFrame(1000, 5),
        KeepaliveFrame(True, 0, b""),
        MetadataPushFrame(b"m"),
        ResumeFrame(b"token", 0, 0),
        ResumeOkFrame(0),
        ErrorFrame(0, 0x101, b"bad"),
    ],
)
def test_connection_frames_carry_no_position_R2(frame: object) -> None:
    assert not is_resumable(encode_frame(frame))  # type: ignore[arg-type]


def test_truncated_input_is_not_resumable() -> None:
    assert not is_resumable(b"\x00\x00")


def test_received_position_counts_only_resumable_bytes_R2() -> None:
    received = ReceivedPosition()
    frames = [payload(1, 10), encode_frame(KeepaliveFrame(True)), encode_frame(RequestNFrame(1, 3))]
    for frame in frames:
        received.count(frame)
    assert received.position == len(frames[0]) + len(frames[2])


def test_store_positions_grow_by_frame_size_and_confirmation_trims_R3() -> None:
    store = SentFrameStore(1 << 20)
    frames = [payload(1, 10), payload(1, 20), payload(3, 30)]
    positions = [store.add(frame) for frame in frames]
    assert positions == [len(frames[0]), len(frames[0]) + len(frames[1]), sum(map(len, frames))]
    store.confirm(positions[0])
    assert len(store) == 2 and store.first_available == positions[0]
    assert store.size == len(frames[1]) + len(frames[2])
    store.confirm(positions[0] + 3)  # inside the second frame: it is kept
    assert len(store) == 2
    store.confirm(positions[2])
    assert len(store) == 0 and store.size == 0 and store.first_available == store.position


def test_confirming_beyond_what_was_sent_is_refused_R3() -> None:
    store = SentFrameStore(100)
    store.add(payload(1, 4))
    with pytest.raises(ValueError, match="beyond"):
        store.confirm(store.position + 1)


def test_store_back_pressure_never_evicts() -> None:
    """Full means producers wait; a lone frame larger than the whole store still goes."""
    store = SentFrameStore(100)
    big = payload(1, 500)
    assert store.has_room(len(big))  # empty: even an oversized frame may go
    store.add(big)
    assert not store.has_room(1)
    assert store.half_full
    store.confirm(store.position)
    assert store.has_room(90) and not store.half_full


def test_replay_starts_after_what_the_peer_received_R6() -> None:
    store = SentFrameStore(1 << 20)
    frames = [payload(1, 10), payload(1, 20), payload(3, 30)]
    for frame in frames:
        store.add(frame)
    assert store.frames_after(0) == frames
    assert store.frames_after(len(frames[0])) == frames[1:]
    assert store.frames_after(store.position) == []
    assert store.frames_after(5) is None  # inside a frame
    assert store.frames_after(store.position + 1) is None  # more than we sent
    store.confirm(len(frames[0]))
    assert store.frames_after(0) is None  # already trimmed


def test_resume_accepted_when_both_sides_hold_what_the_other_missed_R5() -> None:
    store = SentFrameStore(1 << 20)
    frames = [payload(2, 10), payload(2, 20)]
    for frame in frames:
        store.add(frame)
    decision = decide_resume(
        store, received_position=50, peer_last_received=len(frames[0]), peer_first_available=40
    )
    assert decision.accepted and decision.frames == frames[1:]


def test_resume_refused_when_the_peer_trimmed_what_we_missed_R5() -> None:
    store = SentFrameStore(1 << 20)
    decision = decide_resume(store, received_position=10, peer_last_received=0, peer_first_available=20)
    assert not decision.accepted and "no longer holds" in decision.reason


def test_resume_refused_when_we_trimmed_what_the_peer_missed_R5() -> None:
    store = SentFrameStore(1 << 20)
    first = payload(2, 10)
    store.add(first)
    store.add(payload(2, 10))
    store.confirm(len(first))
    decision = decide_resume(store, received_position=0, peer_last_received=0, peer_first_available=0)
    assert not decision.accepted and "cannot replay" in decision.reason


@given(sizes=st.lists(st.integers(0, 200), max_size=40), confirm_at=st.lists(st.integers(0, 40), max_size=10))
def test_store_accounting_invariants(sizes: list[int], confirm_at: list[int]) -> None:
    """Whatever is sent and confirmed: size is the bytes kept, the window is [first_available,
    position], and replaying from any kept boundary returns exactly the frames after it."""
    store = SentFrameStore(1 << 30)
    boundaries = [0]
    frames = [payload(1, size) for size in sizes]
    for frame in frames:
        boundaries.append(store.add(frame))
    for index in sorted(confirm_at):
        store.confirm(boundaries[min(index, len(boundaries) - 1)])
        kept = [b for b in boundaries if b >= store.first_available]
        assert store.size == store.position - store.first_available
        for boundary in kept:
            replay = store.frames_after(boundary)
            assert replay is not None and sum(map(len, replay)) == store.position - boundary
