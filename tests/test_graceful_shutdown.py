"""Graceful server shutdown: ``ServerShutdown.drain`` and the ``drain_timeout`` option.

Draining stops accepting, sends ERROR[CONNECTION_CLOSE] to every connection so that in-flight
interactions finish while new requests are refused, closes what is left at the deadline, and then
the ``serve_*`` call returns. Every wait here is on an event, never a sleep; the only real time
spent is the short deadline of the tests whose deadline must pass.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, TaskStatus

from anyio_rsocket import (
    ConnectionClosedError,
    Payload,
    PeerClosedError,
    RejectedError,
    RejectedSetupError,
    RequestHandler,
    RSocket,
    ServerShutdown,
    connect_tcp,
    connect_websocket,
    serve_tcp,
    serve_websocket,
)
from anyio_rsocket.errors import ErrorCode
from anyio_rsocket.frames import ErrorFrame, PayloadFrame, RequestResponseFrame
from anyio_rsocket.server import serve_listener
from anyio_rsocket.transports.tcp import ByteStreamTransport
from anyio_rsocket.transports.websocket import open_websocket

from .rawpeer import DEFAULT_SETUP, RawPeer

pytestmark = pytest.mark.anyio

TIMEOUT = 10
#: The deadline of the tests that let it pass (real time on both backends).
SHORT_DEADLINE = 0.2


class Gated(RequestHandler):
    """A responder whose slow interactions wait for the test to release them.

    ``slow`` answers after ``release``; ``hang`` never answers (``cancelled`` is set when its task
    is cancelled); a stream yields ``a``, then ``b`` after ``release_b``, then ``c`` after
    ``release``.
    """

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.stream_started = anyio.Event()
        self.release_b = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"slow":
            self.started.set()
            await self.release.wait()
            return Payload(b"done")
        if payload.data == b"hang":
            self.started.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.cancelled.set()
        return payload

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        self.stream_started.set()
        yield Payload(b"a")
        await self.release_b.wait()
        yield Payload(b"b")
        await self.release.wait()
        yield Payload(b"c")


@dataclass
class Server:
    port: int
    shutdown: ServerShutdown
    returned: anyio.Event  # the serve_* call returned (normally)


@asynccontextmanager
async def serving(handler: RequestHandler, transport: str = "tcp", **options: Any) -> AsyncIterator[Server]:
    """A server with a shutdown; cancelled on leaving if the test did not drain it."""
    serve = serve_tcp if transport == "tcp" else serve_websocket
    shutdown = ServerShutdown()
    returned = anyio.Event()

    async def run(*, task_status: TaskStatus[int]) -> None:
        await serve(lambda rs: handler, "127.0.0.1", 0, shutdown=shutdown, task_status=task_status, **options)
        returned.set()

    async with anyio.create_task_group() as tg:
        port: int = await tg.start(run)
        yield Server(port, shutdown, returned)
        tg.cancel_scope.cancel()


def client(transport: str, port: int) -> AbstractAsyncContextManager[RSocket]:
    if transport == "tcp":
        return connect_tcp("127.0.0.1", port)
    return connect_websocket(f"ws://127.0.0.1:{port}/")


async def raw_peer(port: int) -> RawPeer:
    """A raw client over TCP that has sent SETUP."""
    peer = RawPeer(ByteStreamTransport(await anyio.connect_tcp("127.0.0.1", port)))
    await peer.send(DEFAULT_SETUP)
    return peer


async def call(rs: RSocket, data: bytes, results: list[object]) -> None:
    """A request-response whose answer (or error) lands in ``results``."""
    try:
        results.append((await rs.request_response(Payload(data))).data)
    except ConnectionClosedError as exc:
        results.append(exc)


# --- in-flight interactions finish -----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_drain_lets_in_flight_request_response_and_stream_finish(transport: str) -> None:
    """The request and the stream in flight complete; a new request on the connection is refused
    (the client has seen CONNECTION_CLOSE: PeerClosedError at once); then the server returns."""
    handler = Gated()
    results: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with serving(handler, transport) as server, client(transport, server.port) as rs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, rs, b"slow", results)
                await handler.started.wait()
                async with rs.request_stream(Payload(b"items")) as stream:
                    assert (await stream.receive()).data == b"a"
                    server.shutdown.start_drain(TIMEOUT)
                    assert server.shutdown.draining
                    handler.release_b.set()
                    # "b" was sent after CONNECTION_CLOSE, on the same connection: the client knows.
                    assert (await stream.receive()).data == b"b"
                    with pytest.raises(PeerClosedError):
                        await rs.request_response(Payload(b"new"))
                    handler.release.set()
                    assert [item.data async for item in stream] == [b"c"]
            assert results == [b"done"]
            await rs.wait_closed()  # the server closed it with the last interaction
            assert isinstance(rs.close_reason, PeerClosedError)
            await server.shutdown.drain(TIMEOUT)
            assert server.returned.is_set()


async def test_a_request_racing_the_connection_close_is_rejected() -> None:
    """On the wire: CONNECTION_CLOSE on stream 0 first, a request sent after it gets
    ERROR[REJECTED], the request in flight gets its answer, then the server closes the connection."""
    handler = Gated()
    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server:
            peer = await raw_peer(server.port)
            try:
                await peer.send(RequestResponseFrame(1, b"slow"))
                await handler.started.wait()
                server.shutdown.start_drain(TIMEOUT)
                await peer.send(RequestResponseFrame(3, b"late"))
                close = await peer.expect_next(ErrorFrame)
                assert (close.stream_id, close.error_code) == (0, ErrorCode.CONNECTION_CLOSE)
                rejected = await peer.expect_next(ErrorFrame)
                assert (rejected.stream_id, rejected.error_code) == (3, ErrorCode.REJECTED)
                handler.release.set()
                answer = await peer.expect_next(PayloadFrame)
                assert (answer.stream_id, answer.data, answer.complete) == (1, b"done", True)
                assert await peer.expect_closed() == []
            finally:
                await peer.transport.aclose()
            await server.shutdown.drain(TIMEOUT)


async def test_a_new_request_before_the_client_knows_is_refused_either_way() -> None:
    """Through our client, a request sent just after the drain began fails with PeerClosedError
    (CONNECTION_CLOSE arrived first) or RejectedError (the request crossed it): never answered."""
    handler = Gated()
    results: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server, connect_tcp("127.0.0.1", server.port) as rs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, rs, b"slow", results)
                await handler.started.wait()
                server.shutdown.start_drain(TIMEOUT)
                with pytest.raises((PeerClosedError, RejectedError)):
                    await rs.request_response(Payload(b"new"))
                handler.release.set()
            assert results == [b"done"]
            await server.shutdown.drain(TIMEOUT)


# --- accepting stops --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_new_connections_are_refused_once_draining(transport: str) -> None:
    handler = Gated()
    results: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with serving(handler, transport) as server, client(transport, server.port) as rs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, rs, b"slow", results)
                await handler.started.wait()
                server.shutdown.start_drain(TIMEOUT)
                # Refused by the kernel once the listener has closed, reset if it was still in the
                # backlog then, or refused by the server if already accepted: never served.
                with pytest.raises(ConnectionClosedError):
                    async with client(transport, server.port):
                        pass
                handler.release.set()
            assert results == [b"done"]
            await server.shutdown.drain(TIMEOUT)
        with pytest.raises(OSError):  # the listening socket is closed
            await anyio.connect_tcp("127.0.0.1", server.port)


async def test_a_connection_before_setup_is_closed_at_once() -> None:
    """A connection that has not sent SETUP has nothing in flight: draining closes it at once (no
    deadline needed). Over WebSocket, so that the upgrade proves the server took the connection."""
    with anyio.fail_after(TIMEOUT):
        async with serving(Gated(), "websocket", setup_timeout=60) as server:
            async with open_websocket(f"ws://127.0.0.1:{server.port}/") as transport:
                await server.shutdown.drain(math.inf)
                assert await RawPeer(transport).expect_closed() == []


async def test_a_setup_arriving_while_the_factory_runs_is_refused() -> None:
    """Draining began while the handler factory ran: the client gets REJECTED_SETUP."""
    entered = anyio.Event()
    proceed = anyio.Event()

    async def factory(rs: RSocket) -> RequestHandler:
        entered.set()
        await proceed.wait()
        return Gated()

    shutdown = ServerShutdown()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                lambda task_status: serve_tcp(factory, shutdown=shutdown, task_status=task_status)
            )

            async def connect() -> None:
                with pytest.raises(RejectedSetupError, match="shutting down"):
                    async with connect_tcp("127.0.0.1", port):
                        pass

            tg.start_soon(connect)
            await entered.wait()
            shutdown.start_drain(TIMEOUT)
            proceed.set()
            await shutdown.drain(TIMEOUT)


# --- the deadline -----------------------------------------------------------------------------------


async def test_connections_busy_at_the_deadline_are_closed() -> None:
    handler = Gated()
    results: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server, connect_tcp("127.0.0.1", server.port) as rs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, rs, b"hang", results)
                await handler.started.wait()
                await server.shutdown.drain(SHORT_DEADLINE)
                assert server.returned.is_set()
                assert handler.cancelled.is_set()  # the handler's task did not outlive the server
            [error] = results
            assert isinstance(error, ConnectionClosedError)
            await rs.wait_closed()


async def test_a_later_drain_can_only_bring_the_deadline_closer() -> None:
    handler = Gated()
    results: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with serving(handler) as server, connect_tcp("127.0.0.1", server.port) as rs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, rs, b"hang", results)
                await handler.started.wait()
                server.shutdown.start_drain(math.inf)
                server.shutdown.start_drain(10 * TIMEOUT)  # later than now: ignored
                await server.shutdown.drain(0)  # now: close what is left
            assert isinstance(results[0], ConnectionClosedError)


# --- nothing to wait for ----------------------------------------------------------------------------


async def test_drain_with_nothing_live_returns_promptly() -> None:
    """An idle connection is closed at once (the client sees PeerClosedError); no deadline needed."""
    with anyio.fail_after(TIMEOUT):
        async with serving(Gated()) as server, connect_tcp("127.0.0.1", server.port) as rs:
            assert (await rs.request_response(Payload(b"hi"))).data == b"hi"
            await server.shutdown.drain(math.inf)
            assert server.returned.is_set()
            await rs.wait_closed()
            assert isinstance(rs.close_reason, PeerClosedError)


async def test_drain_without_any_server_returns_and_a_later_server_stops_at_once() -> None:
    shutdown = ServerShutdown()
    with anyio.fail_after(TIMEOUT):
        await shutdown.drain(math.inf)
        async with anyio.create_task_group() as tg:  # waits for serve_tcp to return by itself
            port = await tg.start(
                lambda task_status: serve_tcp(lambda rs: Gated(), shutdown=shutdown, task_status=task_status)
            )
        assert port > 0


async def test_one_shutdown_drains_several_servers() -> None:
    """A TCP and a WebSocket server share one shutdown: drain waits for both."""
    tcp_handler, ws_handler = Gated(), Gated()
    shutdown = ServerShutdown()
    results: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as servers:
            tcp_port = await servers.start(
                lambda task_status: serve_tcp(
                    lambda rs: tcp_handler, shutdown=shutdown, task_status=task_status
                )
            )
            ws_port = await servers.start(
                lambda task_status: serve_websocket(
                    lambda rs: ws_handler, shutdown=shutdown, task_status=task_status
                )
            )
            async with client("tcp", tcp_port) as rs, client("websocket", ws_port) as ws:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call, rs, b"slow", results)
                    tg.start_soon(call, ws, b"slow", results)
                    await tcp_handler.started.wait()
                    await ws_handler.started.wait()

                    async def drain() -> None:
                        await shutdown.drain(TIMEOUT)
                        results.append("drained")

                    tg.start_soon(drain)
                    tcp_handler.release.set()
                    ws_handler.release.set()
    assert results == [b"done", b"done", "drained"]


# --- cancellation -----------------------------------------------------------------------------------


@dataclass
class Cancellable:
    port: int
    scope: anyio.CancelScope  # cancel it to leave the serve_tcp call
    stopped: anyio.Event  # the call has ended (with the cancellation)


@asynccontextmanager
async def cancellable_server(handler: RequestHandler, **options: Any) -> AsyncIterator[Cancellable]:
    scope = anyio.CancelScope()
    stopped = anyio.Event()

    async def run(*, task_status: TaskStatus[int]) -> None:
        with scope:
            await serve_tcp(lambda rs: handler, task_status=task_status, **options)
        assert scope.cancelled_caught  # the cancellation came out of serve_tcp (after any drain)
        stopped.set()

    async with anyio.create_task_group() as tg:
        port: int = await tg.start(run)
        yield Cancellable(port, scope, stopped)
        scope.cancel()


async def test_cancelling_with_drain_timeout_drains() -> None:
    """Cancelling serve_tcp with drain_timeout: CONNECTION_CLOSE, the request in flight is answered,
    then the connection closes and the cancelled call ends."""
    handler = Gated()
    with anyio.fail_after(TIMEOUT):
        async with cancellable_server(handler, drain_timeout=TIMEOUT) as server:
            peer = await raw_peer(server.port)
            try:
                await peer.send(RequestResponseFrame(1, b"slow"))
                await handler.started.wait()
                server.scope.cancel()
                close = await peer.expect_next(ErrorFrame)
                assert (close.stream_id, close.error_code) == (0, ErrorCode.CONNECTION_CLOSE)
                assert not server.stopped.is_set()
                handler.release.set()
                answer = await peer.expect_next(PayloadFrame)
                assert (answer.stream_id, answer.data, answer.complete) == (1, b"done", True)
                assert await peer.expect_closed() == []
            finally:
                await peer.transport.aclose()
            await server.stopped.wait()


async def test_cancelling_with_drain_timeout_closes_what_is_left_at_the_deadline() -> None:
    handler = Gated()
    results: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with cancellable_server(handler, drain_timeout=SHORT_DEADLINE) as server:
            async with connect_tcp("127.0.0.1", server.port) as rs, anyio.create_task_group() as tg:
                tg.start_soon(call, rs, b"hang", results)
                await handler.started.wait()
                server.scope.cancel()
            await server.stopped.wait()
        assert handler.cancelled.is_set()
        [error] = results
        assert isinstance(error, ConnectionClosedError)


async def test_cancelling_without_drain_timeout_closes_at_once() -> None:
    """The default: no CONNECTION_CLOSE, no wait; the request in flight fails."""
    handler = Gated()
    results: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with cancellable_server(handler) as server:
            async with connect_tcp("127.0.0.1", server.port) as rs, anyio.create_task_group() as tg:
                tg.start_soon(call, rs, b"slow", results)
                await handler.started.wait()
                server.scope.cancel()
            await server.stopped.wait()
        [error] = results
        assert isinstance(error, ConnectionClosedError)
        assert not isinstance(error, PeerClosedError)


# --- arguments --------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [-1.0, math.nan])
async def test_a_negative_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        ServerShutdown().start_drain(timeout)


async def test_a_negative_drain_timeout_is_refused() -> None:
    async def serve_one(stream: ByteStream) -> None:
        pass

    with pytest.raises(ValueError, match="drain_timeout"):
        await serve_listener(serve_one, "127.0.0.1", 0, drain_timeout=-1)
