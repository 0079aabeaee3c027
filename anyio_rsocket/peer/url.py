"""One entry point for every transport: ``connect("tcp://host:port")``, ``tcps://``, ``ws://``, ``wss://``."""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx

from .client import connect_tcp
from .connection import RSocket
from .options import ConnectOptions
from .websocket import connect_websocket

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

#: The URL schemes :func:`connect` understands.
SCHEMES = ("tcp", "tcps", "ws", "wss")


@asynccontextmanager
async def connect(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    client: httpx.AsyncClient | None = None,
    subprotocols: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    **options: Unpack[ConnectOptions],
) -> AsyncIterator[RSocket]:
    """Connect to the RSocket server at ``url`` for one ``async with``; yield the requester.

    * ``tcp://host:port``: length-prefixed frames over TCP (:func:`~anyio_rsocket.connect_tcp`).
    * ``tcps://host:port``: the same over TLS, verified with ``ssl_context`` (default: the system's
      trusted CAs, ``ssl.create_default_context()``) against ``host``.
    * ``ws://host[:port]/path`` and ``wss://...``: WebSocket
      (:func:`~anyio_rsocket.connect_websocket`); ``client``, ``subprotocols`` and ``headers``
      apply to these only.

    ``options`` are those of :func:`~anyio_rsocket.connect_tcp`
    (:class:`~anyio_rsocket.options.ConnectOptions`). Raises
    ``ValueError`` for an unsupported scheme or a malformed URL, and
    :class:`~anyio_rsocket.errors.ConnectionClosedError` when the server cannot be reached (a failed
    TLS handshake has the ``ssl.SSLError`` as ``__cause__``);
    :class:`~anyio_rsocket.errors.ConnectTimeoutError` when no usable connection is reached within
    ``connect_timeout`` seconds (default 10), its ``__cause__`` naming the step that stalled.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}; use {', '.join(SCHEMES)}")
    if scheme in ("ws", "wss"):
        if scheme == "ws" and ssl_context is not None:
            raise ValueError("ssl_context needs a wss:// URL")
        async with connect_websocket(
            url,
            client=client,
            subprotocols=subprotocols,
            headers=headers,
            ssl_context=ssl_context,
            **options,
        ) as rsocket:
            yield rsocket
        return
    if client is not None or subprotocols is not None or headers is not None:
        raise ValueError("client, subprotocols and headers apply to ws:// and wss:// URLs only")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {url!r}") from exc
    host = parts.hostname
    if not host or port is None:
        raise ValueError(f"{scheme}:// URLs need a host and a port: {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{scheme}:// URLs have no path, query or fragment: {url!r}")
    if scheme == "tcp" and ssl_context is not None:
        raise ValueError("ssl_context needs a tcps:// URL")
    if scheme == "tcps" and ssl_context is None:
        ssl_context = ssl.create_default_context()
    async with connect_tcp(host, port, ssl_context=ssl_context, **options) as rsocket:
        yield rsocket


__all__ = ["SCHEMES", "connect"]
