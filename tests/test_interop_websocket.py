"""Interop with rsocket-py's aiohttp WebSocket transport, run as a subprocess peer.

The peers are the TCP interop scripts started with ``--transport ws``: ``rsocket_py_server.py`` serves
``ws://127.0.0.1:PORT/rsocket`` with rsocket-py's aiohttp handler, ``rsocket_py_client.py`` connects
with rsocket-py's aiohttp client. The handler contract and our side of it (``ContractHandler``) are
those of ``test_interop_rsocket_py.py``. Every interaction runs in both directions, on asyncio and trio.

Checklist IDs refer to ``docs/rsocket-spec-checklist.md``; T2 (one frame per binary message, no length
prefix) applies to every test here.
"""

from __future__ import annotations

import json
import sys

import anyio
import pytest

from anyio_rsocket import (
    ApplicationError,
    ErrorCode,
    Payload,
    RejectedSetupError,
    RequestHandler,
    RSocket,
    connect_websocket,
    serve_websocket,
)
from tests.interop.peer_process import STARTUP_TIMEOUT
from tests.test_interop_rsocket_py import (
    CLIENT_SCRIPT,
    EXPECTED_CLIENT_RESULT,
    TEST_TIMEOUT,
    ContractHandler,
    rsocket_py_server,
)

pytestmark = [pytest.mark.interop, pytest.mark.anyio]


async def test_our_client_against_rsocket_py_websocket_server() -> None:
    """T2, IX1-IX5, MD1, MP1, RN1, RN2, E2, S4, S5: every interaction against rsocket-py's aiohttp server."""
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with (
            rsocket_py_server("--transport", "ws") as port,
            connect_websocket(f"ws://127.0.0.1:{port}/rsocket") as rs,
        ):
            # request-response: echo with and without metadata, then an error that ends one stream only
            assert await rs.request_response(Payload(b"hello", b"meta")) == Payload(b"echo:hello", b"meta")
            assert (await rs.request_response(Payload(b"plain"))).data == b"echo:plain"
            with pytest.raises(ApplicationError) as exc_info:
                await rs.request_response(Payload(b"error"))
            assert (exc_info.value.message, exc_info.value.code) == ("boom", ErrorCode.APPLICATION_ERROR)

            # fire-and-forget and metadata-push: no answer, so poll the log (one round trip per poll)
            expected = [["fnf", "x"], ["push", "m"]]
            await rs.fire_and_forget(Payload(b"x"))
            await rs.metadata_push(b"m")
            while True:
                log = json.loads((await rs.request_response(Payload(b"log"))).data)
                if all(entry in log for entry in expected):
                    break
            assert log == expected

            # request-stream: automatic credit, manual credit, empty, and an error after one item
            items = [Payload(f"item-{index}".encode()) for index in range(5)]
            async with rs.request_stream(Payload(b"5"), initial_n=2) as stream:
                assert [item async for item in stream] == items
            async with rs.request_stream(Payload(b"5"), initial_n=2, auto_request=False) as stream:
                first = [await stream.receive(), await stream.receive()]
                # Frames are handled in order, so an uncredited third item would be here by now.
                assert (await rs.request_response(Payload(b"barrier"))).data == b"echo:barrier"
                assert stream.buffered == 0
                stream.request(3)
                assert first + [item async for item in stream] == items
            async with rs.request_stream(Payload(b"0"), initial_n=2) as stream:
                assert [item async for item in stream] == []
            received: list[Payload] = []
            with pytest.raises(ApplicationError, match="stream-boom"):
                async with rs.request_stream(Payload(b"error"), initial_n=2) as stream:
                    async for item in stream:
                        received.append(item)
            assert received == [Payload(b"item-0")]

            # request-channel: echoes waiting for the responder's credit, then interleaved echoes
            async with rs.request_channel(Payload(b"a"), initial_n=2) as channel:
                await channel.send(Payload(b"b"))
                await channel.send(Payload(b"c"))
                await channel.send_eof()
                assert [item.data async for item in channel] == [b"echo:a", b"echo:b", b"echo:c"]
            async with rs.request_channel(Payload(b"0"), initial_n=1) as channel:
                echoes: list[bytes] = []
                for index in range(1, 5):
                    await channel.send(Payload(str(index).encode()))
                    echoes.append((await channel.receive()).data)
                await channel.send_eof()
                echoes.extend([item.data async for item in channel])
            assert echoes == [f"echo:{index}".encode() for index in range(5)]

            assert (await rs.request_response(Payload(b"still-up"))).data == b"echo:still-up"


async def test_rejected_setup_over_websocket() -> None:
    """T2, S3, S4: rsocket-py's REJECTED_SETUP over WebSocket surfaces from connect_websocket itself."""
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with rsocket_py_server("--transport", "ws", "--reject-setup") as port:
            with pytest.raises(RejectedSetupError) as exc_info:
                async with connect_websocket(f"ws://127.0.0.1:{port}/rsocket"):
                    pytest.fail("connect_websocket accepted a rejected SETUP")
    assert (exc_info.value.message, exc_info.value.code) == ("go away", ErrorCode.REJECTED_SETUP)


async def test_rsocket_py_websocket_client_against_our_server() -> None:
    """T2, S1, S2, S4, IX1, IX3, MP1, IX4, RN1, IX5, E2: rsocket-py's aiohttp client, every interaction."""
    log: list[list[str]] = []
    connections: list[RSocket] = []

    def handler_factory(rsocket: RSocket) -> RequestHandler:
        connections.append(rsocket)
        return ContractHandler(log)

    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(serve_websocket, handler_factory, "127.0.0.1", 0)
            result = await anyio.run_process(
                [sys.executable, str(CLIENT_SCRIPT), "--transport", "ws", "--port", str(port)],
                check=False,
            )
            task_group.cancel_scope.cancel()
    assert result.returncode == 0, f"rsocket-py client failed:\n{result.stderr.decode(errors='replace')}"
    outcome = json.loads(result.stdout)
    # Our server runs each fire-and-forget and metadata-push in its own task, so when both arrive in
    # one read their relative order is up to the scheduler (trio shuffles): compare them as a set.
    assert sorted(outcome.pop("log")) == sorted(EXPECTED_CLIENT_RESULT["log"])
    assert sorted(log) == sorted(EXPECTED_CLIENT_RESULT["log"])
    assert outcome == {key: value for key, value in EXPECTED_CLIENT_RESULT.items() if key != "log"}
    assert len(connections) == 1
    setup = connections[0].setup
    assert (setup.data_mime_type, setup.metadata_mime_type) == ("application/octet-stream",) * 2
    assert (setup.keepalive_interval, setup.max_lifetime) == (20.0, 90.0)
