"""Several processes on one port: ``serve_tcp(reuse_port=True)``, ``serve_websocket(reuse_port=True)``
and ``anyio-rsocket serve --workers N`` (which runs on it), on asyncio and trio; and the smoke run of
the ``pool_scaling`` benchmark row.

The kernel, not this library, spreads connections over the sockets of a ``SO_REUSEPORT`` group (on
Linux, by a hash of the connection's addresses and ports), so "both servers got connections" is
checked with many connections from distinct source ports: see :data:`CONNECTIONS`.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from anyio_rsocket import Payload, RequestHandler, RSocket, connect_tcp, serve_tcp
from anyio_rsocket.extensions import composite, route
from anyio_rsocket.peer.listener import create_listener, reuse_port_supported
from anyio_rsocket.websocket import connect_websocket, serve_websocket

from .test_cli import COMMAND, read_line, stop

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30
#: Connections opened against two servers sharing a port. Linux picks a socket of the group by a
#: hash of the connection's 4-tuple; each connection has its own source port, so each lands on one
#: of the two servers with probability about 1/2, independently. All of them land on the same server
#: with probability 2 * 0.5**64 = 1.1e-19: that is the chance of a false failure.
CONNECTIONS = 64

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="only Linux (and DragonFly) balance connections over a SO_REUSEPORT group",
)
needs_reuse_port = pytest.mark.skipif(not reuse_port_supported(), reason="no SO_REUSEPORT here")


class Counting(RequestHandler):
    def __init__(self, name: str) -> None:
        self.name = name

    async def request_response(self, payload: Payload) -> Payload:
        return Payload(self.name.encode())


@asynccontextmanager
async def two_servers(
    serve: Callable[..., Coroutine[Any, Any, None]], **options: Any
) -> AsyncIterator[tuple[int, dict[str, int]]]:
    """Two servers on one port (both with ``options``); yields the port and the SETUP count of each."""
    served = {"a": 0, "b": 0}

    def factory(name: str) -> Callable[[RSocket], Counting]:
        def make(rsocket: RSocket) -> Counting:
            served[name] += 1
            return Counting(name)

        return make

    async with anyio.create_task_group() as task_group:
        port = await task_group.start(functools.partial(serve, factory("a"), "127.0.0.1", 0, **options))
        await task_group.start(functools.partial(serve, factory("b"), "127.0.0.1", port, **options))
        yield port, served
        task_group.cancel_scope.cancel()


@linux_only
@needs_reuse_port
async def test_two_tcp_servers_share_a_port_with_reuse_port() -> None:
    """Both servers bind the port and both accept: over 64 connections each server set some up,
    and every connection was answered by the server that accepted it."""
    with anyio.fail_after(TIMEOUT):
        async with two_servers(serve_tcp, reuse_port=True) as (port, served):
            answers: list[bytes] = []
            for _ in range(CONNECTIONS):  # one after another: each has its own source port
                async with connect_tcp("127.0.0.1", port) as rs:
                    answers.append((await rs.request_response(Payload(b"?"))).data)
            assert served["a"] + served["b"] == CONNECTIONS
            assert served["a"] >= 1 and served["b"] >= 1, served
            assert answers.count(b"a") == served["a"]


@linux_only
@needs_reuse_port
async def test_two_websocket_servers_share_a_port_with_reuse_port() -> None:
    with anyio.fail_after(TIMEOUT):
        async with two_servers(serve_websocket, reuse_port=True) as (port, served):
            for _ in range(CONNECTIONS):
                async with connect_websocket(f"ws://127.0.0.1:{port}/") as rs:
                    await rs.request_response(Payload(b"?"))
            assert served["a"] >= 1 and served["b"] >= 1, served


@needs_reuse_port
async def test_without_reuse_port_the_second_bind_fails() -> None:
    """Either server without ``reuse_port`` cannot share the port: EADDRINUSE at start."""
    handler = Counting("x")
    with anyio.fail_after(TIMEOUT):
        for first, second in ((False, False), (True, False), (False, True)):
            async with anyio.create_task_group() as task_group:
                serve = functools.partial(serve_tcp, lambda rs: handler, "127.0.0.1")
                port = await task_group.start(functools.partial(serve, 0, reuse_port=first))
                with pytest.raises(OSError) as caught:
                    await task_group.start(functools.partial(serve, port, reuse_port=second))
                assert caught.value.errno == errno.EADDRINUSE
                task_group.cancel_scope.cancel()


async def test_reuse_port_without_so_reuseport_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the platform lacks SO_REUSEPORT the server fails at start, saying so, before binding."""
    monkeypatch.delattr(socket, "SO_REUSEPORT", raising=False)
    with anyio.fail_after(TIMEOUT), pytest.raises(OSError, match="reuse_port needs SO_REUSEPORT") as caught:
        await serve_tcp(lambda rs: Counting("x"), "127.0.0.1", 0, reuse_port=True)
    assert caught.value.errno == errno.ENOPROTOOPT
    with pytest.raises(OSError, match="SO_REUSEPORT"):
        await create_listener("127.0.0.1", 0, reuse_port=True)


