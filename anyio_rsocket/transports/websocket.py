"""RSocket over WebSocket: one frame per binary message, no length prefix (checklist T2, T3).

:class:`WebSocketTransport` speaks WebSocket over a raw byte channel: an AnyIO ``ByteStream`` on the
server side (:func:`accept_websocket` does the HTTP upgrade), or on the client side our own socket or
the network stream an ``httpx.AsyncClient`` hands over after a ``101 Switching Protocols``
(:func:`open_websocket`). wsproto does the HTTP upgrade only; frames are built, masked and parsed by
:mod:`~anyio_rsocket.transports.wsframes`, which is several times cheaper per message than wsproto's
frame layer. Framing ourselves rather than through a session object lets us

* refuse a message as soon as its announced length passes the frame limit (16,777,215 bytes or
  the lower ``max_frame_size``), before buffering it, and hold what a trickled message has sent so
  far in memory proportional to its bytes;
* give a message that has started ``frame_timeout`` seconds to arrive in full;
* write every frame of a batch in one write (a payload of 128 KiB or more in a write of its own,
  rather than copied behind its header), and return every frame of one read at once;
* run no task of our own: the connection's reader reads, its writer writes. Over a plain socket
  the task that queued frames may write them itself (:meth:`~WebSocketTransport.send_now`), and on
  asyncio small reads are parsed in the event loop's I/O callback
  (:meth:`~WebSocketTransport.set_frame_consumer`): a message then costs no task switch.

A peer that sends a text message, an oversized message or a malformed frame (RFC 6455) gets
ERROR[CONNECTION_ERROR] and a Close (1003, 1009, 1002 or 1007), and the reader sees
:class:`~anyio_rsocket.errors.ProtocolError`. Every I/O failure becomes
:class:`~anyio_rsocket.errors.ConnectionClosedError`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import NamedTuple, Protocol, cast
from urllib.parse import urlsplit

import anyio
import httpx
from anyio.abc import ByteStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import RemoteProtocolError, generate_accept_token

from ..wire.errors import ConnectionClosedError, ErrorCode, FrameTooLargeError, ProtocolError
from ..wire.frames import MAX_FRAME_SIZE, ErrorFrame, encode_frame
from ..wire.framing import FrameBuffer
from .base import DEFAULT_CONNECT_TIMEOUT, DEFAULT_FRAME_TIMEOUT, Transport
from .sockets import AsyncioSocketStream, connect_socket_stream, connect_timeout_error, nowait_writer
from .wsframes import CLOSE_NORMAL, OP_PONG, MessageDecoder, build_messages, encode_close, encode_messages
from .wsframes import encode_frame as ws_frame

#: How much to read per call; the same as the TCP transport.
_READ_SIZE = 262144
#: Reads up to this size may be parsed in the event loop's I/O callback (set_frame_consumer); larger
#: ones (bulk data) take the reader's path, which batches them anyway.
_CONSUME_LIMIT = 16384
#: How long closing may spend sending the Close message before the connection is dropped.
_CLOSE_TIMEOUT = 1.0
#: How long a server waits for a complete upgrade request.
HANDSHAKE_TIMEOUT = 10.0

_ANYIO_IO_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


#: What the transport writes: a ``bytearray`` when a large frame was masked in it (no copy to bytes).
_Wire = bytes | bytearray | memoryview


class _RawChannel(Protocol):
    """Bytes in and out: ``read`` returns ``b""`` at end of stream, ``None`` once after a poke."""

    async def read(self) -> bytes | None: ...
    async def write(self, data: _Wire) -> None: ...
    async def aclose(self) -> None: ...


class _ByteStreamChannel:
    """An AnyIO byte stream (TCP or TLS) as a raw channel; errors are mapped by the transport."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        #: Whether the stream can be poked (then its receive() returns b"" once, not at the end).
        self.pokable = isinstance(stream, AsyncioSocketStream)

    async def read(self) -> bytes | None:
        try:
            data = await self.stream.receive(_READ_SIZE)
        except anyio.EndOfStream:
            return b""
        return data if data or not self.pokable else None

    async def write(self, data: _Wire) -> None:
        # AnyIO's byte streams (sockets, TLS) write any bytes-like object, whatever ``send`` declares.
        await self.stream.send(cast(bytes, data))

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

    async def read(self) -> bytes | None:
        return await self.stream.read(_READ_SIZE)

    async def write(self, data: _Wire) -> None:
        await self.stream.write(data if type(data) is bytes else bytes(data))

    async def aclose(self) -> None:
        await self.stream.aclose()


