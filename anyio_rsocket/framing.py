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

    A frame larger than one read is collected as a list of chunks and joined once when complete,
    so a 1 MiB frame costs one copy rather than one per read.
    """

    __slots__ = ("_body_length", "_chunks", "_error", "_size", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 6 <= max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in [6, {MAX_FRAME_SIZE}]")
        self.max_frame_size = max_frame_size
        self._chunks: list[bytes] = []  # bytes received after the last complete frame
        self._size = 0  # their total length
        self._body_length = -1  # length of the frame being collected, once its prefix is known
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Number of bytes held while waiting for the rest of a frame (its length prefix included)."""
        return self._size + 3 if self._body_length >= 0 else self._size

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
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        frames: list[bytes] = []
        if self._body_length >= 0:  # inside a frame body whose length is known
            self._chunks.append(chunk)
            self._size += len(chunk)
            if self._size < self._body_length:
                return frames
            extra = self._size - self._body_length
            last = self._chunks[-1]
            data = b""
            if extra:
                self._chunks[-1] = last[: len(last) - extra]
                data = last[len(last) - extra :]
            frames.append(b"".join(self._chunks))
            self._reset()
        elif self._chunks:  # a partial length prefix
            data = b"".join(self._chunks) + chunk
            self._reset()
        else:
            data = chunk
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
                self._reset()
                if not frames:
                    raise error
                return frames
            end = position + 3 + length
            if end > available:
                body = data[position + 3 :]
                self._chunks = [body]
                self._size = len(body)
                self._body_length = length
                return frames
            frames.append(data[position + 3 : end])
            position = end
        if position < available:
            rest = data[position:]
            self._chunks = [rest]
            self._size = len(rest)
        return frames

    def _reset(self) -> None:
        self._chunks = []
        self._size = 0
        self._body_length = -1
