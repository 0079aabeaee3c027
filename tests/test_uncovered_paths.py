"""Paths no other test runs: failing handler factories and handlers, oversized answers, an exhausted
stream-id space, lease refresh, WebSocket upgrade timeouts and connections dropped mid-message, and
``anyio-rsocket serve ws://``.

Every wait is bounded with ``anyio.fail_after``; nothing sleeps to wait for an event.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from subprocess import PIPE
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request

from anyio_rsocket import (
    ConnectionClosedError,
    Payload,
    RejectedError,
    RejectedSetupError,
    RequestHandler,
    RSocket,
    RSocketError,
    connect_tcp,
    connect_websocket,
    serve_connection,
    serve_tcp,
    serve_websocket,
)
from anyio_rsocket.client import open_client
from anyio_rsocket.errors import CONNECTION_ERROR_CODES, ErrorCode
from anyio_rsocket.frames import (
    MAX_FRAME_SIZE,
    ErrorFrame,
    Frame,
    LeaseFrame,
    MetadataPushFrame,
    PayloadFrame,
    RequestFireAndForgetFrame,
    RequestResponseFrame,
    RequestStreamFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from anyio_rsocket.lease import Lease, LeaseStrategy
from anyio_rsocket.testing import connected_pair
from anyio_rsocket.transports.memory import memory_transport_pair

from .rawpeer import DEFAULT_SETUP, raw_client, raw_server

pytestmark = pytest.mark.anyio


class Echo(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return payload


# --- log capture ---------------------------------------------------------------------------------------


class _Records(logging.Handler):
    """Collects the records of the ``anyio_rsocket`` loggers; a test can wait for one to arrive."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._arrived: anyio.Event | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self._arrived is not None:
            self._arrived.set()

    def failure(self, message: str) -> logging.LogRecord | None:
        """The record carrying an exception whose text is ``message``, if one arrived."""
        for record in self.records:
            if record.exc_info and record.exc_info[1] is not None and str(record.exc_info[1]) == message:
                return record
        return None

    async def wait_for_failure(self, message: str) -> logging.LogRecord:
        while (record := self.failure(message)) is None:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        return record


@contextmanager
def library_logs() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("anyio_rsocket")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _assert_logged_with_traceback(record: logging.LogRecord, function: str) -> None:
    assert record.name.startswith("anyio_rsocket"), record.name
    assert record.levelno >= logging.ERROR, record.levelname
    assert record.exc_info is not None and record.exc_info[2] is not None
    traceback = logging.Formatter().formatException(record.exc_info)
    assert f"in {function}" in traceback, traceback  # the user's frame is in the logged traceback


# --- handler factories that fail ------------------------------------------------------------------------


def _factory_failing_for(trigger: bytes, failure: Callable[[], Any]) -> Callable[[RSocket], Any]:
    """A factory answering with Echo, except for clients whose SETUP data is ``trigger``."""

    def factory(rs: RSocket) -> Any:
        if rs.setup.payload is not None and rs.setup.payload.data == trigger:
            return failure()
        return Echo()

    return factory


def _explode() -> RequestHandler:
    raise RuntimeError("factory exploded")


async def _refused_then_served(factory: Callable[[RSocket], Any]) -> RejectedSetupError:
    """Over TCP: a client sending SETUP data b"break" is refused; another one is then served."""
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_tcp, factory, "127.0.0.1", 0)
        with pytest.raises(RejectedSetupError) as raised:
            async with connect_tcp("127.0.0.1", port, setup_payload=Payload(b"break")):
                pass
        async with connect_tcp("127.0.0.1", port) as rs:
            assert (await rs.request_response(Payload(b"still serving"))).data == b"still serving"
        tg.cancel_scope.cancel()
    return raised.value


async def test_raising_handler_factory_rejects_setup_and_server_keeps_serving() -> None:
    with library_logs() as logs, anyio.fail_after(10):
        error = await _refused_then_served(_factory_failing_for(b"break", _explode))
    assert error.code == ErrorCode.REJECTED_SETUP
    _assert_logged_with_traceback(logs.failure("factory exploded") or pytest.fail("not logged"), "_explode")