# --- anyio-rsocket serve --workers N ------------------------------------------------------------------


WORKER = composite(route("worker"))


async def ask_worker(port: int) -> str:
    async with connect_tcp(
        "127.0.0.1", port, metadata_mime_type="message/x.rsocket.composite-metadata.v0"
    ) as rs:
        return (await rs.request_response(Payload(b"", WORKER))).data.decode()


@linux_only
@needs_reuse_port
async def test_serve_workers_share_one_port(anyio_backend_name: str) -> None:
    """``serve tcp://127.0.0.1:0 --echo --workers 2``: one ``listening on`` line with the port the
    first worker picked; connections are served by both workers (the ``worker`` route names the
    process); echo works; SIGTERM to the parent stops it (status 128 + 15) and both workers, which
    the parent has reaped by the time it exits: no orphan is left."""
    command = [
        *COMMAND,
        "serve",
        "tcp://127.0.0.1:0",
        "--echo",
        "--workers",
        "2",
        "--backend",
        anyio_backend_name,
    ]
    with anyio.fail_after(TIMEOUT):
        process = await anyio.open_process(command, stdout=PIPE, stderr=PIPE)
        try:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            banner = (await read_line(lines)).decode()
            assert banner.startswith("listening on tcp://127.0.0.1:")
            port = int(banner.rpartition(":")[2])
            async with connect_tcp("127.0.0.1", port) as rs:
                assert await rs.request_response(Payload(b"hi", b"md")) == Payload(b"hi", b"md")
                await rs.fire_and_forget(Payload(b"event"))
                assert await read_line(lines) == b"fnf: event"  # a worker's output, passed on
            answers = {await ask_worker(port) for _ in range(CONNECTIONS)}  # see CONNECTIONS
            workers = {answer.split(" pid ")[0] for answer in answers}
            assert workers == {"worker 1/2", "worker 2/2"}, answers
            pids = {int(answer.rpartition(" ")[2]) for answer in answers}
            assert process.pid not in pids
            process.terminate()
            assert await process.wait() == 128 + 15
            for pid in pids:
                with pytest.raises(ProcessLookupError):
                    os.kill(pid, 0)  # reaped by the parent before it exited
        finally:
            await stop(process)


@needs_reuse_port
async def test_serve_workers_stop_when_one_fails_to_start() -> None:
    """A port held by a socket without SO_REUSEPORT: the first worker cannot listen, says why, and
    the parent exits with its status (2) without printing a ``listening on`` line."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        command = [*COMMAND, "serve", f"tcp://127.0.0.1:{port}", "--echo", "--workers", "2"]
        with anyio.fail_after(TIMEOUT):
            result = await anyio.run_process(command, check=False)
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"cannot listen on" in result.stderr and b"worker 1 exited with status 2" in result.stderr


@needs_reuse_port
async def test_a_worker_stops_when_its_parent_is_gone() -> None:
    """The orphan guard: a worker (the hidden ``--as-worker`` mode) exits once its stdin closes,
    which is what happens when its parent exits in any way, SIGKILL included."""
    command = [*COMMAND, "serve", "tcp://127.0.0.1:0", "--echo", "--as-worker", "1/1"]
    with anyio.fail_after(TIMEOUT):
        process = await anyio.open_process(command, stdin=PIPE, stdout=PIPE)
        try:
            assert process.stdin is not None and process.stdout is not None
            banner = (await read_line(BufferedByteReceiveStream(process.stdout))).decode()
            port = int(banner.rpartition(":")[2])
            assert (await ask_worker(port)).startswith("worker 1/1 pid ")
            await process.stdin.aclose()
            assert await process.wait() == 0
        finally:
            await stop(process)


# --- the benchmark row --------------------------------------------------------------------------------


def test_bench_pool_scaling_smoke() -> None:
    """``python -m bench --smoke --only pool_scaling`` runs the row (tiny counts) and prints its
    table; the numbers are not looked at."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", "pool_scaling"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("request-response via connect_pool")]
    assert rows, done.stdout
    assert "FAILED" not in done.stdout
