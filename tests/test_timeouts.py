"""``connect_timeout``: one deadline for reaching a usable connection, on every client entry point.

It covers the TCP connect, the TLS handshake, the WebSocket upgrade and the SETUP confirmation, as one
budget. On expiry the client raises :class:`ConnectTimeoutError` (a ``ConnectionClosedError``) whose
``__cause__`` is a ``TimeoutError`` naming the step that stalled. Each case below used to hang (for
ever, or until a server-side timeout or ``max_lifetime``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

import anyio
import anyio.to_thread
import httpx
import pytest
import trustme
from anyio.abc import SocketStream

from anyio_rsocket import (
    ConnectionClosedError,
    ConnectTimeoutError,
    Payload,
    RequestHandler,
    RSocket,
    connect,
    connect_tcp,
    connect_websocket,
    serve_tcp,
)
from anyio_rsocket import cli as cli_module
from anyio_rsocket.transports.websocket import accept_websocket

pytestmark = pytest.mark.anyio

#: The connect timeout the tests use, and the bound on each test's waits.
CONNECT_TIMEOUT = 0.3
TIMEOUT = 10


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@asynccontextmanager
async def listener(handle: Callable[[SocketStream], Awaitable[None]]) -> AsyncIterator[int]:
    """A TCP listener running ``handle`` on each connection; yields its port."""
    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as tcp_listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(tcp_listener.serve, handle)
        yield tcp_listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def silent(stream: SocketStream) -> None:
    """Accept, then neither read nor answer (the connection stays open until the test ends)."""
    async with stream:
        await anyio.sleep_forever()


async def upgrade_then_silent(stream: SocketStream, *, delay: float = 0.0) -> None:
    """Accept the WebSocket upgrade (after ``delay`` seconds), then never answer SETUP."""
    if delay:
        await anyio.sleep(delay)  # a slow server, not a wait for an event
    transport = await accept_websocket(stream)
    assert transport is not None
    try:
        await anyio.sleep_forever()
    finally:
        await transport.aclose()


async def expect_timeout(connection: AbstractAsyncContextManager[RSocket], stage: str) -> ConnectTimeoutError:
    """Entering ``connection`` fails with ConnectTimeoutError for ``stage``, within the budget."""
    with anyio.fail_after(TIMEOUT), pytest.raises(ConnectTimeoutError) as info:
        async with connection:
            raise AssertionError("connected")
    error = info.value
    assert isinstance(error, ConnectionClosedError)
    assert isinstance(error.__cause__, TimeoutError)
    assert stage in str(error.__cause__), error.__cause__
    assert stage in str(error)
    return error


async def test_tls_client_to_a_server_that_never_answers(client_context: ssl.SSLContext) -> None:
    """The TLS handshake stalls: the ClientHello is never answered."""
    async with listener(silent) as port:
        await expect_timeout(
            connect_tcp("127.0.0.1", port, ssl_context=client_context, connect_timeout=CONNECT_TIMEOUT),
            "TLS handshake",
        )
        await expect_timeout(
            connect(f"tcps://127.0.0.1:{port}", ssl_context=client_context, connect_timeout=CONNECT_TIMEOUT),
            "TLS handshake",
        )


async def test_tls_client_to_a_plaintext_server(client_context: ssl.SSLContext) -> None:
    """An RSocket server without TLS reads the ClientHello as the start of a huge frame and waits."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_tcp, lambda rs: RequestHandler(), "127.0.0.1", 0)
        await expect_timeout(
            connect_tcp("127.0.0.1", port, ssl_context=client_context, connect_timeout=CONNECT_TIMEOUT),
            "TLS handshake",
        )
        tg.cancel_scope.cancel()


async def test_client_to_a_listener_that_never_answers_setup() -> None:
    async with listener(silent) as port:
        await expect_timeout(
            connect_tcp("127.0.0.1", port, connect_timeout=CONNECT_TIMEOUT), "SETUP confirmation"
        )
        await expect_timeout(
            connect(f"tcp://127.0.0.1:{port}", connect_timeout=CONNECT_TIMEOUT), "SETUP confirmation"
        )


async def test_websocket_upgrade_that_is_never_answered() -> None:
    async with listener(silent) as port:
        url = f"ws://127.0.0.1:{port}/"
        await expect_timeout(connect_websocket(url, connect_timeout=CONNECT_TIMEOUT), "WebSocket upgrade")
        await expect_timeout(connect(url, connect_timeout=CONNECT_TIMEOUT), "WebSocket upgrade")
        # Through a caller's httpx client, httpx owns the socket; the upgrade is bounded all the same.
        async with httpx.AsyncClient() as client:
            await expect_timeout(
                connect_websocket(url, client=client, connect_timeout=CONNECT_TIMEOUT), "WebSocket upgrade"
            )


async def test_websocket_server_that_never_answers_setup() -> None:
    async with listener(upgrade_then_silent) as port:
        await expect_timeout(
            connect_websocket(f"ws://127.0.0.1:{port}/", connect_timeout=CONNECT_TIMEOUT),
            "SETUP confirmation",
        )


async def test_the_steps_share_one_budget() -> None:
    """The upgrade takes most of the budget: SETUP confirmation gets only what is left."""
    budget, upgrade_delay = 1.0, 0.6
    async with listener(partial(upgrade_then_silent, delay=upgrade_delay)) as port:
        started = time.monotonic()
        await expect_timeout(
            connect_websocket(f"ws://127.0.0.1:{port}/", connect_timeout=budget), "SETUP confirmation"
        )
        elapsed = time.monotonic() - started
    assert upgrade_delay <= elapsed < budget + 0.3, elapsed  # not upgrade_delay + budget


async def test_a_server_that_answers_in_time_is_unaffected() -> None:
    class Echo(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            return payload

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_tcp, lambda rs: Echo(), "127.0.0.1", 0)
        with anyio.fail_after(TIMEOUT):
            async with connect_tcp("127.0.0.1", port, connect_timeout=CONNECT_TIMEOUT) as rs:
                await anyio.sleep(CONNECT_TIMEOUT * 2)  # past the connect timeout: it no longer applies
                assert (await rs.request_response(Payload(b"hi"))).data == b"hi"
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("bad", [0, -1.0])
async def test_connect_timeout_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="connect_timeout"):
        async with connect_tcp("127.0.0.1", 1, connect_timeout=bad):
            pass
    with pytest.raises(ValueError, match="connect_timeout"):
        async with connect_websocket("ws://127.0.0.1:1/", connect_timeout=bad):
            pass


async def test_cli_connect_timeout(anyio_backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--connect-timeout`` bounds the CLI's connect: exit status 2 and the stalled step on stderr."""
    async with listener(silent) as port:
        argv = ["request", f"tcp://127.0.0.1:{port}", "-d", "x", "--connect-timeout", "0.3"]
        argv += ["--backend", anyio_backend]
        with anyio.fail_after(TIMEOUT):
            status = await anyio.to_thread.run_sync(cli_module.main, argv, abandon_on_cancel=True)
    err = capsys.readouterr().err
    assert status == cli_module.EXIT_CONNECTION_FAILED, err
    assert "timed out" in err and "SETUP confirmation" in err, err


def test_cli_parses_connect_timeout() -> None:
    parser = cli_module.build_parser()
    args = parser.parse_args(["request", "tcp://127.0.0.1:7000", "-d", "x", "--connect-timeout", "2.5"])
    assert cli_module.plan_client(args).connect_options["connect_timeout"] == 2.5
    with pytest.raises(SystemExit):
        parser.parse_args(["request", "tcp://127.0.0.1:7000", "--connect-timeout", "0"])
