"""RSocket mounted beside HTTP routes in a FastAPI application.

``RSocketASGIApp`` is a plain ASGI app, so FastAPI (or Starlette) mounts it like any other::

    app = FastAPI()
    app.mount("/rsocket", RSocketASGIApp(Catalog))   # RSocket over WebSocket at ws://host/rsocket/

(A Starlette mount matches the paths below it: clients connect to ``/rsocket/``, with the slash;
``/rsocket`` alone gets HTTP 403.)

The HTTP routes and the RSocket handlers share the application's state (here, a small catalog).
This script serves the app with hypercorn on a free port (asyncio or trio: ``python
examples/fastapi_app.py [asyncio|trio]``), calls an HTTP route with httpx and the RSocket side with
our WebSocket client, prints what it got and stops. In production run ``uvicorn
examples.fastapi_app:app`` or ``hypercorn examples.fastapi_app:app`` (``--worker-class trio`` for
Trio). Needs ``pip install fastapi hypercorn``.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator

import anyio
import httpx
from fastapi import FastAPI
from hypercorn.config import Config

from anyio_rsocket import Payload, RequestHandler, RSocket, connect_websocket
from anyio_rsocket.asgi import RSocketASGIApp

CATALOG = {"apple": 3, "pear": 5, "plum": 7}


class Catalog(RequestHandler):
    """RSocket side: look one item up, or stream the whole catalog."""

    def __init__(self, peer: RSocket) -> None:
        self.peer = peer

    async def request_response(self, payload: Payload) -> Payload:
        name = payload.data.decode()
        return Payload(str(CATALOG.get(name, 0)).encode())

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for name, count in CATALOG.items():
            yield Payload(f"{name}={count}".encode())


app = FastAPI()
app.mount("/rsocket", RSocketASGIApp(Catalog))


@app.get("/health")
async def health() -> dict[str, object]:
    """HTTP side: an ordinary FastAPI route next to the RSocket endpoint."""
    return {"status": "ok", "items": len(CATALOG)}


async def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = 0.5
    config.accesslog = None
    config.errorlog = None
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    if backend == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    stopped = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(app, config, shutdown_trigger=stopped.wait))  # type: ignore[arg-type]
        async with httpx.AsyncClient() as http:
            for _ in range(200):  # hypercorn starts serving on the socket it was given
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.TransportError:
                    await anyio.sleep(0.01)
            print("GET /health ->", response.json())
        async with connect_websocket(f"ws://127.0.0.1:{port}/rsocket/") as rs:
            reply = await rs.request_response(Payload(b"pear"))
            print("request-response pear ->", reply.data.decode())
            async with rs.request_stream(Payload(b"")) as stream:
                print("request-stream ->", [item.data.decode() async for item in stream])
        stopped.set()


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
