"""Quickstart: an embedded RSocket server and a client talking over loopback TCP.

Shows every interaction in both directions: request-response, fire-and-forget, metadata-push,
request-stream (automatic and manual credit), request-channel, errors, and the server calling the
client back. Runs on asyncio by default; pass ``trio`` as the first argument to use Trio.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import anyio

from anyio_rsocket import (
    ApplicationError,
    Payload,
    RequestHandler,
    RSocket,
    connect_tcp,
    serve_tcp,
)


class Server(RequestHandler):
    """The server's responder; it can also call the client through ``peer``."""

    def __init__(self, peer: RSocket) -> None:
        self.peer = peer
        self.events = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"divide by zero":
            raise ApplicationError("cannot divide by zero")
        if payload.data == b"who are you?":
            # The server is a requester too: ask the client before answering.
            answer = await self.peer.request_response(Payload(b"the server asks your name"))
            return Payload(b"you said you are " + answer.data)
        return Payload(payload.data.upper(), payload.metadata)

    async def fire_and_forget(self, payload: Payload) -> None:
        print(f"  server got fire-and-forget: {payload.data!r}")
        self.events.set()

    async def metadata_push(self, metadata: bytes) -> None:
        print(f"  server got metadata push: {metadata!r}")

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(f"tick {index}".encode())

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        total = int(payload.data)
        yield Payload(f"running total {total}".encode())
        async for item in inbound:
            total += int(item.data)
            yield Payload(f"running total {total}".encode())


class Client(RequestHandler):
    """The client's responder: answers requests the server sends back."""

    async def request_response(self, payload: Payload) -> Payload:
        return Payload(b"quickstart-client")


async def main() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_tcp, Server, "127.0.0.1", 0)
        print(f"server listening on 127.0.0.1:{port}")
        async with connect_tcp("127.0.0.1", port, handler=Client()) as rs:
            reply = await rs.request_response(Payload(b"hello rsocket", b"some metadata"))
            print(f"request-response: {reply.data!r} (metadata {reply.metadata!r})")

            try:
                await rs.request_response(Payload(b"divide by zero"))
            except ApplicationError as error:
                print(f"request-response error: code 0x{error.code:X}, message {error.message!r}")

            print(f"server-to-client call: {(await rs.request_response(Payload(b'who are you?'))).data!r}")

            await rs.fire_and_forget(Payload(b"an event"))
            await rs.metadata_push(b"connection-level metadata")

            async with rs.request_stream(Payload(b"5"), initial_n=2) as stream:
                print("request-stream (automatic credit):", [item.data.decode() async for item in stream])

            async with rs.request_stream(Payload(b"4"), initial_n=1, auto_request=False) as stream:
                first = await stream.receive()
                stream.request(3)  # manual credit: three more
                rest = [await stream.receive() for _ in range(3)]
                print("request-stream (manual credit):", [p.data.decode() for p in [first, *rest]])

            async with rs.request_channel(Payload(b"1")) as channel:
                for number in (b"2", b"3", b"4"):
                    await channel.send(Payload(number))
                await channel.send_eof()
                print("request-channel:", [item.data.decode() async for item in channel])
        tg.cancel_scope.cancel()
    print("connection closed, server stopped, no task left behind")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
