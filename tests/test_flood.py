"""Peers that flood or trickle: our memory stays bounded (issue 9).

* **Flood from the first byte.** A raw peer sends SETUP and then streams KEEPALIVE(respond),
  REQUEST_FNF and REQUEST_RESPONSE frames without ever reading. Our side stops reading once its
  outbound queue or its handlers are full; the transport must then stop reading the socket too, so
  the flood waits in the kernel's buffers instead of our memory. Checked on both backends, TCP and
  WebSocket, server and client side, by the process's RSS growth after pushing a fixed volume.
* **Trickle.** A frame delivered one byte per read must cost about a byte per byte while it is
  incomplete, not a whole allocation per read (a chunk returned by ``recv(262144)`` can keep a page).

The raw peers are plain sockets in a worker thread, so that they push as fast as the kernel lets
them and never share the event loop with the side under test.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import struct
import sys
import time
import tracemalloc
from collections.abc import Iterator
from functools import partial

import anyio
import anyio.lowlevel
import anyio.to_thread
import psutil
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, BytesMessage, Request

from anyio_rsocket import Payload, RequestHandler, connect_tcp, connect_websocket, serve_tcp
from anyio_rsocket.frames import (
    KeepaliveFrame,
    RequestFireAndForgetFrame,
    RequestResponseFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from anyio_rsocket.framing import FrameBuffer, prefix_frames
from anyio_rsocket.listener import serve_listener
from anyio_rsocket.transports.sockets import connect_socket_stream
from anyio_rsocket.transports.websocket import WebSocketTransport
from anyio_rsocket.websocket import serve_websocket

from .rawpeer import DEFAULT_SETUP

pytestmark = pytest.mark.anyio

#: What a flood may add to the process's RSS (the fixed-size queues are 8 MiB outbound, 256 KiB in).
RSS_BOUND = 64 << 20
#: What the flooding peer tries to push; without the fix nearly all of it ends up in our memory.
FLOOD_VOLUME = 256 << 20
#: A send blocked this long means the other side has stopped reading.
STALL = 0.5
#: Payload of each flood frame: large enough that the volume is a few thousand frames.
FLOOD_DATA = b"f" * 16000
TIMEOUT = 60


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


class Stuck(RequestHandler):
    """Requests never finish: handlers pile up to the limit and the reader has to stop."""

    async def request_response(self, payload: Payload) -> Payload:
        await anyio.sleep_forever()
        raise AssertionError

    async def fire_and_forget(self, payload: Payload) -> None:
        await anyio.sleep_forever()


def flood_frames() -> Iterator[bytes]:
    """KEEPALIVE(respond), REQUEST_FNF and REQUEST_RESPONSE in turn, each request on a fresh stream."""
    stream_id = 1
    while True:
        yield encode_frame(KeepaliveFrame(True, 0, FLOOD_DATA))
        yield encode_frame(RequestFireAndForgetFrame(stream_id, FLOOD_DATA))
        yield encode_frame(RequestResponseFrame(stream_id + 2, FLOOD_DATA))
        stream_id += 4


def blocks(
    frames: Iterator[bytes], wrap: WSConnection | Connection | None, size: int = 1 << 20
) -> Iterator[bytes]:
    """``frames`` joined into writes of about ``size`` bytes, as TCP (prefixed) or WebSocket messages."""
    while True:
        batch: list[bytes] = []
        total = 0
        while total < size:
            frame = next(frames)
            batch.append(frame)
            total += len(frame)
        if wrap is None:
            yield prefix_frames(batch)
        else:
            yield b"".join(wrap.send(BytesMessage(frame)) for frame in batch)


def push(sock: socket.socket, data: Iterator[bytes], volume: int) -> int:
    """Write ``data`` until ``volume`` bytes are out or the reader stalls; return the bytes sent."""
    sock.settimeout(STALL)
    sent = 0
    try:
        for block in data:
            sock.sendall(block)
            sent += len(block)
            if sent >= volume:
                break
    except (TimeoutError, ConnectionError):
        pass  # the other side stopped reading (or gave up on us): that is the point
    return sent


def connect_and_prefill(port: int, data: bytes) -> socket.socket:
    """Connect and write as much of ``data`` as the kernel takes at once, without blocking.

    Run on the event loop's thread, so the server has not even accepted the connection yet: its first
    read already finds data waiting, the way a flood from the first byte does.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        view = memoryview(data)
        while view:
            view = view[sock.send(view) :]
    sock.setblocking(True)
    return sock


