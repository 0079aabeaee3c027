"""An in-process transport pair: a client and a server in one process, no sockets (for tests)."""

from __future__ import annotations

import math

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..wire.errors import ConnectionClosedError, FrameTooLargeError
from ..wire.frames import MAX_FRAME_SIZE
from .base import Transport


class MemoryTransport(Transport):
    """One end of an in-memory frame channel; frames keep their boundaries (like WebSocket, T2)."""

    def __init__(
        self,
        send_stream: MemoryObjectSendStream[bytes],
        receive_stream: MemoryObjectReceiveStream[bytes],
    ) -> None:
        self._send_stream = send_stream
        self._receive_stream = receive_stream

    async def send(self, frames: list[bytes]) -> None:
        for frame in frames:
            if len(frame) > MAX_FRAME_SIZE:
                raise FrameTooLargeError(f"frame of {len(frame)} bytes exceeds the limit")
            try:
                await self._send_stream.send(frame)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise ConnectionClosedError("connection closed by peer") from None

    async def receive(self) -> list[bytes]:
        try:
            return [await self._receive_stream.receive()]
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ConnectionClosedError("connection closed by peer") from None

    async def aclose(self) -> None:
        self._send_stream.close()
        self._receive_stream.close()


def memory_transport_pair(max_buffer_size: float = math.inf) -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected transports: what one sends, the other receives."""
    a_to_b_send, a_to_b_receive = anyio.create_memory_object_stream[bytes](max_buffer_size)
    b_to_a_send, b_to_a_receive = anyio.create_memory_object_stream[bytes](max_buffer_size)
    return MemoryTransport(a_to_b_send, b_to_a_receive), MemoryTransport(b_to_a_send, a_to_b_receive)
