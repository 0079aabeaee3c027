"""Resumption and reconnect through the AnyIO driver, on asyncio and trio.

Most tests use a :class:`MemoryServer`: every dial makes a new in-memory transport pair and
serves its far end with ``serve_connection`` and one shared :class:`SessionRegistry`, and
``cut()`` closes every transport at once, as a network failure would. (A cut after every single
frame is proven loop-free in ``tests/protocol/test_resume_session.py``; TCP cuts mid-frame in
``tests/test_interop_resume_js.py``.)
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup

from anyio_rsocket import (
    Backoff,
    ConnectionClosedError,
    ConnectionLostError,
    ConnectionState,
    Payload,
    RejectedResumeError,
    RejectedSetupError,
    RequestHandler,
    Resume,
    RSocket,
    ServerShutdown,
    SessionRegistry,
    connect,
    connect_tcp,
    serve_tcp,
    serve_websocket,
)
from anyio_rsocket.asgi import RSocketASGIApp
from anyio_rsocket.client import open_client
from anyio_rsocket.frames import (
    KeepaliveFrame,
    PayloadFrame,
    RequestStreamFrame,
    SetupFrame,
    decode_frame,
    encode_frame,
)
from anyio_rsocket.server import serve_connection
from anyio_rsocket.transports.base import Transport
from anyio_rsocket.transports.memory import MemoryTransport, memory_transport_pair

from .interop.cutting_proxy import CuttingProxy

pytestmark = pytest.mark.anyio

FAST_RETRY = Backoff(initial=0.001, maximum=0.01)


class Handler(RequestHandler):
    def __init__(self) -> None:
        self.fnf: list[bytes] = []
        self.fnf_event = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload:
        return Payload(b"echo:" + payload.data)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.fnf.append(payload.data)
        self.fnf_event.set()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(int(payload.data)):
            yield Payload(str(index).encode())


class MemoryServer:
    """A resumable server reached through in-memory transports that the test can cut."""

    def __init__(self, task_group: TaskGroup, resume: Resume, **options: Any) -> None:
        self.task_group = task_group
        self.handler = Handler()
        self.factory_calls = 0
        self.sessions = SessionRegistry(resume, options.pop("max_detached_sessions", 1024))
        self.options = dict(options, resume=resume)
        self.links: list[tuple[MemoryTransport, MemoryTransport]] = []
        self.reachable = True
        self.dialled = 0
        self.server_sockets: list[RSocket] = []

    def factory(self, rsocket: RSocket) -> RequestHandler:
        self.factory_calls += 1
        self.server_sockets.append(rsocket)
        return self.handler

    async def dial(self) -> Transport:
        self.dialled += 1
        if not self.reachable:
            raise ConnectionClosedError("server unreachable")
        client_end, server_end = memory_transport_pair()
        self.links.append((client_end, server_end))
        self.task_group.start_soon(
            functools.partial(
                serve_connection, server_end, self.factory, sessions=self.sessions, **self.options
            )
        )
        return client_end

    async def cut(self) -> None:
        for client_end, server_end in self.links:
            await client_end.aclose()
            await server_end.aclose()
        self.links.clear()


@asynccontextmanager
async def resumable_pair(
    resume: Resume | None = None, *, client_resume: Resume | None = None, **server_options: Any
) -> AsyncIterator[tuple[MemoryServer, RSocket]]:
    async with anyio.create_task_group() as tg:
        server = MemoryServer(tg, resume or Resume(session_duration=30.0), **server_options)
        transport = await server.dial()
        resume = client_resume or Resume(session_duration=30.0, retry=FAST_RETRY)
        async with open_client(transport, resume=resume, redial=server.dial) as rs:
            yield server, rs
        tg.cancel_scope.cancel()


async def test_a_stream_survives_several_cuts_without_loss_or_duplicates() -> None:
    with anyio.fail_after(10):
        async with resumable_pair() as (server, rs):
            received: list[int] = []
            async with rs.request_stream(Payload(b"2000"), initial_n=16) as stream:
                async for item in stream:
                    received.append(int(item.data))
                    if len(received) % 500 == 250:
                        await server.cut()
            assert received == list(range(2000))
            assert server.dialled == 5  # the first connection and one per cut
            assert server.factory_calls == 1  # once per session, never on RESUME
            assert rs.state is ConnectionState.CONNECTED


async def test_calls_made_while_detached_complete_after_the_resume() -> None:
    with anyio.fail_after(10):
        async with resumable_pair() as (server, rs):
            assert await rs.request_response(Payload(b"a")) == Payload(b"echo:a")
            server.reachable = False
            await server.cut()
            assert await rs.wait_for_state(ConnectionState.DETACHED) is ConnectionState.DETACHED
            answers: list[Payload] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    answers.append(await rs.request_response(Payload(b"b")))

                tg.start_soon(ask)
                await rs.fire_and_forget(Payload(b"while-detached"))
                assert answers == []
                server.reachable = True
                assert await rs.state_changed() is ConnectionState.CONNECTED
            assert answers == [Payload(b"echo:b")]
            await server.handler.fnf_event.wait()
            assert server.handler.fnf == [b"while-detached"]


async def test_fire_and_forget_around_a_cut_arrives_exactly_once() -> None:
    with anyio.fail_after(10):
        async with resumable_pair() as (server, rs):
            for index in range(50):
                await rs.fire_and_forget(Payload(b"%d" % index))
                if index in (10, 30):
                    await server.cut()
            assert await rs.request_response(Payload(b"sync")) == Payload(b"echo:sync")
            assert server.handler.fnf == [b"%d" % index for index in range(50)]


async def test_the_state_follows_the_session() -> None:
    with anyio.fail_after(10):
        async with resumable_pair() as (server, rs):
            states: list[ConnectionState] = [rs.state]
            server.reachable = False
            await server.cut()
            states.append(await rs.state_changed())
            server.reachable = True
            states.append(await rs.state_changed())
            await rs.aclose()
            states.append(rs.state)
            assert states == [
                ConnectionState.CONNECTED,
                ConnectionState.DETACHED,
                ConnectionState.CONNECTED,
                ConnectionState.CLOSED,
            ]


@pytest.mark.virtual_time
async def test_a_client_that_cannot_resume_in_time_fails_every_call() -> None:
    with anyio.fail_after(30):
        resume = Resume(session_duration=0.5, retry=Backoff(0.05, 0.1))
        async with resumable_pair(client_resume=resume) as (server, rs):
            server.reachable = False
            async with rs.request_stream(Payload(b"1000000"), initial_n=1) as stream:
                await stream.receive()
                await server.cut()
                with pytest.raises(RejectedResumeError):
                    async for _ in stream:
                        pass
            with pytest.raises(RejectedResumeError):
                await rs.request_response(Payload(b"late"))
            assert rs.state is ConnectionState.CLOSED
            assert server.dialled > 2  # it kept trying until the session's time was up
        # Leaving the block after the session was lost raised nothing.


async def test_retries_exhausted_end_the_session() -> None:
    with anyio.fail_after(10):
        resume = Resume(session_duration=30.0, retry=Backoff(0.001, 0.01, max_attempts=3))
        async with resumable_pair(client_resume=resume) as (server, rs):
            server.reachable = False
            await server.cut()
            assert await rs.wait_for_state(ConnectionState.CLOSED) is ConnectionState.CLOSED
            assert isinstance(rs.close_reason, RejectedResumeError)
            assert server.dialled == 4


@pytest.mark.virtual_time
async def test_a_detached_server_session_expires_and_is_forgotten() -> None:
    with anyio.fail_after(30):
        async with resumable_pair(Resume(session_duration=0.5)) as (server, rs):
            server.reachable = False
            await server.cut()
            [server_side] = server.server_sockets
            await server_side.wait_closed()
            assert isinstance(server_side.close_reason, RejectedResumeError)
            assert len(server.sessions) == 0
            server.reachable = True
            # The client's retry now reaches a server that no longer knows the session.
            assert await rs.wait_for_state(ConnectionState.CLOSED) is ConnectionState.CLOSED
            assert isinstance(rs.close_reason, RejectedResumeError)


async def test_the_oldest_detached_session_goes_when_there_are_too_many() -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg, AsyncExitStack() as clients:
            server = MemoryServer(tg, Resume(session_duration=30.0), max_detached_sessions=1)
            for _ in range(2):
                transport = await server.dial()
                await clients.enter_async_context(
                    open_client(transport, resume=Resume(retry=FAST_RETRY), redial=server.dial)
                )
            server.reachable = False
            await server.cut()
            ended = anyio.Event()
            async with anyio.create_task_group() as waiters:
                for session in server.server_sockets:

                    async def wait(session: RSocket = session) -> None:
                        await session.wait_closed()
                        ended.set()

                    waiters.start_soon(wait)
                await ended.wait()
                waiters.cancel_scope.cancel()
            closed = [session for session in server.server_sockets if session.close_reason is not None]
            assert len(closed) == 1 and isinstance(closed[0].close_reason, RejectedResumeError)
            assert server.sessions.detached_count == 1 and len(server.sessions) == 1
            tg.cancel_scope.cancel()


async def test_closing_a_resumable_client_ends_the_server_session() -> None:
    with anyio.fail_after(10):
        async with resumable_pair() as (server, rs):
            await rs.request_response(Payload(b"x"))
            [server_side] = server.server_sockets
        await server_side.wait_closed()
        assert len(server.sessions) == 0


async def test_a_resume_for_an_unknown_session_is_rejected() -> None:
    with anyio.fail_after(10):
        async with resumable_pair() as (server, rs):
            server.sessions._sessions.clear()  # the server forgot the session (a restart)
            await server.cut()
            assert await rs.wait_for_state(ConnectionState.CLOSED) is ConnectionState.CLOSED
            assert isinstance(rs.close_reason, RejectedResumeError)
            with pytest.raises(RejectedResumeError):
                await rs.request_response(Payload(b"x"))


async def test_a_server_without_resume_refuses_a_resumable_client() -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_tcp, lambda rs: Handler(), "127.0.0.1", 0)
            with pytest.raises(RejectedSetupError):
                async with connect_tcp("127.0.0.1", port, resume=Resume()):
                    pass
            tg.cancel_scope.cancel()


async def test_a_resume_enabled_server_serves_plain_clients() -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(serve_tcp, lambda rs: Handler(), "127.0.0.1", 0, resume=Resume())
            )
            async with connect_tcp("127.0.0.1", port) as rs:
                assert await rs.request_response(Payload(b"p")) == Payload(b"echo:p")
            tg.cancel_scope.cancel()


async def test_store_back_pressure_bounds_what_a_silent_peer_costs() -> None:
    """A peer that never confirms: the server's producer stops once the store is full."""
    store_size = 4096
    produced: list[int] = []
    bound_seen: list[int] = []

    class Producer(RequestHandler):
        async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
            for index in range(10_000):
                [server_side] = sessions_sockets
                bound_seen.append(server_side._core.unconfirmed_bytes)
                produced.append(index)
                yield Payload(b"x" * 100)

    sessions_sockets: list[RSocket] = []

    def factory(rs: RSocket) -> RequestHandler:
        sessions_sockets.append(rs)
        return Producer()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            client_end, server_end = memory_transport_pair()
            resume = Resume(session_duration=30.0, store_size=store_size)
            tg.start_soon(
                functools.partial(
                    serve_connection, server_end, factory, sessions=SessionRegistry(resume), resume=resume
                )
            )
            setup = SetupFrame(60_000, 600_000, "a/b", "a/b", resume_token=b"silent-peer")
            await client_end.send([encode_frame(setup), encode_frame(RequestStreamFrame(1, 1_000_000, b"s"))])
            items = 0
            confirmed_at = 0
            position = 0
            while items < 500:
                [raw] = await client_end.receive()
                frame = decode_frame(raw)
                if isinstance(frame, PayloadFrame):
                    items += 1
                    position += len(raw)
                    # The producer may run ahead of what we confirmed by the store only.
                    assert len(produced) <= items + store_size // 100 + 2
                    if items % 30 == 0:
                        # Only now and then does this peer say where it is.
                        await client_end.send([encode_frame(KeepaliveFrame(False, position))])
                        confirmed_at = position
                elif isinstance(frame, KeepaliveFrame):
                    pass  # asked for our position: this peer does not answer
            assert confirmed_at > 0
            # Every time the producer ran, at most the store and one more item were unconfirmed.
            assert max(bound_seen) <= store_size + 106
            assert max(bound_seen) > store_size // 2  # it did fill up between confirmations
            tg.cancel_scope.cancel()