async def test_raising_handler_factory_sends_rejected_setup_then_closes_S3() -> None:
    """On the wire: ERROR[REJECTED_SETUP] on stream 0, then the close and nothing else."""
    with anyio.fail_after(5):
        async with raw_client(lambda rs: _explode()) as peer:
            error = await peer.expect(ErrorFrame)
            assert (error.stream_id, error.error_code) == (0, ErrorCode.REJECTED_SETUP)
            await peer.expect_closed()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-factory", "async-factory"])
async def test_handler_factory_returning_wrong_type_is_refused_cleanly(asynchronous: bool) -> None:
    """A factory returning something that is not a RequestHandler is the server's bug: the client
    must get REJECTED_SETUP naming the problem (not a dropped connection), and the server goes on."""

    def not_a_handler() -> Any:
        if asynchronous:

            async def later() -> object:
                return "not a handler"

            return later()
        return "not a handler"

    with anyio.fail_after(10):
        error = await _refused_then_served(_factory_failing_for(b"break", not_a_handler))
    assert error.code == ErrorCode.REJECTED_SETUP


async def test_handler_factory_returning_wrong_type_does_not_crash_serve_connection() -> None:
    """``serve_connection`` never raises for one connection's failure: it refuses the client."""
    client_transport, server_transport = memory_transport_pair()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_connection, server_transport, lambda rs: object())
            with pytest.raises(RejectedSetupError):
                async with open_client(client_transport):
                    pass


# --- fire-and-forget and metadata-push handlers that fail ------------------------------------------------


class FailingOneWay(RequestHandler):
    async def fire_and_forget(self, payload: Payload) -> None:
        raise RuntimeError("fnf exploded")

    async def metadata_push(self, metadata: bytes) -> None:
        raise RuntimeError("push exploded")

    async def request_response(self, payload: Payload) -> Payload:
        return payload


@pytest.mark.parametrize("kind", ["fire_and_forget", "metadata_push"])
async def test_failing_one_way_handler_is_logged_and_connection_keeps_working(kind: str) -> None:
    """The failure is logged with its traceback, nothing is sent back (IX3, MP1), and a following
    request-response on the same connection succeeds."""
    with library_logs() as logs, anyio.fail_after(5):
        async with raw_client(lambda rs: FailingOneWay()) as peer:
            if kind == "fire_and_forget":
                await peer.send(RequestFireAndForgetFrame(1, b"x"))
            else:
                await peer.send(MetadataPushFrame(b"x"))
            record = await logs.wait_for_failure(
                "fnf exploded" if kind == "fire_and_forget" else "push exploded"
            )
            _assert_logged_with_traceback(record, kind)
            await peer.round_trip()  # no ERROR (or anything else) was sent for the failure
            await peer.send(RequestResponseFrame(3, b"after"))
            assert await peer.expect(PayloadFrame) == PayloadFrame(3, b"after", next=True, complete=True)


@pytest.mark.parametrize("kind", ["fire_and_forget", "metadata_push"])
async def test_failing_one_way_handler_with_our_client(kind: str) -> None:
    with library_logs() as logs, anyio.fail_after(5):
        async with connected_pair(lambda rs: FailingOneWay()) as rs:
            if kind == "fire_and_forget":
                await rs.fire_and_forget(Payload(b"x"))
            else:
                await rs.metadata_push(b"x")
            await logs.wait_for_failure("fnf exploded" if kind == "fire_and_forget" else "push exploded")
            assert (await rs.request_response(Payload(b"after"))).data == b"after"
            assert not rs.is_closed


# --- an answer too big for one frame, without fragmentation ------------------------------------------------


