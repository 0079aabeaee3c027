"""Our own server as a subprocess peer, for tests that kill and restart a server process.

CLI::

    python anyio_rsocket_server.py [--port N] [--delay SECONDS] [--backend asyncio|trio]

Prints ``PORT <n>`` once listening and serves until its stdin reaches EOF. Requests:

* request_response: ``log`` answers the JSON list of fire-and-forget payloads received so far;
  anything else is answered ``echo:<data>`` after ``--delay`` seconds;
* fire_and_forget: recorded for ``log``;
* request_stream: ``N`` yields ``item-0`` .. ``item-{N-1}``;
* request_channel: echoes every element.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from anyio_rsocket import Payload, RequestHandler, RSocket, serve_tcp


class Handler(RequestHandler):
    def __init__(self, delay: float, log: list[str]) -> None:
        self.delay = delay
        self.log = log

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"log":
            return Payload(json.dumps(self.log).encode())
        if self.delay:
            await anyio.sleep(self.delay)
        return Payload(b"echo:" + payload.data)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.log.append(payload.data.decode("latin-1"))

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(b"item-%d" % index)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        async for item in inbound:
            yield item


async def main(port: int, delay: float) -> None:
    log: list[str] = []

    def factory(rsocket: RSocket) -> RequestHandler:
        return Handler(delay, log)

    async with anyio.create_task_group() as tg:
        bound = await tg.start(partial(serve_tcp, factory, "127.0.0.1", port))
        print(f"PORT {bound}", flush=True)
        stdin = anyio.wrap_file(sys.stdin)
        while await stdin.read(1):
            pass
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--backend", default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.port, args.delay, backend=args.backend)
