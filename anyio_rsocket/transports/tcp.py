"""Length-prefixed frames over any AnyIO byte stream: TCP, TLS, Unix sockets (checklist T1)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
from anyio.abc import ByteStream

from ..wire.errors import ConnectionClosedError, ProtocolError
from ..wire.frames import MAX_FRAME_SIZE
from ..wire.framing import FrameBuffer, prefix_frames, split_whole_frames
from .base import DEFAULT_FRAME_TIMEOUT, Transport
from .sockets import AsyncioSocketStream, nowait_writer

#: How much to read per receive call; large enough that a busy stream needs few reads.
_READ_SIZE = 262144
#: Reads up to this size that hold whole frames only go to a frame consumer straight from the
#: I/O callback; larger ones (bulk data) take the reader's path, which batches them anyway.
_CONSUME_LIMIT = 16384
#: How long closing may take (flushing what is buffered, a TLS close_notify) before it is forced.
_CLOSE_TIMEOUT = 2.0

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

    A peer announcing a frame larger than ``max_frame_size`` is refused before any of it is buffered
    (:class:`~anyio_rsocket.errors.FrameTooLargeError`). Once the first byte of a frame has arrived,
    :meth:`receive` waits at most ``frame_timeout`` seconds in all for the rest of it, then raises
    :class:`~anyio_rsocket.errors.ProtocolError`: a peer cannot hold a connection (and the memory of
    a partial frame) by trickling. Time our reader spends not reading is not counted.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        max_frame_size: int = MAX_FRAME_SIZE,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    ) -> None:
        if not frame_timeout > 0:
            raise ValueError("frame_timeout must be positive")
        self._stream = stream
        self._buffer = FrameBuffer(max_frame_size)
        self._frame_timeout = frame_timeout
        self._frame_budget = frame_timeout  # waiting time left for the frame being received
        self._closed = False
        self._write_nowait = nowait_writer(stream)
        self.can_send_now = self._write_nowait is not None
        self._unsent: bytes | None = None  # what send_now() could not write at once
        self._consumer: Callable[[list[bytes]], None] | None = None

    def send_now(self, frames: list[bytes]) -> None:
        data = prefix_frames(frames)
        if self._unsent is not None or self._closed:
            self._unsent = (self._unsent or b"") + data
            return
        assert self._write_nowait is not None
        written = self._write_nowait(data)
        if written < len(data):
            self._unsent = data[written:]

    @property
    def holds_unsent(self) -> bool:
        return self._unsent is not None

    def set_frame_consumer(self, consumer: Callable[[list[bytes]], None] | None) -> bool:
        stream = self._stream
        if not isinstance(stream, AsyncioSocketStream):
            return False
        self._consumer = consumer
        stream.set_consumer(None if consumer is None else self._consume)
        return True

    def _consume(self, data: bytes) -> bool:
        """The I/O callback's offer: take ``data`` if it is whole frames and nothing is pending
        (a partial frame stays with :meth:`receive`, which times its arrival)."""
        consumer = self._consumer
        if consumer is None or len(data) > _CONSUME_LIMIT or self._buffer.buffered:
            return False
        frames = split_whole_frames(data, self._buffer.max_frame_size)
        if not frames:
            return False
        consumer(frames)
        return True

    def poke(self) -> None:
        stream = self._stream
        if isinstance(stream, AsyncioSocketStream):
            stream.poke()

    @property
    def stream(self) -> ByteStream:
        """The underlying byte stream (for its ``extra`` attributes such as the peer address)."""
        return self._stream

    async def send(self, frames: list[bytes]) -> None:
        data = prefix_frames(frames)
        unsent = self._unsent
        if unsent is not None:
            # A cancelled send loses these bytes with the rest: only closing cancels the writer.
            self._unsent = None
            data = unsent + data
        try:
            await self._stream.send(data)
        except _IO_ERRORS as exc:
            raise ConnectionClosedError(f"connection lost while sending: {exc!r}") from exc

    async def receive(self) -> list[bytes]:
        buffer = self._buffer
        buffer.raise_pending()
        if not buffer.buffered:  # between frames: wait as long as it takes (keepalives judge silence)
            try:
                chunk = await self._stream.receive(_READ_SIZE)
            except anyio.EndOfStream:
                raise ConnectionClosedError("connection closed by peer") from None
            except _IO_ERRORS as exc:
                raise ConnectionClosedError(f"connection lost: {exc!r}") from exc
            if not chunk:
                return []  # poke()
            frames = buffer.feed(chunk)
            if frames:
                self._frame_budget = self._frame_timeout  # any partial frame left started just now
                return frames
        return await self._receive_rest()

    async def _receive_rest(self) -> list[bytes]:
        """Part of a frame is here: the rest must come within what is left of its budget."""
        buffer = self._buffer
        started = anyio.current_time()
        with anyio.move_on_after(self._frame_budget):
            try:
                while True:
                    frames = buffer.feed(await self._read())
                    if frames:
                        self._frame_budget = self._frame_timeout
                        return frames
            except BaseException:
                self._frame_budget -= anyio.current_time() - started
                raise
        raise ProtocolError(
            f"a frame did not arrive in full within {self._frame_timeout:g} s of its first byte"
        )

    async def _read(self) -> bytes:
        try:
            return await self._stream.receive(_READ_SIZE)
        except anyio.EndOfStream:
            raise ConnectionClosedError("connection closed by peer") from None
        except _IO_ERRORS as exc:
            raise ConnectionClosedError(f"connection lost: {exc!r}") from exc

    async def aclose(self) -> None:
        """Close the stream; a TLS close that the peer leaves unanswered is cut short."""
        if self._closed:
            return
        self._closed = True
        with anyio.move_on_after(_CLOSE_TIMEOUT) as scope, contextlib.suppress(*_IO_ERRORS):
            await self._stream.aclose()
        if scope.cancelled_caught:
            await anyio.aclose_forcefully(self._stream)
