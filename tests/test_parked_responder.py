"""Responder streams parked while they wait for credit: no task of their own, same behaviour.

A stream whose generator is suspended at a ``yield`` with no credit for the item it yielded keeps
only that generator and the item; REQUEST_N resumes it on a worker, CANCEL and the end of the
connection close the generator (its ``finally`` blocks run). Every test runs on asyncio and trio.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from anyio_rsocket import ApplicationError, Payload, RejectedError, RequestHandler, RSocket
from anyio_rsocket.frames import CancelFrame, PayloadFrame, RequestNFrame, RequestStreamFrame
from anyio_rsocket.peer import responder
from anyio_rsocket.testing import connected_pair

from .rawpeer import raw_client

pytestmark = pytest.mark.anyio


class Parking(RequestHandler):
    """Streams of ``int(data)`` items (endless for ``b"-"``), recording their ends.

    ``b"raise"`` yields two items and raises once it is pulled for a third; ``b"scope"`` and
    ``b"group"`` yield from inside a cancel scope or a task group of their own; a channel echoes.
    """

    def __init__(self) -> None:
        self.started = 0
        self.pulled = 0
        self.ended = 0
        self.all_ended = anyio.Event()
        self.target = 1
        self.server: RSocket | None = None

    def factory(self, rs: RSocket) -> Parking:
        self.server = rs
        return self

    def _end(self) -> None:
        self.ended += 1
        if self.ended >= self.target:
            self.all_ended.set()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        self.started += 1
        try:
            if payload.data == b"scope":
                with anyio.CancelScope():
                    for index in range(3):
                        yield Payload(b"%d" % index)
                return
            if payload.data == b"group":
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(anyio.sleep, 0)
                    for index in range(3):
                        yield Payload(b"%d" % index)
                return
            index = 0
            while payload.data == b"-" or index < int(payload.data if payload.data != b"raise" else b"2"):
                self.pulled += 1
                yield Payload(b"%d" % index)
                index += 1
            if payload.data == b"raise":
                raise ValueError("broken after resuming")
        finally:
            self._end()

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        try:
            yield payload
            async for item in inbound:
                yield item
        finally:
            self._end()


@pytest.fixture(autouse=True)
def park_always(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests park streams however few there are (normally only above ``PARK_ABOVE``)."""
    monkeypatch.setattr(responder, "PARK_ABOVE", 0)


def live_tasks(backend: str) -> int:
    """How many tasks the event loop runs now."""
    if backend == "asyncio":
        return len(asyncio.all_tasks())
    import trio

    def count(task: Any) -> int:
        return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

    return count(trio.lowlevel.current_root_task())


async def test_a_parked_stream_resumes_when_credit_arrives() -> None:
    handler = Parking()
    with anyio.fail_after(5):
        async with connected_pair(handler.factory) as rs:
            async with rs.request_stream(Payload(b"4"), initial_n=1, auto_request=False) as stream:
                assert (await stream.receive()).data == b"0"
                stream.request(2)
                assert [(await stream.receive()).data for _ in range(2)] == [b"1", b"2"]
                stream.request(1)
                assert (await stream.receive()).data == b"3"
                with pytest.raises(anyio.EndOfStream):  # the end is seen without more credit
                    await stream.receive()
            await handler.all_ended.wait()
    assert handler.pulled == 4


async def test_parked_streams_keep_no_task(anyio_backend_name: str) -> None:
    count = 200
    handler = Parking()
    handler.target = count
    with anyio.fail_after(10):
        async with connected_pair(handler.factory) as rs, AsyncExitStack() as stack:
            before = live_tasks(anyio_backend_name)
            streams = [
                await stack.enter_async_context(
                    rs.request_stream(Payload(b"-"), initial_n=1, auto_request=False)
                )
                for _ in range(count)
            ]
            for stream in streams:
                assert (await stream.receive()).data == b"0"
            assert handler.pulled == 2 * count  # each holds its second item, unsent
            # Idle workers are kept (64 at most), parked streams have no task: far fewer than one each.
            assert live_tasks(anyio_backend_name) - before < count // 2
            for stream in streams[:10]:
                stream.request(1)
                assert (await stream.receive()).data == b"1"
            await stack.aclose()
            await handler.all_ended.wait()
            assert handler.server is not None and handler.server.workers.active == 0


