"""Length-prefixed frames over any AnyIO byte stream: TCP, TLS, Unix sockets (checklist T1)."""

from __future__ import annotations

import contextlib

import anyio
from anyio.abc import ByteStream

from ..errors import ConnectionClosedError
from ..frames import MAX_FRAME_SIZE
from ..framing import FrameBuffer, prefix_frames
from .base import Transport

#: How much to read per receive call; large enough that a busy stream needs few reads.
_READ_SIZE = 262144

_IO_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


class ByteStreamTransport(Transport):
    """Carries frames over an AnyIO ``ByteStream`` with 3-byte length prefixes.

    All frames handed to one :meth:`send` go out in a single write, so a frame is never split across
    writes by us (some peers cannot reassemble a SETUP that arrives in pieces).
    """

    def __init__(self, stream: ByteStream, *, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._stream = stream
        self._buffer = FrameBuffer(max_frame_size)

    @property
    def stream(self) -> ByteStream:
        """The underlying byte stream (for its ``extra`` attributes such as the peer address)."""
        return self._stream

    async def send(self, frames: list[bytes]) -> None:
        data = prefix_frames(frames)
        try:
            await self._stream.send(data)
        except _IO_ERRORS as exc:
            raise ConnectionClosedError(f"connection lost while sending: {exc!r}") from exc

    async def receive(self) -> list[bytes]:
        self._buffer.raise_pending()
        while True:
            try:
                chunk = await self._stream.receive(_READ_SIZE)
            except anyio.EndOfStream:
                raise ConnectionClosedError("connection closed by peer") from None
            except _IO_ERRORS as exc:
                raise ConnectionClosedError(f"connection lost: {exc!r}") from exc
            frames = self._buffer.feed(chunk)
            if frames:
                return frames

    async def aclose(self) -> None:
        with contextlib.suppress(*_IO_ERRORS):
            await self._stream.aclose()
