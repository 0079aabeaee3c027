"""Routing interop with rsocket-py, both ways, over TCP with subprocess peers (X3-X8).

* Our client (composite metadata, bearer token in SETUP, routed requests) against rsocket-py's
  ``RequestRouter`` server: ``tests/interop/peers/rsocket_py_router_server.py``.
* rsocket-py's client (simple authentication in SETUP, routed requests, a per-request bearer token)
  against our :class:`~anyio_rsocket.Router`: ``tests/interop/peers/rsocket_py_router_client.py``.

The peers follow the pattern of ``test_interop_rsocket_py.py``: a ``PORT <n>`` line, shutdown on stdin
EOF. Every test runs on asyncio and on trio; rsocket-py itself runs on asyncio in its own process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest

from anyio_rsocket import (
    ApplicationError,
    Payload,
    RejectedError,
    RejectedSetupError,
    Router,
    RSocket,
    connect_tcp,
    serve_tcp,
)
from anyio_rsocket.extensions import (
    MESSAGE_COMPOSITE_METADATA,
    BearerAuthentication,
    SimpleAuthentication,
    bearer,
    composite,
)
from anyio_rsocket.routed import route_requester
from anyio_rsocket.router import AuthRequest, RequestContext

from .interop.peer_process import PEERS, STARTUP_TIMEOUT, peer_server

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

SERVER_SCRIPT = PEERS / "rsocket_py_router_server.py"
CLIENT_SCRIPT = PEERS / "rsocket_py_router_client.py"
TOKEN = "sesame"

#: Per-test budget for the interactions themselves.
TEST_TIMEOUT = 10


def router_server() -> AbstractAsyncContextManager[int]:
    """Run the rsocket-py router server; yield its port."""
    return peer_server(SERVER_SCRIPT.name, "--token", TOKEN)


@asynccontextmanager
async def routed_client(port: int, token: str = TOKEN) -> AsyncIterator[RSocket]:
    """Our client as Spring clients connect: composite metadata, JSON data, bearer token in SETUP."""
    async with connect_tcp(
        "127.0.0.1",
        port,
        data_mime_type="application/json",
        metadata_mime_type=MESSAGE_COMPOSITE_METADATA,
        setup_payload=Payload(b"", composite(bearer(token))),
    ) as rsocket:
        yield rsocket


# --- our client against rsocket-py's RequestRouter -------------------------------------------------


async def test_our_client_routes_to_rsocket_py_router() -> None:
    """X3, X5, X6, X8: every interaction routed by composite metadata; bearer token seen at SETUP."""
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with router_server() as port, routed_client(port) as rs:
            assert (await route_requester(rs, "echo").request_response(b"hi")).data == b"echo:hi"
            users = route_requester(rs, "user.get")
            assert await users.retrieve({"id": 7}, dict) == {"id": 7, "name": "user-7"}
            assert await route_requester(rs, "whoami").retrieve() == {
                "token": TOKEN,
                "data_mime": "application/json",
            }

            async with route_requester(rs, "numbers").request_stream({"count": 5}, initial_n=2) as stream:
                numbers = [json.loads(item.data) async for item in stream]
            assert numbers == [{"n": index} for index in range(5)]

            chat = route_requester(rs, "chat")
            async with chat.request_channel(b"a", initial_n=2) as channel:
                await channel.send(chat.element(b"b"))
                await channel.send(chat.element(b"c"))
                await channel.send_eof()
                echoes = [item.data async for item in channel]
            assert echoes == [b"echo:a", b"echo:b", b"echo:c"]

            await route_requester(rs, "event").fire_and_forget(b"x")
            await route_requester(rs, "push", "second-tag").metadata_push()
            while len(log := await route_requester(rs, "log").retrieve()) < 2:
                pass  # fnf/push have no acknowledgement; each poll is a round trip, fail_after bounds it
            assert log == [["event", "x"], ["push", "push,second-tag"]]

            with pytest.raises(ApplicationError):  # rsocket-py's unknown-route failure
                await route_requester(rs, "no.such.route").request_response(b"")
            assert (await route_requester(rs, "echo").request_response(b"again")).data == b"echo:again"


async def test_rsocket_py_router_rejects_a_bad_bearer_token() -> None:
    """S3, X6, X8: SETUP's bearer token is checked by the peer; REJECTED_SETUP reaches connect_tcp."""
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with router_server() as port:
            with pytest.raises(RejectedSetupError, match="invalid token"):
                async with routed_client(port, token="wrong"):
                    pytest.fail("SETUP with a wrong token was accepted")