async def test_reconnect_starts_a_new_connection_after_a_server_restart() -> None:
    with anyio.fail_after(20):
        async with anyio.create_task_group() as outer:
            handler = Handler()
            server_scope = anyio.CancelScope()
            stopped = anyio.Event()

            async def run_server(port: int, *, task_status: anyio.abc.TaskStatus[int]) -> None:
                try:
                    with server_scope:
                        await serve_tcp(lambda rs: handler, "127.0.0.1", port, task_status=task_status)
                finally:
                    stopped.set()

            port = await outer.start(run_server, 0)
            reconnect = Backoff(initial=0.01, maximum=0.05)
            async with connect_tcp("127.0.0.1", port, reconnect=reconnect) as rs:
                assert await rs.request_response(Payload(b"one")) == Payload(b"echo:one")
                async with rs.request_stream(Payload(b"1000000"), initial_n=1) as stream:
                    await stream.receive()
                    server_scope.cancel()  # the server goes away
                    with pytest.raises(ConnectionClosedError) as lost:
                        async for _ in stream:
                            pass
                    assert isinstance(lost.value, ConnectionLostError)
                assert rs.state in (ConnectionState.RECONNECTING, ConnectionState.CONNECTED)
                await stopped.wait()  # the listening socket is closed
                server_scope = anyio.CancelScope()
                await outer.start(run_server, port)  # restarted on the same port
                assert await rs.request_response(Payload(b"two")) == Payload(b"echo:two")
                assert rs.state is ConnectionState.CONNECTED
            outer.cancel_scope.cancel()


