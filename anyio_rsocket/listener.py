"""Accepting connections: the listener loop shared by the TCP and WebSocket servers."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ByteStream, TaskStatus
from anyio.streams.tls import TLSListener

logger = logging.getLogger("anyio_rsocket.server")


async def serve_listener(
    serve_one: Callable[[ByteStream], Awaitable[None]],
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Accept TCP (or TLS) connections and run ``serve_one`` for each in its own task.

    Reports the bound port through ``task_status``; a failing connection is logged and never
    disturbs the others; cancelling closes them all. Shared by the TCP and WebSocket servers.
    """
    tcp_listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound_port: int = tcp_listener.extra(anyio.abc.SocketAttribute.local_port)
    listener: anyio.abc.Listener[ByteStream] = tcp_listener
    if ssl_context is not None:
        listener = TLSListener(tcp_listener, ssl_context)
    async with listener:
        task_status.started(bound_port)

        async def handle(stream: ByteStream) -> None:
            try:
                await serve_one(stream)
            except Exception:
                logger.exception("connection handler failed")

        await listener.serve(handle)