def ws_read_upgrade_answer(sock: socket.socket, ws: WSConnection) -> None:
    """Wait for the server's answer to our upgrade request (runs in the thread)."""
    while True:
        data = sock.recv(65536)
        assert data, "the server closed the connection during the upgrade"
        ws.receive_data(data)
        for event in ws.events():
            assert isinstance(event, AcceptConnection), f"upgrade refused: {event!r}"
            return


def flood_server(sock: socket.socket, ws: WSConnection | None, volume: int) -> int:
    """Flood a server after SETUP, never reading (runs in a thread; TCP has sent SETUP already)."""
    with sock:
        if ws is not None:
            ws_read_upgrade_answer(sock, ws)
            sock.sendall(ws.send(BytesMessage(encode_frame(DEFAULT_SETUP))))
        return push(sock, blocks(flood_frames(), ws), volume)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_server_memory_stays_bounded_when_a_client_floods_from_connect(transport: str) -> None:
    serve = serve_tcp if transport == "tcp" else serve_websocket
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(serve, lambda rs: Stuck(), "127.0.0.1", 0, max_concurrent_requests=8))
        gc.collect()
        before = rss()
        ws: WSConnection | None = None
        if transport == "tcp":
            frames = flood_frames()
            first = prefix_frames([encode_frame(DEFAULT_SETUP)] + [next(frames) for _ in range(64)])
        else:  # the upgrade request; the frames follow once it is accepted
            ws = WSConnection(ConnectionType.CLIENT)
            first = ws.send(Request(host="127.0.0.1", target="/"))
        sock = connect_and_prefill(port, first)
        with anyio.fail_after(TIMEOUT):
            sent = await anyio.to_thread.run_sync(
                flood_server, sock, ws, FLOOD_VOLUME, abandon_on_cancel=True
            )
        growth = rss() - before
        tg.cancel_scope.cancel()
    assert sent > 1 << 20  # the server did read the start of the flood
    assert growth < RSS_BOUND, f"RSS grew by {growth >> 20} MiB while {sent >> 20} MiB were pushed"


def flood_client(listener: socket.socket, transport: str, volume: int) -> int:
    """A server that accepts SETUP, answers the client's probe, then floods KEEPALIVE(respond)."""
    sock, _ = listener.accept()
    with sock:
        wrap: WSConnection | None = None
        if transport == "ws":
            wrap = WSConnection(ConnectionType.SERVER)
        buffer = FrameBuffer()
        frames: list[object] = []
        while len(frames) < 2:  # SETUP, then the KEEPALIVE probe of confirm_setup
            data = sock.recv(65536)
            assert data, "the client left"
            if wrap is None:
                frames += [decode_frame(raw) for raw in buffer.feed(data)]
                continue
            wrap.receive_data(data)
            for event in wrap.events():
                if isinstance(event, Request):
                    sock.sendall(wrap.send(AcceptConnection()))
                elif isinstance(event, BytesMessage):
                    frames.append(decode_frame(bytes(event.data)))
        setup, probe = frames
        assert isinstance(setup, SetupFrame) and isinstance(probe, KeepaliveFrame)
        echo = encode_frame(KeepaliveFrame(False, 0, probe.data))
        sock.sendall(prefix_frames([echo]) if wrap is None else wrap.send(BytesMessage(echo)))

        def keepalives() -> Iterator[bytes]:
            frame = encode_frame(KeepaliveFrame(True, 0, FLOOD_DATA))
            while True:
                yield frame

        return push(sock, blocks(keepalives(), wrap), volume)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_client_memory_stays_bounded_when_the_server_floods(transport: str) -> None:
    """Our client echoes each KEEPALIVE(respond); the server never reads the echoes."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        done = anyio.Event()
        sent = 0

        async def run_server() -> None:
            nonlocal sent
            sent = await anyio.to_thread.run_sync(
                flood_client, listener, transport, FLOOD_VOLUME, abandon_on_cancel=True
            )
            done.set()

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_server)
                gc.collect()
                before = rss()
                connection = (
                    connect_tcp("127.0.0.1", port)
                    if transport == "tcp"
                    else connect_websocket(f"ws://127.0.0.1:{port}/")
                )
                async with connection:
                    await done.wait()
                    growth = rss() - before
    assert sent > 1 << 20
    assert growth < RSS_BOUND, f"RSS grew by {growth >> 20} MiB while {sent >> 20} MiB were pushed"


# --- trickle ------------------------------------------------------------------------------------

#: Bytes trickled one per read in the trickle tests.
TRICKLE = 20_000


def test_frame_buffer_holds_a_trickled_frame_in_proportion() -> None:
    """A 16 MiB frame announced, then fed a byte at a time: memory follows the bytes fed."""
    buffer = FrameBuffer()
    assert buffer.feed(b"\xff\xff\xff") == []  # the largest frame the wire allows
    chunks = [bytes([index & 0xFF]) for index in range(TRICKLE)]
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for chunk in chunks:
            assert buffer.feed(chunk) == []
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert buffer.buffered == TRICKLE + 3
    # About a byte per byte (a bytearray over-allocates a little); one object per chunk is 40+.
    assert held - before < 2 * TRICKLE + 4096, f"{held - before} bytes held for {TRICKLE} bytes fed"


#: Bytes trickled one per read into the WebSocket transport (each costs a pass through wsproto).
WS_TRICKLE = 8_000


class _TrickleChannel:
    """A raw channel delivering ``data`` one byte per read, then waiting forever."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0
        self.drained = anyio.Event()

    async def read(self) -> bytes:
        await anyio.lowlevel.checkpoint()
        if self.position == len(self.data):
            self.drained.set()
            await anyio.sleep_forever()
        self.position += 1
        return self.data[self.position - 1 : self.position]

    async def write(self, data: bytes) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_websocket_transport_holds_a_trickled_message_in_proportion() -> None:
    """wsproto turns each trickled byte into its own event; the transport must not keep one object each."""
    client = Connection(ConnectionType.CLIENT)
    wire = client.send(BytesMessage(b"m" * (1 << 20)))[: WS_TRICKLE + 14]  # header, then a part of it
    channel = _TrickleChannel(wire)
    transport = WebSocketTransport(Connection(ConnectionType.SERVER), channel)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(transport.receive)
                await channel.drained.wait()
                held, _ = tracemalloc.get_traced_memory()
                tg.cancel_scope.cancel()
    finally:
        tracemalloc.stop()
    assert held - before < 2 * WS_TRICKLE + 32768, f"{held - before} bytes held for {WS_TRICKLE} bytes fed"


