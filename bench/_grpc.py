"""gRPC's side (``grpcio``'s asyncio API, ``grpc.aio``): the same traffic as three of our rows.

No code generation: the server registers a generic handler (``grpc.method_handlers_generic_handler``)
with ``unary_unary_rpc_method_handler`` and ``unary_stream_rpc_method_handler``, and the client uses
``channel.unary_unary`` / ``channel.unary_stream``. No serializers are given on either side, which
grpcio treats as the identity: the messages are the same 16-byte ``bytes`` as our payloads.

* ``rr_seq``: sequential unary calls, each awaited (echo).
* ``rr_conc``: unary calls from 64 tasks on one channel (one HTTP/2 connection).
* ``stream_unbounded``: one server-streaming call that yields ``n`` messages (the request is ``n``);
  HTTP/2 flow control is the only back-pressure, as with our unbounded credit.

Plaintext HTTP/2 over loopback TCP, asyncio only (the trio rows compare with these numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc  # type: ignore[import-untyped]
from grpc import aio

from ._common import DATA16, RR_CONCURRENCY, BenchError, check, check_items, split
from ._worker import Command, Inbox, NotAvailable, Result, run_asyncio, wait_for_stop

SERVICE = "bench.Bench"
ECHO = f"/{SERVICE}/Echo"
STREAM = f"/{SERVICE}/Stream"
#: The rows gRPC runs (our rows of the same traffic).
ROWS = ("rr_seq", "rr_conc", "stream_unbounded")


# ==================================================================================================
# Server
# ==================================================================================================


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    item = DATA16
    for _ in range(int(request)):
        yield item


@contextlib.asynccontextmanager
async def open_server() -> AsyncIterator[int]:
    """A ``grpc.aio`` server on an ephemeral loopback port; yields the port."""
    server = aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    # No (de)serializers: grpcio passes the request and response bytes through.
                    "Echo": grpc.unary_unary_rpc_method_handler(_echo),
                    "Stream": grpc.unary_stream_rpc_method_handler(_stream),
                },
            ),
        )
    )
    port: int = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def serve(backend: str, command: Command, inbox: Inbox, announce: Callable[[int], None]) -> None:
    async def main() -> None:
        async with open_server() as port:
            announce(port)
            await wait_for_stop(inbox, asyncio.sleep)

    run_asyncio(main, backend)


# ==================================================================================================
# Client runners
# ==================================================================================================


async def _unary_sequential(channel: Any, count: int) -> float:
    call = channel.unary_unary(ECHO)
    t0 = time.perf_counter()
    for _ in range(count):
        if await call(DATA16) != DATA16:
            raise BenchError("bad response")
    return time.perf_counter() - t0


async def _unary_concurrent(channel: Any, count: int) -> float:
    call = channel.unary_unary(ECHO)
    done = 0

    async def worker(k: int) -> None:
        nonlocal done
        for _ in range(k):
            if await call(DATA16) != DATA16:
                raise BenchError("bad response")
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in split(count, RR_CONCURRENCY)))
    elapsed = time.perf_counter() - t0
    check(done, count, "responses")
    return elapsed


async def _server_stream(channel: Any, count: int) -> float:
    call = channel.unary_stream(STREAM)
    received = bad = 0
    t0 = time.perf_counter()
    async for item in call(b"%d" % count):
        received += 1
        bad += len(item) != 16
    elapsed = time.perf_counter() - t0
    check_items(received, bad, count, "stream items")
    return elapsed


RUNNERS: dict[str, Callable[[Any, int], Awaitable[float]]] = {
    "rr_seq": _unary_sequential,
    "rr_conc": _unary_concurrent,
    "stream_unbounded": _server_stream,
}


def measure(backend: str, command: Command) -> Result:
    run = RUNNERS.get(command["bench"])
    if run is None or command["transport"] != "tcp":
        raise NotAvailable("gRPC runs unary, 64 concurrent unary and server-streaming over TCP only")

    async def body() -> float:
        async with contextlib.AsyncExitStack() as stack:
            port = command["port"]
            if port is None:
                port = await stack.enter_async_context(open_server())
            channel = await stack.enter_async_context(aio.insecure_channel(f"127.0.0.1:{port}"))
            await run(channel, command["warmup"])
            gc.collect()
            return await run(channel, command["n"])

    async def main() -> float:
        try:
            return await asyncio.wait_for(body(), command["timeout"])
        except asyncio.TimeoutError:
            raise TimeoutError from None

    return run_asyncio(main, backend)
