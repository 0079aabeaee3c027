"""Client entry points: connect to an RSocket server and get a requester for one ``async with``."""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.abc import ByteStream

from ._groups import unwrap_exception_groups
from .connection import RSocket
from .errors import ConnectionClosedError
from .fragmentation import DEFAULT_MAX_REASSEMBLED_SIZE
from .frames import MAX_31, encode_frame
from .handler import RequestHandler
from .lease import LeaseStrategy
from .options import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    ConnectOptions,
    PeerOptions,
    split_connect_options,
)
from .payload import Payload
from .setup_info import SetupInfo
from .transports.base import Transport
from .transports.tcp import ByteStreamTransport

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

HandlerArgument = RequestHandler | Callable[[RSocket], RequestHandler] | None


@asynccontextmanager
async def open_client(
    transport: Transport,
    *,
    data_mime_type: str = "application/octet-stream",
    metadata_mime_type: str = "application/octet-stream",
    keepalive_interval: float = 20.0,
    max_lifetime: float = 90.0,
    setup_payload: Payload | None = None,
    handler: HandlerArgument = None,
    confirm_setup: bool = True,
    lease: bool | LeaseStrategy = False,
    lease_wait: bool = False,
    fragment_size: int | None = None,
    max_reassembled_size: int = DEFAULT_MAX_REASSEMBLED_SIZE,
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
    max_stream_id: int = MAX_31,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    expose_errors: bool = False,
) -> AsyncIterator[RSocket]:
    """Run the client side of RSocket over an already connected ``transport``.

    Sends SETUP (version 1.0) and, with ``confirm_setup`` (the default), a KEEPALIVE whose echo
    proves the server accepted it: a refused SETUP then raises
    :class:`~anyio_rsocket.errors.RejectedSetupError` (or another ``SetupError``) right here rather
    than from the first request. Leaving the block closes the connection, ends every interaction and
    leaves no task behind. The transport is closed in every case. See
    :class:`~anyio_rsocket.options.ClientOptions` for the options.
    """
    if keepalive_interval <= 0 or max_lifetime <= 0:
        raise ValueError("keepalive_interval and max_lifetime must be positive")
    options = PeerOptions(
        fragment_size=fragment_size,
        max_reassembled_size=max_reassembled_size,
        max_concurrent_requests=max_concurrent_requests,
        max_stream_id=max_stream_id,
        send_keepalives=True,
        lease_strategy=lease if isinstance(lease, LeaseStrategy) else None,
        lease_wait=lease_wait,
        expose_errors=expose_errors,
    )
    setup = SetupInfo(
        data_mime_type=data_mime_type,
        metadata_mime_type=metadata_mime_type,
        keepalive_interval=keepalive_interval,
        max_lifetime=max_lifetime,
        payload=setup_payload,
        lease=bool(lease),
    )
    setup_frame = encode_frame(setup.to_frame())  # invalid options fail before any I/O
    async with unwrap_exception_groups():
        try:
            async with anyio.create_task_group() as task_group:
                rsocket = RSocket(transport, task_group, is_client=True, setup=setup, options=options)
                if handler is not None:
                    rsocket._handler = handler if isinstance(handler, RequestHandler) else handler(rsocket)
                rsocket._send_frame(setup_frame)
                rsocket._start()
                try:
                    if confirm_setup:
                        await rsocket._confirm_setup(connect_timeout)
                    yield rsocket
                finally:
                    await rsocket.aclose()
                    task_group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await transport.aclose()


@asynccontextmanager
async def connect_tcp(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    **options: Unpack[ConnectOptions],
) -> AsyncIterator[RSocket]:
    """Connect to an RSocket server over TCP (TLS with ``ssl_context``) for one ``async with``.

    Options are those of :func:`open_client` (:class:`~anyio_rsocket.options.ClientOptions`): SETUP
    MIME types, ``keepalive_interval`` and ``max_lifetime`` in seconds, ``setup_payload``,
    ``handler`` (answers the server's requests: a :class:`RequestHandler` or a factory taking the
    :class:`RSocket`), leasing, fragmentation and limits. Raises
    :class:`~anyio_rsocket.errors.ConnectionClosedError` when the server cannot be reached; when the
    TLS handshake failed, its ``__cause__`` is the ``ssl.SSLError`` (e.g. ``SSLCertVerificationError``).
    """
    client_options, max_frame_size, _frame_timeout = split_connect_options(options)
    try:
        stream: ByteStream
        if ssl_context is None:
            stream = await anyio.connect_tcp(host, port)
        else:
            stream = await anyio.connect_tcp(host, port, ssl_context=ssl_context, tls_hostname=host)
    except (OSError, anyio.BrokenResourceError) as exc:
        # A failed TLS handshake raises ssl.SSLError (an OSError), or BrokenResourceError from one.
        tls_error = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
        if isinstance(tls_error, ssl.SSLError):
            raise ConnectionClosedError(
                f"TLS handshake with {host}:{port} failed: {tls_error}"
            ) from tls_error
        raise ConnectionClosedError(f"cannot connect to {host}:{port}: {exc}") from exc
    async with open_client(
        ByteStreamTransport(stream, max_frame_size=max_frame_size), **client_options
    ) as rsocket:
        yield rsocket
