"""Length-prefixed framing for byte-stream transports such as TCP (checklist T1, T3).

Each frame travels behind a 3-byte big-endian length. :class:`FrameBuffer` turns arbitrary chunks of
a byte stream back into frames, coping with partial reads and several frames per read; it never holds
more than one incomplete frame plus the chunk just fed, so memory stays bounded by the frame limit.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import FrameError, FrameTooLargeError, MalformedFrameError
from .frames import MAX_FRAME_SIZE


def prefix_frames(frames: Iterable[bytes]) -> bytes:
    """Join frames into one buffer, each preceded by its 3-byte length (ready for one send)."""
    parts: list[bytes] = []
    append = parts.append
    for frame in frames:
        length = len(frame)
        if length > MAX_FRAME_SIZE:
            raise FrameTooLargeError(f"frame of {length} bytes exceeds the {MAX_FRAME_SIZE}-byte limit")
        append(length.to_bytes(3, "big"))
        append(frame)
    return b"".join(parts)


class FrameBuffer:
    """Reassembles length-prefixed frames from a byte stream.

    ``max_frame_size`` (at most 16,777,215) lets a receiver refuse large frames early: a declared
    length above it raises :class:`FrameTooLargeError` before any of the frame is buffered.
    """

    __slots__ = ("_buffer", "_error", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 6 <= max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in [6, {MAX_FRAME_SIZE}]")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Number of bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def raise_pending(self) -> None:
        """Raise the error found after the last frames :meth:`feed` returned, if any."""
        if self._error is not None:
            raise self._error

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk`` and return every frame that is now complete, in order.

        A bad length prefix raises at once when no complete frame precedes it in ``chunk``;
        otherwise the frames before it are returned and the error is raised by the next call (and
        by :meth:`raise_pending`), so that well-formed frames are never lost to a later bad one.
        """
        self.raise_pending()
        if self._buffer:
            self._buffer += chunk
            data: bytes | bytearray = self._buffer
        else:
            data = chunk
        frames: list[bytes] = []
        position = 0
        available = len(data)
        max_size = self.max_frame_size
        while available - position >= 3:
            length = int.from_bytes(data[position : position + 3], "big")
            error: FrameError | None = None
            if length > max_size:
                error = FrameTooLargeError(
                    f"peer announced a {length}-byte frame; the limit is {max_size} bytes"
                )
            elif length < 6:
                error = MalformedFrameError(
                    f"peer announced a {length}-byte frame, shorter than the 6-byte header"
                )
            if error is not None:
                self._error = error
                self._buffer.clear()
                if not frames:
                    raise error
                return frames
            end = position + 3 + length
            if end > available:
                break
            frames.append(bytes(data[position + 3 : end]))
            position = end
        if data is self._buffer:
            del self._buffer[:position]
        elif position < available:
            self._buffer += data[position:]
        return frames
