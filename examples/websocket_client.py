"""WebSocket quickstart: an embedded RSocket-over-WebSocket server and a client talking over loopback.

One RSocket frame travels per binary WebSocket message. The client connects through httpx, so
``connect_websocket(url, client=httpx.AsyncClient(...))`` gives it your auth headers, cookies, proxies
and TLS settings; ``anyio_rsocket.connect(url)`` picks the transport from the URL (``tcp://``,
``tcps://``, ``ws://``, ``wss://``). Runs on asyncio by default; pass ``trio`` to use Trio.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from functools import partial

import anyio

from anyio_rsocket import (
    ApplicationError,
    Payload,
    RequestHandler,
    RSocket,
    connect,
    connect_websocket,
    serve_websocket,
)


class Server(RequestHandler):
    """The server's responder; ``peer`` lets it call the client back."""

    def __init__(self, peer: RSocket) -> None:
        self.peer = peer

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"fail":
            raise ApplicationError("you asked for it")
        if payload.data == b"who are you?":
            answer = await self.peer.request_response(Payload(b"and who are you?"))
            return Payload(b"a websocket server talking to " + answer.data)
        return Payload(payload.data.upper(), payload.metadata)

    async def fire_and_forget(self, payload: Payload) -> None:
        print(f"  server got fire-and-forget: {payload.data!r}")

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(f"tick {index}".encode())

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield Payload(b"echo " + payload.data)
        async for item in inbound:
            yield Payload(b"echo " + item.data)


class Client(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return Payload(b"the websocket example client")


async def main() -> None:
    async with anyio.create_task_group() as tg:
        # Upgrades are accepted on /rsocket only; pass ssl_context=... to serve wss:// instead.
        port = await tg.start(partial(serve_websocket, Server, path="/rsocket"))
        url = f"ws://127.0.0.1:{port}/rsocket"
        print(f"server listening on {url}")

        async with connect_websocket(url, handler=Client(), headers={"User-Agent": "rsocket-example"}) as rs:
            reply = await rs.request_response(Payload(b"hello over websocket", b"metadata"))
            print(f"request-response: {reply.data!r} (metadata {reply.metadata!r})")
            try:
                await rs.request_response(Payload(b"fail"))
            except ApplicationError as error:
                print(f"request-response error: {error.message!r}")
            print(f"server-to-client call: {(await rs.request_response(Payload(b'who are you?'))).data!r}")
            await rs.fire_and_forget(Payload(b"an event"))
            async with rs.request_stream(Payload(b"4"), initial_n=2) as stream:
                print("request-stream:", [item.data.decode() async for item in stream])
            async with rs.request_channel(Payload(b"a")) as channel:
                await channel.send(Payload(b"b"))
                await channel.send_eof()
                print("request-channel:", [item.data.decode() async for item in channel])

        # The same server through the URL entry point.
        async with connect(url) as rs:
            print(f"via connect(): {(await rs.request_response(Payload(b'url entry point'))).data!r}")
        tg.cancel_scope.cancel()
    print("connections closed, server stopped, no task left behind")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