class Oversized(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"big":
            return Payload(b"\xab" * MAX_FRAME_SIZE)  # plus the 6-byte header: over the limit (T3)
        return payload

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        yield Payload(b"small")
        yield Payload(b"\xab" * MAX_FRAME_SIZE)
        yield Payload(b"never")


def _is_stream_error(error: BaseException) -> bool:
    return isinstance(error, RSocketError) and not isinstance(error, ConnectionClosedError)


async def test_response_too_big_for_a_frame_is_a_stream_error_T3() -> None:
    """Without fragmentation a too-big answer cannot be sent: that request gets ERROR, the connection
    stays up and the next request is answered."""
    with anyio.fail_after(20):
        async with connected_pair(lambda rs: Oversized()) as rs:
            with pytest.raises(RSocketError) as raised:
                await rs.request_response(Payload(b"big"))
            assert _is_stream_error(raised.value), repr(raised.value)
            assert raised.value.code not in CONNECTION_ERROR_CODES
            async with rs.request_stream(Payload(b"")) as stream:
                assert (await stream.receive()).data == b"small"
                with pytest.raises(RSocketError) as raised:
                    await stream.receive()
                assert _is_stream_error(raised.value), repr(raised.value)
            assert (await rs.request_response(Payload(b"after"))).data == b"after"
            assert not rs.is_closed and not rs._streams


async def test_response_too_big_for_a_frame_on_the_wire_T3() -> None:
    """Exactly one ERROR for the stream (not CONNECTION_ERROR on stream 0), nothing else."""
    with anyio.fail_after(20):
        async with raw_client(lambda rs: Oversized()) as peer:
            await peer.send(RequestResponseFrame(1, b"big"))
            error = await peer.expect(ErrorFrame)
            assert error.stream_id == 1 and error.error_code not in CONNECTION_ERROR_CODES
            await peer.round_trip()
            await peer.send(RequestResponseFrame(3, b"after"))
            assert (await peer.expect(PayloadFrame)).data == b"after"


# --- every stream id in use ----------------------------------------------------------------------------


async def test_exhausted_stream_ids_fail_new_requests_cleanly_ID2() -> None:
    """With ids 1, 3, 5 and 7 all live (max_stream_id=7), new requests fail at once with an error;
    nothing is sent (no live id is reused); live streams go on; a freed id is used again."""
    with anyio.fail_after(5):
        async with raw_server(max_stream_id=7) as (rs, peer), AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(
                    rs.request_stream(Payload(b"%d" % i), initial_n=1, auto_request=False)
                )
                for i in range(4)
            ]
            assert [(await peer.expect(RequestStreamFrame)).stream_id for _ in range(4)] == [1, 3, 5, 7]
            with pytest.raises(RejectedError, match="stream id"):
                await rs.request_response(Payload(b"no id left"))
            with pytest.raises(RejectedError, match="stream id"):
                await rs.fire_and_forget(Payload(b"no id left"))
            with pytest.raises(RejectedError, match="stream id"):
                async with rs.request_stream(Payload(b"no id left")):
                    pass
            await peer.round_trip()  # none of them put a frame on the wire
            assert not rs.is_closed
            assert sorted(rs._streams) == [1, 3, 5, 7]
            # The live streams still work, and completing one frees its id for the next request.
            await peer.send(PayloadFrame(1, b"item", next=True), PayloadFrame(3, complete=True))
            assert (await streams[0].receive()).data == b"item"
            assert [item async for item in streams[1]] == []
            async with anyio.create_task_group() as tg:
                tg.start_soon(rs.request_response, Payload(b"now"))
                request = await peer.expect_next(RequestResponseFrame)
                assert request.stream_id == 3
                await peer.send(PayloadFrame(3, b"ok", next=True, complete=True))


# --- lease refresh ---------------------------------------------------------------------------------------


async def test_lease_is_refreshed_and_renews_the_allowance_L1() -> None:
    """A strategy refreshing every 50 ms sends further LEASEs; after the first lease's only request
    was spent, a refreshed LEASE allows the next one (it is answered, not REJECTED)."""
    issued: list[Lease] = []

    def issue() -> Lease:
        issued.append(Lease(60.0, 1))
        return issued[-1]

    strategy = LeaseStrategy(refresh_interval=0.05, issue=issue)
    with anyio.fail_after(5):
        async with raw_client(lambda rs: Echo(), setup=None, lease=strategy) as peer:
            await peer.send(SetupFrame(20_000, 90_000, "a/b", "c/d", lease=True))
            assert await peer.expect(LeaseFrame) == LeaseFrame(60_000, 1)
            await peer.send(RequestResponseFrame(1, b"first"))
            answer = await _next_skipping_leases(peer)
            assert answer == PayloadFrame(1, b"first", next=True, complete=True)
            # The lease granted before the answer is spent; a LEASE sent after it is a fresh one.
            assert await peer.expect(LeaseFrame) == LeaseFrame(60_000, 1)
            await peer.send(RequestResponseFrame(3, b"second"))
            answer = await _next_skipping_leases(peer)
            assert answer == PayloadFrame(3, b"second", next=True, complete=True)
    assert len(issued) >= 2


