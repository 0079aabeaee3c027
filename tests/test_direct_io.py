"""The task-switch-free paths between a connection and its socket (issue 15).

* ``send_now``: the task that queued a frame writes it itself when the writer is idle. Bytes the
  socket does not take at once stay with the transport and go out first with the next ``send``.
* frame consumers: on asyncio, frames that arrive while the reader waits are handed over from the
  I/O callback; anything else (a partial frame, a bad length) still takes the reader's path.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import ByteStream
from hypothesis import given, settings
from hypothesis import strategies as st

from anyio_rsocket import Payload, RequestHandler, connect_tcp, serve_tcp
from anyio_rsocket.framing import FrameBuffer, prefix_frames, split_whole_frames
from anyio_rsocket.listener import serve_listener
from anyio_rsocket.transports.sockets import AsyncioSocketStream, connect_socket_stream
from anyio_rsocket.transports.tcp import ByteStreamTransport
from anyio_rsocket.wire.errors import ConnectionClosedError

pytestmark = pytest.mark.anyio

TIMEOUT = 10
FRAME = b"\x00\x00\x00\x01\x10\x00" + b"payload"  # 6-byte header (stream 1), then data


# --- split_whole_frames -------------------------------------------------------------------------

frame_bodies = st.lists(st.binary(min_size=6, max_size=300), min_size=1, max_size=20)


@given(frame_bodies)
@settings(max_examples=200, deadline=None)
def test_whole_frames_split_like_the_frame_buffer(frames: list[bytes]) -> None:
    data = prefix_frames(frames)
    assert split_whole_frames(data) == frames == FrameBuffer().feed(data)


@given(frame_bodies, st.data())
@settings(max_examples=200, deadline=None)
def test_a_cut_frame_is_declined(frames: list[bytes], data: st.DataObject) -> None:
    encoded = prefix_frames(frames)
    cut = data.draw(st.integers(1, len(encoded) - 1))
    boundaries = {0}
    for frame in frames:
        boundaries.add(max(boundaries) + 3 + len(frame))
    expected = None if cut not in boundaries else split_whole_frames(encoded[:cut])
    assert split_whole_frames(encoded[:cut]) == expected
    if cut not in boundaries:
        assert split_whole_frames(encoded[:cut]) is None


def test_bad_lengths_are_declined_for_the_frame_buffer_to_report() -> None:
    assert split_whole_frames(b"\x00\x00\x05abcde") is None  # shorter than a header
    assert split_whole_frames(prefix_frames([b"x" * 100]), max_frame_size=99) is None
    assert split_whole_frames(b"") == []


# --- send_now -----------------------------------------------------------------------------------


class _RecordingStream(ByteStream):
    """Records what ``send`` writes; ``take`` is how many bytes the next nowait write accepts."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.take: int | None = None  # None: everything
        self.broken = False

    def write_nowait(self, data: bytes) -> int:
        if self.broken:
            return 0
        taken = len(data) if self.take is None else min(self.take, len(data))
        self.written += data[:taken]
        return taken

    async def send(self, item: bytes) -> None:
        if self.broken:
            raise anyio.BrokenResourceError
        self.written += item

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _direct_transport(stream: _RecordingStream) -> ByteStreamTransport:
    transport = ByteStreamTransport(stream)
    assert not transport.can_send_now  # not a socket stream it knows
    transport._write_nowait = stream.write_nowait  # what nowait_writer() gives a socket stream
    transport.can_send_now = True
    return transport


async def test_send_now_keeps_what_the_socket_did_not_take_for_the_next_send() -> None:
    stream = _RecordingStream()
    transport = _direct_transport(stream)
    first, second, third = [b"a" * 10], [b"b" * 20, b"c" * 7], [b"d" * 8]
    transport.send_now(first)
    assert not transport.holds_unsent
    stream.take = 5  # the socket buffer is nearly full
    transport.send_now(second)
    assert transport.holds_unsent
    stream.take = None
    transport.send_now(third)  # must not overtake the rest of ``second``
    assert transport.holds_unsent
    with anyio.fail_after(TIMEOUT):
        await transport.send([])
    assert not transport.holds_unsent
    assert bytes(stream.written) == prefix_frames(first + second + third)


async def test_send_now_on_a_broken_socket_reports_on_the_next_send() -> None:
    stream = _RecordingStream()
    transport = _direct_transport(stream)
    stream.broken = True
    transport.send_now([FRAME])  # no exception in the task that queued the frame
    assert transport.holds_unsent
    with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError):
        await transport.send([])


