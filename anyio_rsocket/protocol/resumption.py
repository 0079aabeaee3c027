"""Resumption bookkeeping, sans-IO: implied positions, the store of sent frames, the RESUME decision.

A resumable session outlives its transport. Each side numbers, per direction, the bytes of the
frames that can be replayed (the *implied position*), keeps every such frame it sent until the
peer confirms receiving it (KEEPALIVE carries the last received position), and on a new transport
replays what the peer has not seen. This module holds those pieces; the connection core calls them
from the one place every frame leaves (``CoreBase._queue``) and the one place every frame arrives.

Our store is bounded by back-pressure, never by eviction: :meth:`SentFrameStore.has_room` tells a
driver when producers must wait, so a resume within the session's lifetime cannot fail for lack of
frames (unlike stores that drop old frames when full).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..wire.frames import FrameType

#: Frame types that carry a position (when on a stream other than 0): requests, REQUEST_N, CANCEL,
#: ERROR and PAYLOAD. SETUP, LEASE, KEEPALIVE, METADATA_PUSH, RESUME, RESUME_OK and stream-0 ERRORs
#: do not, as in the other implementations.
RESUMABLE_TYPES = frozenset(
    {
        FrameType.REQUEST_RESPONSE,
        FrameType.REQUEST_FNF,
        FrameType.REQUEST_STREAM,
        FrameType.REQUEST_CHANNEL,
        FrameType.REQUEST_N,
        FrameType.CANCEL,
        FrameType.PAYLOAD,
        FrameType.ERROR,
    }
)
_RESUMABLE_MASK = sum(1 << frame_type for frame_type in RESUMABLE_TYPES)


def is_resumable(frame: bytes) -> bool:
    """Whether an encoded frame (no length prefix) counts towards positions and is kept for replay."""
    if len(frame) < 6:
        return False
    stream_id = int.from_bytes(frame[0:4], "big") & 0x7FFFFFFF
    frame_type = frame[4] >> 2
    return stream_id != 0 and bool(_RESUMABLE_MASK >> frame_type & 1)


class SentFrameStore:
    """Resumable frames we sent and the peer has not confirmed, with their implied positions.

    ``position`` is the implied position after the last frame added (bytes of every resumable frame
    sent so far); ``first_available`` is the position of the oldest frame still kept, which is what
    RESUME advertises. ``capacity`` bounds the bytes kept: a driver asks :meth:`has_room` before
    letting a producer queue more, and waits for the peer's confirmation otherwise. A single frame
    larger than the whole capacity is still accepted when the store is empty, so it can always make
    progress.
    """

    __slots__ = ("_frames", "capacity", "first_available", "position", "size")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the store's capacity must be positive")
        self.capacity = capacity
        self._frames: deque[bytes] = deque()
        self.position = 0
        self.first_available = 0
        self.size = 0

    def __len__(self) -> int:
        return len(self._frames)

    def has_room(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes may be added now (without exceeding the capacity)."""
        return self.size + size <= self.capacity or not self._frames

    @property
    def half_full(self) -> bool:
        """Past half the capacity: time to tell the peer our position so it confirms sooner."""
        return self.size * 2 > self.capacity

    def add(self, frame: bytes) -> int:
        """Keep a resumable frame we are sending; return the implied position after it."""
        self._frames.append(frame)
        self.size += len(frame)
        self.position += len(frame)
        return self.position

    def confirm(self, position: int) -> None:
        """The peer has received everything up to ``position``: drop the frames it covers.

        A position that falls inside a frame keeps that frame (it was not received whole). A
        position beyond what we sent is the peer's protocol violation.
        """
        if position > self.position:
            raise ValueError(f"the peer confirmed position {position}, beyond the {self.position} we sent")
        frames = self._frames
        while frames and self.first_available + len(frames[0]) <= position:
            dropped = frames.popleft()
            self.first_available += len(dropped)
            self.size -= len(dropped)

    def frames_after(self, position: int) -> list[bytes] | None:
        """The frames to replay to a peer that received up to ``position``, or None if we cannot.

        We can when ``position`` lies between the oldest frame we keep and what we sent, and falls
        on a frame boundary.
        """
        if not self.first_available <= position <= self.position:
            return None
        offset = self.first_available
        replay: list[bytes] = []
        for frame in self._frames:
            if offset >= position:
                replay.append(frame)
            elif offset + len(frame) > position:
                return None  # the peer claims part of a frame
            offset += len(frame)
        return replay


@dataclass(frozen=True, slots=True)
class ResumeDecision:
    """The server's answer to RESUME: replay ``frames`` and answer RESUME_OK, or refuse with ``reason``."""

    frames: list[bytes] | None
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.frames is not None


def decide_resume(
    store: SentFrameStore,
    received_position: int,
    peer_last_received: int,
    peer_first_available: int,
) -> ResumeDecision:
    """Whether a session can continue on a new transport (R5).

    ``store`` holds what we sent and ``received_position`` is how far we received from the peer;
    ``peer_last_received`` and ``peer_first_available`` are the two positions the peer reports (on
    a server, those of RESUME). The session continues when we still hold every frame after what the
    peer received, and the peer still holds every frame after what we received.
    """
    if peer_first_available > received_position:
        return ResumeDecision(
            None,
            f"the peer no longer holds frames from position {received_position} "
            f"(its oldest is {peer_first_available})",
        )
    frames = store.frames_after(peer_last_received)
    if frames is None:
        return ResumeDecision(
            None,
            f"cannot replay from position {peer_last_received}: we hold "
            f"{store.first_available} to {store.position}",
        )
    return ResumeDecision(frames)


class ReceivedPosition:
    """How many bytes of resumable frames we have received (what KEEPALIVE and RESUME report)."""

    __slots__ = ("position",)

    def __init__(self) -> None:
        self.position = 0

    def count(self, frame: bytes) -> None:
        """Account for one received frame (ignored unless it is resumable)."""
        if is_resumable(frame):
            self.position += len(frame)
