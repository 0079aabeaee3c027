"""Interop with rsocket-py (the ``rsocket`` package), run as a subprocess over TCP.

rsocket-py is asyncio-only, so both peers live in ``tests/interop/peers`` and are started as
separate processes: ``rsocket_py_server.py`` answers our client, ``rsocket_py_client.py`` drives our
server. Both follow the handler contract described in ``rsocket_py_server.py``'s docstring; the
:class:`ContractHandler` below is our side of that contract. Every test runs on asyncio and on trio.

Checklist IDs refer to ``docs/rsocket-spec-checklist.md``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from anyio_rsocket import (
    ApplicationError,
    ErrorCode,
    Payload,
    RejectedSetupError,
    RequestHandler,
    RSocket,
    connect_tcp,
    serve_tcp,
)

from .interop.peer_process import PEERS, STARTUP_TIMEOUT, peer_server

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

SERVER_SCRIPT = PEERS / "rsocket_py_server.py"
CLIENT_SCRIPT = PEERS / "rsocket_py_client.py"

#: Per-test budget for the interactions themselves.
TEST_TIMEOUT = 10


# --- the rsocket-py server as a subprocess ------------------------------------------------------


def rsocket_py_server(*options: str) -> AbstractAsyncContextManager[int]:
    """Run ``rsocket_py_server.py`` with ``options``; yield the port it listens on."""
    return peer_server("rsocket_py_server.py", *options)


@pytest.fixture
async def rsocket_py_port() -> AsyncIterator[int]:
    """A fresh rsocket-py server (empty fnf/push log) for one test; yields its TCP port."""
    async with rsocket_py_server() as port:
        yield port


# --- our client against the rsocket-py server -----------------------------------------------------


async def test_request_response_echo_and_error(rsocket_py_port: int) -> None:
    """IX1, MD1, S4, S5: echo with and without metadata, then APPLICATION_ERROR (E2: connection survives)."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect_tcp("127.0.0.1", rsocket_py_port) as rs:
            assert await rs.request_response(Payload(b"hello", b"meta")) == Payload(b"echo:hello", b"meta")

            plain = await rs.request_response(Payload(b"plain"))
            assert plain.data == b"echo:plain"
            assert not plain.metadata  # rsocket-py cannot tell absent from empty metadata

            with pytest.raises(ApplicationError) as exc_info:
                await rs.request_response(Payload(b"error"))
            assert exc_info.value.message == "boom"
            assert str(exc_info.value) == "boom"
            assert exc_info.value.code == 0x201  # ErrorCode.APPLICATION_ERROR

            # A stream-level error ends that request only (E2).
            assert (await rs.request_response(Payload(b"again"))).data == b"echo:again"


async def test_fire_and_forget_and_metadata_push(rsocket_py_port: int) -> None:
    """IX3, MP1: fnf and metadata_push reach the server's log exactly once, in order."""
    expected = [["fnf", "x"], ["push", "m"]]
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect_tcp("127.0.0.1", rsocket_py_port) as rs:
            await rs.fire_and_forget(Payload(b"x"))
            await rs.metadata_push(b"m")
            # Neither has an acknowledgement: poll the log (each poll is one round trip) until both
            # entries are there; fail_after bounds the wait.
            while True:
                reply = await rs.request_response(Payload(b"log"))
                log = json.loads(reply.data)
                if all(entry in log for entry in expected):
                    break
            assert log == expected
            assert not reply.metadata


