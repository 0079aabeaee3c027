"""rsocket-py 0.4.20's side (asyncio only): the benchmark server and the client runners.

TCP is ``RSocketServer``/``RSocketClient`` over ``TransportTCP`` on ``asyncio.start_server`` /
``open_connection`` (with its default 1024-byte reads); WebSocket is an aiohttp server with
``websocket_handler_factory`` and aiohttp's ``ws_connect`` with ``TransportAioHttpClient``. MIME types
are ``application/octet-stream``; keepalive 20 s, lifetime 90 s (whole seconds: rsocket-py converts
sub-second ``timedelta``s to milliseconds wrongly).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

from reactivestreams.publisher import Publisher
from reactivestreams.subscriber import Subscriber
from reactivestreams.subscription import Subscription
from rsocket.extensions.mimetypes import WellKnownMimeTypes
from rsocket.helpers import create_future, single_transport_provider
from rsocket.payload import Payload
from rsocket.request_handler import BaseRequestHandler
from rsocket.rsocket_client import RSocketClient
from rsocket.rsocket_server import RSocketServer
from rsocket.streams.stream_from_generator import StreamFromGenerator
from rsocket.transports.tcp import TransportTCP

from ._common import (
    CHANNEL_WINDOW,
    CONTROL,
    CTL_FNF,
    CTL_IDLE,
    CTL_RSS,
    CTL_STREAMS,
    DATA16,
    HOLD,
    MAX_REQUEST_N,
    STREAM_CREDIT,
    BenchError,
    Runner,
    Session,
    check_items,
    pick_runner,
    rss_bytes,
    run_fnf,
    run_hold,
)
from ._worker import Command, Inbox, Result, run_asyncio, wait_for_stop

OCTET = WellKnownMimeTypes.APPLICATION_OCTET_STREAM
TEARDOWN_TIMEOUT_S = 5.0


# ==================================================================================================
# Reactive-streams building blocks
# ==================================================================================================


class CountPublisher(Publisher, Subscription):  # type: ignore[misc]
    """Minimal publisher: emits synchronously as credit arrives; the last item completes."""

    def __init__(self, count: int, payload: Payload) -> None:
        self._remaining = count
        self._payload = payload
        self._subscriber: Any = None
        self._stopped = False

    def subscribe(self, subscriber: Any) -> None:
        self._subscriber = subscriber
        subscriber.on_subscribe(self)

    def request(self, n: int) -> None:
        subscriber = self._subscriber
        if self._remaining == 0 and not self._stopped:
            self._stopped = True
            subscriber.on_complete()
            return
        while n > 0 and self._remaining > 0 and not self._stopped:
            n -= 1
            self._remaining -= 1
            subscriber.on_next(self._payload, self._remaining == 0)
        if self._remaining == 0:
            self._stopped = True

    def cancel(self) -> None:
        self._stopped = True


class CountingSubscriber(Subscriber):  # type: ignore[misc]
    """Counts items; with ``refill`` it tops up credit by ``refill`` every ``refill`` items."""

    def __init__(self, refill: int | None) -> None:
        self.count = 0
        self.bad = 0
        self.error: BaseException | None = None
        self.done = asyncio.Event()
        self.subscription: Any = None
        self._refill = refill
        self._since = 0

    def on_subscribe(self, subscription: Any) -> None:
        self.subscription = subscription

    def on_next(self, value: Any, is_complete: bool = False) -> None:
        self.count += 1
        if value.data is None or len(value.data) != 16:
            self.bad += 1
        if is_complete:
            self.done.set()
        elif self._refill is not None:
            self._since += 1
            if self._since >= self._refill:
                self._since = 0
                self.subscription.request(self._refill)

    def on_error(self, exception: Exception) -> None:
        self.error = exception
        self.done.set()

    def on_complete(self) -> None:
        self.done.set()


class EchoChannel(Publisher, Subscription, Subscriber):  # type: ignore[misc]
    """Channel responder: echoes every inbound element, honouring the requester's credit."""

    def __init__(self, first: Payload) -> None:
        self._pending: deque[Payload] = deque([first])
        self._credit = 0
        self._inbound_done = False
        self._terminated = False
        self._since = 0
        self._outbound: Any = None
        self._inbound: Any = None

    def subscribe(self, subscriber: Any) -> None:
        self._outbound = subscriber
        subscriber.on_subscribe(self)
        self._drain()

    def request(self, n: int) -> None:
        self._credit = min(self._credit + n, MAX_REQUEST_N)
        self._drain()

    def cancel(self) -> None:
        self._terminated = True
        self._pending.clear()

    def on_subscribe(self, subscription: Any) -> None:
        self._inbound = subscription
        subscription.request(CHANNEL_WINDOW)

    def on_next(self, value: Any, is_complete: bool = False) -> None:
        self._pending.append(value)
        if is_complete:
            self._inbound_done = True
        else:
            self._since += 1
            if self._since >= CHANNEL_WINDOW // 2:
                self._since = 0
                self._inbound.request(CHANNEL_WINDOW // 2)
        self._drain()

    def on_complete(self) -> None:
        self._inbound_done = True
        self._drain()

    def on_error(self, exception: Exception) -> None:
        self._terminated = True
        self._pending.clear()

    def _drain(self) -> None:
        outbound = self._outbound
        if outbound is None or self._terminated:
            return
        pending = self._pending
        while pending and self._credit > 0:
            self._credit -= 1
            outbound.on_next(pending.popleft())
        if self._inbound_done and not pending:
            self._terminated = True
            outbound.on_complete()


# ==================================================================================================
# Server
# ==================================================================================================


class ServerState:
    """What the handlers of one server share (a server holds one connection per measurement)."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.servers: list[Any] = []
        self.fnf = 0
        self.fnf_target = 0
        self.fnf_future: asyncio.Future[Payload] | None = None
        self.holding = 0
        self.idle_future: asyncio.Future[Payload] | None = None

    def hold_ended(self) -> None:
        self.holding -= 1
        future = self.idle_future
        if not self.holding and future is not None and not future.done():
            future.set_result(Payload(b"0"))

    def control(self, command: bytes) -> Any:  # an asyncio.Future of the response
        # Handlers run inline in rsocket-py's reader, so a control request that has to wait returns
        # a future that the fire-and-forget handler or a cancelled stream completes later.
        name, _, argument = command.partition(b" ")
        if name == CTL_FNF:
            total = int(argument)
            if self.fnf >= total:
                return create_future(Payload(b"%d" % self.fnf))
            self.fnf_target = total
            self.fnf_future = asyncio.get_running_loop().create_future()
            return self.fnf_future
        if name == CTL_IDLE:
            if not self.holding:
                return create_future(Payload(b"0"))
            self.idle_future = asyncio.get_running_loop().create_future()
            return self.idle_future
        if name == CTL_STREAMS:
            # This request is registered only after its handler returns, so it is not counted.
            return create_future(Payload(b"%d" % len(self.servers[-1]._stream_control._streams)))
        if name == CTL_RSS:
            return create_future(Payload(b"%d" % rss_bytes()))
        raise BenchError(f"unknown control command {command!r}")


class HoldPublisher(Publisher, Subscription):  # type: ignore[misc]
    """One item, then the stream stays open until the requester cancels it."""

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._subscriber: Any = None
        self._sent = False
        self._ended = False
        state.holding += 1

    def subscribe(self, subscriber: Any) -> None:
        self._subscriber = subscriber
        subscriber.on_subscribe(self)

    def request(self, n: int) -> None:
        if not self._sent:
            self._sent = True
            self._subscriber.on_next(Payload(DATA16), False)

    def cancel(self) -> None:
        if not self._ended:
            self._ended = True
            self._state.hold_ended()


class Handler(BaseRequestHandler):  # type: ignore[misc]
    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def request_response(self, payload: Payload) -> Any:
        if payload.metadata:
            return self.state.control(payload.data)
        return create_future(payload)

    async def request_fire_and_forget(self, payload: Payload) -> None:
        state = self.state
        state.fnf += 1
        if state.fnf == state.fnf_target and state.fnf_future is not None:
            state.fnf_future.set_result(Payload(b"%d" % state.fnf))

    async def request_stream(self, payload: Payload) -> Any:
        if payload.data == HOLD:
            return HoldPublisher(self.state)
        count = int(payload.data)
        item = Payload(DATA16)
        if self.state.variant == "minimal Publisher":
            return CountPublisher(count, item)

        def generator() -> Any:
            last = count - 1
            for index in range(count):
                yield item, index == last

        return StreamFromGenerator(generator)

    async def request_channel(self, payload: Payload) -> Any:
        channel = EchoChannel(payload)
        return channel, channel


@asynccontextmanager
async def open_server(transport: str, state: ServerState) -> AsyncIterator[int]:
    """Serve on an ephemeral loopback port (yielded) until the block ends."""
    if transport == "tcp":

        async def on_connect(reader: Any, writer: Any) -> None:
            state.servers.append(
                RSocketServer(
                    TransportTCP(reader, writer),
                    handler_factory=lambda: Handler(state),
                    data_encoding=OCTET,
                    metadata_encoding=OCTET,
                )
            )

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)

        async def teardown() -> None:
            for connection in state.servers:
                await connection.close()
            server.close()
            await server.wait_closed()

        port = server.sockets[0].getsockname()[1]
    else:
        from aiohttp import web
        from rsocket.transports.aiohttp_websocket import websocket_handler_factory

        app = web.Application()
        app.router.add_get(
            "/",
            websocket_handler_factory(
                on_server_create=state.servers.append,
                handler_factory=lambda: Handler(state),
                data_encoding=OCTET,
                metadata_encoding=OCTET,
            ),
        )
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]

        async def teardown() -> None:
            for connection in state.servers:
                await connection.close()
            await runner.cleanup()

    try:
        yield port
    finally:
        with contextlib.suppress(Exception):  # best effort: the result is already decided
            await asyncio.wait_for(teardown(), TEARDOWN_TIMEOUT_S)


@asynccontextmanager
async def open_client(transport: str, port: int) -> AsyncIterator[Any]:
    options: dict[str, Any] = {
        "handler_factory": BaseRequestHandler,
        "data_encoding": OCTET,
        "metadata_encoding": OCTET,
        "keep_alive_period": timedelta(seconds=20),
        "max_lifetime_period": timedelta(seconds=90),
    }
    if transport == "tcp":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = RSocketClient(single_transport_provider(TransportTCP(reader, writer)), **options)
        async with client:
            yield client
    else:
        import aiohttp
        from rsocket.transports.aiohttp_websocket import TransportAioHttpClient

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"ws://127.0.0.1:{port}/", max_msg_size=0) as websocket,
        ):
            client = RSocketClient(
                single_transport_provider(TransportAioHttpClient(websocket=websocket)), **options
            )
            async with client:
                yield client


def serve(backend: str, command: Command, inbox: Inbox, announce: Callable[[int], None]) -> None:
    async def main() -> None:
        async with open_server(command["transport"], ServerState(command["variant"])) as port:
            announce(port)
            await wait_for_stop(inbox, asyncio.sleep)

    run_asyncio(main, backend)


# ==================================================================================================
# Client runners
# ==================================================================================================


class TheirSession(Session):
    def control_payload(self, command: bytes) -> Payload:
        return Payload(command, CONTROL)


async def wait_counted(subscriber: CountingSubscriber, t0: float, count: int, what: str) -> float:
    await subscriber.done.wait()
    elapsed = time.perf_counter() - t0
    if subscriber.error is not None:
        raise BenchError(f"{what} failed: {subscriber.error!r}")
    check_items(subscriber.count, subscriber.bad, count, what)
    return elapsed


async def run_stream(session: Session, count: int, credit: int | None) -> float:
    subscriber = CountingSubscriber(None if credit is None else credit // 2)
    t0 = time.perf_counter()
    session.requester.request_stream(Payload(b"%d" % count)).initial_request_n(
        MAX_REQUEST_N if credit is None else credit
    ).subscribe(subscriber)
    return await wait_counted(subscriber, t0, count, "stream items")


async def run_channel(session: Session, count: int) -> float:
    payload = Payload(DATA16)
    subscriber = CountingSubscriber(STREAM_CREDIT // 2)
    source = CountPublisher(count - 1, payload)  # the first element travels in REQUEST_CHANNEL
    t0 = time.perf_counter()
    session.requester.request_channel(payload, publisher=source).initial_request_n(STREAM_CREDIT).subscribe(
        subscriber
    )
    return await wait_counted(subscriber, t0, count, "channel echoes")


class HoldSubscriber(Subscriber):  # type: ignore[misc]
    """Takes the one item of a held stream and keeps its subscription for cancelling."""

    def __init__(self, held: HeldStreams) -> None:
        self.held = held
        self.subscription: Any = None

    def on_subscribe(self, subscription: Any) -> None:
        self.subscription = subscription

    def on_next(self, value: Any, is_complete: bool = False) -> None:
        self.held.opened(value, is_complete)

    def on_error(self, exception: Exception) -> None:
        self.held.fail(exception)

    def on_complete(self) -> None:
        self.held.fail(BenchError("a held stream completed"))


class HeldStreams:
    """Streams of one item each (initial request-n 1); closing cancels every subscription."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.count = 0
        self.received = 0
        self.bad = 0
        self.error: BaseException | None = None
        self.all_open = asyncio.Event()
        self.subscribers: list[HoldSubscriber] = []

    def opened(self, value: Any, is_complete: bool) -> None:
        self.received += 1
        self.bad += value.data is None or len(value.data) != 16 or is_complete
        if self.received == self.count:
            self.all_open.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.all_open.set()

    async def open_all(self, count: int) -> int:
        self.count = count
        hold = Payload(HOLD)
        self.subscribers = [HoldSubscriber(self) for _ in range(count)]
        for subscriber in self.subscribers:
            self.client.request_stream(hold).initial_request_n(1).subscribe(subscriber)
        await self.all_open.wait()
        if self.error is not None:
            raise BenchError(f"a held stream failed: {self.error!r}")
        return self.bad

    async def close_all(self) -> None:
        for subscriber in self.subscribers:
            if subscriber.subscription is not None:
                subscriber.subscription.cancel()

    def live(self) -> int:
        return len(self.client._stream_control._streams)


def runner(bench: str) -> Runner:
    return pick_runner(
        bench,
        Payload,
        {
            "stream_unbounded": lambda session, count: run_stream(session, count, None),
            "stream_256": lambda session, count: run_stream(session, count, STREAM_CREDIT),
            "channel": run_channel,
            "fnf": lambda session, count: run_fnf(
                session, count, session.requester.fire_and_forget, Payload(DATA16)
            ),
            "streams_10k": lambda session, count: run_hold(session, HeldStreams(session.requester), count),
        },
    )


def measure(backend: str, command: Command) -> Result:
    run = runner(command["bench"])
    transport: str = command["transport"]

    async def body() -> Result:
        async with AsyncExitStack() as stack:
            port = command["port"]
            if port is None:
                state = ServerState(command["variant"])
                port = await stack.enter_async_context(open_server(transport, state))
            client = await stack.enter_async_context(open_client(transport, port))
            session = TheirSession(client, server_in_process=command["port"] is None)
            await run(session, command["warmup"])
            gc.collect()
            return await run(session, command["n"])

    async def main() -> Result:
        try:
            return await asyncio.wait_for(body(), command["timeout"])
        except asyncio.TimeoutError:
            raise TimeoutError from None

    return run_asyncio(main, backend)