async def test_cli_request_against_rsocket_py_router() -> None:
    """X5, X8: the ``anyio-rsocket`` CLI with --route and --auth-bearer, as against a Spring server."""
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with router_server() as port:
            result = await anyio.run_process(
                [
                    sys.executable,
                    "-m",
                    "anyio_rsocket.cli",
                    "request",
                    f"tcp://127.0.0.1:{port}",
                    "--route",
                    "user.get",
                    "--auth-bearer",
                    TOKEN,
                    "--data-mime",
                    "application/json",
                    "--data",
                    '{"id": 3}',
                ],
                check=False,
            )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"id": 3, "name": "user-3"}


# --- rsocket-py's client against our Router --------------------------------------------------------


def contract_router(log: list[list[str]]) -> Router:
    """Our side of the contract in ``rsocket_py_router_client.py``'s docstring."""
    router = Router()

    @router.authenticator
    def authenticate(request: AuthRequest) -> Any:
        auth = request.authentication
        if request.is_setup:
            if isinstance(auth, SimpleAuthentication) and (auth.username, auth.password) == (
                "alice",
                "secret",
            ):
                return "alice"
            raise RejectedSetupError("bad credentials")
        if request.route == "admin.stats":
            if not (isinstance(auth, BearerAuthentication) and auth.token == "admin-token"):
                raise RejectedError("admin token required")
            return "admin"
        return request.principal

    @router.response("user.{id}")
    async def user(id: int, options: dict[str, Any], context: RequestContext) -> dict[str, Any]:
        return {"id": id, "verbose": options["verbose"], "principal": context.principal}

    @router.response("echo")
    async def echo(payload: Payload) -> Payload:
        return Payload(b"echo:" + payload.data)

    @router.fire_and_forget("event")
    async def event(body: dict[str, str]) -> None:
        log.append(["event", body["kind"]])

    @router.metadata_push("push.{name}")
    async def push(name: str) -> None:
        log.append(["push", name])

    @router.response("log")
    async def get_log() -> list[list[str]]:
        return log

    @router.stream("numbers")
    async def numbers(request: dict[str, int]) -> AsyncIterator[dict[str, int]]:
        for index in range(request["count"]):
            yield {"n": index}

    @router.channel("upper")
    async def upper(words: AsyncIterator[str]) -> AsyncIterator[str]:
        async for word in words:
            yield word.upper()

    @router.response("admin.stats")
    async def stats(context: RequestContext) -> dict[str, Any]:
        return {"principal": context.principal, "route": context.route}

    return router


async def _run_client(port: int, *options: str) -> Any:
    result = await anyio.run_process(
        [sys.executable, str(CLIENT_SCRIPT), "--port", str(port), "--timeout", "20", *options], check=False
    )
    assert result.returncode == 0, f"rsocket-py client failed:\n{result.stderr.decode(errors='replace')}"
    return json.loads(result.stdout)


async def test_rsocket_py_client_routes_to_our_router() -> None:
    """X3, X5, X6, X7, X8: SETUP simple auth, variables, JSON codecs, every interaction, fallbacks."""
    log: list[list[str]] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(serve_tcp, contract_router(log), "127.0.0.1", 0)
            result = await _run_client(port)
            task_group.cancel_scope.cancel()
    assert result["user"] == {"id": 42, "verbose": True, "principal": "alice"}
    assert result["echo"] == "echo:hello"
    assert result["missing"] == "INVALID: no request-response route 'missing'"
    assert sorted(result["log"]) == [["event", "x"], ["push", "evt"]]
    assert result["numbers"] == [{"n": index} for index in range(5)]
    assert result["upper"] == ["A", "B", "C"]
    assert result["admin"] == {"principal": "admin", "route": "admin.stats"}
    assert result["admin_denied"] == "REJECTED: admin token required"


async def test_rsocket_py_client_rejected_by_our_router() -> None:
    """S3, X7: wrong simple credentials in SETUP are refused with REJECTED_SETUP by the auth hook."""
    with anyio.fail_after(30):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(serve_tcp, contract_router([]), "127.0.0.1", 0)
            result = await _run_client(port, "--scenario", "reject", "--password", "wrong")
            task_group.cancel_scope.cancel()
    assert result == {"setup_error": "REJECTED_SETUP: bad credentials"}
