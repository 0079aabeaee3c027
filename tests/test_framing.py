"""TCP length-prefix framing: FrameBuffer and prefix_frames (checklist T1, T3, T4)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyio_rsocket.errors import FrameTooLargeError, MalformedFrameError
from anyio_rsocket.frames import (
    MAX_FRAME_SIZE,
    CancelFrame,
    ErrorFrame,
    Frame,
    KeepaliveFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestNFrame,
    RequestStreamFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from anyio_rsocket.framing import FrameBuffer, prefix_frames

SETTINGS = settings(max_examples=200, deadline=None)

FRAMES: list[Frame] = [
    SetupFrame(30_000, 90_000, "application/json", "application/octet-stream"),
    RequestStreamFrame(1, 0x7FFFFFFF, b"ab"),
    CancelFrame(5),
    PayloadFrame(2, b"d", b"m", next=True),
    KeepaliveFrame(True, 0, b"\x00\x00\x01"),  # data that looks like a length prefix
    RequestNFrame(1, 10),
    MetadataPushFrame(b""),
    ErrorFrame(0, 0x101, b"bye"),
]
RAW = [encode_frame(f) for f in FRAMES]
WIRE = prefix_frames(RAW)


def feed_all(buffer: FrameBuffer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        out += buffer.feed(chunk)
    return out


# --- prefix_frames (T1, T3) --------------------------------------------------------------------


def test_prefix_frames_layout_T1() -> None:
    """T1: each frame gets a 3-byte big-endian length that does not count itself."""
    assert prefix_frames([b"abcdef", b"0123456789"]) == b"\x00\x00\x06abcdef\x00\x00\x0a0123456789"
    assert prefix_frames([]) == b""
    assert prefix_frames(iter([b"abcdef"])) == b"\x00\x00\x06abcdef"


def test_prefix_frames_refuses_oversized_frame_T3() -> None:
    """T3: never emit a truncated 24-bit length (edge case 11)."""
    with pytest.raises(FrameTooLargeError, match="exceeds the 16777215-byte limit"):
        prefix_frames([bytes(MAX_FRAME_SIZE + 1)])


# --- FrameBuffer: basic reassembly (T1) -------------------------------------------------------


def test_one_frame_per_feed_T1() -> None:
    buffer = FrameBuffer()
    for raw, frame in zip(RAW, FRAMES, strict=True):
        assert buffer.feed(prefix_frames([raw])) == [raw]
        assert buffer.buffered == 0
        assert decode_frame(raw) == frame


def test_several_frames_in_one_chunk_T1() -> None:
    buffer = FrameBuffer()
    assert buffer.feed(WIRE) == RAW
    assert buffer.buffered == 0
    assert [decode_frame(raw) for raw in RAW] == FRAMES


def test_several_frames_and_a_partial_one_in_one_chunk_T1() -> None:
    buffer = FrameBuffer()
    tail = prefix_frames([RAW[0]])
    assert buffer.feed(WIRE + tail[:10]) == RAW
    assert buffer.buffered == 10
    assert buffer.feed(tail[10:]) == [RAW[0]]
    assert buffer.buffered == 0


def test_split_at_every_byte_boundary_T1() -> None:
    """T1: a partial read can end anywhere, including inside the 3-byte length."""
    for cut in range(len(WIRE) + 1):
        buffer = FrameBuffer()
        first = buffer.feed(WIRE[:cut])
        assert buffer.buffered < 3 + max(len(raw) for raw in RAW)
        second = buffer.feed(WIRE[cut:])
        assert first + second == RAW, cut
        assert buffer.buffered == 0


def test_split_at_every_pair_of_byte_boundaries_T1() -> None:
    """T1: three reads cut anywhere (a frame may span three reads)."""
    # The 60-byte SETUP frame plus the first 5 bytes of the next one keeps the pair count small.
    wire = prefix_frames(RAW[:1]) + prefix_frames(RAW[1:2])[:5]
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1):
            buffer = FrameBuffer()
            assert feed_all(buffer, [wire[:i], wire[i:j], wire[j:]]) == RAW[:1], (i, j)
            assert buffer.buffered == 5


def test_byte_by_byte_feeding_T1() -> None:
    buffer = FrameBuffer()
    out: list[bytes] = []
    for index in range(len(WIRE)):
        got = buffer.feed(WIRE[index : index + 1])
        assert len(got) <= 1
        out += got
        assert buffer.buffered < 3 + max(len(raw) for raw in RAW)
    assert out == RAW
    assert buffer.buffered == 0


def test_empty_chunks_are_harmless() -> None:
    buffer = FrameBuffer()
    assert buffer.feed(b"") == []
    assert buffer.feed(WIRE[:2]) == []
    assert buffer.feed(b"") == []
    assert buffer.buffered == 2
    assert buffer.feed(WIRE[2:]) == RAW


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_chunks_are_copied_T1(kind: type) -> None:
    """Chunks may be bytearray/memoryview (e.g. recv_into); returned frames must not alias them."""
    source = bytearray(WIRE)
    buffer = FrameBuffer()
    cut = len(WIRE) - 5
    chunk: Any = kind(source)[:cut] if kind is memoryview else kind(source[:cut])
    frames = buffer.feed(chunk)
    source[:] = bytes(len(source))  # scribble over the caller's buffer
    frames += buffer.feed(WIRE[cut:])
    assert frames == RAW
    assert all(type(raw) is bytes for raw in frames)


# --- FrameBuffer: limits (T3, T4) -------------------------------------------------------------


def test_declared_length_above_max_frame_size_raises_before_buffering_T3() -> None:
    """T3: a too-large announced length fails as soon as the 3-byte prefix is in, not later."""
    buffer = FrameBuffer(max_frame_size=100)
    assert buffer.feed(b"\x00\x00") == []
    with pytest.raises(FrameTooLargeError) as info:
        buffer.feed(b"\x65")
    assert str(info.value) == "peer announced a 101-byte frame; the limit is 100 bytes"
    with pytest.raises(FrameTooLargeError):
        FrameBuffer(max_frame_size=100).feed(b"\xff\xff\xff" + bytes(10))


def test_declared_length_equal_to_max_frame_size_is_accepted_T3() -> None:
    buffer = FrameBuffer(max_frame_size=100)
    raw = encode_frame(PayloadFrame(1, bytes(94), next=True))
    assert len(raw) == 100
    assert buffer.feed(prefix_frames([raw])) == [raw]


def test_default_limit_accepts_largest_announced_length_T3() -> None:
    """With the default limit every 24-bit length is legal; 0xFFFFFF just waits for more bytes."""
    buffer = FrameBuffer()
    assert buffer.max_frame_size == MAX_FRAME_SIZE
    assert buffer.feed(b"\xff\xff\xff" + bytes(6)) == []
    assert buffer.buffered == 9


def test_too_large_frame_after_good_frames_in_same_chunk_T3() -> None:
    """The good frame before a bad prefix is delivered; the error comes right after, never lost."""
    buffer = FrameBuffer(max_frame_size=64)
    assert buffer.feed(prefix_frames([RAW[2]]) + b"\x00\x01\x00") == [RAW[2]]
    with pytest.raises(FrameTooLargeError):
        buffer.raise_pending()
    with pytest.raises(FrameTooLargeError):
        buffer.feed(prefix_frames([RAW[2]]))


@pytest.mark.parametrize("length", range(6))
def test_declared_length_below_header_size_is_malformed_T4(length: int) -> None:
    """T4: a frame shorter than the 6-byte header is malformed, detected from the prefix alone."""
    buffer = FrameBuffer()
    with pytest.raises(MalformedFrameError) as info:
        buffer.feed(length.to_bytes(3, "big"))
    assert str(info.value) == (f"peer announced a {length}-byte frame, shorter than the 6-byte header")
    after_good_frames = FrameBuffer()
    assert after_good_frames.feed(WIRE + length.to_bytes(3, "big") + bytes(length))  # good frames first
    with pytest.raises(MalformedFrameError):
        after_good_frames.raise_pending()


@pytest.mark.parametrize("size", [5, 0, -1, MAX_FRAME_SIZE + 1])
def test_max_frame_size_must_be_valid(size: int) -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        FrameBuffer(max_frame_size=size)


def test_buffered_stays_bounded() -> None:
    """Never more than one incomplete frame is held; complete frames leave the buffer at once."""
    limit = 64
    buffer = FrameBuffer(max_frame_size=limit)
    raw = encode_frame(PayloadFrame(1, bytes(limit - 6), next=True))
    frame_length = 3 + len(raw)
    wire = prefix_frames([raw] * 50)
    for chunk_size in (1, 2, 7, 66, 67, 200, len(wire)):
        frames = []
        for start in range(0, len(wire), chunk_size):
            frames += buffer.feed(wire[start : start + chunk_size])
            assert buffer.buffered < 3 + limit
            assert buffer.buffered == min(start + chunk_size, len(wire)) % frame_length
        assert frames == [raw] * 50
        assert buffer.buffered == 0


def test_buffered_reports_the_partial_frame() -> None:
    buffer = FrameBuffer()
    assert buffer.buffered == 0
    buffer.feed(WIRE[:1])
    assert buffer.buffered == 1
    buffer.feed(WIRE[1:20])
    assert buffer.buffered == 20


# --- hypothesis ------------------------------------------------------------------------------------

FRAME_BODIES = st.lists(st.binary(min_size=6, max_size=40), max_size=10)


@SETTINGS
@given(bodies=FRAME_BODIES, data=st.data())
def test_any_split_of_prefixed_frames_yields_same_frames_T1(bodies: list[bytes], data: st.DataObject) -> None:
    """Property (T1): however the stream is chunked, the same frames come out, in order."""
    wire = prefix_frames(bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12), label="cuts"))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert b"".join(chunks) == wire
    buffer = FrameBuffer()
    out: list[bytes] = []
    for chunk in chunks:
        out += buffer.feed(chunk)
        assert buffer.buffered < 3 + 40
    assert out == bodies
    assert buffer.buffered == 0


@SETTINGS
@given(
    frames=st.lists(
        st.one_of(
            st.builds(
                PayloadFrame,
                st.integers(1, 2**31 - 1),
                st.binary(max_size=20),
                st.none() | st.binary(max_size=20),
                next=st.just(True),
            ),
            st.builds(RequestNFrame, st.integers(1, 2**31 - 1), st.integers(0, 2**31 - 1)),
            st.builds(CancelFrame, st.integers(1, 2**31 - 1)),
            st.builds(KeepaliveFrame, st.booleans(), st.integers(0, 2**63 - 1), st.binary(max_size=20)),
        ),
        max_size=8,
    ),
    chunk_sizes=st.lists(st.integers(1, 30), min_size=1, max_size=20),
)
def test_frames_survive_arbitrary_chunking_T1(frames: list[Frame], chunk_sizes: list[int]) -> None:
    """Property (T1): encode -> prefix -> chunk -> FrameBuffer -> decode is the identity."""
    wire = prefix_frames(encode_frame(f) for f in frames)
    buffer = FrameBuffer()
    out = []
    position = 0
    index = 0
    while position < len(wire):
        size = chunk_sizes[index % len(chunk_sizes)]
        out += [decode_frame(raw) for raw in buffer.feed(wire[position : position + size])]
        position += size
        index += 1
    assert out == frames
    assert buffer.buffered == 0
