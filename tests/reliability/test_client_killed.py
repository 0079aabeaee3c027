"""A client process is SIGKILLed while our server answers its streams and requests.

The client (``client_process.py``) holds streams open, half of them with the responder generator
suspended at a ``yield`` waiting for credit, half with it blocked inside an ``await``, plus
request-responses whose handlers never return. Once the client is killed, our server must finalize
every generator (its ``finally`` runs), cancel every request handler and end the connection, over
TCP and over WebSocket.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import anyio
import pytest

from anyio_rsocket import Payload, RequestHandler, RSocket, serve_tcp, serve_websocket

from .processes import child

pytestmark = pytest.mark.anyio

STREAMS = 6  # and as many request-responses


class Tracking:
    """What the server's handlers started and finalized, with an event once everything is finalized."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.started: list[str] = []
        self.finalized: list[str] = []
        self.connections: list[RSocket] = []
        self.parked = 0  # generators blocked in an await (not at a yield)
        self.all_parked = anyio.Event()
        self.all_started = anyio.Event()
        self.all_finalized = anyio.Event()

    def start(self, name: str) -> None:
        self.started.append(name)
        if len(self.started) == self.expected:
            self.all_started.set()

    def park(self) -> None:
        self.parked += 1
        if self.parked == STREAMS // 2:
            self.all_parked.set()

    def finalize(self, name: str) -> None:
        self.finalized.append(name)
        if len(self.finalized) == self.expected:
            self.all_finalized.set()


class Handler(RequestHandler):
    def __init__(self, tracking: Tracking) -> None:
        self.tracking = tracking

    async def request_response(self, payload: Payload) -> Payload:
        name = f"rr-{len(self.tracking.started)}"
        self.tracking.start(name)
        try:
            await anyio.sleep_forever()
        finally:
            self.tracking.finalize(name)
        raise AssertionError("unreachable")

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        name = payload.data.decode()
        index = int(name.rpartition("-")[2])
        self.tracking.start(name)
        try:
            yield Payload(b"first")
            if index % 2:
                while True:  # the client grants 2: we stay suspended at the second yield
                    yield Payload(b"more")
            else:
                self.tracking.park()
                await anyio.sleep_forever()
        finally:
            self.tracking.finalize(name)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_killed_client_finalizes_every_responder(anyio_backend: str, transport: str) -> None:
    tracking = Tracking(expected=2 * STREAMS)

    def factory(rsocket: RSocket) -> Handler:
        tracking.connections.append(rsocket)
        return Handler(tracking)

    async with anyio.create_task_group() as task_group:
        serve = serve_websocket if transport == "ws" else serve_tcp
        port = await task_group.start(lambda task_status: serve(factory, task_status=task_status))
        async with child("client_process.py", anyio_backend, port, STREAMS, transport) as client:
            await client.expect_line("READY")
            (connection,) = tracking.connections
            with anyio.fail_after(5):
                await tracking.all_started.wait()
                await tracking.all_parked.wait()
            assert not tracking.finalized
            client.signal(signal.SIGKILL)
            killed_at = anyio.current_time()
            with anyio.fail_after(5):
                await tracking.all_finalized.wait()
                await connection.wait_closed()
            elapsed = anyio.current_time() - killed_at
        task_group.cancel_scope.cancel()

    assert sorted(tracking.finalized) == sorted(tracking.started)
    assert len(tracking.started) == 2 * STREAMS
    print(f"{len(tracking.finalized)} responders finalized {elapsed * 1000:.1f} ms after the kill")