async def test_send_now_over_a_full_socket_delivers_everything_in_order() -> None:
    """A frame larger than the socket buffers: what the kernel refuses waits for ``send``."""
    big = b"\x00\x00\x00\x01\x10\x00" + bytes(range(256)) * 16384  # 4 MiB
    small = FRAME
    received: list[bytes] = []
    done = anyio.Event()

    async def serve_one(stream: ByteStream) -> None:
        buffer = FrameBuffer()
        while len(received) < 2:
            received.extend(buffer.feed(await stream.receive(1 << 20)))
        done.set()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_listener, serve_one, "127.0.0.1", 0)
            transport = ByteStreamTransport(await connect_socket_stream("127.0.0.1", port))
            assert transport.can_send_now  # asyncio: our socket stream; trio: the raw socket
            transport.send_now([big])
            transport.send_now([small])
            await transport.send([])
            await done.wait()
            await transport.aclose()
            tg.cancel_scope.cancel()
    assert received == [big, small]


# --- frame consumers (asyncio) --------------------------------------------------------------------


async def test_frames_arriving_while_the_reader_waits_go_to_the_consumer(anyio_backend_name: str) -> None:
    consumed: list[list[bytes]] = []
    received: list[list[bytes]] = []
    peer_ready = anyio.Event()
    peer: list[ByteStream] = []
    more = anyio.Event()

    async def serve_one(stream: ByteStream) -> None:
        peer.append(stream)
        peer_ready.set()
        await anyio.sleep_forever()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_listener, serve_one, "127.0.0.1", 0)
            stream = await connect_socket_stream("127.0.0.1", port)
            transport = ByteStreamTransport(stream)

            def consume(frames: list[bytes]) -> None:
                consumed.append(frames)
                more.set()

            supported = transport.set_frame_consumer(consume)
            assert supported == isinstance(stream, AsyncioSocketStream) == (anyio_backend_name == "asyncio")
            await peer_ready.wait()

            async def read() -> None:
                while True:
                    frames = await transport.receive()
                    received.append(frames)
                    more.set()

            tg.start_soon(read)
            await anyio.lowlevel.checkpoint()
            await peer[0].send(prefix_frames([FRAME, FRAME + b"2"]))  # whole frames
            await more.wait()
            more = anyio.Event()
            if supported:
                assert consumed == [[FRAME, FRAME + b"2"]] and received == []
            else:
                assert received == [[FRAME, FRAME + b"2"]]
            whole = prefix_frames([FRAME + b"3"])
            await peer[0].send(whole[:4])  # part of a frame: the reader's path, which times it
            while not transport._buffer.buffered:
                await anyio.lowlevel.checkpoint()
            await peer[0].send(whole[4:])  # declined too: a partial frame is pending
            while not received or received[-1] != [FRAME + b"3"]:
                await more.wait()
                more = anyio.Event()
            if supported:
                transport.poke()  # the reader is asked to look at its state: an empty batch
                await more.wait()
                assert received[-1] == []
                transport.set_frame_consumer(None)
            tg.cancel_scope.cancel()
        await transport.aclose()


# --- whole connections ----------------------------------------------------------------------------


class _Echo(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return payload


async def test_sequential_and_concurrent_round_trips_on_the_direct_paths() -> None:
    """Many small round trips (direct writes, consumed reads) mixed with bursts (batched)."""
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, lambda rs: _Echo(), "127.0.0.1", 0)
            async with connect_tcp("127.0.0.1", port) as rs:
                for i in range(200):
                    data = b"%d" % i
                    assert (await rs.request_response(Payload(data))).data == data

                results: dict[int, bytes] = {}

                async def call(i: int) -> None:
                    results[i] = (await rs.request_response(Payload(b"x" * i))).data

                async with anyio.create_task_group() as callers:
                    for i in range(300):
                        callers.start_soon(call, i)
                assert results == {i: b"x" * i for i in range(300)}
                stats = rs.stats
                assert stats.frames_sent >= 500 and stats.frames_received >= 500
            tg.cancel_scope.cancel()


async def test_connections_reading_at_once_each_get_their_own_bytes() -> None:
    """On asyncio every connection of a thread reads into one shared buffer: nothing may mix."""
    size = 1 << 20
    received: dict[int, bytes] = {}
    done = anyio.Event()

    async def serve_one(stream: ByteStream) -> None:
        chunks = []
        total = 0
        while total < size + 1:
            chunk = await stream.receive(1 << 20)
            chunks.append(chunk)
            total += len(chunk)
        data = b"".join(chunks)
        received[data[0]] = data
        if len(received) == 8:
            done.set()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_listener, serve_one, "127.0.0.1", 0)
            clients = [await connect_socket_stream("127.0.0.1", port) for _ in range(8)]
            async with anyio.create_task_group() as senders:
                for i, client in enumerate(clients):
                    senders.start_soon(client.send, bytes([i]) + bytes([i, 255 - i]) * (size // 2))
            await done.wait()
            for client in clients:
                await client.aclose()
            tg.cancel_scope.cancel()
    assert received == {i: bytes([i]) + bytes([i, 255 - i]) * (size // 2) for i in range(8)}
