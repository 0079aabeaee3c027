"""Socket streams that stop reading the socket while nobody calls ``receive()``, on every backend.

AnyIO 4's asyncio ``SocketStream`` pauses its transport only after a ``receive()`` that had to wait.
When data is always ready, the transport is never paused, so once its caller stops calling
``receive()`` (our connection does when its outbound queue or its handlers are full) asyncio keeps
reading into an unbounded queue: a peer that floods without reading grows our memory without limit.

On asyncio the streams made here are therefore our own (:class:`AsyncioSocketStream`): an
``asyncio.Protocol`` holds at most about :data:`READ_HIGH_WATER` bytes not yet taken by
``receive()`` and pauses the transport beyond that; ``receive()`` resumes it. Writes wait while the
transport buffers more than :data:`WRITE_HIGH_WATER` bytes. On Trio (and any other backend) AnyIO's
own streams already read only when asked and are used as they are. TLS is AnyIO's ``TLSStream``
wrapped around either.

* :func:`connect_socket_stream`: the client side (TCP connect, then the TLS handshake), with a
  timeout that names the step that stalled.
* :func:`wrap_accepted_socket`: a socket accepted by a listener as a stream.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import cast

import anyio
from anyio.abc import ByteStream, SocketStream
from anyio.streams.tls import TLSStream

from ..wire.errors import ConnectTimeoutError
from ..wire.framing import SMALL_CHUNK

_sniffio: ModuleType | None
try:  # AnyIO relies on sniffio when it is installed (Trio depends on it); so do we.
    import sniffio as _sniffio
except ImportError:  # pragma: no cover - asyncio only, without Trio
    _sniffio = None

#: Bytes received but not yet taken by ``receive()`` above which the transport stops reading.
READ_HIGH_WATER = 262144
#: The most one read takes from the socket (into a buffer shared by a thread's connections).
READ_BUFFER_SIZE = 262144
#: The same on a proactor loop, where each connection has a buffer of its own.
PROACTOR_READ_BUFFER_SIZE = 65536
#: Bytes buffered by the transport above which ``send()`` waits for them to drain.
WRITE_HIGH_WATER = 65536
#: How long ``aclose()`` may spend flushing bytes ``send()`` left buffered before dropping them.
CLOSE_LINGER = 2.0
#: Delay before trying the next address when a host name resolves to several (RFC 8305).
HAPPY_EYEBALLS_DELAY = 0.25


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop when AnyIO runs on asyncio; ``None`` on Trio or anything else."""
    if _sniffio is not None:
        try:
            if _sniffio.current_async_library() != "asyncio":
                return None
        except _sniffio.AsyncLibraryNotFoundError:
            return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_per_thread = threading.local()


