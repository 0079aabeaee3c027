"""The raw one-in-flight limit: sequential request-response with nothing but the event loop's streams.

The client is one task that sends a request and then receives its whole echo, one request at a
time, with no reader task. The server is equally minimal: one task per connection that reads
whatever arrived and writes it back. A request is 19 bytes, a 3-byte length prefix and 16 bytes of
data, as the ``rr_seq`` row sends them over RSocket's TCP framing (without the RSocket header).

* asyncio and uvloop: ``asyncio.start_server`` / ``asyncio.open_connection`` (``StreamReader`` /
  ``StreamWriter``: ``write`` + ``drain``, then ``readexactly``).
* trio: ``trio.serve_tcp`` / ``trio.open_tcp_stream`` (``SocketStream``: ``send_all``, then
  ``receive_some`` until the echo is complete).

Neither side goes through AnyIO. The row says how many sequential round trips per second the event
loop itself allows on this machine. Every request-response implementation pays for at least this
much, which makes it the ceiling for ``rr_seq`` (see bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import time
from collections.abc import Callable
from typing import Any

from ._common import DATA16, BenchError
from ._worker import Command, Inbox, NotAvailable, Result, run_asyncio, wait_for_stop

FRAME = len(DATA16).to_bytes(3, "big") + DATA16
READ_SIZE = 65536


# ==================================================================================================
# asyncio and uvloop
# ==================================================================================================


async def _asyncio_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _asyncio_rr(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: int) -> float:
    write, drain, readexactly = writer.write, writer.drain, reader.readexactly
    size = len(FRAME)
    t0 = time.perf_counter()
    for _ in range(count):
        write(FRAME)
        await drain()
        if await readexactly(size) != FRAME:
            raise BenchError("bad echo")
    return time.perf_counter() - t0


def _asyncio_serve(backend: str, inbox: Inbox, announce: Callable[[int], None]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_asyncio_echo, "127.0.0.1", 0)
        async with server:
            announce(server.sockets[0].getsockname()[1])
            await wait_for_stop(inbox, asyncio.sleep)

    run_asyncio(main, backend)


def _asyncio_measure(backend: str, command: Command) -> float:
    async def body() -> float:
        async with contextlib.AsyncExitStack() as stack:
            port = command["port"]
            if port is None:
                server = await stack.enter_async_context(
                    await asyncio.start_server(_asyncio_echo, "127.0.0.1", 0)
                )
                port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await _asyncio_rr(reader, writer, command["warmup"])
                gc.collect()
                return await _asyncio_rr(reader, writer, command["n"])
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

    async def main() -> float:
        try:
            return await asyncio.wait_for(body(), command["timeout"])
        except asyncio.TimeoutError:
            raise TimeoutError from None

    return run_asyncio(main, backend)


# ==================================================================================================
# trio
# ==================================================================================================


async def _trio_echo(stream: Any) -> None:
    import trio

    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await stream.receive_some(READ_SIZE):
            await stream.send_all(data)


async def _trio_rr(stream: Any, count: int) -> float:
    send_all, receive_some = stream.send_all, stream.receive_some
    size = len(FRAME)
    t0 = time.perf_counter()
    for _ in range(count):
        await send_all(FRAME)
        echo = await receive_some(READ_SIZE)
        while len(echo) < size:
            more = await receive_some(READ_SIZE)
            if not more:
                raise BenchError("the server closed the connection")
            echo += more
        if echo != FRAME:
            raise BenchError("bad echo")
    return time.perf_counter() - t0


async def _trio_listen(nursery: Any) -> int:
    import trio

    listeners = await nursery.start(functools.partial(trio.serve_tcp, _trio_echo, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


def _trio_serve(inbox: Inbox, announce: Callable[[int], None]) -> None:
    import trio

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            announce(await _trio_listen(nursery))
            await wait_for_stop(inbox, trio.sleep)
            nursery.cancel_scope.cancel()

    trio.run(main)


def _trio_measure(command: Command) -> float:
    import trio

    async def main() -> float:
        with trio.fail_after(command["timeout"]):
            async with trio.open_nursery() as nursery:
                port = command["port"]
                if port is None:
                    port = await _trio_listen(nursery)
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await _trio_rr(stream, command["warmup"])
                    gc.collect()
                    elapsed = await _trio_rr(stream, command["n"])
                nursery.cancel_scope.cancel()
        return elapsed

    try:
        return trio.run(main)
    except trio.TooSlowError:
        raise TimeoutError from None


# ==================================================================================================
# Worker entry points
# ==================================================================================================


def _check(command: Command) -> None:
    if command["bench"] != "rr_seq" or command["transport"] != "tcp":
        raise NotAvailable("the one-in-flight limit is sequential request-response over TCP only")


def serve(backend: str, command: Command, inbox: Inbox, announce: Callable[[int], None]) -> None:
    if backend == "trio":
        _trio_serve(inbox, announce)
    else:
        _asyncio_serve(backend, inbox, announce)


def measure(backend: str, command: Command) -> Result:
    _check(command)
    if backend == "trio":
        return _trio_measure(command)
    return _asyncio_measure(backend, command)