async def test_cancel_while_parked_runs_the_generators_finally() -> None:
    handler = Parking()
    with anyio.fail_after(5):
        async with connected_pair(handler.factory) as rs:
            async with rs.request_stream(Payload(b"-"), initial_n=1, auto_request=False) as stream:
                await stream.receive()
            await handler.all_ended.wait()  # leaving the block sent CANCEL
            async with rs.request_stream(Payload(b"2")) as stream:  # the connection is fine
                assert [item.data async for item in stream] == [b"0", b"1"]


@pytest.mark.parametrize("side", ["server", "client"])
async def test_the_end_of_the_connection_closes_parked_generators(side: str) -> None:
    handler = Parking()
    handler.target = 3
    with anyio.fail_after(5):
        async with connected_pair(handler.factory) as rs:
            async with AsyncExitStack() as stack:
                for _ in range(3):
                    stream = await stack.enter_async_context(
                        rs.request_stream(Payload(b"-"), initial_n=1, auto_request=False)
                    )
                    await stream.receive()
                assert handler.server is not None
                await (handler.server if side == "server" else rs).aclose()
                await handler.all_ended.wait()
        assert handler.ended == 3
    # Leaving connected_pair's block returned: no task of the connections was left behind.


async def test_a_generator_that_raises_after_resuming_sends_error() -> None:
    handler = Parking()
    with anyio.fail_after(5):
        async with connected_pair(handler.factory) as rs:
            async with rs.request_stream(Payload(b"raise"), initial_n=1, auto_request=False) as stream:
                assert (await stream.receive()).data == b"0"
                stream.request(5)
                assert (await stream.receive()).data == b"1"
                with pytest.raises(ApplicationError, match="ValueError"):
                    await stream.receive()
            await handler.all_ended.wait()
            assert handler.server is not None and handler.server.workers.active == 0


@pytest.mark.parametrize("kind", [b"scope", b"group"])
async def test_a_generator_yielding_inside_its_own_scope_keeps_its_task(kind: bytes) -> None:
    """Such a scope can only be left on the task that entered it: that stream must not park.

    (Closing such a generator early is another matter, as it was before parking: AnyIO forbids
    yielding inside a cancel scope. Here it runs to its end.)
    """
    handler = Parking()
    with anyio.fail_after(5):
        async with connected_pair(handler.factory) as rs:
            async with rs.request_stream(Payload(kind), initial_n=1, auto_request=False) as stream:
                assert (await stream.receive()).data == b"0"
                await anyio.wait_all_tasks_blocked()
                stream.request(1)
                assert (await stream.receive()).data == b"1"
                await anyio.wait_all_tasks_blocked()
                stream.request(5)
                assert [item.data async for item in stream] == [b"2"]
            await handler.all_ended.wait()
            async with rs.request_stream(Payload(b"1")) as stream:  # the connection is fine
                assert [item.data async for item in stream] == [b"0"]


async def test_a_parked_channel_resumes_and_is_cancelled() -> None:
    handler = Parking()
    with anyio.fail_after(5):
        async with connected_pair(handler.factory) as rs:
            async with rs.request_channel(Payload(b"a"), initial_n=1, auto_request=False) as channel:
                await channel.send(Payload(b"b"))
                await channel.send(Payload(b"c"))
                assert (await channel.receive()).data == b"a"
                channel.request(1)
                assert (await channel.receive()).data == b"b"
            await handler.all_ended.wait()


