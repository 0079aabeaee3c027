"""The raw baseline ("our limit"): the same request-response traffic over plain AnyIO TCP.

Frames carry a 3-byte length prefix, as RSocket frames do over TCP, but no RSocket header. Both
ends have the structure of an RSocket connection without the protocol: a reader task that parses
frames and a writer task that drains a memory object stream, joining everything queued into one
``send``. The server echoes every frame back through its writer; the client matches responses to
requests in order (the echo preserves it), so a request costs one queue put, one event and the I/O.
"""

from __future__ import annotations

import gc
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from ._common import RR_ROWS
from ._worker import Command, Inbox, NotAvailable, Result, run_anyio, wait_for_stop

READ_SIZE = 262144  # as anyio_rsocket's TCP transport reads
_CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


async def read_frames(stream: ByteStream, on_frame: Callable[[bytes], object]) -> None:
    """Parse length-prefixed frames until the peer closes; ``on_frame`` gets each one in order.

    Small frames are cut out of each chunk read; a frame larger than a read is gathered as a list of
    chunks and joined once.
    """
    receive = stream.receive
    leftover = b""
    while True:
        try:
            chunk = await receive(READ_SIZE)
        except _CLOSED:
            return
        data = leftover + chunk if leftover else chunk
        position = 0
        available = len(data)
        while available - position >= 3:
            end = position + 3 + int.from_bytes(data[position : position + 3], "big")
            if end <= available:
                on_frame(data[position + 3 : end])
                position = end
                continue
            if end - available <= READ_SIZE:
                break  # the next read completes it
            parts = [data[position + 3 :]]
            missing = end - available
            while missing > 0:
                try:
                    chunk = await receive(READ_SIZE)
                except _CLOSED:
                    return
                parts.append(chunk)
                missing -= len(chunk)
            if missing < 0:  # the last read also holds the start of the next frame
                parts[-1], data = chunk[:missing], chunk[missing:]
            else:
                data = b""
            on_frame(b"".join(parts))
            position = 0
            available = len(data)
        leftover = data[position:]


async def write_frames(stream: ByteStream, frames: MemoryObjectReceiveStream[bytes]) -> None:
    """Send every queued frame; whatever is queued by the time a send starts goes in that send."""
    receive_nowait = frames.receive_nowait
    async for frame in frames:
        parts = [len(frame).to_bytes(3, "big"), frame]
        while True:
            try:
                frame = receive_nowait()
            except anyio.WouldBlock:
                break
            parts += (len(frame).to_bytes(3, "big"), frame)
        try:
            await stream.send(b"".join(parts))
        except _CLOSED:
            return


async def echo(stream: ByteStream) -> None:
    """Server side of one connection: the reader hands every frame to the writer."""
    send, receive = anyio.create_memory_object_stream[bytes](math.inf)
    async with stream, send, receive, anyio.create_task_group() as tg:
        tg.start_soon(write_frames, stream, receive)
        await read_frames(stream, send.send_nowait)
        tg.cancel_scope.cancel()


async def serve_echo(listener: anyio.abc.Listener[ByteStream]) -> None:
    async with listener:
        await listener.serve(echo)


class Response:
    __slots__ = ("data", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.data: bytes | None = None


class RawClient:
    """Client side: ``request_response(payload)`` queues ``payload.data`` and awaits the echo."""

    def __init__(self, stream: ByteStream, task_group: TaskGroup) -> None:
        self._waiting: deque[Response] = deque()
        self._send, receive = anyio.create_memory_object_stream[bytes](math.inf)
        task_group.start_soon(write_frames, stream, receive)
        task_group.start_soon(read_frames, stream, self._on_frame)

    def _on_frame(self, frame: bytes) -> None:
        response = self._waiting.popleft()
        response.data = frame
        response.event.set()

    async def request_response(self, payload: Any) -> Response:
        response = Response()
        self._waiting.append(response)
        self._send.send_nowait(payload.data)
        await response.event.wait()
        return response


class _Payload:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def serve(backend: str, command: Command, inbox: Inbox, announce: Callable[[int], None]) -> None:
    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_echo, listener)
            announce(listener.extra(anyio.abc.SocketAttribute.local_port))
            await wait_for_stop(inbox, anyio.sleep)
            tg.cancel_scope.cancel()

    run_anyio(main, backend)


def measure(backend: str, command: Command) -> Result:
    if command["bench"] not in RR_ROWS or command["transport"] != "tcp":
        raise NotAvailable("the raw baseline covers request-response over TCP only")
    function, data = RR_ROWS[command["bench"]]
    payload = _Payload(data)

    async def main() -> Result:
        with anyio.fail_after(command["timeout"]):
            async with anyio.create_task_group() as tg:
                port = command["port"]
                if port is None:
                    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
                    tg.start_soon(serve_echo, listener)
                    port = listener.extra(anyio.abc.SocketAttribute.local_port)
                stream = await anyio.connect_tcp("127.0.0.1", port)
                async with stream:
                    client = RawClient(stream, tg)
                    await function(client, payload, command["warmup"])
                    gc.collect()
                    elapsed = await function(client, payload, command["n"])
                tg.cancel_scope.cancel()
        return elapsed

    return run_anyio(main, backend)
