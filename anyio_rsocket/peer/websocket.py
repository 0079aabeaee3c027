"""WebSocket entry points: ``connect_websocket`` (client, over httpx) and ``serve_websocket`` (server).

One RSocket frame travels as one binary WebSocket message, without the TCP length prefix (checklist
T2); frames are limited to 16,777,215 bytes in both directions (T3). For serving RSocket from an
ASGI framework (Starlette, FastAPI, ...), see :mod:`anyio_rsocket.asgi`.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial

import anyio
import httpx
from anyio.abc import ByteStream, TaskStatus

from ..transports.base import OwnedTransport, Transport
from ..transports.websocket import HANDSHAKE_TIMEOUT, accept_websocket, open_websocket
from ..wire.frames import MAX_FRAME_SIZE
from .client import open_client, remaining_time
from .connection import HandlerFactory, RSocket
from .listener import DEFAULT_TLS_HANDSHAKE_TIMEOUT, serve_listener
from .options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_FRAME_TIMEOUT,
    ConnectOptions,
    ServerOptions,
    split_connect_options,
)
from .server import registry_for, serve_connection
from .sessions import SessionRegistry
from .shutdown import ServerShutdown, drainable_factory

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack


@asynccontextmanager
async def connect_websocket(
    url: str,
    *,
    client: httpx.AsyncClient | None = None,
    subprotocols: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **options: Unpack[ConnectOptions],
) -> AsyncIterator[RSocket]:
    """Connect to an RSocket server over WebSocket for one ``async with``; yield the requester.

    ``url`` is ``ws://host[:port]/path`` or ``wss://...`` (``http(s)://`` works too). The upgrade
    request goes through ``client`` when given, so its auth, cookies, proxies, TLS settings and
    transport apply: pass ``httpx.AsyncClient(transport=httpx_ws.transport.ASGIWebSocketTransport(app))``
    to talk to an ASGI app in-process. Without ``client`` a private one is used, and ``ssl_context``
    (only then) sets how ``wss://`` servers are verified. ``subprotocols`` are offered in the
    upgrade; ``headers`` are added to it. ``options`` are those of :func:`~anyio_rsocket.connect_tcp`
    (:class:`~anyio_rsocket.options.ClientOptions`).

    Raises :class:`~anyio_rsocket.errors.ConnectionClosedError` when the server cannot be reached or
    refuses the upgrade; when the TLS handshake failed, its ``__cause__`` is the ``ssl.SSLError``.
    ``connect_timeout`` (default 10 s) bounds the connect, TLS handshake, upgrade and SETUP
    confirmation together: past it, :class:`~anyio_rsocket.errors.ConnectTimeoutError` is raised,
    whose ``__cause__`` is a ``TimeoutError`` naming the step that stalled (through a caller's httpx
    ``client``, connecting and the TLS handshake count as the "WebSocket upgrade").
    """
    client_options, max_frame_size, frame_timeout = split_connect_options(options)
    connect_timeout = client_options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    deadline = anyio.current_time() + connect_timeout
    open_transport = partial(
        open_websocket,
        url,
        client=client,
        subprotocols=subprotocols,
        headers=headers,
        ssl_context=ssl_context,
        connect_timeout=connect_timeout,
        max_frame_size=max_frame_size,
        frame_timeout=frame_timeout,
    )

    async def redial() -> Transport:
        return await OwnedTransport.enter(open_transport())

    async with open_transport() as transport:
        client_options["connect_timeout"] = remaining_time(deadline)  # for the SETUP confirmation
        async with open_client(transport, redial=redial, **client_options) as rsocket:
            yield rsocket


async def serve_websocket_stream(
    stream: ByteStream,
    handler_factory: HandlerFactory,
    *,
    path: str | None = "/",
    subprotocols: Sequence[str] = (),
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    sessions: SessionRegistry | None = None,
    **options: Unpack[ServerOptions],
) -> None:
    """Serve RSocket over WebSocket on one accepted byte stream: the HTTP upgrade, then frames.

    The arguments are those of :func:`serve_websocket`; ``handshake_timeout`` bounds the wait for
    the upgrade request. ``max_frame_size`` and ``frame_timeout`` apply to the WebSocket, the other
    options to the RSocket connection; ``sessions`` is as for
    :func:`~anyio_rsocket.server.serve_connection`.
    """
    transport = await accept_websocket(
        stream,
        path=path,
        subprotocols=subprotocols,
        handshake_timeout=handshake_timeout,
        max_frame_size=options.get("max_frame_size", MAX_FRAME_SIZE),
        frame_timeout=options.get("frame_timeout", DEFAULT_FRAME_TIMEOUT),
    )
    if transport is not None:
        await serve_connection(transport, handler_factory, sessions=sessions, **options)


async def serve_websocket(
    handler_factory: HandlerFactory,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    path: str | None = "/",
    subprotocols: Sequence[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    shutdown: ServerShutdown | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerOptions],
) -> None:
    """Serve RSocket over WebSocket (``wss://`` with ``ssl_context``) until cancelled or drained.

    Use it like :func:`~anyio_rsocket.serve_tcp`: ``port = await task_group.start(serve_websocket,
    factory, host, 0)`` reports the bound port once connections are accepted. Upgrades are accepted
    on ``path`` only (``None``: any path; others get 404). Of ``subprotocols``, the first one the
    client offers is agreed on. ``handshake_timeout`` bounds how long a new connection may take to
    send its upgrade request (after a TLS handshake, if any). Each connection runs in its own task
    group; closing a connection sends a WebSocket Close. ``options`` are those of
    :func:`~anyio_rsocket.serve_tcp` (:class:`~anyio_rsocket.options.ServerOptions`), and
    ``shutdown`` and ``drain_timeout`` stop the server as they stop ``serve_tcp``: draining (see
    :class:`~anyio_rsocket.ServerShutdown`) closes connections still in their upgrade at once.
    Cancelling the call without ``drain_timeout`` closes every connection at once. ``reuse_port=True``
    lets several processes serve the same port, as for ``serve_tcp``.
    """
    factory = drainable_factory(handler_factory)
    sessions = registry_for(options)

    async def serve_one(stream: ByteStream) -> None:
        await serve_websocket_stream(
            stream,
            factory,
            path=path,
            subprotocols=subprotocols,
            handshake_timeout=handshake_timeout,
            sessions=sessions,
            **options,
        )

    await serve_listener(
        serve_one,
        host,
        port,
        ssl_context=ssl_context,
        max_connections=options.get("max_connections"),
        tls_handshake_timeout=options.get("tls_handshake_timeout", DEFAULT_TLS_HANDSHAKE_TIMEOUT),
        shutdown=shutdown,
        drain_timeout=options.get("drain_timeout", DEFAULT_DRAIN_TIMEOUT),
        reuse_port=options.get("reuse_port", False),
        task_status=task_status,
    )


__all__ = ["connect_websocket", "serve_websocket", "serve_websocket_stream"]
