"""The blocking API (anyio_rsocket.sync): plain synchronous tests against a server in another thread.

Each test's server runs in a blocking portal of its own (a second event loop thread), on asyncio
and on trio; the client's loop is parametrized the same way. Every wait is bounded by a
``timeout=`` argument and by the test's timeout marker.
"""

from __future__ import annotations

import functools
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from anyio_rsocket import (
    ApplicationError,
    ConnectionClosedError,
    ConnectionState,
    InvalidStateError,
    Payload,
    RejectedError,
    RequestHandler,
    Router,
    RSocket,
    serve_tcp,
    serve_websocket,
)
from anyio_rsocket.extensions import MESSAGE_COMPOSITE_METADATA
from anyio_rsocket.sync import SyncRSocket, connect

BACKENDS = ["asyncio", "trio"]
WAIT = 10.0  # bound of every wait that should succeed


@dataclass
class Record:
    """What the server saw; written in the server's loop thread, read by the test."""

    fire_and_forget: list[bytes] = field(default_factory=list)
    fire_and_forget_seen: threading.Event = field(default_factory=threading.Event)
    pushes: list[bytes] = field(default_factory=list)
    push_seen: threading.Event = field(default_factory=threading.Event)
    produced: list[int] = field(default_factory=list)
    stream_cancelled: threading.Event = field(default_factory=threading.Event)
    hang_started: threading.Event = field(default_factory=threading.Event)
    hang_cancelled: threading.Event = field(default_factory=threading.Event)
    channel_inbound: list[bytes] = field(default_factory=list)
    channel_ended: threading.Event = field(default_factory=threading.Event)


class Handler(RequestHandler):
    def __init__(self, record: Record) -> None:
        self.record = record

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"fail":
            raise ApplicationError("it failed")
        if payload.data == b"reject":
            raise RejectedError("not now")
        if payload.data == b"hang":
            self.record.hang_started.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.record.hang_cancelled.set()
        return Payload(payload.data.upper(), payload.metadata)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.record.fire_and_forget.append(payload.data)
        self.record.fire_and_forget_seen.set()

    async def metadata_push(self, metadata: bytes) -> None:
        self.record.pushes.append(metadata)
        self.record.push_seen.set()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        count = int(payload.data)
        finished = False
        try:
            for index in range(count):
                self.record.produced.append(index)
                yield Payload(str(index).encode())
            finished = True
        finally:
            if not finished:
                self.record.stream_cancelled.set()

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield Payload(payload.data.upper())
        try:
            async for item in inbound:
                self.record.channel_inbound.append(item.data)
                yield Payload(item.data.upper())
        finally:
            self.record.channel_ended.set()


@dataclass
class Server:
    url: str
    record: Record


@contextmanager
def serving(backend: str, record: Record, *, websocket: bool = False) -> Iterator[Server]:
    """A server in a background event loop thread of its own; stopped (and joined) on exit."""
    serve = serve_websocket if websocket else serve_tcp
    with start_blocking_portal(backend) as portal:
        task, port = portal.start_task(functools.partial(serve, lambda rs: Handler(record), "127.0.0.1", 0))
        try:
            scheme = "ws" if websocket else "tcp"
            yield Server(f"{scheme}://127.0.0.1:{port}" + ("/" if websocket else ""), record)
        finally:
            task.cancel()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The client's event loop."""
    return str(request.param)


@pytest.fixture
def server(backend: str) -> Iterator[Server]:
    """A TCP server on the same backend as the client."""
    with serving(backend, Record()) as srv:
        yield srv


