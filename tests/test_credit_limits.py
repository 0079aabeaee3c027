"""Credit edge cases: completion needs no credit, and large credit never means unbounded memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from anyio_rsocket import Payload, RequestHandler, connect_tcp, serve_tcp
from anyio_rsocket.frames import (
    KeepaliveFrame,
    PayloadFrame,
    RequestChannelFrame,
    RequestStreamFrame,
    SetupFrame,
)
from anyio_rsocket.requester import STREAM_HIGH_WATER
from anyio_rsocket.testing import connected_pair

from .rawpeer import raw_client

pytestmark = pytest.mark.anyio


class Finite(RequestHandler):
    """A stream of exactly ``int(data)`` items; a channel echoing its inbound elements."""

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(b"%d" % index)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield payload
        async for item in inbound:
            yield item


async def frames_until_quiet(peer: object) -> list[object]:
    """Every frame the library sends before it echoes a keepalive probe (nothing is skipped)."""
    from .rawpeer import RawPeer

    assert isinstance(peer, RawPeer)
    await peer.send(KeepaliveFrame(True, 0, b"probe"))
    frames: list[object] = []
    while True:
        frame = await peer.receive()
        if isinstance(frame, KeepaliveFrame) and not frame.respond and frame.data == b"probe":
            return frames
        frames.append(frame)


async def test_stream_completes_when_the_last_item_used_the_last_credit() -> None:
    """REQUEST_STREAM n=3 for a 3-item stream: three PAYLOADs then COMPLETE, with no REQUEST_N."""
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Finite()) as peer:
            await peer.send(RequestStreamFrame(1, 3, b"3"))
            items = [await peer.expect(PayloadFrame) for _ in range(3)]
            assert [(f.data, f.next, f.complete) for f in items] == [
                (b"0", True, False),
                (b"1", True, False),
                (b"2", True, False),
            ]
            complete = await peer.expect(PayloadFrame)
            assert complete.stream_id == 1 and complete.complete and not complete.next
            assert await frames_until_quiet(peer) == []


async def test_stream_with_more_items_than_credit_sends_no_extra_item() -> None:
    """The item pulled ahead is held until credit arrives: n=2 on a 3-item stream sends 2, no COMPLETE."""
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Finite()) as peer:
            await peer.send(RequestStreamFrame(1, 2, b"3"))
            assert [(await peer.expect(PayloadFrame)).data for _ in range(2)] == [b"0", b"1"]
            assert await frames_until_quiet(peer) == []


async def test_empty_stream_completes_without_credit() -> None:
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Finite()) as peer:
            await peer.send(RequestStreamFrame(1, 0, b"0"))
            complete = await peer.expect(PayloadFrame)
            assert complete.complete and not complete.next


async def test_completed_channel_with_one_credit_gets_echo_then_complete() -> None:
    """REQUEST_CHANNEL with C and n=1: the echo, then COMPLETE without further credit."""
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Finite()) as peer:
            await peer.send(RequestChannelFrame(1, 1, b"only", complete=True))
            echo = await peer.expect(PayloadFrame)
            assert echo.data == b"only" and echo.next and not echo.complete
            complete = await peer.expect(PayloadFrame)
            assert complete.complete and not complete.next


async def test_manual_credit_for_exactly_the_items_sees_the_end() -> None:
    """Our client with initial_n=3 and no automatic credit on a 3-item stream reaches the end."""
    with anyio.fail_after(5):
        async with connected_pair(lambda rs: Finite()) as rs:
            async with rs.request_stream(Payload(b"3"), initial_n=3, auto_request=False) as stream:
                assert [item.data async for item in stream] == [b"0", b"1", b"2"]


class Firehose(RequestHandler):
    """An endless stream of 64 KiB items, counting what it produced."""

    def __init__(self) -> None:
        self.produced = 0

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        chunk = b"x" * 65536
        while True:
            self.produced += 1
            yield Payload(chunk)


async def test_unbounded_credit_with_an_idle_consumer_stops_reading_the_connection() -> None:
    """initial_n=2**31-1 and a consumer that reads nothing: once every task is blocked, the stream's
    buffer is bounded by the high-water mark (plus one read's worth), not by the credit.

    Without the pause the client's reader would keep draining the socket into the buffer and the
    responder would never block, so ``wait_all_tasks_blocked`` would not return in time.
    """
    handler = Firehose()
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_tcp, lambda rs: handler, "127.0.0.1", 0)
        with anyio.fail_after(20):
            async with connect_tcp("127.0.0.1", port) as rs:
                async with rs.request_stream(Payload(b""), initial_n=2**31 - 1) as stream:
                    first = await stream.receive()
                    await anyio.wait_all_tasks_blocked()
                    buffered_bytes = stream.buffered * len(first.data)
                    assert buffered_bytes <= STREAM_HIGH_WATER + (1 << 20)
                    paused_at = handler.produced
                    # The consumer catches up: reading resumes and items flow again.
                    for _ in range(stream.buffered + 100):
                        await stream.receive()
                    assert handler.produced > paused_at
        tg.cancel_scope.cancel()


LONG_SETUP = SetupFrame(
    keepalive_interval=3_600_000,
    max_lifetime=7_200_000,
    metadata_mime_type="application/octet-stream",
    data_mime_type="application/octet-stream",
)


@pytest.mark.virtual_time
async def test_server_holds_a_silent_client_to_max_lifetime_cap() -> None:
    """A client asking for a two-hour lifetime is dropped after the server's 0.5 s cap of silence."""
    with anyio.fail_after(5):
        async with raw_client(
            lambda rs: Finite(), setup=LONG_SETUP, max_lifetime_cap=0.5, keepalive_interval_cap=10.0
        ) as peer:
            started = anyio.current_time()
            # The server probes (its interval is held to half the capped lifetime); we stay silent.
            probe = await peer.expect(KeepaliveFrame)
            assert probe.respond
            await peer.expect_closed()
            assert 0.4 <= anyio.current_time() - started < 3


@pytest.mark.virtual_time
async def test_capped_keepalive_interval_probes_and_echoes_keep_the_client() -> None:
    """With the interval capped, the server sends KEEPALIVE(R) itself; echoing keeps the connection
    open well past the capped lifetime."""
    with anyio.fail_after(10):
        async with raw_client(
            lambda rs: Finite(), setup=LONG_SETUP, max_lifetime_cap=0.6, keepalive_interval_cap=0.1
        ) as peer:
            started = anyio.current_time()
            while anyio.current_time() - started < 1.5:  # 2.5 capped lifetimes
                probe = await peer.expect(KeepaliveFrame)
                assert probe.respond
                await peer.send(KeepaliveFrame(False, 0, probe.data))
            await peer.send(RequestStreamFrame(1, 5, b"1"))
            assert (await peer.expect_next(PayloadFrame)).data == b"0"