def _check_limits(max_frame_size: int, frame_timeout: float) -> None:
    FrameBuffer(max_frame_size)  # raises ValueError for an impossible limit
    if not frame_timeout > 0:
        raise ValueError("frame_timeout must be positive")


class WebSocketTransport(Transport):
    """Carries RSocket frames as binary WebSocket messages, one frame per message (T2).

    Create one with :func:`accept_websocket` (server) or :func:`open_websocket` (client). Frames larger
    than 16,777,215 bytes are refused on both directions (T3): :meth:`send` raises
    :class:`~anyio_rsocket.errors.FrameTooLargeError` before writing anything, and a peer's oversized
    or text message ends the connection with :class:`~anyio_rsocket.errors.ProtocolError`.
    ``max_frame_size`` lowers the limit for what the peer sends (refused as soon as a message
    announces more), and a message must arrive in full within ``frame_timeout`` seconds of waiting
    once it has started.

    ``connection`` is the wsproto connection that did the HTTP upgrade: it tells our role (a client
    masks what it sends, a server requires masked frames) and holds any bytes the peer sent right
    behind the upgrade. From then on the frames are built and parsed by
    :mod:`~anyio_rsocket.transports.wsframes`.

    Over a plain socket stream (not TLS, not httpx's), :meth:`send_now` writes from the calling task
    what the socket takes at once (``can_send_now``); the rest goes out first with the next write.
    """

    def __init__(
        self,
        connection: WSConnection | Connection,
        channel: _RawChannel,
        *,
        subprotocol: str | None = None,
        io_errors: tuple[type[BaseException], ...] = _ANYIO_IO_ERRORS,
        max_frame_size: int = MAX_FRAME_SIZE,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    ) -> None:
        _check_limits(max_frame_size, frame_timeout)
        self._client = bool(connection.client)
        self._pending = _bytes_past_upgrade(connection)  # parsed before the first read
        self._decoder = MessageDecoder(masked=not self._client, max_message_size=max_frame_size)
        self._channel = channel
        self._io_errors = io_errors
        self._max_frame_size = max_frame_size
        self._frame_timeout = frame_timeout
        self._frame_budget = frame_timeout  # waiting time left for the message being received
        # The reader answers pings while the writer may be writing: one write at a time.
        self._write_lock = anyio.Lock(fast_acquire=True)
        self._write_nowait: Callable[[_Wire], int] | None = None
        if isinstance(channel, _ByteStreamChannel):
            self._write_nowait = cast("Callable[[_Wire], int] | None", nowait_writer(channel.stream))
        self.can_send_now = self._write_nowait is not None
        #: What send_now() could not write at once, in order: written first by the next _write().
        self._unsent: list[_Wire] = []
        self._consumer: Callable[[list[bytes]], None] | None = None
        self._close_sent = False
        self._close_received = False
        self._error: ConnectionClosedError | None = None
        self._closed = False
        self.subprotocol = subprotocol
        """The subprotocol both sides agreed on during the upgrade (``None`` if none)."""

    # What the decoder holds of a message in progress (read by tests of the memory bounds).
    @property
    def _partial(self) -> list[bytes | bytearray]:
        return self._decoder.partial

    @property
    def _partial_size(self) -> int:
        return self._decoder.partial_size

    @property
    def _refusing(self) -> bool:
        return self._decoder.refusing

    @property
    def _dropped(self) -> int:
        return self._decoder.dropped

    async def send(self, frames: list[bytes]) -> None:
        """Write each frame as one binary message, behind what :meth:`send_now` left unsent; the
        batch goes out in a single write (but for payloads of 128 KiB or more, see
        :func:`~anyio_rsocket.transports.wsframes.build_messages`)."""
        buffers = self._encode(frames)
        if self._error is not None:
            raise ConnectionClosedError(self._error.message)
        if self._close_sent or self._close_received:
            raise ConnectionClosedError("the WebSocket is closing")
        await self._write(buffers)

    def send_now(self, frames: list[bytes]) -> None:
        """Write the frames from the calling task, as far as the socket takes them without waiting.

        The rest is kept, in order, for the next write (:meth:`send`, a pong or the Close); so is
        everything while the reader is writing, while bytes are already kept, or once the connection
        failed or is closing (the next :meth:`send` then raises).
        """
        write = self._write_nowait
        if write is None:
            raise RuntimeError("send_now() needs can_send_now")
        buffers = self._encode(frames)
        unsent = self._unsent
        if (
            unsent
            or self._write_lock.locked()
            or self._error is not None
            or self._close_sent
            or self._close_received
        ):
            unsent += buffers
            return
        for index, data in enumerate(buffers):
            written = write(data)
            if written < len(data):
                unsent.append(memoryview(data)[written:] if written else data)
                unsent += buffers[index + 1 :]
                return

    @property
    def holds_unsent(self) -> bool:
        return bool(self._unsent)

    def set_frame_consumer(self, consumer: Callable[[list[bytes]], None] | None) -> bool:
        """On our asyncio socket streams, have small reads parsed in the I/O callback (see
        :meth:`_consume`); elsewhere return False."""
        channel = self._channel
        if not isinstance(channel, _ByteStreamChannel) or not isinstance(channel.stream, AsyncioSocketStream):
            return False
        self._consumer = consumer
        channel.stream.set_consumer(None if consumer is None else self._consume)
        return True

    def _consume(self, data: bytes) -> bool:
        """The I/O callback's offer of a read (the reader is waiting for one): parse it here and hand
        the messages it completes to the consumer. Declined (left to the reader) while a message is
        in progress, once the connection failed or is closing, and for large reads. What needs the
        reader (a message left incomplete, whose arrival it times, or pings, a Close, a violation,
        which it answers) makes it look: its waiting receive() returns ``[]``."""
        consumer = self._consumer
        decoder = self._decoder
        if (
            consumer is None
            or len(data) > _CONSUME_LIMIT
            or decoder.mid_message
            or self._pending
            or self._error is not None
            or self._close_received
        ):
            return False
        frames = decoder.feed(data)
        if decoder.mid_message or decoder.pings or decoder.close is not None or decoder.error is not None:
            self.poke()
        if frames:
            consumer(frames)
        return True

    def poke(self) -> None:
        channel = self._channel
        if isinstance(channel, _ByteStreamChannel) and isinstance(channel.stream, AsyncioSocketStream):
            channel.stream.poke()

    def _encode(self, frames: list[bytes]) -> list[bytes | bytearray]:
        for frame in frames:
            if len(frame) > MAX_FRAME_SIZE:
                raise FrameTooLargeError(
                    f"frame of {len(frame)} bytes exceeds the {MAX_FRAME_SIZE}-byte frame limit"
                )
        return build_messages(frames, mask=self._client)

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
        """Read until complete messages are at hand; untimed, return ``None`` once one has started.

        After a poke, return ``[]`` once what the decoder was fed meanwhile is answered."""
        decoder = self._decoder
        while True:
            data: bytes | None
            if self._pending:
                data, self._pending = self._pending, b""
            else:
                if self._error is not None:
                    raise self._error
                if not timed:
                    if decoder.mid_message:
                        return None
                    self._frame_budget = self._frame_timeout
                try:
                    data = await self._channel.read()
                except self._io_errors as exc:
                    self._fail(ConnectionClosedError(f"connection lost: {exc!r}"))
                    continue
                if data == b"":
                    self._fail(ConnectionClosedError("connection closed by peer without a WebSocket close"))
                    continue
            frames = decoder.feed(data) if data is not None else []
            if decoder.pings or decoder.close is not None or decoder.error is not None:
                to_send = self._control()
                if to_send:
                    with contextlib.suppress(ConnectionClosedError):  # recorded in self._error
                        await self._write([to_send])
            if frames:
                self._frame_budget = self._frame_timeout  # what is left started just now
                return frames
            if data is None:  # poked
                return frames

    def _control(self) -> bytes:
        """Act on the decoder's pings, Close or error; return the bytes we owe the peer."""
        decoder = self._decoder
        to_send = b""
        if decoder.pings:
            if not (self._close_sent or self._close_received):
                mask_key = os.urandom(4) if self._client else None
                to_send = b"".join([ws_frame(OP_PONG, ping, mask_key=mask_key) for ping in decoder.pings])
            decoder.pings.clear()
        if decoder.close is not None and not self._close_received:
            self._close_received = True
            code, reason = decoder.close
            if not self._close_sent:
                self._close_sent = True
                to_send += encode_close(code, mask=self._client)  # echo the code (RFC 6455 5.5.1)
            reason = f": {reason}" if reason else ""
            self._fail(ConnectionClosedError(f"WebSocket closed by peer (code {code}{reason})"))
        error = decoder.error
        if error is not None and self._error is None:
            to_send += self._violation(error.message, error.code)
        return to_send

    def _violation(self, message: str, close_code: int) -> bytes:
        """The peer broke T2/T3: fail with ProtocolError; return ERROR[CONNECTION_ERROR] + Close."""
        self._fail(ProtocolError(message))
        if self._close_sent or self._close_received:
            return b""
        self._close_sent = True
        error = encode_frame(ErrorFrame(0, ErrorCode.CONNECTION_ERROR, message.encode()))
        return encode_messages([error], mask=self._client) + encode_close(
            close_code, message, mask=self._client
        )

    def _fail(self, error: ConnectionClosedError) -> None:
        if self._error is None:
            self._error = error

    async def _write(self, buffers: Sequence[_Wire]) -> None:
        """Write ``buffers`` behind whatever :meth:`send_now` kept; one writer at a time."""
        lock = self._write_lock
        try:
            try:
                lock.acquire_nowait()  # uncontended (the usual case): no checkpoint of its own
            except anyio.WouldBlock:
                await lock.acquire()
            try:
                unsent = self._unsent
                if unsent:
                    # Lost with the rest if this write is cancelled: only closing cancels writes.
                    self._unsent = []
                    unsent += buffers
                    buffers = unsent
                for data in buffers:
                    await self._channel.write(data)
            finally:
                lock.release()
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
                if not self._close_sent:
                    self._close_sent = True
                    with contextlib.suppress(ConnectionClosedError):
                        await self._write([encode_close(CLOSE_NORMAL, mask=self._client)])
            with anyio.move_on_after(_CLOSE_TIMEOUT) as scope:
                with contextlib.suppress(*self._io_errors):
                    await self._channel.aclose()
            if scope.cancelled_caught:  # e.g. a TLS close_notify the peer never reads
                await _aclose_forcefully(self._channel)


def _bytes_past_upgrade(connection: WSConnection | Connection) -> bytes:
    """What the peer sent right behind the upgrade, which wsproto read but did not hand over.

    A ``WSConnection`` keeps it in its h11 connection (``trailing_data``); a bare ``Connection`` in
    its frame decoder's buffer. Empty if this wsproto keeps it elsewhere.
    """
    handshake = getattr(connection, "handshake", None)
    h11_connection = getattr(handshake, "_h11_connection", None)
    trailing = getattr(h11_connection, "trailing_data", None)
    if trailing is not None:
        return bytes(trailing[0])
    decoder = getattr(getattr(connection, "_proto", None), "_frame_decoder", None)
    buffer = getattr(decoder, "buffer", None)
    return bytes(buffer) if buffer else b""


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