async def test_parked_streams_count_towards_the_concurrency_limit() -> None:
    handler = Parking()
    handler.target = 2
    with anyio.fail_after(5):
        async with connected_pair(handler.factory, server_options={"max_concurrent_requests": 2}) as rs:
            async with AsyncExitStack() as stack:
                for _ in range(2):
                    stream = await stack.enter_async_context(
                        rs.request_stream(Payload(b"-"), initial_n=1, auto_request=False)
                    )
                    await stream.receive()
                with pytest.raises(RejectedError):
                    async with rs.request_stream(Payload(b"1")) as stream:
                        await stream.receive()
            await handler.all_ended.wait()
            async with rs.request_stream(Payload(b"1")) as stream:  # room again
                assert [item.data async for item in stream] == [b"0"]


async def test_request_n_then_cancel_at_once() -> None:
    """CANCEL right after REQUEST_N, before or after the resumed job ran: at most the held item
    goes out, then nothing (no further item, no COMPLETE or ERROR), and the finally runs."""
    handler = Parking()
    with anyio.fail_after(5):
        async with raw_client(handler.factory) as peer:
            await peer.send(RequestStreamFrame(1, 1, b"-"))
            assert (await peer.expect(PayloadFrame)).data == b"0"
            await peer.round_trip()
            assert handler.pulled == 2  # the second item is held
            await peer.send(RequestNFrame(1, 1), CancelFrame(1))
            await handler.all_ended.wait()
            sent = await peer.round_trip(allow=(PayloadFrame,))
            assert [(frame.data, frame.next, frame.complete) for frame in sent] in ([], [(b"1", True, False)])


async def test_memory_per_parked_stream_is_bounded() -> None:
    """Requester and responder together (one process), as measured by tracemalloc.

    About 1.5 KB per stream here, the handler's own generator included; with a task per stream
    it was about 8 KB.
    """
    count = 400
    handler = Parking()
    with anyio.fail_after(20):
        async with connected_pair(handler.factory) as rs, AsyncExitStack() as stack:
            async with rs.request_stream(Payload(b"-"), initial_n=1, auto_request=False) as stream:
                await stream.receive()  # warm up: lazily made objects, caches
            await handler.all_ended.wait()
            handler.all_ended, handler.ended, handler.target = anyio.Event(), 0, count
            tracing = tracemalloc.is_tracing()
            if not tracing:
                tracemalloc.start()
            try:
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
                streams = [
                    await stack.enter_async_context(
                        rs.request_stream(Payload(b"-"), initial_n=1, auto_request=False)
                    )
                    for _ in range(count)
                ]
                for stream in streams:
                    await stream.receive()
                gc.collect()
                per_stream = (tracemalloc.get_traced_memory()[0] - before) / count
            finally:
                if not tracing:
                    tracemalloc.stop()
            assert per_stream < 3000, f"{per_stream:.0f} bytes per open stream"
            await stack.aclose()
            await handler.all_ended.wait()


async def test_few_streams_wait_for_credit_on_their_task(
    monkeypatch: pytest.MonkeyPatch, anyio_backend_name: str
) -> None:
    """Up to ``PARK_ABOVE`` live interactions a stream waiting for credit keeps its task (cheaper
    than parking and resuming); the streams beyond it park."""
    monkeypatch.setattr(responder, "PARK_ABOVE", 40)
    handler = Parking()
    with anyio.fail_after(10):
        async with connected_pair(handler.factory) as rs, AsyncExitStack() as stack:
            before = live_tasks(anyio_backend_name)
            streams = []
            for _ in range(100):
                stream = await stack.enter_async_context(
                    rs.request_stream(Payload(b"-"), initial_n=1, auto_request=False)
                )
                assert (await stream.receive()).data == b"0"
                streams.append(stream)
            # 40 streams wait on tasks of their own, the other 60 parked (plus a few idle workers).
            assert 40 <= live_tasks(anyio_backend_name) - before < 60
            for stream in streams[::7]:
                stream.request(1)
                assert (await stream.receive()).data == b"1"
