"""Hostile input: every abuse gets a clear error and a clean close, with memory bounded."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator

import anyio
import pytest

from anyio_rsocket import Payload, RequestHandler, connect_tcp, serve_tcp
from anyio_rsocket import connection as connection_module
from anyio_rsocket.errors import ConnectionClosedError, ConnectionErrorReceived, ErrorCode
from anyio_rsocket.frames import (
    MAX_REQUEST_N,
    ErrorFrame,
    KeepaliveFrame,
    PayloadFrame,
    RequestNFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    decode_frame,
    encode_frame,
)
from anyio_rsocket.framing import FrameBuffer, prefix_frames
from anyio_rsocket.peer import tasks as tasks_module
from anyio_rsocket.server import serve_connection
from anyio_rsocket.transports.base import Transport
from anyio_rsocket.transports.memory import memory_transport_pair

from .rawpeer import DEFAULT_SETUP, RawPeer, raw_client

pytestmark = pytest.mark.anyio


class Blocking(RequestHandler):
    """Handlers that never finish, so requests stay in flight."""

    async def request_response(self, payload: Payload) -> Payload:
        await anyio.sleep_forever()
        raise AssertionError

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        while True:
            yield Payload(b"x")


async def _raw_tcp_exchange(port: int, data: bytes) -> list[object]:
    """Send raw bytes to a server and collect the frames it answers before closing."""
    frames: list[object] = []
    buffer = FrameBuffer()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        while True:
            try:
                chunk = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return frames
            frames.extend(decode_frame(raw) for raw in buffer.feed(chunk))


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("declared length under the header size T4", b"\x00\x00\x02ab", "shorter than the 6-byte header"),
        ("truncated REQUEST_N T4", bytes.fromhex("0000080000000120000000"), "shorter than its minimum"),
        (
            "metadata overrun MD2",
            bytes.fromhex("00000b000000011100000fff6162"),
            "declares 4095 bytes of metadata",
        ),
    ],
)
async def test_malformed_input_over_tcp_gets_connection_error(name: str, payload: bytes, reason: str) -> None:
    """Malformed frames after SETUP: ERROR[CONNECTION_ERROR] naming the problem, then close (T4)."""
    setup = prefix_frames([encode_frame(DEFAULT_SETUP)])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, lambda rs: Blocking(), "127.0.0.1", 0)
            frames = await _raw_tcp_exchange(port, setup + payload)
            (error,) = frames
            assert isinstance(error, ErrorFrame)
            assert error.stream_id == 0 and error.error_code == ErrorCode.CONNECTION_ERROR
            assert reason in error.message, (name, error.message)
            # Other connections of the same server are unaffected.
            async with connect_tcp("127.0.0.1", port) as rs:
                assert not rs.is_closed
            tg.cancel_scope.cancel()


async def test_request_flood_is_rejected_beyond_the_limit() -> None:
    """More concurrent requests than allowed: the excess gets ERROR[REJECTED], the rest proceed."""
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Blocking(), max_concurrent_requests=5) as peer:
            await peer.send(*(RequestResponseFrame(stream_id, b"") for stream_id in range(1, 41, 2)))
            rejected = [await peer.expect(ErrorFrame) for _ in range(15)]
            assert {frame.error_code for frame in rejected} == {ErrorCode.REJECTED}
            assert sorted(frame.stream_id for frame in rejected) == list(range(11, 41, 2))


#: Bytes a REQUEST_N for an already unbounded stream may leave behind, on average. State that grows
#: per frame (a list entry, a counter object, a log line kept) costs tens of bytes or more.
RETAINED_PER_REQUEST_N_LIMIT = 8


class _OneThenWait(RequestHandler):
    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        yield Payload(b"only")
        await anyio.sleep_forever()


async def _retained_per_request_n(frames: int = 4000) -> float:
    """Average bytes still allocated per REQUEST_N(2^31-1) after a flood on one saturated stream."""
    with anyio.fail_after(10):
        async with raw_client(lambda rs: _OneThenWait()) as peer:
            await peer.send(RequestStreamFrame(1, 1, b""))
            await peer.expect(PayloadFrame)
            flood = [encode_frame(RequestNFrame(1, MAX_REQUEST_N))] * 500
            await peer.send_raw(*flood)  # warm-up: credit saturates, caches and buffers settle
            await peer.round_trip()
            tracemalloc.start()
            try:
                await peer.round_trip()
                before, _ = tracemalloc.get_traced_memory()
                for _ in range(frames // len(flood)):
                    await peer.send_raw(*flood)
                await peer.round_trip()  # every REQUEST_N was processed, and none was answered
                after, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    return (after - before) / frames


async def test_request_n_flood_keeps_memory_flat_RN4() -> None:
    """Thousands of REQUEST_N(2^31-1) saturate credit without growing state (edge case 3)."""
    assert await _retained_per_request_n() < RETAINED_PER_REQUEST_N_LIMIT


async def test_request_n_flood_measure_sees_a_small_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measurement above is sharp enough: a responder keeping 100 bytes per REQUEST_N fails it."""
    from anyio_rsocket.protocol.inbound import InboundCore

    kept: list[bytes] = []
    original = InboundCore._on_request_n  # the core's handler of every REQUEST_N frame

    def leaky(self: InboundCore, frame: RequestNFrame) -> None:
        kept.append(bytes(67))  # a 100-byte object (33 bytes of header) per frame
        original(self, frame)

    monkeypatch.setattr(InboundCore, "_on_request_n", leaky)
    assert await _retained_per_request_n() >= RETAINED_PER_REQUEST_N_LIMIT
    assert len(kept) >= 4000


