"""Helpers for testing code that uses anyio_rsocket: a client and a server in one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ..transports.memory import memory_transport_pair
from ._groups import unwrap_exception_groups
from .client import HandlerArgument, open_client
from .connection import HandlerFactory, RSocket
from .options import ServerOptions
from .server import serve_connection


@asynccontextmanager
async def connected_pair(
    handler_factory: HandlerFactory,
    *,
    client_handler: HandlerArgument = None,
    server_options: ServerOptions | None = None,
    **client_options: Any,
) -> AsyncIterator[RSocket]:
    """Run a server connection and a client over an in-memory transport; yield the client.

    The server side is served by :func:`~anyio_rsocket.serve_connection` exactly as a TCP
    connection would be, with ``server_options``; leaving the block closes both ends.
    """
    client_transport, server_transport = memory_transport_pair()
    async with unwrap_exception_groups(), anyio.create_task_group() as task_group:
        options = server_options or {}
        task_group.start_soon(lambda: serve_connection(server_transport, handler_factory, **options))
        try:
            async with open_client(client_transport, handler=client_handler, **client_options) as rsocket:
                yield rsocket
        finally:
            task_group.cancel_scope.cancel()
