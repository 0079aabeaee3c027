"""RSocket inside an ASGI application, served by hypercorn (on asyncio or Trio).

``RSocketASGIApp`` is a plain ASGI app, so any ASGI framework can mount it. With Starlette or FastAPI::

    from anyio_rsocket.asgi import RSocketASGIApp

    app = FastAPI()                                    # or Starlette()
    app.mount("/rsocket", RSocketASGIApp(Greeter))     # clients connect to ws://host/rsocket

and run it with ``uvicorn module:app`` or ``hypercorn module:app`` (add ``--worker-class trio`` for
Trio). To stay free of web-framework dependencies, this example mounts it with a ten-line ASGI
router instead, serves it with hypercorn, talks to it with our WebSocket client and shuts down.
``python examples/asgi_server.py [asyncio|trio] [--serve]``: ``--serve`` keeps serving on port 8000
until Ctrl-C. Needs ``pip install hypercorn``.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
from hypercorn.config import Config

from anyio_rsocket import Payload, RequestHandler, RSocket, connect_websocket
from anyio_rsocket.asgi import Receive, RSocketASGIApp, Scope, Send


class Greeter(RequestHandler):
    def __init__(self, peer: RSocket) -> None:
        self.peer = peer

    async def request_response(self, payload: Payload) -> Payload:
        return Payload(b"hello, " + payload.data)

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(f"greeting {index}".encode())


rsocket_app = RSocketASGIApp(Greeter)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The "web application": RSocket under /rsocket, a plain-text page everywhere else."""
    if scope["type"] != "lifespan" and scope["path"].startswith("/rsocket"):
        await rsocket_app(scope, receive, send)
    elif scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"RSocket lives at ws://this-host/rsocket\n"})
    elif scope["type"] == "lifespan":
        await rsocket_app(scope, receive, send)  # acknowledges startup and shutdown


async def main(backend: str, keep_serving: bool) -> None:
    # Bind first so we know the port; hypercorn takes the listening socket over.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 8000 if keep_serving else 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = 1
    serve: Any
    if backend == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve

    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(app, config, shutdown_trigger=stop.wait))
        url = f"ws://127.0.0.1:{port}/rsocket"
        async with connect_websocket(url) as rs:
            print(f"request-response: {(await rs.request_response(Payload(b'hypercorn'))).data!r}")
            async with rs.request_stream(Payload(b"3")) as stream:
                print("request-stream:", [item.data.decode() async for item in stream])
        if keep_serving:
            print(f"serving RSocket at {url}; Ctrl-C to stop")
            await anyio.sleep_forever()
        stop.set()
    print("hypercorn stopped")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    chosen = next((name for name in arguments if name in ("asyncio", "trio")), "asyncio")
    anyio.run(main, chosen, "--serve" in arguments, backend=chosen)