class _StuckTransport(Transport):
    """Wraps a transport whose peer never reads: every send blocks forever."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def send(self, frames: list[bytes]) -> None:
        await anyio.sleep_forever()

    async def receive(self) -> list[bytes]:
        return await self.inner.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_peer_that_never_reads_cannot_grow_our_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keepalive flood from a peer that never reads our answers: the reader pauses (bounded)."""
    monkeypatch.setattr(tasks_module, "READER_PAUSE_BYTES", 10_000)
    client_transport, server_transport = memory_transport_pair()
    stuck = _StuckTransport(server_transport)
    peer = RawPeer(client_transport)
    seen: list[connection_module.RSocket] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            def factory(rs: connection_module.RSocket) -> RequestHandler:
                seen.append(rs)
                return Blocking()

            tg.start_soon(serve_connection, stuck, factory)
            await peer.send(DEFAULT_SETUP)
            for _ in range(10):
                await peer.send(*(KeepaliveFrame(True, 0, b"k" * 50) for _ in range(500)))
            await anyio.wait_all_tasks_blocked()
            (server,) = seen
            # 5,000 echoes of 64 bytes would be 320 kB; the queue stops one batch past the mark.
            assert server.write_backlog <= 10_000 + 64 * 1
            tg.cancel_scope.cancel()


async def test_flooded_connection_leaves_other_connections_working() -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, lambda rs: Blocking(), "127.0.0.1", 0)
            async with await anyio.connect_tcp("127.0.0.1", port) as flooder:
                await flooder.send(prefix_frames([encode_frame(DEFAULT_SETUP)]))
                junk = prefix_frames([encode_frame(RequestNFrame(99, 5))] * 5000)
                await flooder.send(junk)
                async with connect_tcp("127.0.0.1", port) as rs:
                    async with rs.request_stream(Payload(b""), initial_n=3, auto_request=False) as stream:
                        assert [await stream.receive() for _ in range(3)] == [Payload(b"x")] * 3
            tg.cancel_scope.cancel()


async def test_unknown_frame_type_zero_is_never_valid_U1() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Blocking()) as peer:
            await peer.send_raw(bytes.fromhex("000000010000"))
            error = await peer.expect(ErrorFrame)
            assert error.error_code == ErrorCode.CONNECTION_ERROR and "0x00" in error.message
            await peer.expect_closed()


