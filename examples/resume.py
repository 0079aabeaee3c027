"""Resumption: a stream that survives its TCP connection being cut, twice.

An embedded server with ``resume=`` streams numbered items to a client with ``resume=``. Between
them runs a tiny TCP proxy (written below) that cuts the connection, with no goodbye, after a
number of bytes went from the server to the client: the first connection and the resumed one are
each cut mid-stream. The client dials again by itself, sends RESUME, both sides replay what the
other missed, and the stream goes on. A watcher prints the connection's state as it changes
(``rs.state_changed()``). At the end every item has arrived exactly once and in order.

Runs on asyncio by default; pass ``trio`` as the first argument to use Trio.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import AsyncIterator

import anyio
from anyio.abc import SocketStream

from anyio_rsocket import (
    Backoff,
    ConnectionState,
    Payload,
    RequestHandler,
    Resume,
    RSocket,
    connect_tcp,
    serve_tcp,
)

ITEMS = 5000
CUT_AFTER_BYTES = 30_000  # per connection, server to client: about a third of the stream
CUTS = 2


class Numbers(RequestHandler):
    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(b"item %d" % index)


class CuttingProxy:
    """Relays TCP connections to ``target_port``; cuts each of the first ``cuts`` connections after
    ``cut_after`` bytes went to the client, by closing both of its sockets at once."""

    def __init__(self, target_port: int, cut_after: int, cuts: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.cuts_left = cuts

    async def serve(self, *, task_status: anyio.abc.TaskStatus[int]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with listener:
            task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
            await listener.serve(self.relay)

    async def relay(self, client: SocketStream) -> None:
        # One side going away abruptly just ends the relay.
        with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._relay(client)

    async def _relay(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", self.target_port) as server:
            cut = self.cuts_left > 0
            self.cuts_left -= 1
            async with anyio.create_task_group() as task_group:

                async def to_server() -> None:
                    async for chunk in client:
                        await server.send(chunk)
                    task_group.cancel_scope.cancel()

                async def to_client() -> None:
                    sent = 0
                    async for chunk in server:
                        if cut and sent + len(chunk) >= self.cut_after:
                            await client.send(chunk[: self.cut_after - sent])  # often half a frame
                            print(f"proxy: cut the connection after {self.cut_after} bytes")
                            break
                        await client.send(chunk)
                        sent += len(chunk)
                    task_group.cancel_scope.cancel()  # leaving closes both sockets

                task_group.start_soon(to_server)
                task_group.start_soon(to_client)


async def watch(rs: RSocket) -> None:
    """Print each change of the connection's state until it is closed."""
    while (state := await rs.state_changed()) is not ConnectionState.CLOSED:
        if state is ConnectionState.DETACHED:
            print("client: transport lost, session detached (streams kept, dialling again)")
        elif state is ConnectionState.CONNECTED:
            print("client: session resumed on a new connection")


async def main() -> None:
    async with anyio.create_task_group() as tg:
        serve = functools.partial(
            serve_tcp, lambda rs: Numbers(), "127.0.0.1", 0, resume=Resume(session_duration=30.0)
        )
        server_port = await tg.start(serve)
        proxy_port = await tg.start(CuttingProxy(server_port, CUT_AFTER_BYTES, CUTS).serve)
        print(f"server on port {server_port}, cutting proxy on port {proxy_port}")

        resume = Resume(session_duration=30.0, retry=Backoff(initial=0.05, maximum=1.0))
        async with (
            connect_tcp("127.0.0.1", proxy_port, resume=resume) as rs,
            anyio.create_task_group() as watchers,
        ):
            watchers.start_soon(watch, rs)
            received: list[int] = []
            async with rs.request_stream(Payload(b"%d" % ITEMS)) as stream:
                async for item in stream:
                    received.append(int(item.data.split()[1]))
            print(f"client: stream complete with {len(received)} items, state {rs.state.value}")
            assert received == list(range(ITEMS)), "lost, duplicated or reordered items"
            print(f"all {ITEMS} items arrived exactly once and in order")
            watchers.cancel_scope.cancel()
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
