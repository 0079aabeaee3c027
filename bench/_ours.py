"""anyio_rsocket's side: the benchmark server (echo + control requests) and the client runners.

Runs on any AnyIO backend (asyncio, uvloop, trio), over TCP (``serve_tcp``/``connect_tcp``) or
WebSocket (``serve_websocket``/``connect_websocket``).
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from anyio_rsocket import (
    Payload,
    RequestHandler,
    RSocket,
    connect_pool,
    connect_tcp,
    connect_websocket,
    serve_tcp,
    serve_websocket,
)

from ._common import (
    CONTROL,
    CTL_FNF,
    CTL_IDLE,
    CTL_RSS,
    CTL_STREAMS,
    DATA16,
    HOLD,
    MAX_REQUEST_N,
    SERVER_MAX_CONCURRENT,
    STREAM_CREDIT,
    BenchError,
    Runner,
    Session,
    check,
    check_items,
    pick_runner,
    rr_concurrent,
    rss_bytes,
    run_fnf,
    run_hold,
)
from ._worker import Command, Inbox, Result, run_anyio, wait_for_stop

ITEM = Payload(DATA16)


# ==================================================================================================
# Server
# ==================================================================================================


class Handler(RequestHandler):
    """Echoes, streams ``int(data)`` items, echoes channels, counts fire-and-forgets, holds streams."""

    def __init__(self, rs: RSocket) -> None:
        self.rs = rs
        self.fnf = 0
        self.fnf_target = 0
        self.fnf_event = anyio.Event()
        self.holding = 0
        self.idle: anyio.Event | None = None

    async def request_response(self, payload: Payload) -> Payload:
        if payload.metadata:
            return Payload(await self.control(payload.data))
        return payload

    async def fire_and_forget(self, payload: Payload) -> None:
        self.fnf += 1
        if self.fnf == self.fnf_target:
            self.fnf_event.set()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        if payload.data == HOLD:
            self.holding += 1
            try:
                yield ITEM
                # The responder pulls one item ahead of the credit (to see a stream's end at once):
                # this one is pulled and held, and with initial_n=1 the stream waits at this yield
                # for credit until it is cancelled.
                yield ITEM
                await anyio.sleep_forever()  # not reached: no credit for the second item
            finally:
                self.holding -= 1
                if not self.holding and self.idle is not None:
                    self.idle.set()
            return
        item = ITEM
        for _ in range(int(payload.data)):
            yield item

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield payload
        async for item in inbound:
            yield item

    async def control(self, command: bytes) -> bytes:
        name, _, argument = command.partition(b" ")
        if name == CTL_FNF:
            total = int(argument)
            while self.fnf < total:
                self.fnf_target = total
                self.fnf_event = anyio.Event()
                await self.fnf_event.wait()
            return b"%d" % self.fnf
        if name == CTL_IDLE:
            while self.holding:
                self.idle = anyio.Event()
                await self.idle.wait()
            return b"0"
        if name == CTL_STREAMS:
            return b"%d" % (len(self.rs._streams) - 1)  # this request-response is one of them
        if name == CTL_RSS:
            return b"%d" % rss_bytes()
        raise BenchError(f"unknown control command {command!r}")


async def start_server(task_group: TaskGroup, transport: str) -> int:
    serve = serve_tcp if transport == "tcp" else serve_websocket
    port: int = await task_group.start(
        functools.partial(serve, Handler, "127.0.0.1", 0, max_concurrent_requests=SERVER_MAX_CONCURRENT)
    )
    return port


@asynccontextmanager
async def open_client(transport: str, port: int) -> AsyncIterator[RSocket]:
    if transport == "tcp":
        async with connect_tcp("127.0.0.1", port) as rs:
            yield rs
    else:
        async with connect_websocket(f"ws://127.0.0.1:{port}/") as rs:
            yield rs


def serve(backend: str, command: Command, inbox: Inbox, announce: Callable[[int], None]) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as tg:
            announce(await start_server(tg, command["transport"]))
            await wait_for_stop(inbox, anyio.sleep)
            tg.cancel_scope.cancel()

    run_anyio(main, backend)


# ==================================================================================================
# Client runners
# ==================================================================================================


class OurSession(Session):
    def control_payload(self, command: bytes) -> Payload:
        return Payload(command, CONTROL)


async def count_items(items: AsyncIterator[Payload]) -> tuple[int, int]:
    """Consume ``items``; return how many arrived and how many were not 16 bytes long."""
    received = bad = 0
    async for item in items:
        received += 1
        if len(item.data) != 16:
            bad += 1
    return received, bad


async def run_stream(session: Session, count: int, initial_n: int) -> float:
    t0 = time.perf_counter()
    async with session.requester.request_stream(Payload(b"%d" % count), initial_n=initial_n) as items:
        received, bad = await count_items(items)
    elapsed = time.perf_counter() - t0
    check_items(received, bad, count, "stream items")
    return elapsed


async def run_channel(session: Session, count: int) -> float:
    payload = ITEM
    t0 = time.perf_counter()
    async with session.requester.request_channel(payload, initial_n=STREAM_CREDIT) as channel:

        async def send_rest() -> None:
            for _ in range(count - 1):  # the first element travels in REQUEST_CHANNEL
                await channel.send(payload)
            await channel.send_eof()

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_rest)
            received, bad = await count_items(channel)
    elapsed = time.perf_counter() - t0
    check_items(received, bad, count, "channel echoes")
    return elapsed


class HeldStreams:
    """Streams of one item each, entered on one exit stack; closing it sends CANCEL on each."""

    def __init__(self, rs: RSocket) -> None:
        self.rs = rs
        self.stack = AsyncExitStack()

    async def open_all(self, count: int) -> int:
        hold = Payload(HOLD)
        enter = self.stack.enter_async_context
        streams = [
            await enter(self.rs.request_stream(hold, initial_n=1, auto_request=False)) for _ in range(count)
        ]
        bad = 0
        for stream in streams:
            bad += len((await stream.receive()).data) != 16
        return bad

    async def close_all(self) -> None:
        await self.stack.aclose()

    def live(self) -> int:
        return len(self.rs._streams)


def runner(bench: str) -> Runner:
    return pick_runner(
        bench,
        Payload,
        {
            "stream_unbounded": lambda session, count: run_stream(session, count, MAX_REQUEST_N),
            "stream_256": lambda session, count: run_stream(session, count, STREAM_CREDIT),
            "channel": run_channel,
            "fnf": lambda session, count: run_fnf(session, count, session.requester.fire_and_forget, ITEM),
            "streams_10k": lambda session, count: run_hold(session, HeldStreams(session.requester), count),
        },
    )


async def measure_pool(command: Command) -> dict[str, float]:
    """The ``pool_scaling`` row: a pool over the servers at ``command["ports"]``, RR_CONCURRENCY callers.

    Also reports this (client) process's CPU use during the run, as a share of one core.
    """
    urls = [f"tcp://127.0.0.1:{port}" for port in command["ports"]]
    payload = Payload(DATA16)
    async with connect_pool(urls) as pool:
        check(sum(target.available for target in pool.targets), len(urls), "available targets")
        await rr_concurrent(pool, payload, command["warmup"])
        gc.collect()
        cpu = time.process_time()
        elapsed = await rr_concurrent(pool, payload, command["n"])
        cpu = time.process_time() - cpu
        fewest = min(target.requests for target in pool.targets)  # warm-up included
    return {
        "rate": command["n"] / elapsed,
        "elapsed_s": elapsed,
        "client_cpu": cpu / elapsed,
        "fewest": fewest,
    }


def measure(backend: str, command: Command) -> Result:
    if command["bench"] == "pool_scaling":

        async def pooled() -> Result:
            with anyio.fail_after(command["timeout"]):
                return await measure_pool(command)

        return run_anyio(pooled, backend)
    run = runner(command["bench"])
    transport: str = command["transport"]

    async def main() -> Result:
        with anyio.fail_after(command["timeout"]):
            async with anyio.create_task_group() as tg:
                port = command["port"]
                if port is None:
                    port = await start_server(tg, transport)
                async with open_client(transport, port) as rs:
                    session = OurSession(rs, server_in_process=command["port"] is None)
                    await run(session, command["warmup"])
                    gc.collect()
                    result = await run(session, command["n"])
                tg.cancel_scope.cancel()
        return result

    return run_anyio(main, backend)