async def test_request_stream_credit(rsocket_py_port: int) -> None:
    """IX4, RN1, RN2, F5: five items with automatic credit, then with manual credit (2, then 3 more)."""
    expected = [Payload(f"item-{index}".encode()) for index in range(5)]
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect_tcp("127.0.0.1", rsocket_py_port) as rs:
            # Automatic credit: initial 2, topped up as items are consumed.
            async with rs.request_stream(Payload(b"5"), initial_n=2) as stream:
                items = [item async for item in stream]
            assert items == expected

            # Manual credit: the responder may send only what was granted.
            async with rs.request_stream(Payload(b"5"), initial_n=2, auto_request=False) as stream:
                first = [await stream.receive(), await stream.receive()]
                assert first == expected[:2]
                # rsocket-py handles frames strictly in order, so once a request-response sent after
                # the first two items is answered, an uncredited third item would have arrived
                # (our requester would have failed the stream with InvalidError).
                assert (await rs.request_response(Payload(b"barrier"))).data == b"echo:barrier"
                assert stream.buffered == 0
                stream.request(3)
                rest = [item async for item in stream]  # ends with the NEXT|COMPLETE of item-4
            assert first + rest == expected

            # N == 0: a bare COMPLETE, no item.
            async with rs.request_stream(Payload(b"0"), initial_n=2) as stream:
                assert [item async for item in stream] == []


async def test_request_stream_error_after_one_item(rsocket_py_port: int) -> None:
    """IX4, E2: item-0, then ERROR[APPLICATION_ERROR] "stream-boom" ends the stream only."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect_tcp("127.0.0.1", rsocket_py_port) as rs:
            items: list[Payload] = []
            with pytest.raises(ApplicationError) as exc_info:
                async with rs.request_stream(Payload(b"error"), initial_n=2) as stream:
                    async for item in stream:
                        items.append(item)
            assert items == [Payload(b"item-0")]
            assert exc_info.value.message == "stream-boom"
            assert exc_info.value.code == ErrorCode.APPLICATION_ERROR
            assert (await rs.request_response(Payload(b"still-up"))).data == b"echo:still-up"


async def test_request_channel_echo(rsocket_py_port: int) -> None:
    """IX5, RN1: a, b, c are echoed; b and c wait for the responder's REQUEST_N; both halves complete."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect_tcp("127.0.0.1", rsocket_py_port) as rs:
            async with rs.request_channel(Payload(b"a"), initial_n=2) as channel:
                await channel.send(Payload(b"b"))
                await channel.send(Payload(b"c"))
                await channel.send_eof()
                items = [item async for item in channel]
            assert [item.data for item in items] == [b"echo:a", b"echo:b", b"echo:c"]
            assert all(not item.metadata for item in items)

            # Echoes arriving while we are still sending: more elements than one credit batch.
            async with rs.request_channel(Payload(b"0"), initial_n=1) as channel:
                received: list[bytes] = []
                for index in range(1, 5):
                    await channel.send(Payload(str(index).encode()))
                    received.append((await channel.receive()).data)
                await channel.send_eof()
                received.extend([item.data async for item in channel])
            assert received == [f"echo:{index}".encode() for index in range(5)]


async def test_rejected_setup() -> None:
    """S3, S4, S10: REJECTED_SETUP during establishment surfaces from ``connect_tcp`` itself.

    rsocket-py leaves the connection open after the ERROR, so only the error (not a close) can tell
    our client that SETUP failed; the KEEPALIVE probe sent after SETUP must not be mistaken for
    acceptance either.
    """
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with rsocket_py_server("--reject-setup") as port:
            with pytest.raises(RejectedSetupError) as exc_info:
                async with connect_tcp("127.0.0.1", port):
                    pytest.fail("connect_tcp accepted a rejected SETUP")
    assert exc_info.value.message == "go away"
    assert exc_info.value.code == 0x003  # ErrorCode.REJECTED_SETUP


# --- the rsocket-py client against our server -----------------------------------------------------


