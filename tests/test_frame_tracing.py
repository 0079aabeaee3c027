"""The frame trace: the ``anyio_rsocket.frames`` logger (library) and ``--debug`` (CLI, every scheme)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import pytest

from anyio_rsocket import Payload, RequestHandler, RSocket, connect_tcp, memory_transport_pair, serve_tcp
from anyio_rsocket import cli as cli_module
from anyio_rsocket.transports.tracing import TracingTransport, traced

pytestmark = pytest.mark.anyio

TIMEOUT = 10
FRAMES = logging.getLogger("anyio_rsocket.frames")


class Echo(RequestHandler):
    async def request_response(self, payload: Payload) -> Payload:
        return payload


def echo(rsocket: RSocket) -> Echo:
    return Echo()


class Lines(logging.Handler):
    """Keeps every message logged through it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def frames_logged(level: int) -> Iterator[list[str]]:
    """The frame logger at ``level`` for the block; yields what it logged."""
    handler = Lines()
    saved = FRAMES.level
    FRAMES.addHandler(handler)
    FRAMES.setLevel(level)
    try:
        yield handler.lines
    finally:
        FRAMES.removeHandler(handler)
        FRAMES.setLevel(saved)


@asynccontextmanager
async def connection(scheme: str) -> AsyncIterator[RSocket]:
    """A client connected to an echo server over loopback ``scheme`` (tcp or ws)."""
    async with anyio.create_task_group() as task_group:
        if scheme == "tcp":
            port = await task_group.start(functools.partial(serve_tcp, echo, "127.0.0.1", 0))
            async with connect_tcp("127.0.0.1", port) as rs:
                yield rs
        else:
            from anyio_rsocket import connect_websocket, serve_websocket

            port = await task_group.start(
                functools.partial(serve_websocket, lambda rs: Echo(), "127.0.0.1", 0)
            )
            async with connect_websocket(f"ws://127.0.0.1:{port}/") as rs:
                yield rs
        task_group.cancel_scope.cancel()


def test_traced_wraps_only_while_the_logger_is_enabled() -> None:
    transport, _ = memory_transport_pair()
    with frames_logged(logging.INFO):
        assert traced(transport) is transport
    with frames_logged(logging.DEBUG):
        wrapped = traced(transport)
        assert isinstance(wrapped, TracingTransport) and wrapped.inner is transport


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_the_logger_traces_every_frame_of_client_and_server(scheme: str) -> None:
    with frames_logged(logging.DEBUG) as lines, anyio.fail_after(TIMEOUT):
        async with connection(scheme) as rs:
            assert await rs.request_response(Payload(b"ping", b"md")) == Payload(b"ping", b"md")
    # Each frame once per side: sent by one ("->"), received by the other ("<-").
    for frame in ("Setup(", "RequestResponse(stream_id=1, data=b'ping', metadata=b'md')"):
        assert sum(line.startswith(f"-> {frame}") for line in lines) == 1, lines  # the client sent it
        assert sum(line.startswith(f"<- {frame}") for line in lines) == 1, lines  # the server got it
    answer = "Payload(stream_id=1, data=b'ping', metadata=b'md'"
    assert any(line.startswith(f"-> {answer}") for line in lines)  # the server sent it
    assert any(line.startswith(f"<- {answer}") for line in lines)  # the client got it
    assert all(line.startswith(("-> ", "<- ")) for line in lines)


async def test_nothing_is_logged_when_the_logger_is_off() -> None:
    with frames_logged(logging.INFO) as lines, anyio.fail_after(TIMEOUT):
        async with connection("tcp") as rs:
            await rs.request_response(Payload(b"ping"))
    assert lines == []


async def test_cli_debug_traces_a_websocket_connection(capsys: pytest.CaptureFixture[str]) -> None:
    """``--debug`` covers ws:// (the CLI turns the frame logger on for the command)."""
    from anyio_rsocket import serve_websocket

    def main(url: str) -> int:
        return cli_module.main(["request", url, "-d", "hello", "--debug"])

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(
                functools.partial(serve_websocket, lambda rs: Echo(), "127.0.0.1", 0)
            )
            capsys.readouterr()
            status = await anyio.to_thread.run_sync(main, f"ws://127.0.0.1:{port}/", abandon_on_cancel=True)
            task_group.cancel_scope.cancel()
    captured = capsys.readouterr()
    assert (status, captured.out) == (0, "hello\n")
    assert "-> Setup(" in captured.err and "-> RequestResponse(stream_id=1, data=b'hello'" in captured.err
    assert "<- Payload(stream_id=1, data=b'hello'" in captured.err
    assert "covers tcp://" not in captured.err
    assert FRAMES.level == logging.NOTSET and not FRAMES.handlers  # put back as it was
