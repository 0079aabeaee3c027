"""RSocket over WebSocket: one frame per binary message, no length prefix (checklist T2, T3).

:class:`WebSocketTransport` drives a sans-IO ``wsproto`` connection over a raw byte channel: an AnyIO
``ByteStream`` on the server side (:func:`accept_websocket` does the HTTP upgrade), or the network
stream an ``httpx.AsyncClient`` hands over after a ``101 Switching Protocols`` on the client side
(:func:`open_websocket`). Driving wsproto ourselves rather than through a session object lets us

* refuse a message as soon as its announced length passes the frame limit (16,777,215 bytes or
  the lower ``max_frame_size``), before buffering it, and hold what a trickled message has sent so
  far in memory proportional to its bytes;
* give a message that has started ``frame_timeout`` seconds to arrive in full;
* write every frame of a batch in one write, and return every frame of one read at once;
* run no task of our own: the connection's reader reads, its writer writes.

A peer that sends a text message or an oversized message gets ERROR[CONNECTION_ERROR] and a close, and
the reader sees :class:`~anyio_rsocket.errors.ProtocolError`. Every I/O failure becomes
:class:`~anyio_rsocket.errors.ConnectionClosedError`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import anyio
import httpx
from anyio.abc import ByteStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from ..wire.errors import ConnectionClosedError, ErrorCode, FrameTooLargeError, ProtocolError
from ..wire.frames import MAX_FRAME_SIZE, ErrorFrame, encode_frame
from ..wire.framing import FrameBuffer, append_chunk
from .base import DEFAULT_CONNECT_TIMEOUT, DEFAULT_FRAME_TIMEOUT, Transport
from .sockets import connect_socket_stream, connect_timeout_error

#: How much to read per call; the same as the TCP transport.
_READ_SIZE = 262144
#: How long closing may spend sending the Close message before the connection is dropped.
_CLOSE_TIMEOUT = 1.0
#: How long a server waits for a complete upgrade request.
HANDSHAKE_TIMEOUT = 10.0

_ANYIO_IO_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class _WebSocketProtocol(Protocol):
    """What both ``wsproto.WSConnection`` (server, after the handshake) and ``Connection`` offer."""

    @property
    def state(self) -> ConnectionState: ...
    def send(self, event: Event) -> bytes: ...
    def receive_data(self, data: bytes | None) -> None: ...
    def events(self) -> Iterable[Event]: ...


class _RawChannel(Protocol):
    """Bytes in and out: ``read`` returns ``b""`` at end of stream."""

    async def read(self) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def aclose(self) -> None: ...


class _ByteStreamChannel:
    """An AnyIO byte stream (TCP or TLS) as a raw channel; errors are mapped by the transport."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream

    async def read(self) -> bytes:
        try:
            return await self.stream.receive(_READ_SIZE)
        except anyio.EndOfStream:
            return b""

    async def write(self, data: bytes) -> None:
        await self.stream.send(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


class _NetworkStream(Protocol):
    """The part of httpcore's ``AsyncNetworkStream`` we use (httpx gives it after a 101)."""

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes: ...
    async def write(self, buffer: bytes, timeout: float | None = None) -> None: ...
    async def aclose(self) -> None: ...


class _NetworkStreamChannel:
    """httpx's upgraded network stream as a raw channel.

    That stream belongs to whichever httpx transport the caller configured (httpcore's sockets,
    httpx-ws's in-process ASGI transport, a proxy, ...), so its error types are not ours to know: any
    ``Exception`` it raises means the connection is unusable, and is mapped by the transport.
    """

    def __init__(self, stream: _NetworkStream) -> None:
        self.stream = stream

    async def read(self) -> bytes:
        return await self.stream.read(_READ_SIZE)

    async def write(self, data: bytes) -> None:
        await self.stream.write(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


def _check_limits(max_frame_size: int, frame_timeout: float) -> None:
    FrameBuffer(max_frame_size)  # raises ValueError for an impossible limit
    if not frame_timeout > 0:
        raise ValueError("frame_timeout must be positive")


def _frame_decoder(connection: object) -> Any:
    """wsproto's frame decoder behind ``connection``, or ``None`` if this wsproto hides it.

    Reading its state (is a frame header parsed, are bytes waiting) tells whether a message has
    started and how long it announces itself to be; without it we fall back to what events tell.
    """
    inner = getattr(connection, "connection", None) or connection  # WSConnection wraps a Connection
    decoder = getattr(getattr(inner, "_proto", None), "_frame_decoder", None)
    if all(hasattr(decoder, name) for name in ("header", "buffer", "payload_consumed")):
        return decoder
    return None


class WebSocketTransport(Transport):
    """Carries RSocket frames as binary WebSocket messages, one frame per message (T2).

    Create one with :func:`accept_websocket` (server) or :func:`open_websocket` (client). Frames larger
    than 16,777,215 bytes are refused on both directions (T3): :meth:`send` raises
    :class:`~anyio_rsocket.errors.FrameTooLargeError` before writing anything, and a peer's oversized
    or text message ends the connection with :class:`~anyio_rsocket.errors.ProtocolError`.
    ``max_frame_size`` lowers the limit for what the peer sends (refused as soon as a message
    announces more), and a message must arrive in full within ``frame_timeout`` seconds of waiting
    once it has started.
    """

    def __init__(
        self,
        connection: _WebSocketProtocol,
        channel: _RawChannel,
        *,
        subprotocol: str | None = None,
        io_errors: tuple[type[BaseException], ...] = _ANYIO_IO_ERRORS,
        max_frame_size: int = MAX_FRAME_SIZE,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    ) -> None:
        _check_limits(max_frame_size, frame_timeout)
        self._ws = connection
        self._channel = channel
        self._io_errors = io_errors
        self._max_frame_size = max_frame_size
        self._frame_timeout = frame_timeout
        self._frame_budget = frame_timeout  # waiting time left for the message being received
        self._decoder = _frame_decoder(connection)
        self._event_pending = False  # without the decoder: bytes fed that completed no event yet
        # The reader answers pings while the writer may be writing: one write at a time.
        self._write_lock = anyio.Lock(fast_acquire=True)
        self._unparsed = True  # wsproto may hold bytes not yet turned into events (after the upgrade)
        self._partial: list[bytes | bytearray] = []
        self._partial_size = 0
        # A message announced over the limit is refused without keeping any of it; it is read (and
        # dropped) to its end, up to the wire maximum, so that the peer is not cut off mid-send and
        # does read our ERROR and Close.
        self._refusing = False
        self._dropped = 0
        self._error: ConnectionClosedError | None = None
        self._closed = False
        self.subprotocol = subprotocol
        """The subprotocol both sides agreed on during the upgrade (``None`` if none)."""

    async def send(self, frames: list[bytes]) -> None:
        """Write each frame as one binary message; the whole batch goes out in a single write."""
        for frame in frames:
            if len(frame) > MAX_FRAME_SIZE:
                raise FrameTooLargeError(
                    f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_SIZE}-byte frame limit"
                )
        if self._error is not None:
            raise ConnectionClosedError(self._error.message)
        try:
            data = b"".join([self._ws.send(BytesMessage(frame)) for frame in frames])
        except LocalProtocolError:  # wsproto refuses messages once a Close was sent or received
            raise ConnectionClosedError("the WebSocket is closing") from None
        await self._write(data)

    async def receive(self) -> list[bytes]:
        """Wait for at least one complete binary message; return every complete one at hand."""
        frames = await self._receive(timed=False)
        if frames is not None:
            return frames
        # Part of a message is here: the rest must come within what is left of its budget.
        started = anyio.current_time()
        with anyio.move_on_after(self._frame_budget):
            try:
                frames = await self._receive(timed=True)
            except BaseException:
                self._frame_budget -= anyio.current_time() - started
                raise
            assert frames is not None
            return frames
        timeout = self._frame_timeout
        self._fail(ProtocolError(f"a WebSocket message did not arrive in full within {timeout:g} s"))
        assert self._error is not None
        raise self._error

    async def _receive(self, *, timed: bool) -> list[bytes] | None:
        """Read until complete messages are at hand; untimed, return ``None`` once one has started."""
        while True:
            frames, to_send = self._process_events() if self._unparsed else ([], b"")
            self._unparsed = False
            if to_send:
                with contextlib.suppress(ConnectionClosedError):  # recorded in self._error
                    await self._write(to_send)
            if frames:
                self._frame_budget = self._frame_timeout  # what is left started just now
                return frames
            if self._error is not None:
                raise self._error
            if not timed:
                if self._mid_message():
                    return None
                self._frame_budget = self._frame_timeout
            try:
                data = await self._channel.read()
            except self._io_errors as exc:
                self._fail(ConnectionClosedError(f"connection lost: {exc!r}"))
                continue
            if not data:
                self._fail(ConnectionClosedError("connection closed by peer without a WebSocket close"))
                continue
            self._unparsed = True
            self._event_pending = True
            try:
                self._ws.receive_data(data)
            except LocalProtocolError:  # data after the close handshake
                self._fail(ConnectionClosedError("connection closed"))

    def _mid_message(self) -> bool:
        """Whether part of a message (or of any WebSocket frame) has arrived but not all of it."""
        if self._partial or self._refusing:
            return True
        decoder = self._decoder
        if decoder is None:
            return self._event_pending
        return decoder.header is not None or len(decoder.buffer) > 0

    def _frame_remaining(self) -> int:
        """Payload bytes the data frame being received still announces (0 if none, or unknown)."""
        decoder = self._decoder
        header = decoder.header if decoder is not None else None
        if header is None or header.opcode.iscontrol():
            return 0
        remaining: int = header.payload_len - decoder.payload_consumed
        return remaining

    def _process_events(self) -> tuple[list[bytes], bytes]:
        """Turn what wsproto parsed into complete frames, plus any bytes we owe the peer (pongs)."""
        frames: list[bytes] = []
        to_send = b""
        for event in self._ws.events():
            self._event_pending = False
            if isinstance(event, BytesMessage):
                if self._refusing:
                    self._dropped += len(event.data)
                    if event.message_finished or self._dropped > MAX_FRAME_SIZE:
                        return frames, to_send + self._violation(
                            f"WebSocket message announced more than the {self._max_frame_size}-byte "
                            "frame limit",
                            CloseReason.MESSAGE_TOO_BIG,
                        )
                    continue
                if event.message_finished and not self._partial:
                    data = bytes(event.data)
                    if len(data) > self._max_frame_size:
                        return frames, to_send + self._violation(
                            f"WebSocket message of {len(data)} bytes exceeds the "
                            f"{self._max_frame_size}-byte frame limit",
                            CloseReason.MESSAGE_TOO_BIG,
                        )
                    frames.append(data)
                    continue
                # A message arriving in pieces: check what it announces before keeping a piece.
                received = self._partial_size + len(event.data)
                if received + self._frame_remaining() > self._max_frame_size:
                    if event.message_finished:
                        return frames, to_send + self._violation(
                            f"WebSocket message of {received} bytes exceeds the "
                            f"{self._max_frame_size}-byte frame limit",
                            CloseReason.MESSAGE_TOO_BIG,
                        )
                    self._refuse(received)
                    continue
                append_chunk(self._partial, bytes(event.data))
                self._partial_size = received
                if event.message_finished:
                    frames.append(b"".join(self._partial))
                    self._partial.clear()
                    self._partial_size = 0
            elif isinstance(event, TextMessage):
                return frames, to_send + self._violation(
                    "text WebSocket messages are not RSocket frames (binary only)",
                    CloseReason.UNSUPPORTED_DATA,
                )
            elif isinstance(event, Ping):
                if self._ws.state is ConnectionState.OPEN:
                    to_send += self._ws.send(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    to_send += self._ws.send(event.response())
                reason = f": {event.reason}" if event.reason else ""
                self._fail(ConnectionClosedError(f"WebSocket closed by peer (code {event.code}{reason})"))
                return frames, to_send
            # Pongs (we never ping) and anything else carry nothing for RSocket.
        if not self._refusing and self._partial_size + self._frame_remaining() > self._max_frame_size:
            self._refuse(self._partial_size)  # announced by a frame header whose payload is to come
        return frames, to_send

    def _refuse(self, received: int) -> None:
        """Drop the message in progress and what is still to come of it (see ``_refusing``)."""
        self._refusing = True
        self._dropped = received
        self._partial.clear()
        self._partial_size = 0

    def _violation(self, message: str, close_code: int) -> bytes:
        """The peer broke T2/T3: fail with ProtocolError; return ERROR[CONNECTION_ERROR] + Close."""
        self._fail(ProtocolError(message))
        if self._ws.state is not ConnectionState.OPEN:
            return b""
        error = encode_frame(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, message.encode()))
        return self._ws.send(BytesMessage(error)) + self._ws.send(CloseConnection(close_code, message))

    def _fail(self, error: ConnectionClosedError) -> None:
        if self._error is None:
            self._error = error

    async def _write(self, data: bytes) -> None:
        try:
            async with self._write_lock:
                await self._channel.write(data)
        except self._io_errors as exc:
            self._fail(ConnectionClosedError(f"connection lost while sending: {exc!r}"))
            raise ConnectionClosedError(f"connection lost while sending: {exc!r}") from exc

    async def aclose(self) -> None:
        """Send a normal Close (best effort, for at most a second) and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._fail(ConnectionClosedError("connection closed locally"))
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(_CLOSE_TIMEOUT):
                if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    with contextlib.suppress(ConnectionClosedError):
                        await self._write(self._ws.send(CloseConnection(CloseReason.NORMAL_CLOSURE)))
            with anyio.move_on_after(_CLOSE_TIMEOUT) as scope:
                with contextlib.suppress(*self._io_errors):
                    await self._channel.aclose()
            if scope.cancelled_caught:  # e.g. a TLS close_notify the peer never reads
                await _aclose_forcefully(self._channel)


async def _aclose_forcefully(channel: _RawChannel) -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()
        with contextlib.suppress(Exception):
            await channel.aclose()


# --- server side: the HTTP upgrade over an accepted byte stream ---------------------------------


def _choose_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first protocol the client offered that we support (client order wins, RFC 6455 4.2.2)."""
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None


async def accept_websocket(
    stream: ByteStream,
    *,
    path: str | None = "/",
    subprotocols: Sequence[str] = (),
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    max_frame_size: int = MAX_FRAME_SIZE,
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
) -> WebSocketTransport | None:
    """Answer the HTTP upgrade on an accepted ``stream``; return the transport, or ``None``.

    ``None`` means there is no WebSocket to serve, and the stream has been closed: the request was
    not a valid upgrade (answered with 400), asked for another ``path`` (404; ``path=None`` accepts
    any), did not arrive within ``handshake_timeout`` seconds, or the client went away. Of the
    ``subprotocols`` we support, the first one the client offers is chosen. ``max_frame_size`` and
    ``frame_timeout`` are the transport's limits on what the client sends.
    """
    _check_limits(max_frame_size, frame_timeout)
    connection = WSConnection(ConnectionType.SERVER)
    channel = _ByteStreamChannel(stream)
    answer: bytes = b""
    transport: WebSocketTransport | None = None
    try:
        with anyio.move_on_after(handshake_timeout):
            request = await _read_upgrade_request(connection, channel)
            if request is None:
                pass
            elif path is not None and urlsplit(request.target).path != path:
                answer = connection.send(RejectConnection(status_code=404))
            else:
                subprotocol = _choose_subprotocol(request.subprotocols, subprotocols)
                await stream.send(connection.send(AcceptConnection(subprotocol=subprotocol)))
                transport = WebSocketTransport(
                    connection,
                    channel,
                    subprotocol=subprotocol,
                    max_frame_size=max_frame_size,
                    frame_timeout=frame_timeout,
                )
    except RemoteProtocolError as exc:  # not a valid upgrade request
        if isinstance(exc.event_hint, RejectConnection):
            answer = connection.send(exc.event_hint)
    except _ANYIO_IO_ERRORS:
        pass
    finally:
        if transport is None:  # also when cancelled: never leave the socket open
            with anyio.CancelScope(shield=True):
                if answer:
                    with anyio.move_on_after(_CLOSE_TIMEOUT), contextlib.suppress(*_ANYIO_IO_ERRORS):
                        await stream.send(answer)
                await anyio.aclose_forcefully(stream)
    return transport


async def _read_upgrade_request(connection: WSConnection, channel: _ByteStreamChannel) -> Request | None:
    """Read until wsproto has parsed the upgrade request (``None``: the client left first)."""
    while True:
        data = await channel.read()
        if not data:
            return None
        connection.receive_data(data)
        for event in connection.events():
            if isinstance(event, Request):
                return event


# --- client side: the upgrade through httpx ---------------------------------------------------


def _ssl_error_in(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` somewhere in ``exc``'s cause/context chain (httpx wraps it twice)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _connection_error(description: str, exc: BaseException) -> ConnectionClosedError:
    """A ConnectionClosedError for a failed connect; a TLS failure names itself and is the cause.

    Raise the result ``from`` :func:`_connect_cause` so that ``__cause__`` is the ``ssl.SSLError`` when
    the TLS handshake failed (for example ``ssl.SSLCertVerificationError``).
    """
    tls_error = _ssl_error_in(exc)
    if tls_error is not None:
        return ConnectionClosedError(f"TLS handshake with {description} failed: {tls_error}")
    return ConnectionClosedError(f"cannot connect to {description}: {exc}")


def _connect_cause(exc: BaseException) -> BaseException:
    """The exception to chain a connect failure to: the TLS error if there is one."""
    return _ssl_error_in(exc) or exc


@asynccontextmanager
async def open_websocket(
    url: str,
    *,
    client: httpx.AsyncClient | None = None,
    subprotocols: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_frame_size: int = MAX_FRAME_SIZE,
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
) -> AsyncIterator[WebSocketTransport]:
    """Upgrade an HTTP connection to a WebSocket; yield the transport.

    ``url`` is ``ws://``, ``wss://``, ``http://`` or ``https://``. With ``client`` the request goes
    through the caller's ``httpx.AsyncClient`` (its auth, cookies, proxies, TLS settings and
    transport, such as httpx-ws's in-process ``ASGIWebSocketTransport``), and httpx owns the socket;
    otherwise the upgrade runs over our own socket, verifying TLS with ``ssl_context`` when given.
    Every failure to connect raises :class:`~anyio_rsocket.errors.ConnectionClosedError`; when the
    TLS handshake failed, its ``__cause__`` is the ``ssl.SSLError``. Connecting and upgrading must
    finish within ``connect_timeout`` seconds, or
    :class:`~anyio_rsocket.errors.ConnectTimeoutError` is raised (its ``__cause__`` names the step:
    "TCP connect", "TLS handshake" or "WebSocket upgrade"; through httpx, all three are the
    "WebSocket upgrade"). ``max_frame_size`` and ``frame_timeout`` are the transport's limits on
    what the server sends.
    """
    if client is not None and ssl_context is not None:
        raise ValueError("pass ssl_context to your httpx.AsyncClient (verify=...), not to connect")
    _check_limits(max_frame_size, frame_timeout)
    if not connect_timeout > 0:
        raise ValueError("connect_timeout must be positive")
    limits = _Limits(max_frame_size, frame_timeout)
    if client is None:
        # No httpx settings to honour: upgrade over our own AnyIO socket, which spares every read
        # and write the per-call timeout scopes of httpcore's stream.
        async with _open_direct(
            url, subprotocols or (), headers or {}, ssl_context, connect_timeout, limits
        ) as transport:
            yield transport
        return
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    request_headers = httpx.Headers(headers)  # case-insensitive: ours replace any of the caller's
    request_headers["connection"] = "upgrade"
    request_headers["upgrade"] = "websocket"
    request_headers["sec-websocket-key"] = key
    request_headers["sec-websocket-version"] = "13"
    if subprotocols:
        request_headers["sec-websocket-protocol"] = ", ".join(subprotocols)
    async with AsyncExitStack() as stack:
        response: httpx.Response | None = None
        with anyio.move_on_after(connect_timeout):
            try:
                response = await stack.enter_async_context(client.stream("GET", url, headers=request_headers))
            except Exception as exc:  # httpx.HTTPError, or whatever a custom transport raises
                raise _connection_error(url, exc) from _connect_cause(exc)
        if response is None:
            raise connect_timeout_error("WebSocket upgrade", url, connect_timeout)
        if response.status_code != 101:
            raise ConnectionClosedError(
                f"WebSocket upgrade to {url} refused: HTTP {response.status_code} {response.reason_phrase}"
            )
        if response.headers.get("sec-websocket-accept") != generate_accept_token(key.encode()).decode():
            raise ConnectionClosedError(f"WebSocket upgrade to {url}: wrong Sec-WebSocket-Accept")
        subprotocol = response.headers.get("sec-websocket-protocol")
        if subprotocol is not None and subprotocol not in (subprotocols or ()):
            raise ConnectionClosedError(f"the server chose subprotocol {subprotocol!r}, not one we offered")
        channel = _NetworkStreamChannel(response.extensions["network_stream"])
        transport = WebSocketTransport(
            Connection(ConnectionType.CLIENT),
            channel,
            subprotocol=subprotocol,
            io_errors=(Exception,),
            max_frame_size=limits.max_frame_size,
            frame_timeout=limits.frame_timeout,
        )
        stack.push_async_callback(transport.aclose)
        yield transport


class _Limits(NamedTuple):
    max_frame_size: int
    frame_timeout: float


@asynccontextmanager
async def _open_direct(
    url: str,
    subprotocols: Sequence[str],
    headers: Mapping[str, str],
    ssl_context: ssl.SSLContext | None,
    connect_timeout: float,
    limits: _Limits,
) -> AsyncIterator[WebSocketTransport]:
    """The client upgrade over our own TCP (or TLS) stream, driven by wsproto."""
    parts = urlsplit(url)
    secure = parts.scheme in ("wss", "https")
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.hostname:
        raise ValueError(f"not a WebSocket URL: {url!r}")
    host = parts.hostname
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = anyio.current_time() + connect_timeout
    try:
        context = None
        if secure:
            context = ssl_context if ssl_context is not None else ssl.create_default_context()
        stream = await connect_socket_stream(
            host, port, ssl_context=context, tls_hostname=host, timeout=connect_timeout
        )
    except (OSError, anyio.BrokenResourceError) as exc:
        raise _connection_error(url, exc) from _connect_cause(exc)
    connection = WSConnection(ConnectionType.CLIENT)
    channel = _ByteStreamChannel(stream)
    transport: WebSocketTransport | None = None
    try:
        host_header = parts.netloc.rpartition("@")[2]
        extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        request = Request(
            host=host_header, target=target, subprotocols=list(subprotocols), extra_headers=extra
        )
        answer: AcceptConnection | RejectConnection | None = None
        upgrade_timeout = max(deadline - anyio.current_time(), 0.0)
        with anyio.move_on_after(upgrade_timeout):
            try:
                await stream.send(connection.send(request))
                answer = await _read_upgrade_answer(connection, channel)
            except (*_ANYIO_IO_ERRORS, RemoteProtocolError) as exc:
                raise ConnectionClosedError(f"WebSocket upgrade to {url} failed: {exc!r}") from exc
        if answer is None:
            raise connect_timeout_error("WebSocket upgrade", url, upgrade_timeout)
        if isinstance(answer, RejectConnection):
            raise ConnectionClosedError(f"WebSocket upgrade to {url} refused: HTTP {answer.status_code}")
        if answer.subprotocol is not None and answer.subprotocol not in subprotocols:
            raise ConnectionClosedError(
                f"the server chose subprotocol {answer.subprotocol!r}, not one we offered"
            )
        transport = WebSocketTransport(
            connection,
            channel,
            subprotocol=answer.subprotocol,
            max_frame_size=limits.max_frame_size,
            frame_timeout=limits.frame_timeout,
        )
    finally:
        if transport is None:  # failed or cancelled: never leave the socket open
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)
    try:
        yield transport
    finally:
        await transport.aclose()


async def _read_upgrade_answer(
    connection: WSConnection, channel: _ByteStreamChannel
) -> AcceptConnection | RejectConnection:
    """Read until wsproto has parsed the server's answer to our upgrade request."""
    while True:
        data = await channel.read()
        if not data:
            raise ConnectionClosedError("the server closed the connection during the WebSocket upgrade")
        connection.receive_data(data)
        for event in connection.events():
            if isinstance(event, (AcceptConnection, RejectConnection)):
                return event


__all__ = ["HANDSHAKE_TIMEOUT", "WebSocketTransport", "accept_websocket", "open_websocket"]