def _read_buffer() -> memoryview:
    """The buffer a connection's reads land in.

    Selector loops and uvloop copy a read out of the buffer (``buffer_updated``) before they start
    the next one, so every connection of a thread shares one buffer. A proactor loop (Windows) has
    reads of several connections in flight at once: each connection gets its own, smaller one.
    """
    proactor = getattr(asyncio, "ProactorEventLoop", None)
    if proactor is not None and isinstance(asyncio.get_running_loop(), proactor):
        return memoryview(bytearray(PROACTOR_READ_BUFFER_SIZE))
    buffer: memoryview | None = getattr(_per_thread, "read_buffer", None)
    if buffer is None:
        buffer = _per_thread.read_buffer = memoryview(bytearray(READ_BUFFER_SIZE))
    return buffer


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _BoundedReadProtocol(asyncio.BufferedProtocol):
    """Queues what the transport reads, pausing it above :data:`READ_HIGH_WATER` queued bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes | bytearray | memoryview] = deque()
        self.buffered = 0  # bytes in chunks
        self.reading_paused = False
        self.at_eof = False
        self.lost = False
        self.exception: Exception | None = None
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        #: Takes data that arrives while ``receive()`` waits, from this callback; False declines it.
        self.consumer: Callable[[bytes], bool] | None = None
        self.poked = False  # the waiting receive() returns b"" once (AsyncioSocketStream.poke)
        self.drain_waiter: asyncio.Future[None] | None = None
        self.lost_waiter: asyncio.Future[None] | None = None
        self._read_buffer: memoryview | None = None  # made on the first read (get_buffer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER)

    # Reads land in a reused buffer and only what arrived is copied out. A plain Protocol gets a
    # new bytes object sized for the largest read (256 KiB) on every read, which glibc serves with
    # mmap/munmap until the process happens to free a larger block: one to two system calls per
    # message, a third of a small round trip.

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._read_buffer
        if buffer is None:
            buffer = self._read_buffer = _read_buffer()
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self._read_buffer is not None
        self.data_received(bytes(self._read_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if type(data) is not bytes:  # some loops hand over a bytearray or memoryview
            data = bytes(data)
        consumer = self.consumer
        if consumer is not None and self.read_waiter is not None and not self.chunks and consumer(data):
            return
        size = len(data)
        chunks = self.chunks
        if not chunks or size >= SMALL_CHUNK:
            chunks.append(data)
        else:
            # A small read keeps the whole allocation recv() made (a page or more): while earlier
            # data is still queued, copy small reads together so memory follows the byte count.
            last = chunks[-1]
            if type(last) is bytearray:
                last += data
            elif len(last) < SMALL_CHUNK:
                merged = bytearray(last)
                merged += data
                chunks[-1] = merged
            else:
                chunks.append(bytearray(data))
        self.buffered += size
        if self.buffered >= READ_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        waiter = self.read_waiter
        if waiter is not None:
            self.read_waiter = None
            _wake(waiter)

    def eof_received(self) -> bool:
        self.at_eof = True
        _wake(self.read_waiter)
        return True  # keep the transport open: we may still write (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None:
            self.exception = exc
        _wake(self.read_waiter)
        _wake(self.drain_waiter)
        _wake(self.lost_waiter)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.drain_waiter)


class AsyncioSocketStream(SocketStream):
    """A socket stream over an asyncio transport that reads only as far ahead as ``receive()`` asks.

    It behaves like AnyIO's own asyncio ``SocketStream`` (same errors, same ``extra`` attributes),
    except that at most about :data:`READ_HIGH_WATER` bytes are read ahead of ``receive()``, and that
    ``send()`` returns as soon as the transport holds at most :data:`WRITE_HIGH_WATER` bytes (waiting
    for them to drain beyond that) rather than waiting for every byte to reach the kernel. ``aclose()``
    therefore first flushes what is still buffered, for at most :data:`CLOSE_LINGER` seconds.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _BoundedReadProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._receiving = False
        self._sending = False

    @property
    def _raw_socket(self) -> socket.socket:
        return cast(socket.socket, self._transport.get_extra_info("socket"))

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if self._receiving:
            raise anyio.BusyResourceError("reading from")
        protocol = self._protocol
        chunks = protocol.chunks
        self._receiving = True
        try:
            if chunks:
                await asyncio.sleep(0)  # a checkpoint, as AnyIO's receive() is
            while not chunks or self._closed:
                if self._closed:
                    raise anyio.ClosedResourceError
                if protocol.poked:
                    protocol.poked = False
                    return b""
                if protocol.exception is not None:
                    raise anyio.BrokenResourceError from protocol.exception
                if protocol.at_eof or protocol.lost:
                    raise anyio.EndOfStream
                waiter = protocol.read_waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    protocol.read_waiter = None
        finally:
            self._receiving = False
        chunk = chunks.popleft()
        size = len(chunk)
        if size > max_bytes:
            view = memoryview(chunk)
            chunks.appendleft(view[max_bytes:])
            chunk = view[:max_bytes]
            size = max_bytes
        protocol.buffered -= size
        if protocol.reading_paused and protocol.buffered < READ_HIGH_WATER:
            protocol.reading_paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()
        return chunk if type(chunk) is bytes else bytes(chunk)

    async def send(self, item: bytes) -> None:
        if self._sending:
            raise anyio.BusyResourceError("writing to")
        protocol = self._protocol
        if protocol.writing_paused:  # a previous send was cancelled while waiting: wait first
            await self._drain()
        else:
            # A checkpoint, as AnyIO's send() is; taken before writing, so that a cancelled send
            # has written nothing. (After a write the caller could not tell whether it happened.)
            await asyncio.sleep(0)
        self._check_writable()
        try:
            self._transport.write(item)
        except RuntimeError as exc:
            raise anyio.BrokenResourceError from exc
        if protocol.writing_paused:
            await self._drain()

    def set_consumer(self, consumer: Callable[[bytes], bool] | None) -> None:
        """Hand data arriving while ``receive()`` waits to ``consumer``, from the protocol callback
        (no task switch); data it declines (returns False) is queued for ``receive()`` as usual.

        Only data that finds nothing queued before it is offered, so the byte order holds.
        """
        self._protocol.consumer = consumer

    def poke(self) -> None:
        """Make a waiting (or the next) ``receive()`` return ``b""`` once: the consumer wants the
        reading task to look at its state. ``b""`` never means end of stream here."""
        protocol = self._protocol
        protocol.poked = True
        waiter = protocol.read_waiter
        protocol.read_waiter = None
        _wake(waiter)

    def write_nowait(self, data: bytes) -> int:
        """Hand ``data`` to the transport now, unless it is over its high water mark, closing or
        broken (then 0, nothing written; ``send()`` waits or raises). Returns the bytes taken."""
        protocol = self._protocol
        if (
            self._sending
            or self._closed
            or protocol.writing_paused
            or protocol.lost
            or protocol.exception is not None
            or self._transport.is_closing()
        ):
            return 0
        try:
            self._transport.write(data)
        except RuntimeError:
            return 0
        return len(data)

    def _check_writable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        if protocol.exception is not None:
            raise anyio.BrokenResourceError from protocol.exception
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError

    async def _drain(self) -> None:
        protocol = self._protocol
        self._sending = True
        try:
            while protocol.writing_paused:
                self._check_writable()
                waiter = protocol.drain_waiter = self._loop.create_future()
                try:
                    await waiter
                finally:
                    protocol.drain_waiter = None
        finally:
            self._sending = False
        self._check_writable()

    async def send_eof(self) -> None:
        try:
            if self._transport.can_write_eof():
                self._transport.write_eof()
        except (OSError, RuntimeError):
            pass

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        protocol = self._protocol
        try:
            if not protocol.lost and not transport.is_closing() and transport.get_write_buffer_size():
                # Bytes send() left buffered: let the transport flush them, for a little while.
                waiter = protocol.lost_waiter = self._loop.create_future()
                transport.close()
                with anyio.move_on_after(CLOSE_LINGER):
                    await waiter
            else:
                await asyncio.sleep(0)
        finally:
            transport.abort()
            _wake(protocol.read_waiter)
            _wake(protocol.drain_waiter)