async def stream_through_cuts(url: str, proxy: CuttingProxy) -> list[int]:
    received: list[int] = []
    async with connect(url, resume=Resume(retry=FAST_RETRY)) as rs:
        async with rs.request_stream(Payload(b"3000"), initial_n=32) as stream:
            async for item in stream:
                received.append(int(item.data))
        assert await rs.request_response(Payload(b"after")) == Payload(b"echo:after")
    assert proxy.cuts == 2
    return received


async def test_resume_over_websocket_through_cuts() -> None:
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                functools.partial(serve_websocket, lambda rs: Handler(), "127.0.0.1", 0, resume=Resume())
            )
            async with CuttingProxy("127.0.0.1", port, cut_after_bytes=5000, auto_cuts=2) as proxy:
                received = await stream_through_cuts(f"ws://127.0.0.1:{proxy.port}/", proxy)
            assert received == list(range(3000))
            tg.cancel_scope.cancel()


async def test_resume_with_the_asgi_app_under_hypercorn(anyio_backend: str) -> None:
    from hypercorn.config import Config

    app = RSocketASGIApp(lambda rs: Handler(), resume=Resume())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.graceful_timeout = 0.2
    config.accesslog = None
    config.errorlog = None
    shutdown = anyio.Event()
    if anyio_backend == "trio":
        from hypercorn.trio import serve
    else:
        from hypercorn.asyncio import serve  # type: ignore[assignment]
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve(app, config, shutdown_trigger=shutdown.wait))  # type: ignore[arg-type]
            async with CuttingProxy("127.0.0.1", port, cut_after_bytes=5000, auto_cuts=2) as proxy:
                received = await stream_through_cuts(f"ws://127.0.0.1:{proxy.port}/", proxy)
            assert received == list(range(3000))
            assert app.sessions is not None and len(app.sessions) == 0  # the client said goodbye
            shutdown.set()


