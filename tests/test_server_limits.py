"""Transport and listener limits against hostile or broken peers.

* ``max_frame_size``: a larger frame is refused as soon as its length is announced (TCP prefix,
  WebSocket frame header), on servers and clients.
* ``frame_timeout``: once a frame has started, the rest must come within this many seconds.
* ``max_connections``: connections beyond it wait in the kernel's backlog until one ends.
* ``tls_handshake_timeout``: a TLS handshake that stalls or fails costs one DEBUG line, no traceback.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import anyio
import anyio.lowlevel
import pytest
import trustme
from anyio.abc import ByteStream, SocketStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from anyio_rsocket import (
    ConnectionClosedError,
    Payload,
    RequestHandler,
    RSocket,
    connect_tcp,
    connect_websocket,
    serve_tcp,
    serve_websocket,
)
from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import ErrorFrame, Frame, KeepaliveFrame, SetupFrame, decode_frame, encode_frame
from anyio_rsocket.framing import FrameBuffer, prefix_frames
from anyio_rsocket.transports.websocket import WebSocketTransport

from .rawpeer import DEFAULT_SETUP

pytestmark = pytest.mark.anyio

TIMEOUT = 10
LIMIT = 1024
FRAME_TIMEOUT = 0.3


class Echo(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return payload


# --- raw peers ------------------------------------------------------------------------------------


class RawTcp:
    """A raw client or server end: length-prefixed frames over an AnyIO stream."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.buffer = FrameBuffer()
        self.pending: list[bytes] = []

    async def send(self, *frames: Frame) -> None:
        await self.stream.send(prefix_frames([encode_frame(frame) for frame in frames]))

    async def receive(self) -> Frame | None:
        """The next frame, or ``None`` once the other side has closed."""
        while not self.pending:
            try:
                chunk = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            self.pending += self.buffer.feed(chunk)
        return decode_frame(self.pending.pop(0))

    async def frames_until_closed(self) -> list[Frame]:
        frames: list[Frame] = []
        while (frame := await self.receive()) is not None:
            frames.append(frame)
        return frames


