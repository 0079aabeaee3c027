"""rsocket-py TCP (or WebSocket) server used as an interop peer for ``anyio_rsocket`` tests.

rsocket-py (``rsocket`` on PyPI) is asyncio-only, so the test-suite runs this
script as a subprocess and talks to it over TCP.

CLI::

    python rsocket_py_server.py [--host 127.0.0.1] [--transport tcp|ws] [--reject-setup] [--debug]

* Listens on ``--host`` (default ``127.0.0.1``), ephemeral port.
* ``--transport ws``: rsocket-py's aiohttp WebSocket server instead of TCP,
  upgrading at path ``/rsocket`` (``ws://host:PORT/rsocket``); one frame per
  binary message.  Everything else below is the same.
* Prints exactly one line ``PORT <n>`` to stdout (flushed) once listening;
  nothing else is ever written to stdout.  Logs go to stderr.
* Serves until its stdin reaches EOF (parent closes the pipe or dies), then
  closes every connection and exits 0.  Start it with ``stdin=PIPE``
  (``/dev/null`` stdin means immediate exit).
* ``--reject-setup``: every SETUP is rejected.  rsocket-py answers with
  ``ERROR[stream 0, REJECTED_SETUP (0x003), "go away"]`` but does *not* close
  the connection afterwards (and would still serve requests on it).
* ``--debug``: DEBUG logging of rsocket-py (including every frame) to stderr.

Handler contract (``data``/``metadata`` are the raw bytes of the request;
absent metadata and zero-length metadata are indistinguishable in rsocket-py):

* request_response, checked in this order:

  - ``data == b"log"``: reply ``data`` = compact JSON (``separators=(",", ":")``)
    of the per-process log, e.g. ``[["fnf","x"],["push","m"]]``, no metadata.
  - ``data == b"error"``: fail with APPLICATION_ERROR, message ``"boom"``.
  - otherwise: reply ``data = b"echo:" + data``; metadata echoed unchanged when
    non-empty, reply carries no metadata when the request had none.

* fire_and_forget: append ``["fnf", data]`` to the log.
* metadata_push: append ``["push", metadata]`` to the log.
  The log is shared by all connections of the process; bytes are decoded as
  latin-1 (lossless; identical to ASCII/UTF-8 for ASCII data).
* request_stream:

  - ``data == b"error"``: one item ``b"item-0"`` then APPLICATION_ERROR
    ``"stream-boom"``.
  - ``data`` is an ASCII integer N >= 0: items ``b"item-0"`` ..
    ``b"item-{N-1}"`` (no metadata), produced by rsocket-py's
    ``StreamFromGenerator``, which pulls exactly as many items as the
    requester's REQUEST_STREAM initial-n / REQUEST_N credit allows.  The last
    item carries the COMPLETE flag (one ``NEXT|COMPLETE`` frame); N == 0 sends
    a bare ``COMPLETE`` frame.
  - anything else: APPLICATION_ERROR ``"invalid stream count: ..."``.

* request_channel: every inbound element, starting with the REQUEST_CHANNEL
  initial payload, is echoed as ``b"echo:" + data`` (no metadata), honouring
  the requester's credit.  The responder grants inbound credit in batches of
  ``CHANNEL_BATCH`` (REQUEST_N(2) right at channel start, then REQUEST_N(2)
  after every 2 further inbound elements).  When the inbound side completes
  the outbound side sends the remaining echoes and then a bare ``COMPLETE``
  frame.  If the requester cancels, echoes stop; if it sends ERROR, the
  responder stops silently.

rsocket-py's server processes incoming frames strictly one after another
(handlers are awaited inline in the receive loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator

from reactivestreams.publisher import Publisher
from reactivestreams.subscriber import Subscriber
from reactivestreams.subscription import Subscription
from rsocket.error_codes import ErrorCode
from rsocket.extensions.mimetypes import WellKnownMimeTypes
from rsocket.frame import MAX_REQUEST_N
from rsocket.helpers import (
    DefaultPublisherSubscription,
    create_error_future,
    create_future,
)
from rsocket.payload import Payload
from rsocket.request_handler import BaseRequestHandler
from rsocket.rsocket_server import RSocketServer
from rsocket.streams.error_stream import ErrorStream
from rsocket.streams.stream_from_generator import StreamFromGenerator
from rsocket.transports.tcp import TransportTCP

#: Inbound credit granted per REQUEST_N on request_channel.
CHANNEL_BATCH = 2

LogEntry = list[str]

_log = logging.getLogger("rsocket_py_server")


def _as_bytes(value: bytes | bytearray | None) -> bytes:
    """Normalise rsocket-py payload fields (``None``/``bytearray``) to ``bytes``."""
    return bytes(value) if value else b""


def _text(value: bytes) -> str:
    """Decode bytes for the JSON log (latin-1: lossless byte <-> code point)."""
    return value.decode("latin-1")


def _stream_items(
    count: int,
) -> Callable[[], Generator[tuple[Payload, bool], None, None]]:
    """Return a StreamFromGenerator factory emitting ``item-0`` .. ``item-{count-1}``.

    Each generated element is ``(payload, is_complete)``; the last item is
    flagged complete so the stream ends without needing extra credit.
    """

    def factory() -> Generator[tuple[Payload, bool], None, None]:
        for index in range(count):
            yield Payload(f"item-{index}".encode()), index == count - 1

    return factory


class ItemThenError(DefaultPublisherSubscription):
    """Publisher that emits one item on the first request, then an error.

    Not built on ``StreamFromGenerator``: an exception raised by its generator
    is only discovered when the *next* item is pulled, i.e. only with spare
    credit (with request-n 1 the error would never be sent), it is delivered
    from a different task than the items (ordering relies on scheduling) and
    it is logged as an ERROR traceback.  ERROR needs no credit, so it is sent
    right after the item.
    """

    def __init__(self, item: bytes, message: str) -> None:
        self._item = item
        self._message = message
        self._done = False

    def request(self, n: int) -> None:
        """Emit the item and the error on the first positive request."""
        if self._done or n <= 0:
            return
        self._done = True
        self._subscriber.on_next(Payload(self._item))
        self._subscriber.on_error(RuntimeError(self._message))

    def cancel(self) -> None:
        """Stop before emitting anything further."""
        self._done = True


class EchoChannel(Publisher, Subscription, Subscriber):
    """Both halves of the echo channel responder.

    * As ``Publisher``/``Subscription`` it is the outbound side: rsocket-py
      subscribes its frame-sending subscriber and forwards the requester's
      REQUEST_N (and the REQUEST_CHANNEL initial-n) to :meth:`request`.
    * As ``Subscriber`` it receives the requester's elements (all but the
      first, which rsocket-py passes to the handler as the initial payload).

    Everything runs synchronously on the event loop, so no locking is needed.
    """

    def __init__(self, first: Payload) -> None:
        self._pending: deque[Payload] = deque([self._echo(first)])
        self._credit = 0
        self._inbound_done = False
        self._terminated = False
        self._since_request = 0
        self._outbound: Subscriber | None = None
        self._inbound: Subscription | None = None

    @staticmethod
    def _echo(payload: Payload) -> Payload:
        return Payload(b"echo:" + _as_bytes(payload.data))

    # Publisher (outbound) -------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> None:
        """Attach rsocket-py's outbound frame sender."""
        self._outbound = subscriber
        subscriber.on_subscribe(self)
        self._drain()

    # Subscription (outbound credit from the requester) --------------------
    def request(self, n: int) -> None:
        """Add requester credit and send whatever is pending."""
        self._credit = min(self._credit + n, MAX_REQUEST_N)
        self._drain()

    def cancel(self) -> None:
        """Requester cancelled the outbound side: stop echoing."""
        self._terminated = True
        self._pending.clear()

    # Subscriber (inbound elements from the requester) ---------------------
    def on_subscribe(self, subscription: Subscription) -> None:
        """Grant the requester its first batch of inbound credit."""
        self._inbound = subscription
        subscription.request(CHANNEL_BATCH)

    def on_next(self, value: Payload, is_complete: bool = False) -> None:
        """Queue an echo; rsocket-py folds a NEXT|COMPLETE frame into ``is_complete``."""
        self._pending.append(self._echo(value))
        if is_complete:
            self._inbound_done = True
        else:
            self._since_request += 1
            if self._since_request == CHANNEL_BATCH and self._inbound is not None:
                self._since_request = 0
                self._inbound.request(CHANNEL_BATCH)
        self._drain()

    def on_complete(self) -> None:
        """Inbound side completed: finish outbound once everything is echoed."""
        self._inbound_done = True
        self._drain()

    def on_error(self, exception: Exception) -> None:
        """Requester errored the channel: stop silently."""
        _log.info("channel inbound error: %r", exception)
        self._terminated = True
        self._pending.clear()

    def _drain(self) -> None:
        outbound = self._outbound
        if outbound is None or self._terminated:
            return
        while self._pending and self._credit > 0:
            self._credit -= 1
            outbound.on_next(self._pending.popleft())
        if self._inbound_done and not self._pending:
            self._terminated = True
            outbound.on_complete()


