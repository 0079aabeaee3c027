"""The WebSocket fast paths: masking (pure Python and compiled), frames built and messages reassembled
without needless copies, ``send_now`` and frames parsed in the I/O callback (set_frame_consumer)."""

from __future__ import annotations

import os
import random
import sys
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import ByteStream, SocketStream
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage

from anyio_rsocket.errors import ConnectionClosedError, ProtocolError
from anyio_rsocket.transports import websocket, wsframes
from anyio_rsocket.transports.sockets import connect_socket_stream
from anyio_rsocket.transports.websocket import WebSocketTransport
from anyio_rsocket.transports.wsframes import (
    LARGE_PAYLOAD,
    OP_PING,
    OP_PONG,
    MessageDecoder,
    apply_mask,
    build_messages,
    encode_frame,
    encode_messages,
    mask_in_place,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 10
SIZES = (0, 1, 3, 4, 5, 13, 125, 8191, 8192, 8193, 70_001, LARGE_PAYLOAD + 3)


def naive_mask(data: bytes, key: bytes) -> bytes:
    return bytes(byte ^ key[index % 4] for index, byte in enumerate(data))


@pytest.fixture(params=["pure", "compiled"])
def masking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the pure-Python masking, then with the compiled one if one is installed."""
    if request.param == "pure":
        monkeypatch.setattr(wsframes, "_c_mask", None)
    elif wsframes._c_mask is None:
        pytest.skip("no compiled masking function is installed")
    return str(request.param)


# --- masking ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_apply_mask_matches_the_definition(masking: str, size: int) -> None:
    data, key = os.urandom(size), os.urandom(4)
    masked = apply_mask(data, key)
    assert type(masked) is bytes
    assert masked == naive_mask(data, key)
    assert apply_mask(masked, key) == data
    assert apply_mask(bytearray(data), key) == masked


@pytest.mark.parametrize("start", [0, 1, 2, 3, 5, 14])
@pytest.mark.parametrize("size", [0, 1, 7, 8192, 70_001])
def test_mask_in_place_masks_from_start_and_leaves_the_head(masking: str, start: int, size: int) -> None:
    head, data, key = os.urandom(start), os.urandom(size), os.urandom(4)
    buffer = bytearray(head + data)
    mask_in_place(buffer, key, start)
    assert buffer[:start] == head
    assert buffer[start:] == naive_mask(data, key)


# --- building frames -----------------------------------------------------------------------------


def test_large_unmasked_payloads_are_written_as_they_are() -> None:
    large, other = os.urandom(LARGE_PAYLOAD), os.urandom(LARGE_PAYLOAD + 1)
    buffers = build_messages([b"a", large, b"b", b"c", other], mask=False)
    assert len(buffers) == 4
    assert buffers[1] is large and buffers[3] is other  # not copied
    assert buffers[0].endswith(bytes((0x82, 127)) + LARGE_PAYLOAD.to_bytes(8, "big"))
    assert MessageDecoder(masked=False, max_message_size=1 << 20).feed(b"".join(buffers)) == [
        b"a",
        large,
        b"b",
        b"c",
        other,
    ]


def test_small_frames_are_joined_into_one_buffer(masking: str) -> None:
    payloads = [os.urandom(size) for size in (0, 5, 200, 70_000)]
    for mask in (True, False):
        buffers = build_messages(payloads, mask=mask)
        assert len(buffers) == 1
        assert MessageDecoder(masked=mask, max_message_size=1 << 20).feed(bytes(buffers[0])) == payloads


def test_a_large_masked_payload_is_masked_in_a_buffer_of_its_own(masking: str) -> None:
    payloads = [b"x", os.urandom(LARGE_PAYLOAD), os.urandom(LARGE_PAYLOAD + 7), b"y"]
    buffers = build_messages(payloads, mask=True)
    assert [len(buffer) for buffer in buffers] == [
        2 + 4 + 1,
        14 + LARGE_PAYLOAD,
        14 + LARGE_PAYLOAD + 7,
        2 + 4 + 1,
    ]
    wire = b"".join(buffers)
    assert MessageDecoder(masked=True, max_message_size=1 << 20).feed(wire) == payloads
    # An independent implementation reads it too, and each frame has a key of its own.
    peer = Connection(ConnectionType.SERVER)
    peer.receive_data(wire)
    assert [bytes(event.data) for event in peer.events() if isinstance(event, BytesMessage)] == payloads
    assert buffers[1][10:14] != buffers[2][10:14]  # 1 chance in 2**32 of a false failure


# --- reassembling messages -----------------------------------------------------------------------


@pytest.mark.parametrize("mask", [True, False])
def test_large_messages_in_random_pieces(masking: str, mask: bool) -> None:
    rng = random.Random(6455)
    payloads = [rng.randbytes(rng.choice((3, 20_000, 70_000, 300_001))) for _ in range(12)]
    wire = encode_messages(payloads, mask=mask)
    decoder = MessageDecoder(masked=mask, max_message_size=1 << 20)
    messages: list[bytes] = []
    position = 0
    while position < len(wire):
        size = rng.choice((1, 100, 16_384, 40_000, 262_144))
        messages += decoder.feed(wire[position : position + size])
        position += size
    assert messages == payloads
    assert all(type(message) is bytes for message in messages)
    assert not decoder.mid_message


def test_bytes_fed_from_a_reused_buffer_are_not_kept_by_reference() -> None:
    payload = os.urandom(100_000)
    wire = encode_messages([payload], mask=True)
    decoder = MessageDecoder(masked=True, max_message_size=1 << 20)
    reused = bytearray(wire[:60_000])
    assert decoder.feed(reused) == []
    reused[:] = bytes(len(reused))  # the caller reuses its buffer
    assert decoder.feed(wire[60_000:]) == [payload]


# --- finding a compiled masking function ---------------------------------------------------------


def test_a_masking_function_is_used_only_if_it_masks_correctly(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong(key: bytes, buffer: bytearray) -> None:
        buffer[:4] = bytes(4)

    def broken() -> None:
        raise ImportError("built for another interpreter")

    def right(key: bytes, buffer: bytearray) -> None:
        buffer[:] = naive_mask(bytes(buffer), key)

    assert not wsframes._checked(wrong)
    assert wsframes._checked(right)
    monkeypatch.setattr(wsframes, "_websockets_mask", broken)
    assert wsframes.load_accelerator() is None
    monkeypatch.setattr(wsframes, "_websockets_mask", lambda: wrong)
    assert wsframes.load_accelerator() is None
    monkeypatch.setattr(wsframes, "_websockets_mask", lambda: right)
    assert wsframes.load_accelerator() == ("websockets.speedups", right)


def test_websockets_speedups_is_adapted_to_mask_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    speedups = types.ModuleType("websockets.speedups")
    speedups.apply_mask = lambda data, mask: naive_mask(bytes(data), mask)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "websockets.speedups", speedups)
    mask = wsframes._websockets_mask()
    assert mask is not None and wsframes._checked(mask)
    found = wsframes.load_accelerator()
    assert found is not None and found[0] == "websockets.speedups"


def test_without_websockets_masking_is_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "websockets.speedups", None)  # an import of it fails
    assert wsframes._websockets_mask() is None
    assert wsframes.load_accelerator() is None


def test_the_speedups_extra_provides_the_compiled_function() -> None:
    """The test extra installs ``websockets`` (the ``speedups`` extra): its C masking is found."""
    assert wsframes.ACCELERATOR == "websockets.speedups"


# --- send_now ------------------------------------------------------------------------------------


class FakeStream(ByteStream):
    """A byte stream that records what is sent; ``gate`` (when set up) holds ``send`` until opened."""

    def __init__(self, incoming: bytes = b"") -> None:
        self.wire = bytearray()
        self.incoming = incoming
        self.broken = False
        self.gate: anyio.Event | None = None
        self.sending = anyio.Event()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.incoming:
            data, self.incoming = self.incoming, b""
            return data
        await anyio.sleep_forever()
        raise AssertionError

    async def send(self, item: bytes) -> None:
        self.sending.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.broken:
            raise anyio.BrokenResourceError
        self.wire += item

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class NowaitWriter:
    """Takes at most ``budget`` bytes per call into the stream's record (0 when broken)."""

    def __init__(self, stream: FakeStream, budget: int) -> None:
        self.stream = stream
        self.budget = budget
        self.calls = 0

    def __call__(self, data: bytes) -> int:
        self.calls += 1
        if self.stream.broken:
            return 0
        taken = bytes(data[: self.budget])
        self.stream.wire += taken
        return len(taken)


def fast_client(
    monkeypatch: pytest.MonkeyPatch, stream: FakeStream, budget: int
) -> tuple[WebSocketTransport, NowaitWriter]:
    """A client transport over ``stream``, written without waiting by a writer taking ``budget``."""
    writer = NowaitWriter(stream, budget)
    monkeypatch.setattr(websocket, "nowait_writer", lambda _stream: writer)
    transport = WebSocketTransport(Connection(ConnectionType.CLIENT), websocket._ByteStreamChannel(stream))
    assert transport.can_send_now
    return transport, writer


def messages_in(wire: bytes | bytearray) -> list[bytes]:
    """The messages a server reads from what the client wrote (pongs and Closes are left out)."""
    decoder = MessageDecoder(masked=True, max_message_size=1 << 24)
    messages = decoder.feed(bytes(wire))
    assert decoder.error is None and not decoder.mid_message
    return messages


async def test_what_send_now_writes_at_once_needs_no_send(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FakeStream()
    transport, writer = fast_client(monkeypatch, stream, budget=1 << 30)
    frames = [b"first", os.urandom(LARGE_PAYLOAD), b"last"]
    transport.send_now(frames)
    assert not transport.holds_unsent
    assert writer.calls == 3  # the large frame has a buffer of its own
    assert messages_in(stream.wire) == frames
    assert not stream.sending.is_set()


async def test_a_partial_write_keeps_the_rest_for_the_next_send_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = FakeStream()
    transport, writer = fast_client(monkeypatch, stream, budget=1000)
    first, second, third = os.urandom(LARGE_PAYLOAD), b"second", b"third"
    transport.send_now([first])
    assert transport.holds_unsent
    assert len(stream.wire) == 1000
    transport.send_now([second])  # kept behind the rest, not written ahead of it
    assert writer.calls == 1
    with anyio.fail_after(TIMEOUT):
        await transport.send([third])
    assert not transport.holds_unsent
    assert messages_in(stream.wire) == [first, second, third]
    writer.budget = 1 << 30
    transport.send_now([b"again"])  # nothing held any more: written at once
    assert messages_in(stream.wire) == [first, second, third, b"again"]


async def test_send_of_nothing_writes_what_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FakeStream()
    transport, _ = fast_client(monkeypatch, stream, budget=0)
    transport.send_now([b"one", b"two"])
    assert transport.holds_unsent and not stream.wire
    with anyio.fail_after(TIMEOUT):
        await transport.send([])
    assert not transport.holds_unsent
    assert messages_in(stream.wire) == [b"one", b"two"]


async def test_a_broken_stream_is_reported_by_the_next_send(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FakeStream()
    transport, _ = fast_client(monkeypatch, stream, budget=1 << 30)
    stream.broken = True
    transport.send_now([b"lost"])  # no error here
    assert transport.holds_unsent
    with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError, match="connection lost"):
        await transport.send([])
    with pytest.raises(ConnectionClosedError):
        await transport.send([b"after"])


async def test_send_now_does_not_write_while_the_reader_writes_a_pong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = FakeStream(encode_frame(OP_PING, b"hi") + encode_messages([b"m"], mask=False))
    stream.gate = anyio.Event()
    transport, writer = fast_client(monkeypatch, stream, budget=1 << 30)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            received: list[list[bytes]] = []

            async def read() -> None:
                received.append(await transport.receive())

            tg.start_soon(read)
            await stream.sending.wait()  # the reader is writing the pong, held by the gate
            transport.send_now([b"frame"])
            assert writer.calls == 0 and transport.holds_unsent
            stream.gate.set()
        assert received == [[b"m"]]
        await transport.send([])
    assert stream.wire[0] == 0x80 | OP_PONG  # the pong first, then the frame
    assert messages_in(stream.wire) == [b"frame"]


async def test_send_now_after_the_close_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = FakeStream()
    transport, writer = fast_client(monkeypatch, stream, budget=1 << 30)
    with anyio.fail_after(TIMEOUT):
        await transport.aclose()
    written = bytes(stream.wire)
    assert written[0] == 0x88  # the Close
    transport.send_now([b"too late"])
    assert writer.calls == 0
    with pytest.raises(ConnectionClosedError):
        await transport.send([])
    assert stream.wire == written


async def test_no_send_now_without_a_nowait_writer() -> None:
    transport = WebSocketTransport(
        Connection(ConnectionType.CLIENT), websocket._ByteStreamChannel(FakeStream())
    )
    assert not transport.can_send_now
    assert not transport.set_frame_consumer(lambda frames: None)
    with pytest.raises(RuntimeError):
        transport.send_now([b"x"])


class FakeNetworkStream:
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        assert type(buffer) is bytes

    async def aclose(self) -> None:
        pass


async def test_httpx_streams_are_written_with_an_await_and_bytes() -> None:
    transport = WebSocketTransport(
        Connection(ConnectionType.CLIENT),
        websocket._NetworkStreamChannel(FakeNetworkStream()),
        io_errors=(Exception,),
    )
    assert not transport.can_send_now
    with anyio.fail_after(TIMEOUT):
        await transport.send([os.urandom(LARGE_PAYLOAD)])  # masked in a bytearray, written as bytes


# --- over real sockets ---------------------------------------------------------------------------


@asynccontextmanager
async def socket_pair() -> AsyncIterator[tuple[ByteStream, SocketStream]]:
    """Our client stream (ours on asyncio, AnyIO's on trio) and the peer's end."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        (inner,) = listener.listeners
        port = inner.extra(anyio.abc.SocketAttribute.local_port)
        ours = await connect_socket_stream("127.0.0.1", port)
        async with ours, await inner.accept() as peer:
            yield ours, peer


async def read_messages(peer: SocketStream, count: int) -> list[bytes]:
    decoder = MessageDecoder(masked=True, max_message_size=1 << 24)
    messages: list[bytes] = []
    while len(messages) < count:
        messages += decoder.feed(await peer.receive(1 << 20))
    return messages


async def test_send_now_over_a_socket_that_fills_up() -> None:
    """Written while the peer does not read: the socket takes some, the rest waits, in order."""
    payloads = [os.urandom(4 << 20) for _ in range(4)] + [b"small"]
    with anyio.fail_after(TIMEOUT):
        async with socket_pair() as (ours, peer):
            transport = WebSocketTransport(
                Connection(ConnectionType.CLIENT), websocket._ByteStreamChannel(ours)
            )
            assert transport.can_send_now
            for payload in payloads:
                transport.send_now([payload])
            assert transport.holds_unsent  # 16 MiB is more than the socket buffers take unread
            async with anyio.create_task_group() as tg:
                received: list[list[bytes]] = []

                async def read() -> None:
                    received.append(await read_messages(peer, len(payloads)))

                tg.start_soon(read)
                await transport.send([])
                assert not transport.holds_unsent
            assert received == [payloads]


async def test_frames_are_parsed_in_the_io_callback(anyio_backend: str) -> None:
    """On asyncio whole messages go to the consumer without waking the reader; what needs the
    reader (a ping to answer, a message that is not complete) makes its receive() return []."""
    with anyio.fail_after(TIMEOUT):
        async with socket_pair() as (ours, peer):
            transport = WebSocketTransport(
                Connection(ConnectionType.CLIENT), websocket._ByteStreamChannel(ours), frame_timeout=0.5
            )
            consumed: list[bytes] = []
            arrived = anyio.Event()

            def consumer(frames: list[bytes]) -> None:
                consumed.extend(frames)
                if len(consumed) == 2:
                    arrived.set()

            if not transport.set_frame_consumer(consumer):
                assert anyio_backend == "trio"
                return
            async with anyio.create_task_group() as tg:
                results: list[list[bytes]] = []
                woken = anyio.Event()

                async def receive() -> None:
                    results.append(await transport.receive())
                    woken.set()

                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                await peer.send(encode_messages([b"one", b"two"], mask=False))
                await arrived.wait()
                await anyio.wait_all_tasks_blocked()
                assert consumed == [b"one", b"two"] and not results

                await peer.send(encode_frame(OP_PING, b"are you there"))
                await woken.wait()
                assert results == [[]]
                pong = await peer.receive()
                assert pong[0] == 0x80 | OP_PONG
                assert MessageDecoder(masked=True, max_message_size=1024).feed(pong) == []

                # A message cut short: the reader is woken, then gives the rest frame_timeout.
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                wire = encode_messages([b"cut short"], mask=False)
                woken = anyio.Event()
                await peer.send(wire[:5])
                await woken.wait()
                assert results == [[], []]
                with pytest.raises(ProtocolError, match="did not arrive in full"):
                    await transport.receive()
                assert consumed == [b"one", b"two"]
            transport.set_frame_consumer(None)
            await transport.aclose()


async def test_poke_makes_a_waiting_receive_return_nothing(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with socket_pair() as (ours, peer):
            transport = WebSocketTransport(
                Connection(ConnectionType.CLIENT), websocket._ByteStreamChannel(ours)
            )
            if not transport.set_frame_consumer(lambda frames: None):
                assert anyio_backend == "trio"
                return
            async with anyio.create_task_group() as tg:
                results: list[list[bytes]] = []

                async def receive() -> None:
                    results.append(await transport.receive())

                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                transport.poke()
            assert results == [[]]
            # Still usable: without a consumer, a message comes from receive().
            transport.set_frame_consumer(None)
            await peer.send(encode_messages([b"later"], mask=False))
            assert await transport.receive() == [b"later"]
            await transport.aclose()