def nowait_writer(stream: ByteStream) -> Callable[[bytes], int] | None:
    """A synchronous writer for ``stream``, when it has one: it writes what the socket takes at once
    and returns how many bytes that was (0 when it takes nothing, or when the stream is broken: the
    next ``send()`` reports that). ``None`` for streams that can only be written with an ``await``
    (TLS, memory streams, AnyIO's own asyncio sockets, whose transport buffer must stay in order).

    Callers use it only while no ``send()`` on the stream is in progress.
    """
    if isinstance(stream, AsyncioSocketStream):
        return stream.write_nowait
    if type(stream).__module__ == "anyio._backends._trio" and isinstance(stream, SocketStream):
        # Trio keeps no send buffer of its own: a non-blocking send on the socket is exactly what
        # its send_all() would do first, minus the scheduling point.
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        send = sock.send

        def write(data: bytes) -> int:
            try:
                return send(data)
            except OSError:  # BlockingIOError (full), or a broken socket: send() will say which
                return 0

        return write
    return None


async def wrap_accepted_socket(sock: socket.socket) -> SocketStream:
    """Turn a connected socket (from ``accept()``) into a stream; the stream owns the socket.

    On asyncio this is an :class:`AsyncioSocketStream`; elsewhere AnyIO's own socket stream.
    Raises ``OSError`` (or ``ValueError`` from AnyIO) when the peer is already gone.
    """
    loop = asyncio_loop()
    if loop is None:
        return await SocketStream.from_socket(sock)
    transport, protocol = await loop.connect_accepted_socket(_BoundedReadProtocol, sock)
    return AsyncioSocketStream(transport, protocol)


async def _open_tcp(host: str, port: int) -> SocketStream:
    loop = asyncio_loop()
    if loop is None:
        return await anyio.connect_tcp(host, port)
    if isinstance(loop, asyncio.BaseEventLoop):  # uvloop has no happy eyeballs option
        transport, protocol = await loop.create_connection(
            _BoundedReadProtocol, host, port, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY
        )
    else:
        transport, protocol = await loop.create_connection(_BoundedReadProtocol, host, port)
    return AsyncioSocketStream(transport, protocol)


async def connect_socket_stream(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    tls_hostname: str | None = None,
    timeout: float | None = None,
) -> ByteStream:
    """Connect over TCP, then do the TLS handshake when ``ssl_context`` is given; return the stream.

    ``tls_hostname`` (default ``host``) is the name the server certificate must match. Failures raise
    what ``anyio.connect_tcp`` would (``OSError``; ``ssl.SSLError`` or ``anyio.BrokenResourceError``
    for a failed handshake). When both steps together take more than ``timeout`` seconds,
    :class:`~anyio_rsocket.errors.ConnectTimeoutError` is raised; its ``__cause__`` is a
    ``TimeoutError`` naming the step that stalled ("TCP connect" or "TLS handshake").
    """
    stage = "TCP connect"
    stream: ByteStream | None = None
    with anyio.move_on_after(math.inf if timeout is None else timeout):
        try:
            stream = await _open_tcp(host, port)
            if ssl_context is None:
                return stream
            stage = "TLS handshake"
            return await TLSStream.wrap(
                stream, server_side=False, hostname=tls_hostname or host, ssl_context=ssl_context
            )
        except BaseException:  # failed or timed out: never leave the socket open
            if stream is not None:
                await anyio.aclose_forcefully(stream)
            raise
    assert timeout is not None  # only a timeout gets here
    raise connect_timeout_error(stage, f"{host}:{port}", timeout)


def connect_timeout_error(stage: str, target: str, timeout: float) -> ConnectTimeoutError:
    """A ConnectTimeoutError whose ``__cause__`` is a ``TimeoutError`` naming the ``stage`` that stalled."""
    error = ConnectTimeoutError(f"connecting to {target} timed out ({stage})")
    error.__cause__ = TimeoutError(f"{stage} with {target} did not complete within {timeout:.3g} s")
    return error


__all__ = [
    "CLOSE_LINGER",
    "READ_HIGH_WATER",
    "WRITE_HIGH_WATER",
    "AsyncioSocketStream",
    "asyncio_loop",
    "connect_socket_stream",
    "connect_timeout_error",
    "wrap_accepted_socket",
]