class PeerHandler(BaseRequestHandler):
    """Per-connection request handler implementing the interop contract."""

    def __init__(
        self,
        log: list[LogEntry],
        reject_setup: bool,
        on_closed: Callable[[object], None],
    ) -> None:
        self._event_log = log
        self._reject_setup = reject_setup
        self._on_closed = on_closed

    async def on_setup(self, data_encoding: bytes, metadata_encoding: bytes, payload: Payload) -> None:
        """Accept, or (``--reject-setup``) raise so rsocket-py sends REJECTED_SETUP."""
        _log.info("SETUP data=%r metadata=%r", data_encoding, metadata_encoding)
        if self._reject_setup:
            # rsocket-py turns any exception here into ERROR[REJECTED_SETUP, str(exc)].
            raise RuntimeError("go away")

    async def request_response(self, payload: Payload) -> asyncio.Future[Payload]:
        """``log`` -> JSON log, ``error`` -> APPLICATION_ERROR "boom", else echo."""
        data = _as_bytes(payload.data)
        metadata = _as_bytes(payload.metadata)
        if data == b"log":
            body = json.dumps(self._event_log, separators=(",", ":")).encode()
            return create_future(Payload(body))
        if data == b"error":
            return create_error_future(RuntimeError("boom"))
        return create_future(Payload(b"echo:" + data, metadata or None))

    async def request_fire_and_forget(self, payload: Payload) -> None:
        """Record ``["fnf", data]``."""
        self._event_log.append(["fnf", _text(_as_bytes(payload.data))])

    async def on_metadata_push(self, payload: Payload) -> None:
        """Record ``["push", metadata]``."""
        self._event_log.append(["push", _text(_as_bytes(payload.metadata))])

    async def request_stream(self, payload: Payload) -> Publisher:
        """``error`` -> item-0 + error; ``N`` -> N items honouring request-n."""
        data = _as_bytes(payload.data)
        if data == b"error":
            return ItemThenError(b"item-0", "stream-boom")
        try:
            count = int(data.decode("ascii"))
            if count < 0:
                raise ValueError(count)
        except ValueError:
            return ErrorStream(RuntimeError(f"invalid stream count: {data!r}"))
        # count == 0: the exhausted generator makes rsocket-py emit Payload()
        # with COMPLETE, which goes out as a bare COMPLETE frame (N is dropped
        # for empty payloads).
        return StreamFromGenerator(_stream_items(count))

    async def request_channel(self, payload: Payload) -> tuple[Publisher | None, Subscriber | None]:
        """Echo channel: same object is outbound publisher and inbound subscriber."""
        channel = EchoChannel(payload)
        return channel, channel

    async def on_error(self, error_code: ErrorCode, payload: Payload) -> None:
        """Connection-level ERROR from the client (stream 0)."""
        _log.warning("connection error from client: %s %r", error_code.name, payload.data)

    async def on_close(self, rsocket: object, exception: Exception | None = None) -> None:
        """Forget the connection."""
        self._on_closed(rsocket)