class ContractHandler(RequestHandler):
    """Our implementation of the interop handler contract (see ``rsocket_py_server.py``)."""

    def __init__(self, log: list[list[str]]) -> None:
        self._log = log  # shared by every connection of the server, like the peer's

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"log":
            return Payload(json.dumps(self._log, separators=(",", ":")).encode())
        if payload.data == b"error":
            raise ApplicationError("boom")
        return Payload(b"echo:" + payload.data, payload.metadata or None)

    async def fire_and_forget(self, payload: Payload) -> None:
        self._log.append(["fnf", payload.data.decode("latin-1")])

    async def metadata_push(self, metadata: bytes) -> None:
        self._log.append(["push", metadata.decode("latin-1")])

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        if payload.data == b"error":
            yield Payload(b"item-0")
            raise ApplicationError("stream-boom")
        try:
            count = int(payload.data.decode("ascii"))
        except ValueError:
            raise ApplicationError(f"invalid stream count: {payload.data!r}") from None
        for index in range(count):
            yield Payload(f"item-{index}".encode())

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield Payload(b"echo:" + payload.data)
        async for item in inbound:
            yield Payload(b"echo:" + item.data)


EXPECTED_CLIENT_RESULT: dict[str, Any] = {
    "rr": {"data": "echo:hello", "metadata": "meta"},
    "rr_error": "boom",
    "log": [["fnf", "x"], ["push", "m"]],
    "stream": ["item-0", "item-1", "item-2", "item-3", "item-4"],
    "stream_error": {"items": ["item-0"], "error": "stream-boom"},
    "channel": ["echo:a", "echo:b", "echo:c"],
}


async def test_rsocket_py_client_against_our_server() -> None:
    """S1, S2, S4, K1, IX1, IX3, MP1, IX4, RN1, IX5, E2: rsocket-py's client runs every interaction."""
    log: list[list[str]] = []
    connections: list[RSocket] = []

    def handler_factory(rsocket: RSocket) -> RequestHandler:
        connections.append(rsocket)
        return ContractHandler(log)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(serve_tcp, handler_factory, "127.0.0.1", 0)
            result = await anyio.run_process(
                [sys.executable, str(CLIENT_SCRIPT), "--port", str(port), "--timeout", "20"],
                check=False,
            )
            task_group.cancel_scope.cancel()
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"rsocket-py client failed:\n{stderr}"
    # Our server runs each request on its own worker task, so fire-and-forget and metadata-push,
    # which arrive back to back with no reply, may be handled in either order (trio shuffles).
    report = json.loads(result.stdout)
    report["log"] = sorted(report["log"])
    assert report == EXPECTED_CLIENT_RESULT
    assert sorted(log) == [["fnf", "x"], ["push", "m"]]
    assert len(connections) == 1
    setup = connections[0].setup
    assert setup.data_mime_type == "application/octet-stream"
    assert setup.metadata_mime_type == "application/octet-stream"
    assert (setup.keepalive_interval, setup.max_lifetime) == (20.0, 90.0)


async def test_fragmentation_both_ways_FG1_FG4() -> None:
    """FG1-FG6: we fragment requests at 100 bytes, rsocket-py fragments its replies at 200 bytes.

    rsocket-py 0.4.20 fragments request-response replies correctly, but for stream and channel
    items it sends only the first fragment and then COMPLETE, losing the rest; so its channel
    replies are left unfragmented here while ours are fragmented.
    """
    big = bytes(range(256)) * 20
    async with rsocket_py_server("--fragment-size", "200") as port:
        with anyio.fail_after(15):
            async with connect_tcp("127.0.0.1", port, fragment_size=100) as rs:
                reply = await rs.request_response(Payload(big, b"m" * 300))
                assert reply.data == b"echo:" + big
                assert reply.metadata == b"m" * 300
    async with rsocket_py_server("--fragment-size", "4000") as port:
        with anyio.fail_after(15):
            async with connect_tcp("127.0.0.1", port, fragment_size=100) as rs:
                async with rs.request_channel(Payload(b"a" * 1000)) as channel:
                    await channel.send(Payload(b"b" * 700))
                    await channel.send_eof()
                    echoes = [item.data async for item in channel]
    assert echoes == [b"echo:" + b"a" * 1000, b"echo:" + b"b" * 700]
