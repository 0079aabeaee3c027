"""The server process is SIGKILLed while our client has calls in flight.

The kernel closes the dead process's socket, so our client sees the connection end at once: every
pending request-response and the live stream must fail with ConnectionClosedError well within a
second, without waiting for keepalives (the client's max lifetime is left at its 90 s default). Over
WebSocket too, where the connection ends without a Close frame.
"""

from __future__ import annotations

import signal
from contextlib import AbstractAsyncContextManager

import anyio
import pytest

from anyio_rsocket import Payload, RSocket, connect_tcp, connect_websocket
from anyio_rsocket.errors import ConnectionClosedError

from .processes import server_child

pytestmark = pytest.mark.anyio

PENDING_CALLS = 5
#: Failures must reach every caller within this many seconds of the kill.
DETECTION_LIMIT = 1.0


def connect(transport: str, port: int) -> AbstractAsyncContextManager[RSocket]:
    if transport == "ws":
        return connect_websocket(f"ws://127.0.0.1:{port}/")
    return connect_tcp("127.0.0.1", port)


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_pending_calls_fail_fast_when_the_server_is_killed(anyio_backend: str, transport: str) -> None:
    failed_at: dict[str, float] = {}
    all_failed = anyio.Event()
    killed_at = 0.0

    def record(name: str) -> None:
        failed_at[name] = anyio.current_time()
        if len(failed_at) == PENDING_CALLS + 1:
            all_failed.set()

    async with server_child(anyio_backend, transport) as (server, port), connect(transport, port) as rsocket:

        async def call(name: str) -> None:
            with pytest.raises(ConnectionClosedError):
                await rsocket.request_response(Payload(b"hang"))
            record(name)

        async def consume(stream_ready: anyio.Event) -> None:
            received = 0
            with pytest.raises(ConnectionClosedError):
                async with rsocket.request_stream(Payload(b"slow"), initial_n=8) as stream:
                    async for _ in stream:
                        received += 1
                        stream_ready.set()
            record("stream")
            assert received >= 1

        async with anyio.create_task_group() as task_group:
            for index in range(PENDING_CALLS):
                task_group.start_soon(call, f"rr-{index}")
            await anyio.wait_all_tasks_blocked()  # every REQUEST_RESPONSE is queued
            stream_ready = anyio.Event()
            task_group.start_soon(consume, stream_ready)
            with anyio.fail_after(5):
                # A stream item proves the server read the requests sent before the stream.
                await stream_ready.wait()
            assert not failed_at
            server.signal(signal.SIGKILL)
            killed_at = anyio.current_time()
            with anyio.fail_after(2 * DETECTION_LIMIT):  # margin; the assertion below is the bound
                await all_failed.wait()
        assert isinstance(rsocket.close_reason, ConnectionClosedError)

    assert len(failed_at) == PENDING_CALLS + 1
    slowest = max(failed_at.values()) - killed_at
    print(f"slowest caller saw the kill after {slowest * 1000:.1f} ms")
    assert slowest < DETECTION_LIMIT, f"a caller learned of the kill only after {slowest:.3f} s"