async def _next_skipping_leases(peer: Any) -> Frame:
    while isinstance(frame := await peer.receive(), LeaseFrame):
        pass
    return frame


async def test_lease_refresh_lets_a_waiting_client_continue_L2() -> None:
    """Our client with lease_wait: one request per lease, so each further request waits for the
    next refresh, and all of them succeed."""
    strategy = LeaseStrategy(ttl=60.0, number_of_requests=1, refresh_interval=0.05)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                lambda task_status: serve_tcp(
                    lambda rs: Echo(), "127.0.0.1", 0, lease=strategy, task_status=task_status
                )
            )
            async with connect_tcp("127.0.0.1", port, lease=True, lease_wait=True) as rs:
                for index in range(3):
                    assert (await rs.request_response(Payload(b"%d" % index))).data == b"%d" % index
            tg.cancel_scope.cancel()


# --- WebSocket: upgrade timeout, connection dropped in the middle of a message ---------------------------


async def test_websocket_server_drops_a_client_that_never_upgrades() -> None:
    """A client that opens TCP and sends no upgrade (or only part of one) is dropped after
    ``handshake_timeout``, without an answer; other clients are served meanwhile."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                lambda task_status: serve_websocket(
                    lambda rs: Echo(), "127.0.0.1", 0, handshake_timeout=0.5, task_status=task_status
                )
            )
            silent = await anyio.connect_tcp("127.0.0.1", port)
            partial = await anyio.connect_tcp("127.0.0.1", port)
            await partial.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            started = anyio.current_time()
            async with connect_websocket(f"ws://127.0.0.1:{port}/") as rs:
                assert (await rs.request_response(Payload(b"served"))).data == b"served"
            for stream in (silent, partial):
                async with stream:
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                        await stream.receive()  # closed by the server, and nothing was sent first
            assert anyio.current_time() - started >= 0.4  # dropped by the timeout, not at once
            tg.cancel_scope.cancel()


class _WebSocketPeer:
    """One end of a WebSocket speaking raw RSocket frames through wsproto (for either role)."""

    def __init__(self, stream: SocketStream, connection: WSConnection) -> None:
        self.stream = stream
        self.ws = connection
        self._message = b""
        self._frames: list[bytes] = []

    @classmethod
    async def accept(cls, stream: SocketStream) -> _WebSocketPeer:
        peer = cls(stream, WSConnection(ConnectionType.SERVER))
        while not any(isinstance(event, Request) for event in peer._feed(await stream.receive())):
            pass
        await stream.send(peer.ws.send(AcceptConnection()))
        return peer

    @classmethod
    async def connect(cls, port: int) -> _WebSocketPeer:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        peer = cls(stream, WSConnection(ConnectionType.CLIENT))
        await stream.send(peer.ws.send(Request(host=f"127.0.0.1:{port}", target="/")))
        while not any(isinstance(event, AcceptConnection) for event in peer._feed(await stream.receive())):
            pass
        return peer

    def _feed(self, data: bytes) -> list[object]:
        self.ws.receive_data(data)
        events = list(self.ws.events())
        for event in events:
            if isinstance(event, BytesMessage):
                self._message += bytes(event.data)
                if event.message_finished:
                    self._frames.append(self._message)
                    self._message = b""
        return events

    async def send(self, frame: Frame) -> None:
        await self.stream.send(self.ws.send(BytesMessage(encode_frame(frame))))

    async def receive(self) -> Frame:
        while not self._frames:
            self._feed(await self.stream.receive())
        return decode_frame(self._frames.pop(0))

    async def drop_mid_message(self, how: str) -> None:
        """Send the first bytes of a 100-byte binary message, then close (FIN) or reset (RST)."""
        whole = self.ws.send(BytesMessage(b"\x00" * 100))
        await self.stream.send(whole[:20])
        if how == "reset":
            raw = self.stream.extra(SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_websocket_client_pending_calls_fail_when_server_drops_mid_message(how: str) -> None:
    """The server's TCP connection ends inside a WebSocket message: our client's pending request
    fails with ConnectionClosedError, the connection is closed, later calls fail at once."""
    (listener,) = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners
    port = listener.extra(SocketAttribute.local_port)
    request_seen = anyio.Event()

    async def fake_server() -> None:
        async with listener:
            peer = await _WebSocketPeer.accept(await listener.accept())
            assert isinstance(await peer.receive(), SetupFrame)
            assert isinstance(await peer.receive(), RequestResponseFrame)
            request_seen.set()
            await peer.drop_mid_message(how)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(fake_server)
            async with connect_websocket(f"ws://127.0.0.1:{port}/", confirm_setup=False) as rs:
                with pytest.raises(ConnectionClosedError):
                    await rs.request_response(Payload(b"pending"))
                assert request_seen.is_set()  # the call was pending when the connection broke
                await rs.wait_closed()
                assert isinstance(rs.close_reason, ConnectionClosedError)
                with pytest.raises(ConnectionClosedError):
                    await rs.request_response(Payload(b"after"))


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_websocket_server_survives_a_client_dropping_mid_message(how: str) -> None:
    """A client's TCP connection ends inside a WebSocket message: the server-side connection closes
    with ConnectionClosedError (its own pending request fails), and the server goes on serving."""
    servers: list[RSocket] = []
    connected = anyio.Event()

    def factory(rs: RSocket) -> RequestHandler:
        servers.append(rs)
        connected.set()
        return Echo()

    failures: list[BaseException] = []

    async def server_request(rs: RSocket) -> None:
        with pytest.raises(ConnectionClosedError) as raised:
            await rs.request_response(Payload(b"to the client"))
        failures.append(raised.value)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_websocket, factory, "127.0.0.1", 0)
            peer = await _WebSocketPeer.connect(port)
            await peer.send(DEFAULT_SETUP)
            await connected.wait()
            (server,) = servers
            async with anyio.create_task_group() as requests:
                requests.start_soon(server_request, server)
                assert isinstance(await peer.receive(), RequestResponseFrame)  # pending now
                await peer.drop_mid_message(how)
            await server.wait_closed()
            assert isinstance(server.close_reason, ConnectionClosedError)
            assert len(failures) == 1
            async with connect_websocket(f"ws://127.0.0.1:{port}/") as rs:
                assert (await rs.request_response(Payload(b"still serving"))).data == b"still serving"
            tg.cancel_scope.cancel()


# --- the command line serving WebSocket --------------------------------------------------------------------


async def test_cli_serve_websocket_url() -> None:
    """``anyio-rsocket serve ws://... --echo`` announces its URL and answers over WebSocket, both our
    library's client and the command line's own ``request ws://...``."""
    command = [sys.executable, "-m", "anyio_rsocket.cli"]
    with anyio.fail_after(30):
        process = await anyio.open_process([*command, "serve", "ws://127.0.0.1:0", "--echo"], stdout=PIPE)
        try:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            banner = (await lines.receive_until(b"\n", 65536)).decode()
            assert banner.startswith("listening on ws://127.0.0.1:"), banner
            url = f"ws://127.0.0.1:{int(banner.rpartition(':')[2])}/"
            async with connect_websocket(url) as rs:
                assert await rs.request_response(Payload(b"hi", b"md")) == Payload(b"hi", b"md")
                async with rs.request_stream(Payload(b"once")) as stream:
                    assert [item.data async for item in stream] == [b"once"]
                await rs.fire_and_forget(Payload(b"event"))
                assert await lines.receive_until(b"\n", 65536) == b"fnf: event"
            result = await anyio.run_process([*command, "request", url, "-d", "over ws"], check=False)
            assert (result.returncode, result.stdout, result.stderr) == (0, b"over ws\n", b"")
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()
                await process.aclose()