class RawWebSocketClient:
    """A raw WebSocket client end (wsproto) over an AnyIO stream."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)

    async def upgrade(self) -> None:
        await self.stream.send(self.ws.send(Request(host="127.0.0.1", target="/")))
        while True:
            self.ws.receive_data(await self.stream.receive())
            for event in self.ws.events():
                assert isinstance(event, AcceptConnection), event
                return

    async def send(self, *frames: Frame) -> None:
        await self.stream.send(b"".join(self.ws.send(BytesMessage(encode_frame(f))) for f in frames))

    async def next_frame(self) -> Frame:
        while True:
            for event in self.ws.events():
                assert isinstance(event, BytesMessage), event
                return decode_frame(bytes(event.data))
            self.ws.receive_data(await self.stream.receive())

    async def events_until_closed(self) -> list[object]:
        events: list[object] = []
        while True:
            try:
                data: bytes | None = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = None
            self.ws.receive_data(data)
            for event in self.ws.events():
                events.append(decode_frame(bytes(event.data)) if isinstance(event, BytesMessage) else event)
            if data is None or any(isinstance(event, CloseConnection) for event in events):
                return events


@asynccontextmanager
async def server(transport: str, **options: object) -> AsyncIterator[int]:
    serve = serve_tcp if transport == "tcp" else serve_websocket
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(partial(serve, lambda rs: Echo(), "127.0.0.1", 0, **options))
        yield port
        tg.cancel_scope.cancel()


@asynccontextmanager
async def raw_connection(port: int) -> AsyncIterator[SocketStream]:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        yield stream


def _connection_error(frames: list[object]) -> ErrorFrame:
    errors = [frame for frame in frames if isinstance(frame, ErrorFrame)]
    assert len(errors) == 1, frames
    assert errors[0].stream_id == 0 and errors[0].error_code == ErrorCode.CONNECTION_ERROR
    return errors[0]


# --- max_frame_size -------------------------------------------------------------------------------


async def test_max_frame_size_refuses_an_announced_frame_over_tcp() -> None:
    """Only the 3-byte length (and a few bytes of body) are sent: the refusal does not wait for more."""
    with anyio.fail_after(TIMEOUT):
        async with server("tcp", max_frame_size=LIMIT) as port, raw_connection(port) as stream:
            peer = RawTcp(stream)
            await peer.send(DEFAULT_SETUP, KeepaliveFrame(True, 0, b"x" * (LIMIT - 20)))
            assert isinstance(await peer.receive(), KeepaliveFrame)  # a frame under the limit is fine
            await stream.send((LIMIT + 1).to_bytes(3, "big") + b"\0" * 10)
            error = _connection_error(await peer.frames_until_closed())
    assert f"the limit is {LIMIT} bytes" in error.data.decode()


async def test_max_frame_size_refuses_a_larger_message_over_websocket() -> None:
    """ERROR[CONNECTION_ERROR], then Close 1009 (the message is read to its end, not kept)."""
    with anyio.fail_after(TIMEOUT):
        async with server("ws", max_frame_size=LIMIT) as port, raw_connection(port) as stream:
            peer = RawWebSocketClient(stream)
            await peer.upgrade()
            await peer.send(DEFAULT_SETUP, KeepaliveFrame(True, 0, b"x" * (LIMIT - 20)))
            assert isinstance(await peer.next_frame(), KeepaliveFrame)  # a frame under the limit is fine
            await stream.send(peer.ws.send(BytesMessage(b"\0" * (LIMIT * 4))))
            events = await peer.events_until_closed()
    error = _connection_error(events)
    assert f"{LIMIT}-byte frame limit" in error.data.decode()
    closes = [event for event in events if isinstance(event, CloseConnection)]
    assert closes and closes[0].code == 1009


class _Chunks:
    """A raw channel delivering ``chunks``, then waiting forever."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.drained = anyio.Event()

    async def read(self) -> bytes:
        await anyio.lowlevel.checkpoint()
        if not self.chunks:
            self.drained.set()
            await anyio.sleep_forever()
        return self.chunks.pop(0)

    async def write(self, data: bytes) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_websocket_keeps_nothing_of_a_message_announced_over_the_limit() -> None:
    """The frame header announces 8 MiB against a 1 KiB limit: none of the payload is kept."""
    wire = Connection(ConnectionType.CLIENT).send(BytesMessage(b"\0" * (8 << 20)))
    chunks = [wire[offset : offset + 65536] for offset in range(0, 1 << 20, 65536)]  # its first MiB
    channel = _Chunks(*chunks)
    transport = WebSocketTransport(Connection(ConnectionType.SERVER), channel, max_frame_size=LIMIT)
    del wire
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(transport.receive)
            await channel.drained.wait()
            assert transport._partial_size == 0 and not transport._partial
            assert transport._refusing and transport._dropped > LIMIT
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_client_max_frame_size_refuses_large_frames(transport: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with server(transport) as port:
            connection = (
                connect_tcp("127.0.0.1", port, max_frame_size=LIMIT)
                if transport == "tcp"
                else connect_websocket(f"ws://127.0.0.1:{port}/", max_frame_size=LIMIT)
            )
            async with connection as rs:
                assert (await rs.request_response(Payload(b"small"))).data == b"small"
                # We may send more than we accept: the limit is on what the server sends.
                with pytest.raises(ConnectionClosedError):
                    await rs.request_response(Payload(b"x" * (LIMIT * 4)))
                await rs.wait_closed()


@pytest.mark.parametrize("size", [5, 1 << 24])
async def test_max_frame_size_must_be_possible(size: int) -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        async with connect_tcp("127.0.0.1", 1, max_frame_size=size):
            pass


# --- frame_timeout --------------------------------------------------------------------------------


async def test_frame_timeout_closes_a_stalled_frame_over_tcp() -> None:
    with anyio.fail_after(TIMEOUT):
        async with server("tcp", frame_timeout=FRAME_TIMEOUT) as port, raw_connection(port) as stream:
            peer = RawTcp(stream)
            await peer.send(DEFAULT_SETUP, KeepaliveFrame(True, 0, b"sync"))
            assert isinstance(await peer.receive(), KeepaliveFrame)
            await stream.send((500).to_bytes(3, "big") + b"\0" * 10)  # 10 bytes of a 500-byte frame
            started = time.monotonic()
            await peer.frames_until_closed()
            waited = time.monotonic() - started
    assert waited >= FRAME_TIMEOUT * 0.9


async def test_frame_timeout_closes_a_stalled_message_over_websocket() -> None:
    with anyio.fail_after(TIMEOUT):
        async with server("ws", frame_timeout=FRAME_TIMEOUT) as port, raw_connection(port) as stream:
            peer = RawWebSocketClient(stream)
            await peer.upgrade()
            await peer.send(DEFAULT_SETUP, KeepaliveFrame(True, 0, b"sync"))
            assert isinstance(await peer.next_frame(), KeepaliveFrame)
            partial_message = peer.ws.send(BytesMessage(encode_frame(KeepaliveFrame(True, 0, b"y" * 400))))
            await stream.send(partial_message[:30])
            started = time.monotonic()
            await peer.events_until_closed()
            waited = time.monotonic() - started
    assert waited >= FRAME_TIMEOUT * 0.9


async def test_frame_timeout_does_not_count_time_between_frames() -> None:
    """An idle connection (no frame started) is the keepalive's business, not the frame timeout's."""
    with anyio.fail_after(TIMEOUT):
        async with server("tcp", frame_timeout=FRAME_TIMEOUT) as port, raw_connection(port) as stream:
            peer = RawTcp(stream)
            await peer.send(DEFAULT_SETUP)
            await anyio.sleep(FRAME_TIMEOUT * 2)  # time passing, not a wait for an event
            await peer.send(KeepaliveFrame(True, 0, b"still here"))
            echo = await peer.receive()
    assert isinstance(echo, KeepaliveFrame) and echo.data == b"still here"


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_client_frame_timeout(transport: str) -> None:
    """A server that starts a frame and stalls: our client's connection closes."""

    async def stalling_server(stream: SocketStream) -> None:
        async with stream:
            if transport == "tcp":
                peer = RawTcp(stream)
                setup, probe = await peer.receive(), await peer.receive()
                assert isinstance(setup, SetupFrame) and isinstance(probe, KeepaliveFrame)
                await peer.send(KeepaliveFrame(False, 0, probe.data))
                await stream.send((500).to_bytes(3, "big") + b"\0" * 10)
            else:
                ws = WSConnection(ConnectionType.SERVER)
                messages: list[bytes] = []
                while len(messages) < 2:
                    ws.receive_data(await stream.receive())
                    for event in ws.events():
                        if isinstance(event, Request):
                            await stream.send(ws.send(AcceptConnection()))
                        elif isinstance(event, BytesMessage):
                            messages.append(bytes(event.data))
                probe = decode_frame(messages[1])
                assert isinstance(probe, KeepaliveFrame)
                await stream.send(ws.send(BytesMessage(encode_frame(KeepaliveFrame(False, 0, probe.data)))))
                await stream.send(ws.send(BytesMessage(b"\0" * 500))[:20])
            await anyio.sleep_forever()

    with anyio.fail_after(TIMEOUT):
        async with (
            await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(listener.serve, stalling_server)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            connection = (
                connect_tcp("127.0.0.1", port, frame_timeout=FRAME_TIMEOUT)
                if transport == "tcp"
                else connect_websocket(f"ws://127.0.0.1:{port}/", frame_timeout=FRAME_TIMEOUT)
            )
            async with connection as rs:
                await rs.wait_closed()
                with pytest.raises(ConnectionClosedError):
                    await rs.request_response(Payload(b"too late"))
            tg.cancel_scope.cancel()


# --- max_connections ------------------------------------------------------------------------------


async def test_max_connections_keeps_the_next_connection_waiting_until_one_ends() -> None:
    served: list[str] = []

    def factory(rsocket: RSocket) -> RequestHandler:
        served.append("served")
        return Echo()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(partial(serve_tcp, factory, "127.0.0.1", 0, max_connections=1))
            async with AsyncExitStack() as first_connection:
                first = await first_connection.enter_async_context(connect_tcp("127.0.0.1", port))
                assert served == ["served"]
                async with await anyio.connect_tcp("127.0.0.1", port) as second_stream:
                    # The kernel completes the second connection, which sends SETUP and a KEEPALIVE.
                    second = RawTcp(second_stream)
                    await second.send(DEFAULT_SETUP, KeepaliveFrame(True, 0, b"second"))
                    # The server goes on serving the first one meanwhile, without taking the second.
                    for index in range(20):
                        assert (await first.request_response(Payload(b"%d" % index))).data == b"%d" % index
                    assert served == ["served"]
                    await first_connection.aclose()
                    served.append("first closed")
                    echo = await second.receive()  # served now that the first has ended
                    assert isinstance(echo, KeepaliveFrame) and echo.data == b"second"
                    assert served == ["served", "first closed", "served"]
            # The slot of a connection that ended is free again.
            async with connect_tcp("127.0.0.1", port) as third:
                assert (await third.request_response(Payload(b"3"))).data == b"3"
            tg.cancel_scope.cancel()


async def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        await serve_tcp(lambda rs: Echo(), "127.0.0.1", 0, max_connections=0)


# --- TLS handshake ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_tls_handshake_timeout_and_failure_cost_one_quiet_line_each(
    transport: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="anyio_rsocket.server")
    options = {"ssl_context": server_context, "tls_handshake_timeout": FRAME_TIMEOUT}
    with anyio.fail_after(TIMEOUT):
        async with server(transport, **options) as port:
            async with raw_connection(port) as stream:  # connects and never says a word
                started = time.monotonic()
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()
                waited = time.monotonic() - started
            async with raw_connection(port) as stream:  # not TLS at all
                await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    while True:
                        await stream.receive()
            # The server still serves well-behaved TLS clients.
            connection = (
                connect_tcp("127.0.0.1", port, ssl_context=client_context)
                if transport == "tcp"
                else connect_websocket(f"wss://127.0.0.1:{port}/", ssl_context=client_context)
            )
            async with connection as rs:
                assert (await rs.request_response(Payload(b"tls"))).data == b"tls"
    assert waited >= FRAME_TIMEOUT * 0.9
    handshake_lines = [record for record in caplog.records if "TLS handshake" in record.getMessage()]
    assert len(handshake_lines) == 2, [record.getMessage() for record in caplog.records]
    assert "timed out" in handshake_lines[0].getMessage()
    assert "failed" in handshake_lines[1].getMessage()
    for record in caplog.records:  # nothing louder than DEBUG, from us or from AnyIO, no traceback
        assert record.levelno <= logging.DEBUG, record.getMessage()
        assert record.exc_info is None and record.exc_text is None, record.getMessage()
