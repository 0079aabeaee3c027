"""RSocket inside an ASGI application, served by hypercorn (on asyncio or Trio).

``RSocketASGIApp`` is a plain ASGI app, so any ASGI framework can mount it. With Starlette or FastAPI::

    from anyio_rsocket.asgi import RSocketASGIApp

    app = FastAPI()                                    # or Starlette()
    app.mount("/rsocket", RSocketASGIApp(Greeter))     # clients connect to ws://host/rsocket

and run it with ``uvicorn module:app`` or ``hypercorn module:app`` (add ``--worker-class trio`` for
Trio). To stay free of web-framework dependencies, this example mounts it with a ten-line ASGI
router instead, serves it with hypercorn, talks to it with our WebSocket client and shuts down.
``python examples/asgi_server.py [asyncio|trio] [--serve] [--port N]``: ``--serve`` keeps serving (on
port 8000, or ``--port N``; 0 picks a free one) until Ctrl-C or SIGTERM, then shuts hypercorn down
gracefully and exits with status 130 (143 for SIGTERM), without a traceback. Needs
``pip install hypercorn``.
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
from hypercorn.config import Config

from anyio_rsocket import Payload, RequestHandler, RSocket, connect_websocket
from anyio_rsocket.asgi import RSocketASGIApp
from anyio_rsocket.peer.asgi import Receive, Scope, Send

if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]


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


async def until_interrupted() -> int:
    """Wait for Ctrl-C (SIGINT) or SIGTERM; return its number. Receiving the signal here, rather than
    as a KeyboardInterrupt raised wherever the program happens to be, lets hypercorn stop gracefully."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        print("Ctrl-C to stop", flush=True)
        async for signum in signals:
            return int(signum)
    raise AssertionError("unreachable: the signal receiver never ends")


async def main(backend: str, keep_serving: bool, port: int) -> int:
    """Run the demo; with ``keep_serving``, serve until a signal. Returns the exit status."""
    # Bind first so we know the port; hypercorn takes the listening socket over.
    sock = socket.socket()
    sock.bind(("127.0.0.1", port if keep_serving else 0))
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
    status = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(app, config, shutdown_trigger=stop.wait))
        url = f"ws://127.0.0.1:{port}/rsocket"
        async with connect_websocket(url) as rs:
            print(f"request-response: {(await rs.request_response(Payload(b'hypercorn'))).data!r}")
            async with rs.request_stream(Payload(b"3")) as stream:
                print("request-stream:", [item.data.decode() async for item in stream])
        if keep_serving:
            print(f"serving RSocket at {url}", end="; ", flush=True)
            signum = await until_interrupted()
            print(f"{signal.Signals(signum).name}: stopping hypercorn", flush=True)
            status = 128 + signum
        stop.set()
    print("hypercorn stopped", flush=True)
    return status


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` is a KeyboardInterrupt, alone or in exception groups (Ctrl-C before the
    signal receiver was open, or a second one: trio wraps it in the task groups it crossed)."""
    if isinstance(error, BaseExceptionGroup):
        return all(interrupted(inner) for inner in error.exceptions)
    return isinstance(error, KeyboardInterrupt)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    chosen = next((name for name in arguments if name in ("asyncio", "trio")), "asyncio")
    port = int(arguments[arguments.index("--port") + 1]) if "--port" in arguments else 8000
    try:
        sys.exit(anyio.run(main, chosen, "--serve" in arguments, port, backend=chosen))
    except BaseException as error:
        if not interrupted(error):
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(130)