#: Connections trickling at once in the end-to-end test, and the bytes each sends.
TRICKLERS = 16
TRICKLE_EACH = 2_000
#: Pause between two rounds of trickled bytes, in seconds.
TRICKLE_PACE = 0.0003

#: The server of the end-to-end trickle test, in a process of its own: the allocator's state is a
#: fresh server's (a long test run makes ``malloc`` keep large blocks on its heap, which hides the
#: page a small ``recv`` result can hold). It reports its RSS at the start, once it has read
#: ``expected`` bytes (every trickled byte), and once every connection has ended.
TRICKLE_SERVER = """
import sys

import anyio
import psutil
from anyio.abc import ByteStream

from anyio_rsocket import RequestHandler
from anyio_rsocket.listener import serve_listener
from anyio_rsocket.server import serve_stream

connections, expected = int(sys.argv[2]), int(sys.argv[3])
received = ended = 0


def report(*words: object) -> None:
    print(*words, psutil.Process().memory_info().rss, flush=True)


class Counting(ByteStream):
    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        global received
        chunk = await self.stream.receive(max_bytes)
        received += len(chunk)
        if received == expected:
            report("read")
        return chunk

    async def send(self, item: bytes) -> None:
        await self.stream.send(item)

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def serve_one(stream: ByteStream) -> None:
    global ended
    try:
        await serve_stream(Counting(stream), lambda rsocket: RequestHandler())
    finally:
        ended += 1
        if ended == connections:
            report("ended")


class Started:
    def started(self, port: int) -> None:
        report("port", port)


anyio.run(lambda: serve_listener(serve_one, "127.0.0.1", 0, task_status=Started()), backend=sys.argv[1])
"""


def trickle(port: int, opened: list[socket.socket]) -> None:
    """Open the connections, send SETUP and a 16 MiB frame's prefix on each, then a byte at a time."""
    for _ in range(TRICKLERS):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        opened.append(sock)
        sock.sendall(prefix_frames([encode_frame(DEFAULT_SETUP)]) + b"\xff\xff\xff")
    for _ in range(TRICKLE_EACH):
        for sock in opened:
            sock.send(b"t")
        time.sleep(TRICKLE_PACE)  # a trickle is slow: each byte gets a read of its own


