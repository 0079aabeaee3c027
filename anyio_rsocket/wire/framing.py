"""Length-prefixed framing for byte-stream transports such as TCP (checklist T1, T3).

Each frame travels behind a 3-byte big-endian length. :class:`FrameBuffer` turns arbitrary chunks of
a byte stream back into frames, coping with partial reads and several frames per read; it never holds
more than one incomplete frame plus the chunk just fed, so memory stays bounded by the frame limit,
and what it holds for an incomplete frame stays proportional to the bytes received (see
:func:`append_chunk`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import FrameError, FrameTooLargeError, MalformedFrameError
from .frames import MAX_FRAME_SIZE

#: Pieces of an incomplete frame shorter than this are copied together into one ``bytearray``.
SMALL_CHUNK = 16384


def append_chunk(chunks: list[bytes | bytearray], chunk: bytes) -> None:
    """Add ``chunk`` to the pieces of an incomplete frame or message, holding memory in proportion.

    A chunk returned by ``recv(262144)`` can keep a whole page (or more) allocated for a single
    byte, so a frame trickled one byte per read would cost kilobytes per byte if every chunk were
    kept. Chunks under :data:`SMALL_CHUNK` bytes are therefore copied into a ``bytearray`` at the end
    of ``chunks`` (and the chunk itself is released); larger ones are kept as they are, so a big frame
    still costs a single join once complete.
    """
    if len(chunk) >= SMALL_CHUNK:
        chunks.append(chunk)
    elif chunk:
        last = chunks[-1] if chunks else None
        if type(last) is bytearray:
            last += chunk
        else:
            chunks.append(bytearray(chunk))


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


def split_whole_frames(data: bytes, max_frame_size: int = MAX_FRAME_SIZE) -> list[bytes] | None:
    """The frames in ``data`` if it holds nothing but complete, well-sized frames; else ``None``.

    A fast path for a read that ends on a frame boundary (the usual case for small messages): the
    caller hands anything else to a :class:`FrameBuffer`, which keeps partial frames and reports
    bad lengths.
    """
    frames: list[bytes] = []
    position = 0
    available = len(data)
    while position < available:
        body = position + 3
        if body > available:
            return None
        length = int.from_bytes(data[position:body], "big")
        position = body + length
        if length < 6 or length > max_frame_size or position > available:
            return None
        frames.append(data[body:position])
    return frames


class FrameBuffer:
    """Reassembles length-prefixed frames from a byte stream.

    ``max_frame_size`` (at most 16,777,215) lets a receiver refuse large frames early: a declared
    length above it raises :class:`FrameTooLargeError` before any of the frame is buffered.

    A frame larger than one read is collected as a list of chunks and joined once when complete,
    so a 1 MiB frame costs one copy rather than one per read; small chunks of an incomplete frame are
    copied together (:func:`append_chunk`), so a frame trickled byte by byte costs about a byte per
    byte.
    """

    __slots__ = ("_body_length", "_chunks", "_error", "_size", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not 6 <= max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be in [6, {MAX_FRAME_SIZE}]")
        self.max_frame_size = max_frame_size
        self._chunks: list[bytes | bytearray] = []  # bytes received after the last complete frame
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
            need = self._body_length - self._size
            if len(chunk) < need:
                append_chunk(self._chunks, chunk)
                self._size += len(chunk)
                return frames
            data = b""
            if len(chunk) > need:
                data = chunk[need:]
                chunk = chunk[:need]
            self._chunks.append(chunk)
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
        if position < available:  # one or two bytes of a length prefix: copied, see append_chunk
            rest = data[position:]
            self._chunks = [bytearray(rest)]
            self._size = len(rest)
        return frames

    def _reset(self) -> None:
        self._chunks = []
        self._size = 0
        self._body_length = -1