class ChannelHandler(Handler):
    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        async for item in inbound:
            yield Payload(b"re:" + item.data)


async def test_a_channel_survives_cuts_in_both_directions() -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            server = MemoryServer(tg, Resume(session_duration=30.0))
            server.handler = ChannelHandler()
            transport = await server.dial()
            async with open_client(transport, resume=Resume(retry=FAST_RETRY), redial=server.dial) as rs:

                async def outbound() -> AsyncIterator[Payload]:
                    for index in range(1, 1000):
                        if index in (200, 600):
                            await server.cut()
                        yield Payload(b"%d" % index)

                echoes: list[bytes] = []
                async with rs.request_channel(Payload(b"0"), initial_n=8, outbound=outbound()) as channel:
                    async for item in channel:
                        echoes.append(item.data)
                assert echoes == [b"re:%d" % index for index in range(1, 1000)]  # the first is the request
                assert server.dialled == 3
            tg.cancel_scope.cancel()


async def test_requests_from_the_server_survive_a_cut_too() -> None:
    class ClientSide(RequestHandler):
        async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
            for index in range(500):
                yield Payload(b"%d" % index)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            server = MemoryServer(tg, Resume(session_duration=30.0))
            transport = await server.dial()
            async with open_client(
                transport, resume=Resume(retry=FAST_RETRY), redial=server.dial, handler=ClientSide()
            ):
                [server_side] = server.server_sockets
                received: list[bytes] = []
                async with server_side.request_stream(Payload(b""), initial_n=4) as stream:
                    async for item in stream:
                        received.append(item.data)
                        if len(received) == 100:
                            await server.cut()
                assert received == [b"%d" % index for index in range(500)]
            tg.cancel_scope.cancel()