def _start_stdin_eof_watch(loop: asyncio.AbstractEventLoop, eof: asyncio.Event) -> None:
    """Set ``eof`` (thread-safely) once stdin reaches EOF."""

    def watch() -> None:
        try:
            stream = sys.stdin.buffer if sys.stdin is not None else None
            while stream is not None and stream.read(4096):
                pass
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(eof.set)

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()


async def serve(host: str, reject_setup: bool, fragment_size: int | None = None) -> None:
    """Run the server until stdin EOF."""
    event_log: list[LogEntry] = []
    connections: set[object] = set()  # live RSocketServer instances

    def forget(rsocket: object) -> None:
        connections.discard(rsocket)

    def make_handler() -> PeerHandler:
        return PeerHandler(event_log, reject_setup, forget)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(
            RSocketServer(
                TransportTCP(reader, writer),
                handler_factory=make_handler,
                data_encoding=WellKnownMimeTypes.APPLICATION_OCTET_STREAM,
                metadata_encoding=WellKnownMimeTypes.APPLICATION_OCTET_STREAM,
                fragment_size_bytes=fragment_size,
            )
        )

    server = await asyncio.start_server(on_connect, host, 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()

    eof = asyncio.Event()
    _start_stdin_eof_watch(asyncio.get_running_loop(), eof)
    await eof.wait()
    _log.info("stdin EOF, shutting down")

    server.close()

    async def close_all() -> None:
        for connection in list(connections):
            assert isinstance(connection, RSocketServer)
            await connection.close()
        await server.wait_closed()

    try:
        await asyncio.wait_for(close_all(), 5)  # not asyncio.timeout: peers also run on 3.10
    except asyncio.TimeoutError:
        _log.warning("shutdown timed out")


async def serve_websocket(host: str, reject_setup: bool) -> None:
    """Run rsocket-py's aiohttp WebSocket server (path ``/rsocket``) until stdin EOF."""
    from aiohttp import web
    from rsocket.transports.aiohttp_websocket import websocket_handler_factory

    event_log: list[LogEntry] = []
    connections: set[object] = set()  # live RSocketServer instances

    def make_handler() -> PeerHandler:
        return PeerHandler(event_log, reject_setup, connections.discard)

    app = web.Application()
    app.router.add_get(
        "/rsocket",
        websocket_handler_factory(
            on_server_create=connections.add,
            handler_factory=make_handler,
            data_encoding=WellKnownMimeTypes.APPLICATION_OCTET_STREAM,
            metadata_encoding=WellKnownMimeTypes.APPLICATION_OCTET_STREAM,
        ),
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()

    eof = asyncio.Event()
    _start_stdin_eof_watch(asyncio.get_running_loop(), eof)
    await eof.wait()
    _log.info("stdin EOF, shutting down")

    async def close_all() -> None:
        for connection in list(connections):
            assert isinstance(connection, RSocketServer)
            await connection.close()
        await runner.cleanup()

    try:
        await asyncio.wait_for(close_all(), 5)
    except asyncio.TimeoutError:
        _log.warning("shutdown timed out")


def main(argv: list[str] | None = None) -> int:
    """Parse the CLI and run the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--transport", choices=("tcp", "ws"), default="tcp", help="tcp, or aiohttp WebSocket")
    parser.add_argument("--reject-setup", action="store_true", help="reject every SETUP with 'go away'")
    parser.add_argument("--debug", action="store_true", help="DEBUG logging (frames) to stderr")
    parser.add_argument(
        "--fragment-size", type=int, default=None, help="rsocket-py's fragment_size_bytes (TCP only)"
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        stream=sys.stderr,
        format="rsocket_py_server %(levelname)s %(name)s: %(message)s",
    )
    if args.transport == "ws":
        asyncio.run(serve_websocket(args.host, args.reject_setup))
    else:
        asyncio.run(serve(args.host, args.reject_setup, args.fragment_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