async def test_server_memory_follows_the_bytes_of_trickled_frames(anyio_backend: str) -> None:
    """Clients trickle huge frames byte by byte: the server holds about what arrived, and lets go at close."""
    expected = TRICKLERS * (3 + len(encode_frame(DEFAULT_SETUP)) + 3 + TRICKLE_EACH)
    command = [sys.executable, "-c", TRICKLE_SERVER, anyio_backend, str(TRICKLERS), str(expected)]
    sockets: list[socket.socket] = []
    with anyio.fail_after(TIMEOUT):
        async with await anyio.open_process(command) as process:
            try:
                assert process.stdout is not None
                lines = BufferedByteReceiveStream(process.stdout)

                async def report(name: str) -> list[int]:
                    words = (await lines.receive_until(b"\n", 1000)).split()
                    assert words[0] == name.encode(), words
                    return [int(word) for word in words[1:]]

                port, rss_start = await report("port")
                await anyio.to_thread.run_sync(trickle, port, sockets, abandon_on_cancel=True)
                (rss_read,) = await report("read")
                for sock in sockets:
                    sock.close()
                (rss_ended,) = await report("ended")
            finally:
                for sock in sockets:
                    sock.close()
                process.kill()
    trickled = TRICKLERS * TRICKLE_EACH
    growth = rss_read - rss_start
    assert growth < 8 << 20, f"server RSS grew by {growth >> 10} KiB for {trickled} bytes trickled"
    assert rss_ended - rss_start < 8 << 20, f"{(rss_ended - rss_start) >> 10} KiB kept after close"


# --- the socket streams themselves -----------------------------------------------------------------


async def test_socket_streams_behave_like_anyio_streams() -> None:
    """Accepted and connected streams: socket attributes, data both ways, EOF, close, errors."""
    ports: list[int] = []
    handled = anyio.Event()

    async def serve_one(stream: ByteStream) -> None:
        ports.append(stream.extra(SocketAttribute.local_port))
        ports.append(stream.extra(SocketAttribute.remote_port))
        assert stream.extra(SocketAttribute.raw_socket).fileno() >= 0
        assert await stream.receive() == b"ping"
        await stream.send(b"pong")
        await stream.send_eof()
        with pytest.raises(anyio.EndOfStream):  # the client's send_eof
            await stream.receive()
        handled.set()
        await anyio.sleep_forever()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_listener, serve_one, "127.0.0.1", 0)
            client = await connect_socket_stream("127.0.0.1", port)
            assert client.extra(SocketAttribute.remote_port) == port
            assert client.extra(SocketAttribute.remote_address) == ("127.0.0.1", port)
            assert client.extra(SocketAttribute.family) == socket.AF_INET
            await client.send(b"ping")
            assert await client.receive() == b"pong"
            with pytest.raises(anyio.EndOfStream):  # the server's send_eof
                await client.receive()
            await client.send_eof()
            await handled.wait()
            assert ports == [port, client.extra(SocketAttribute.local_port)]
            await client.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await client.receive()
            with pytest.raises(anyio.ClosedResourceError):
                await client.send(b"late")
            tg.cancel_scope.cancel()


async def test_socket_stream_send_waits_while_the_peer_does_not_read() -> None:
    """Writes stop being accepted once the kernel buffers and a small write buffer are full."""
    block = b"w" * (1 << 20)
    sent = 0

    async def serve_one(stream: ByteStream) -> None:
        await anyio.sleep_forever()  # never reads

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_listener, serve_one, "127.0.0.1", 0)
            client = await connect_socket_stream("127.0.0.1", port)
            with anyio.move_on_after(STALL):
                while sent < FLOOD_VOLUME:
                    await client.send(block)
                    sent += len(block)
            await anyio.aclose_forcefully(client)  # a plain aclose() would try to flush for a while
            tg.cancel_scope.cancel()
    assert sent < RSS_BOUND, f"{sent >> 20} MiB accepted by send() while the peer read nothing"


async def test_socket_stream_reports_a_reset_connection() -> None:
    async def serve_one(stream: ByteStream) -> None:
        raw = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        await stream.aclose()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_listener, serve_one, "127.0.0.1", 0)
            async with await connect_socket_stream("127.0.0.1", port) as client:
                with pytest.raises(anyio.BrokenResourceError):
                    while True:
                        await client.receive()
                        await client.send(b"x")
            tg.cancel_scope.cancel()
