"""TLS on every transport: ``tcps://`` (TLS over TCP) and ``wss://``, with certificates made by trustme.

A failed TLS handshake raises :class:`ConnectionClosedError` whose ``__cause__`` is the
``ssl.SSLError`` (here ``ssl.SSLCertVerificationError``), from ``connect_tcp``, ``connect_websocket``
and ``connect`` alike, and leaves nothing running on either side. Checklist IDs refer to
``docs/rsocket-spec-checklist.md``. Every test runs on asyncio and on trio.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from functools import partial

import anyio
import httpx
import pytest
import trustme

from anyio_rsocket import (
    ConnectionClosedError,
    Payload,
    RequestHandler,
    RSocket,
    connect,
    connect_tcp,
    connect_websocket,
    serve_tcp,
    serve_websocket,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 10


class Echo(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return Payload(b"echo:" + payload.data)

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(b"%d" % index)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture(scope="module")
def wrong_client_context() -> ssl.SSLContext:
    """Trusts a CA that did not sign the server's certificate."""
    context = ssl.create_default_context()
    trustme.CA().configure_trust(context)
    return context


async def check(connection: AbstractAsyncContextManager[RSocket]) -> None:
    async with connection as rs:
        assert (await rs.request_response(Payload(b"over tls"))).data == b"echo:over tls"
        async with rs.request_stream(Payload(b"3")) as stream:
            assert [item.data async for item in stream] == [b"0", b"1", b"2"]


async def test_tls_over_tcp(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    """T1: serve_tcp and connect_tcp with ssl_context, and tcps:// URLs; a plaintext client fails."""
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(partial(serve_tcp, lambda rs: Echo(), ssl_context=server_context))
            await check(connect_tcp("127.0.0.1", port, ssl_context=client_context))
            await check(connect(f"tcps://127.0.0.1:{port}", ssl_context=client_context))
            with pytest.raises(ConnectionClosedError):  # SETUP in plaintext: the TLS handshake fails
                async with connect_tcp("127.0.0.1", port):
                    pass
            tg.cancel_scope.cancel()


async def test_wss(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    """T2: serve_websocket with ssl_context; wss:// via connect_websocket, connect() and a caller's client."""
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(partial(serve_websocket, lambda rs: Echo(), ssl_context=server_context))
            url = f"wss://127.0.0.1:{port}/"
            await check(connect_websocket(url, ssl_context=client_context))
            await check(connect(url, ssl_context=client_context))
            async with httpx.AsyncClient(verify=client_context) as client:
                await check(connect_websocket(url, client=client))
            async with httpx.AsyncClient() as client:
                with pytest.raises(ValueError):  # TLS settings belong to the caller's client then
                    async with connect_websocket(url, client=client, ssl_context=client_context):
                        pass
            tg.cancel_scope.cancel()


@pytest.mark.parametrize("scheme", ["tcps", "wss", "wss-httpx-client"])
async def test_wrong_ca_fails_cleanly(
    scheme: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    wrong_client_context: ssl.SSLContext,
) -> None:
    """T1, T2: a server certificate from an untrusted CA: ConnectionClosedError caused by the ssl error.

    The server goes on serving trusted clients, and once it is stopped nothing is left running.
    """
    tasks_before = len(anyio.get_running_tasks())
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            serve = serve_tcp if scheme == "tcps" else serve_websocket
            port = await tg.start(partial(serve, lambda rs: Echo(), ssl_context=server_context))
            url = f"tcps://127.0.0.1:{port}" if scheme == "tcps" else f"wss://127.0.0.1:{port}/"
            with pytest.raises(ConnectionClosedError, match="TLS handshake") as exc_info:
                if scheme == "wss-httpx-client":
                    async with httpx.AsyncClient(verify=wrong_client_context) as client:
                        async with connect_websocket(url, client=client):
                            pytest.fail("connected despite an untrusted certificate")
                else:
                    async with connect(url, ssl_context=wrong_client_context):
                        pytest.fail("connected despite an untrusted certificate")
            assert isinstance(exc_info.value.__cause__, ssl.SSLCertVerificationError)
            await check(connect(url, ssl_context=client_context))
            tg.cancel_scope.cancel()
    assert len(anyio.get_running_tasks()) == tasks_before
