"""rsocket-py ``RequestRouter`` server used as a routing interop peer for ``anyio_rsocket`` tests.

CLI::

    python rsocket_py_router_server.py --token TOKEN [--host 127.0.0.1] [--debug]

* Prints exactly one line ``PORT <n>`` to stdout once listening, then serves until stdin reaches EOF
  (start it with ``stdin=PIPE``), like ``rsocket_py_server.py``. Logs go to stderr.
* SETUP must declare ``message/x.rsocket.composite-metadata.v0`` as metadata MIME (rsocket-py's
  ``RoutingRequestHandler`` insists) and carry a bearer authentication entry whose token is ``TOKEN``
  in the SETUP metadata (Spring Security style); otherwise SETUP is rejected with REJECTED_SETUP
  ``"invalid token"`` (rsocket-py leaves the connection open afterwards).

Routes (route = first tag of the routing entry of the request's composite metadata; data is JSON):

* response ``echo``: data ``b"echo:" + data``.
* response ``user.get``: request ``{"id": N}``, answer ``{"id": N, "name": "user-N"}``.
* response ``whoami``: answer ``{"token": <the SETUP bearer token>, "data_mime": <SETUP data MIME>}``.
* response ``log``: answer the JSON list of ``[kind, value]`` events recorded by ``event`` and ``push``.
* fire-and-forget ``event``: records ``["event", data]``.
* metadata-push ``push``: records ``["push", <all routing tags joined by ",">]``.
* stream ``numbers``: request ``{"count": N}`` (N >= 1), items ``{"n": 0}`` .. ``{"n": N-1}``, honouring
  credit.
* channel ``chat``: every element (the first included) echoed as ``b"echo:" + data``.
* any other route: rsocket-py's unknown-route failure (APPLICATION_ERROR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Generator
from typing import Any

from rsocket.extensions.authentication import AuthenticationBearer
from rsocket.extensions.authentication_content import AuthenticationContent
from rsocket.extensions.composite_metadata import CompositeMetadata
from rsocket.extensions.routing import RoutingMetadata
from rsocket.payload import Payload
from rsocket.routing.request_router import RequestRouter
from rsocket.routing.routing_request_handler import RoutingRequestHandler
from rsocket.rsocket_server import RSocketServer
from rsocket.streams.stream_from_generator import StreamFromGenerator
from rsocket.transports.tcp import TransportTCP
from rsocket_py_server import EchoChannel, _start_stdin_eof_watch  # same directory as this script

_log = logging.getLogger("rsocket_py_router_server")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _numbers(count: int) -> Callable[[], Generator[tuple[Payload, bool], None, None]]:
    def factory() -> Generator[tuple[Payload, bool], None, None]:
        for index in range(count):
            yield Payload(_json({"n": index})), index == count - 1

    return factory


def make_router(session: dict[str, Any], events: list[list[str]]) -> RequestRouter:
    """The routes of one connection; ``session`` holds what its SETUP carried."""
    router = RequestRouter()

    @router.response("echo")
    async def echo(payload: Payload) -> Payload:
        return Payload(b"echo:" + bytes(payload.data or b""))

    @router.response("user.get")
    async def user_get(payload: Payload) -> Payload:
        user_id = json.loads(payload.data)["id"]
        return Payload(_json({"id": user_id, "name": f"user-{user_id}"}))

    @router.response("whoami")
    async def whoami(payload: Payload) -> Payload:
        return Payload(_json({"token": session.get("token"), "data_mime": session.get("data_mime")}))

    @router.response("log")
    async def log(payload: Payload) -> Payload:
        return Payload(_json(events))

    @router.fire_and_forget("event")
    async def event(payload: Payload) -> None:
        events.append(["event", bytes(payload.data or b"").decode("latin-1")])

    @router.metadata_push("push")
    async def push(payload: Payload, composite_metadata: CompositeMetadata) -> None:
        for item in composite_metadata.items:
            if isinstance(item, RoutingMetadata):
                events.append(["push", ",".join(tag.decode() for tag in item.tags)])

    @router.stream("numbers")
    async def numbers(payload: Payload) -> StreamFromGenerator:
        return StreamFromGenerator(_numbers(int(json.loads(payload.data)["count"])))

    @router.channel("chat")
    async def chat(payload: Payload) -> tuple[EchoChannel, EchoChannel]:
        channel = EchoChannel(payload)
        return channel, channel

    return router


class AuthenticatingHandler(RoutingRequestHandler):
    """A routing handler that checks the bearer token of SETUP's composite metadata."""

    def __init__(self, token: str, events: list[list[str]]) -> None:
        self._session: dict[str, Any] = {}
        super().__init__(make_router(self._session, events))
        self._token = token

    async def on_setup(self, data_encoding: bytes, metadata_encoding: bytes, payload: Payload) -> None:
        await super().on_setup(data_encoding, metadata_encoding, payload)  # requires composite metadata
        metadata = CompositeMetadata()
        metadata.parse(bytes(payload.metadata or b""))
        token = None
        for item in metadata.items:
            if isinstance(item, AuthenticationContent) and isinstance(
                item.authentication, AuthenticationBearer
            ):
                token = bytes(item.authentication.token).decode()
        _log.info("SETUP data=%r metadata=%r token=%r", data_encoding, metadata_encoding, token)
        if token != self._token:
            raise RuntimeError("invalid token")  # rsocket-py answers REJECTED_SETUP with this message
        self._session.update(token=token, data_mime=bytes(data_encoding).decode())


async def serve(host: str, token: str) -> None:
    """Run the server until stdin EOF."""
    events: list[list[str]] = []
    connections: list[RSocketServer] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(
            RSocketServer(
                TransportTCP(reader, writer),
                handler_factory=lambda: AuthenticatingHandler(token, events),
            )
        )

    server = await asyncio.start_server(on_connect, host, 0)
    sys.stdout.write(f"PORT {server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()

    eof = asyncio.Event()
    _start_stdin_eof_watch(asyncio.get_running_loop(), eof)
    await eof.wait()
    server.close()

    async def close_all() -> None:
        for connection in connections:
            await connection.close()
        await server.wait_closed()

    try:
        await asyncio.wait_for(close_all(), 5)
    except asyncio.TimeoutError:
        _log.warning("shutdown timed out")


def main(argv: list[str] | None = None) -> int:
    """Parse the CLI and run the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", required=True, help="the bearer token SETUP must carry")
    parser.add_argument("--debug", action="store_true", help="DEBUG logging (frames) to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format="rsocket_py_router_server %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(args.host, args.token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