def extra_threads(baseline: set[threading.Thread], grace: float = 5.0) -> set[threading.Thread]:
    """Threads alive now that were not in ``baseline``, after giving exiting ones ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        extra = {thread for thread in threading.enumerate() if thread not in baseline}
        if not extra or time.monotonic() >= deadline:
            return extra
        time.sleep(0.01)


def loop_threads() -> list[threading.Thread]:
    """The event loop threads of sync connections still alive."""
    return [thread for thread in threading.enumerate() if thread.name.startswith("anyio-rsocket tcp")]


def connect_to(server: Server, backend: str, **options: Any) -> SyncRSocket:
    return connect(server.url, backend=backend, connect_timeout=WAIT, **options)


# --- interactions ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server_backend", BACKENDS)
def test_request_response_across_backends(backend: str, server_backend: str) -> None:
    with serving(server_backend, Record()) as srv, connect_to(srv, backend) as rs:
        assert rs.request_response(Payload(b"hi", b"meta"), timeout=WAIT) == Payload(b"HI", b"meta")
        assert rs.backend == backend
        assert rs.state is ConnectionState.CONNECTED
        assert rs.setup.data_mime_type == "application/octet-stream"
        assert rs.is_client and rs.available and rs.close_reason is None
        assert rs.stats.frames_received >= 1


@pytest.mark.timeout(30)
def test_errors_are_raised_with_their_types(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs:
        with pytest.raises(ApplicationError, match="it failed"):
            rs.request_response(Payload(b"fail"), timeout=WAIT)
        with pytest.raises(RejectedError, match="not now"):
            rs.request_response(Payload(b"reject"), timeout=WAIT)
        assert rs.request_response(Payload(b"still usable"), timeout=WAIT).data == b"STILL USABLE"


@pytest.mark.timeout(30)
def test_fire_and_forget_and_metadata_push_reach_the_server(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs:
        rs.fire_and_forget(Payload(b"x"), timeout=WAIT)
        rs.metadata_push(b"m", timeout=WAIT)
        assert server.record.fire_and_forget_seen.wait(WAIT)
        assert server.record.push_seen.wait(WAIT)
    assert server.record.fire_and_forget == [b"x"]
    assert server.record.pushes == [b"m"]


@pytest.mark.timeout(30)
def test_stream_with_automatic_credit(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs:
        with rs.request_stream(Payload(b"10"), initial_n=2, timeout=WAIT) as items:
            received = []
            for item in items:
                received.append(item.data)
                # Never more than the credit (2) ahead of the consumer, plus the one item the
                # responder pulls from its generator while it waits for credit.
                assert len(server.record.produced) <= len(received) + 2 + 1
            assert items.stream_id % 2 == 1
        assert received == [str(index).encode() for index in range(10)]
        with pytest.raises(anyio.ClosedResourceError):
            next(items)


@pytest.mark.timeout(30)
def test_stream_credit_is_enforced(server: Server, backend: str) -> None:
    record = server.record
    with (
        connect_to(server, backend) as rs,
        rs.request_stream(Payload(b"100"), initial_n=2, auto_request=False, timeout=WAIT) as items,
    ):
        assert [next(items).data, next(items).data] == [b"0", b"1"]
        with pytest.raises(TimeoutError):  # credit used up: nothing more comes
            items.receive(timeout=0.3)
        assert items.buffered == 0
        assert len(record.produced) <= 2 + 1  # one item pulled ahead, held until credit arrives
        items.request(3)
        assert [next(items).data for _ in range(3)] == [b"2", b"3", b"4"]
        with pytest.raises(TimeoutError):
            items.receive(timeout=0.3)
        assert len(record.produced) <= 5 + 1
        items.request(1)
        assert items.receive(timeout=WAIT).data == b"5"  # a timed-out wait lost nothing


@pytest.mark.timeout(30)
def test_leaving_a_stream_early_cancels_it(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs:
        with rs.request_stream(Payload(b"1000000"), initial_n=4, timeout=WAIT) as items:
            for item in items:
                assert item.data == b"0"
                break
        assert server.record.stream_cancelled.wait(WAIT)
        assert len(server.record.produced) < 100
        assert rs.stats.streams_open == 0
        assert rs.request_response(Payload(b"after"), timeout=WAIT).data == b"AFTER"


@pytest.mark.timeout(30)
def test_an_exception_in_a_stream_block_cancels_and_propagates(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs:
        with pytest.raises(ZeroDivisionError):
            with rs.request_stream(Payload(b"1000000"), initial_n=4, timeout=WAIT) as items:
                next(items)
                1 / 0  # noqa: B018
        assert server.record.stream_cancelled.wait(WAIT)
        assert rs.request_response(Payload(b"after"), timeout=WAIT).data == b"AFTER"


@pytest.mark.timeout(30)
def test_stream_used_outside_its_block(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs:
        items = rs.request_stream(Payload(b"3"))
        with pytest.raises(InvalidStateError):
            next(items)
        with items:
            assert [item.data for item in items] == [b"0", b"1", b"2"]
        with pytest.raises(InvalidStateError):
            items.__enter__()


@pytest.mark.timeout(30)
def test_channel_with_a_sync_outbound_list(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs:
        outbound = [Payload(b"b"), Payload(b"c")]
        with rs.request_channel(Payload(b"a"), outbound=outbound, timeout=WAIT) as items:
            assert [item.data for item in items] == [b"A", b"B", b"C"]
    assert server.record.channel_inbound == [b"b", b"c"]


@pytest.mark.timeout(30)
def test_channel_outbound_generator_may_block_without_stalling_the_connection(
    server: Server, backend: str
) -> None:
    def slow() -> Iterator[Payload]:
        for letter in (b"x", b"y"):
            time.sleep(0.2)  # blocking work: runs in the feeder thread, not in the event loop
            yield Payload(letter)

    with connect_to(server, backend) as rs:
        with rs.request_channel(Payload(b"a"), outbound=slow(), timeout=WAIT) as items:
            assert next(items).data == b"A"
            started = time.monotonic()
            assert rs.request_response(Payload(b"meanwhile"), timeout=WAIT).data == b"MEANWHILE"
            assert time.monotonic() - started < 0.15
            assert [item.data for item in items] == [b"X", b"Y"]


@pytest.mark.timeout(30)
def test_channel_outbound_that_raises(server: Server, backend: str) -> None:
    def failing() -> Iterator[Payload]:
        yield Payload(b"b")
        raise ValueError("no more")

    with connect_to(server, backend) as rs:
        with pytest.raises(ValueError, match="no more"):
            with rs.request_channel(Payload(b"a"), outbound=failing(), timeout=WAIT) as items:
                for _ in items:
                    pass
        assert server.record.channel_ended.wait(WAIT)  # the responder got ERROR: its handler ended
        assert server.record.channel_inbound == [b"b"]
        assert rs.request_response(Payload(b"after"), timeout=WAIT).data == b"AFTER"


@pytest.mark.timeout(30)
def test_channel_send_and_send_eof(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs, rs.request_channel(Payload(b"a"), timeout=WAIT) as channel:
        assert next(channel).data == b"A"
        channel.send(Payload(b"b"))
        assert next(channel).data == b"B"
        channel.send(Payload(b"c"))
        channel.send_eof()
        assert [item.data for item in channel] == [b"C"]
        with pytest.raises(anyio.ClosedResourceError):
            channel.send(Payload(b"late"))
    assert server.record.channel_inbound == [b"b", b"c"]


@pytest.mark.timeout(30)
def test_leaving_a_channel_with_an_endless_outbound_stops_its_thread(server: Server, backend: str) -> None:
    def endless() -> Iterator[Payload]:
        while True:
            yield Payload(b"more")

    baseline = set(threading.enumerate())
    with connect_to(server, backend) as rs:
        with rs.request_channel(Payload(b"a"), outbound=endless(), initial_n=2, timeout=WAIT) as items:
            assert next(items).data == b"A"
            assert next(items).data == b"MORE"
        assert server.record.channel_ended.wait(WAIT)
        assert not [thread for thread in threading.enumerate() if "outbound" in thread.name]
    assert extra_threads(baseline) == set()


@pytest.mark.timeout(30)
def test_routed_requests() -> None:
    router = Router()

    @router.response("greet.{name}")
    async def greet(name: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"hello": name, **data}

    @router.stream("count")
    async def count(n: int) -> AsyncIterator[int]:
        for index in range(n):
            yield index

    with start_blocking_portal("asyncio") as portal:
        task, port = portal.start_task(functools.partial(serve_tcp, router, "127.0.0.1", 0))
        try:
            with connect(
                f"tcp://127.0.0.1:{port}",
                data_mime_type="application/json",
                metadata_mime_type=MESSAGE_COMPOSITE_METADATA,
            ) as rs:
                greeter = rs.route("greet.ada")
                assert greeter.retrieve({"x": 1}, timeout=WAIT) == {"hello": "ada", "x": 1}
                counter = rs.route("count")
                with counter.request_stream(3, timeout=WAIT) as items:
                    assert [counter.decode(item) for item in items] == [0, 1, 2]
        finally:
            task.cancel()


# --- connecting, closing and threads --------------------------------------------------------------


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(30)
def test_connection_refused_raises_connection_closed_and_leaves_no_thread(backend: str) -> None:
    baseline = set(threading.enumerate())
    with pytest.raises(ConnectionClosedError, match="cannot connect"):
        connect(f"tcp://127.0.0.1:{unused_port()}", backend=backend, connect_timeout=WAIT)
    assert loop_threads() == []
    assert extra_threads(baseline) == set()


@pytest.mark.timeout(30)
def test_bad_url_raises_value_error(backend: str) -> None:
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        connect("http://127.0.0.1:1", backend=backend)
    assert loop_threads() == []


@pytest.mark.timeout(30)
def test_websocket_url(backend: str) -> None:
    with serving(backend, Record(), websocket=True) as srv:
        assert srv.url.startswith("ws://")
        with connect(srv.url, backend=backend, connect_timeout=WAIT) as rs:
            assert rs.request_response(Payload(b"over ws"), timeout=WAIT).data == b"OVER WS"
            with rs.request_stream(Payload(b"3"), initial_n=1, timeout=WAIT) as items:
                assert [item.data for item in items] == [b"0", b"1", b"2"]


@pytest.mark.timeout(30)
def test_close_leaves_no_thread(server: Server, backend: str) -> None:
    baseline = set(threading.enumerate())
    rs = connect_to(server, backend)
    assert len(loop_threads()) == 1
    assert rs.request_response(Payload(b"x"), timeout=WAIT).data == b"X"
    rs.close()
    assert loop_threads() == []  # joined by close() itself
    assert extra_threads(baseline) == set()
    rs.close()  # idempotent
    assert rs.closed and rs.state is ConnectionState.CLOSED
    assert rs.close_reason is not None
    with pytest.raises(ConnectionClosedError):
        rs.request_response(Payload(b"late"))
    with pytest.raises(ConnectionClosedError), rs.request_stream(Payload(b"1")):
        pass


@pytest.mark.timeout(30)
def test_an_exception_in_the_block_still_closes(server: Server, backend: str) -> None:
    baseline = set(threading.enumerate())
    with pytest.raises(KeyError), connect_to(server, backend) as rs:
        with rs.request_stream(Payload(b"1000000"), initial_n=1, timeout=WAIT) as items:
            next(items)
            raise KeyError("boom")
    assert rs.state is ConnectionState.CLOSED
    assert loop_threads() == []
    assert extra_threads(baseline) == set()


@pytest.mark.timeout(30)
def test_closing_inside_an_open_stream_block(server: Server, backend: str) -> None:
    baseline = set(threading.enumerate())
    with connect_to(server, backend) as rs, rs.request_stream(Payload(b"1000000"), initial_n=1) as items:
        next(items)
        rs.close()
        with pytest.raises(ConnectionClosedError):
            next(items)
    assert extra_threads(baseline) == set()


@pytest.mark.timeout(30)
def test_close_from_another_thread_ends_a_blocked_call(server: Server, backend: str) -> None:
    rs = connect_to(server, backend)

    def close_when_blocked() -> None:
        server.record.hang_started.wait(WAIT)
        rs.close()

    closer = threading.Thread(target=close_when_blocked)
    closer.start()
    try:
        with pytest.raises(ConnectionClosedError):
            rs.request_response(Payload(b"hang"), timeout=WAIT)
    finally:
        closer.join(WAIT)
        rs.close()
    assert loop_threads() == []


@pytest.mark.timeout(30)
def test_connection_closed_by_the_server(backend: str) -> None:
    record = Record()
    servers = serving(backend, record)
    srv = servers.__enter__()
    rs = connect_to(srv, backend)
    try:
        assert rs.request_response(Payload(b"x"), timeout=WAIT).data == b"X"
        servers.__exit__(None, None, None)  # stops the server: its connections are closed
        rs.wait_closed(timeout=WAIT)
        assert rs.state is ConnectionState.CLOSED
        with pytest.raises(ConnectionClosedError):
            rs.request_response(Payload(b"x"), timeout=WAIT)
    finally:
        rs.close()
    assert loop_threads() == []


# --- timeouts and interruption --------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_timeout_raises_timeout_error_and_cancels_the_request(server: Server, backend: str) -> None:
    with connect_to(server, backend) as rs:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            rs.request_response(Payload(b"hang"), timeout=0.2)
        assert time.monotonic() - started < WAIT
        assert server.record.hang_cancelled.wait(WAIT)  # CANCEL reached the responder
        assert rs.request_response(Payload(b"ok"), timeout=WAIT).data == b"OK"
        with pytest.raises(TimeoutError):
            rs.wait_closed(timeout=0.05)


@pytest.mark.timeout(30)
@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_ctrl_c_while_blocked_cancels_the_call_and_closes(server: Server, backend: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT does not raise KeyboardInterrupt here")
    baseline = set(threading.enumerate())
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        if server.record.hang_started.wait(WAIT):
            signal.pthread_kill(main, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt), connect_to(server, backend) as rs:
            rs.request_response(Payload(b"hang"), timeout=WAIT)
    finally:
        interrupter.join(WAIT)
    assert server.record.hang_cancelled.wait(WAIT)
    assert rs.state is ConnectionState.CLOSED
    assert loop_threads() == []
    assert extra_threads(baseline) == set()


# --- misuse ---------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop_backend", BACKENDS)
def test_calling_from_a_running_event_loop_raises(server: Server, backend: str, loop_backend: str) -> None:
    with connect_to(server, backend) as rs:

        async def misuse(call: Callable[[], object]) -> None:
            with pytest.raises(RuntimeError, match="cannot be called from a thread running an event loop"):
                call()

        anyio.run(misuse, lambda: connect(server.url, backend=backend), backend=loop_backend)
        anyio.run(misuse, lambda: rs.request_response(Payload(b"x")), backend=loop_backend)
        anyio.run(misuse, rs.close, backend=loop_backend)

        async def from_a_worker_thread() -> bytes:  # the supported way to use it from async code
            reply = await anyio.to_thread.run_sync(lambda: rs.request_response(Payload(b"w"), timeout=WAIT))
            return reply.data

        assert anyio.run(from_a_worker_thread, backend=loop_backend) == b"W"
    assert rs.closed


@pytest.mark.timeout(30)
def test_backend_options_are_passed_through(server: Server) -> None:
    import asyncio

    with connect_to(server, "asyncio", backend_options={"debug": True}) as rs:

        async def debug() -> bool:
            return asyncio.get_running_loop().get_debug()

        assert rs.portal.call(debug) is True


@pytest.mark.timeout(30)
def test_a_client_handler_answers_in_the_loop_thread(backend: str) -> None:
    """The server calls the client back; the client's handler runs in its connection's loop thread."""
    answered_in: list[str] = []

    class ClientHandler(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            answered_in.append(threading.current_thread().name)
            return Payload(b"client says " + payload.data)

    class CallingBack(RequestHandler):
        def __init__(self, peer: RSocket) -> None:
            self.peer = peer

        async def request_response(self, payload: Payload) -> Payload:
            return await self.peer.request_response(payload)

    with start_blocking_portal(backend) as portal:
        task, port = portal.start_task(functools.partial(serve_tcp, CallingBack, "127.0.0.1", 0))
        try:
            with connect(f"tcp://127.0.0.1:{port}", backend=backend, handler=ClientHandler()) as rs:
                assert rs.request_response(Payload(b"hi"), timeout=WAIT).data == b"client says hi"
        finally:
            task.cancel()
    assert answered_in == [f"anyio-rsocket tcp://127.0.0.1:{port}"]