async def test_connection_error_from_peer_fails_live_streams_E2() -> None:
    """ERROR[CONNECTION_ERROR] from the client ends every live stream of our server: its own
    requests fail with ConnectionErrorReceived carrying the peer's message, its responders are torn
    down, nothing more is sent, and the connection closes."""
    servers: list[connection_module.RSocket] = []
    ready = anyio.Event()
    responder_closed = anyio.Event()

    class Live(RequestHandler):
        async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
            try:
                yield Payload(b"x")
                await anyio.sleep_forever()
            finally:
                responder_closed.set()

    def factory(rs: connection_module.RSocket) -> RequestHandler:
        servers.append(rs)
        ready.set()
        return Live()

    failures: dict[str, ConnectionErrorReceived] = {}

    async def server_request_response(server: connection_module.RSocket) -> None:
        with pytest.raises(ConnectionErrorReceived) as raised:
            await server.request_response(Payload(b"pending"))
        failures["request-response"] = raised.value

    async def server_request_stream(server: connection_module.RSocket, delivered: anyio.Event) -> None:
        async with server.request_stream(Payload(b"live")) as stream:
            assert (await stream.receive()).data == b"first"
            delivered.set()
            with pytest.raises(ConnectionErrorReceived) as raised:
                await stream.receive()
        failures["request-stream"] = raised.value

    with anyio.fail_after(5):
        async with raw_client(factory) as peer:
            await peer.send(RequestStreamFrame(1, 1, b""))
            assert (await peer.expect(PayloadFrame)).data == b"x"
            await ready.wait()
            (server,) = servers
            async with anyio.create_task_group() as tg:
                tg.start_soon(server_request_response, server)
                pending = await peer.expect(RequestResponseFrame)
                delivered = anyio.Event()
                tg.start_soon(server_request_stream, server, delivered)
                live = await peer.expect(RequestStreamFrame)
                await peer.send(PayloadFrame(live.stream_id, b"first", next=True))
                await delivered.wait()
                assert {pending.stream_id, live.stream_id, 1} <= set(server._streams)
                await peer.send(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, b"going"))
            await peer.expect_closed()  # and no frame at all between the ERROR and the close
            await responder_closed.wait()
    assert set(failures) == {"request-response", "request-stream"}
    for error in failures.values():
        assert error.code == ErrorCode.CONNECTION_ERROR and error.message == "going"
    assert isinstance(server.close_reason, ConnectionErrorReceived)
    assert server.close_reason.message == "going"
    assert not server._streams


async def test_custom_error_codes_survive_E1() -> None:
    """Edge case 21: 0xFFFFFFFE and codes >= 0x301 decode unsigned and re-encode losslessly."""
    from anyio_rsocket import RSocketError

    class Custom(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            raise RSocketError("custom", int(payload.data))

    from anyio_rsocket.testing import connected_pair

    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Custom()) as rs:
            for code in (0x301, 0xFFFFFFFE):
                with pytest.raises(RSocketError) as raised:
                    await rs.request_response(Payload(b"%d" % code))
                assert raised.value.code == code and raised.value.message == "custom"
    with pytest.raises(ConnectionClosedError):
        await rs.request_response(Payload(b"closed"))


async def test_fire_and_forget_flood_pauses_reading_instead_of_dropping() -> None:
    """Over max_concurrent_requests, fire-and-forget is never lost: the reader pauses instead."""
    from anyio_rsocket.frames import RequestFireAndForgetFrame

    started = 0
    release = anyio.Event()
    over_limit = anyio.Event()
    all_done = anyio.Event()

    class Slow(RequestHandler):
        async def fire_and_forget(self, payload: Payload) -> None:
            nonlocal started
            started += 1
            if started == 6:
                over_limit.set()
            await release.wait()
            if started == 20:
                all_done.set()

    with anyio.fail_after(5):
        async with raw_client(lambda rs: Slow(), max_concurrent_requests=5) as peer:
            await peer.send(*(RequestFireAndForgetFrame(stream_id, b"") for stream_id in range(1, 41, 2)))
            await over_limit.wait()
            await anyio.wait_all_tasks_blocked()
            assert started == 6  # the one over the limit was taken; then the reader waited
            release.set()
            await all_done.wait()
    assert started == 20