async def test_reconnect_after_the_server_drains_and_restarts() -> None:
    with anyio.fail_after(20):
        async with anyio.create_task_group() as outer:
            shutdown = ServerShutdown()
            port = await outer.start(
                functools.partial(serve_tcp, lambda rs: Handler(), "127.0.0.1", 0, shutdown=shutdown)
            )
            async with connect_tcp("127.0.0.1", port, reconnect=Backoff(0.01, 0.05)) as rs:
                assert await rs.request_response(Payload(b"one")) == Payload(b"echo:one")
                await shutdown.drain(1.0)  # CONNECTION_CLOSE, then the server is gone
                assert await rs.wait_for_state(ConnectionState.RECONNECTING) is ConnectionState.RECONNECTING
                await outer.start(functools.partial(serve_tcp, lambda rs: Handler(), "127.0.0.1", port))
                assert await rs.request_response(Payload(b"two")) == Payload(b"echo:two")
            outer.cancel_scope.cancel()


@pytest.mark.virtual_time
async def test_reconnect_after_the_server_falls_silent() -> None:
    """K3 with reconnect=: a server that stops answering (a half-open connection) is redialled."""
    dials: list[MemoryTransport] = []

    async def silent_server(transport: MemoryTransport) -> None:
        # Echo the KEEPALIVE that confirms SETUP, then never answer again.
        with contextlib.suppress(ConnectionClosedError):  # the client gave up on this one
            while True:
                for raw in await transport.receive():
                    frame = decode_frame(raw)
                    if isinstance(frame, KeepaliveFrame) and frame.respond:
                        await transport.send([encode_frame(KeepaliveFrame(False, 0, frame.data))])
                        await anyio.sleep_forever()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:

            async def dial() -> Transport:
                client_end, server_end = memory_transport_pair()
                dials.append(server_end)
                tg.start_soon(silent_server, server_end)
                return client_end

            transport = await dial()
            options: dict[str, Any] = {"keepalive_interval": 0.1, "max_lifetime": 0.4}
            async with open_client(transport, reconnect=Backoff(0.01, 0.02), redial=dial, **options) as rs:
                while len(dials) < 3:
                    await rs.state_changed()
                assert rs.state is not ConnectionState.CLOSED
            tg.cancel_scope.cancel()
