"""Resumption interop with rsocket-js 1.0.0-alpha.3 over TCP, through a proxy that cuts connections.

The peers are ``tests/interop/js/v1/resume_server.js`` and ``resume_client.js`` (installed with
``npm ci --prefix tests/interop/js/v1``; without them these tests fail, they never skip). The
proxy is :class:`tests.interop.cutting_proxy.CuttingProxy`; its own tests come first.

* js client <-> proxy <-> js server: the peers and the proxy alone, independent of our code.
* our client (``connect_tcp(resume=...)``) <-> proxy <-> js server.
* js client <-> proxy <-> our server (``serve_tcp(resume=...)``).

Cuts are made deterministic by ``cut_after_bytes``: a connection is cut once that many bytes went
from the server to the client over it, so every cut falls in the middle of the stream (and
usually in the middle of a frame), after the RESUME_OK of a resumed connection went through. The
js client is never cut before RESUME_OK reaches it: alpha.3 never retries such a connection.
Each stream item must arrive exactly once and in order; each fire-and-forget must reach the
responder exactly once. Everything runs on asyncio and on trio.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from subprocess import PIPE
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from anyio_rsocket import (
    Backoff,
    Payload,
    RejectedResumeError,
    RequestHandler,
    Resume,
    RSocket,
    connect_tcp,
    serve_tcp,
)

from .interop.cutting_proxy import CuttingProxy
from .interop.peer_process import stop_peer

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

JS = Path(__file__).parent / "interop" / "js" / "v1"
VERSION = "1.0.0-alpha.3"
INSTALL_HINT = "run: npm ci --prefix tests/interop/js/v1"

#: Seconds allowed for a Node peer to start and print its port.
STARTUP_TIMEOUT = 15
#: Per-test budget for the interactions themselves (cuts and resumptions included).
TEST_TIMEOUT = 20
#: Items of the long stream, and server -> client bytes after which each cut connection is cut
#: (a stream item is a PAYLOAD frame of 10 to 13 bytes on the wire).
STREAM_COUNT = 2000
CUT_AFTER = 3000
#: The js server keeps a lost session this long (ms) for a RESUME.
SESSION_TIMEOUT_MS = 30_000


def resume_policy() -> Resume:
    return Resume(session_duration=60.0, store_size=1 << 20, retry=Backoff(initial=0.05, maximum=1.0))


# --- the proxy on its own -----------------------------------------------------------------------


@asynccontextmanager
async def tcp_server(handler: Any) -> AsyncIterator[int]:
    """A plain TCP server running ``handler(stream)`` per connection; yields its port."""
    async with anyio.create_task_group() as task_group:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_group.start_soon(listener.serve, handler)
        yield port
        task_group.cancel_scope.cancel()


async def echo(stream: SocketStream) -> None:
    async with stream:
        try:
            async for chunk in stream:
                await stream.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


async def receive_exactly(stream: SocketStream, size: int) -> bytes:
    return await BufferedByteReceiveStream(stream).receive_exactly(size)


async def receive_all(stream: SocketStream) -> bytes:
    """Everything until the connection ends (EOF or reset)."""
    data = bytearray()
    try:
        async for chunk in stream:
            data += chunk
    except anyio.BrokenResourceError:
        pass
    return bytes(data)


async def test_proxy_relays_both_ways() -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with tcp_server(echo) as port, CuttingProxy("127.0.0.1", port) as proxy:
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                for message in (b"hello", b"x" * 100_000):
                    await stream.send(message)
                    assert await receive_exactly(stream, len(message)) == message
            assert proxy.connections == 1
            assert proxy.bytes_to_server == proxy.bytes_to_client == 100_005
            assert proxy.cuts == 0


async def test_proxy_cut_closes_both_sides_and_keeps_listening() -> None:
    upstream_ended = anyio.Event()

    async def hold(stream: SocketStream) -> None:
        await stream.send(b"hi")
        await receive_all(stream)  # until the proxy cuts the upstream side
        upstream_ended.set()

    with anyio.fail_after(TEST_TIMEOUT):
        async with tcp_server(hold) as port, CuttingProxy("127.0.0.1", port) as proxy:
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                assert await receive_exactly(stream, 2) == b"hi"
                await proxy.cut()
                assert proxy.cuts == 1
                assert await receive_all(stream) == b""
                await upstream_ended.wait()
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                assert await receive_exactly(stream, 2) == b"hi"
            assert proxy.connections == 2


async def test_proxy_cuts_after_bytes() -> None:
    """The first ``auto_cuts`` connections end after exactly ``cut_after_bytes`` bytes."""
    payload = bytes(range(256)) * 40

    async def blast(stream: SocketStream) -> None:
        async with stream:
            try:
                await stream.send(payload)
                await receive_all(stream)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            tcp_server(blast) as port,
            CuttingProxy("127.0.0.1", port, cut_after_bytes=1000, auto_cuts=2) as proxy,
        ):
            for _ in range(2):
                async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                    assert await receive_all(stream) == payload[:1000]
            await proxy.wait_cuts(2)
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                assert await receive_exactly(stream, len(payload)) == payload
            assert (proxy.connections, proxy.cuts, proxy.auto_cuts_started) == (3, 2, 2)


async def test_proxy_down_refuses_then_listens_again() -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with tcp_server(echo) as port, CuttingProxy("127.0.0.1", port) as proxy:
            stream = await anyio.connect_tcp("127.0.0.1", proxy.port)
            async with proxy.down():
                assert proxy.cuts == 1
                assert await receive_all(stream) == b""
                with pytest.raises(OSError):
                    await anyio.connect_tcp("127.0.0.1", proxy.port)
            await stream.aclose()
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                await stream.send(b"back")
                assert await receive_exactly(stream, 4) == b"back"
            assert proxy.connections == 2


async def test_proxy_retarget() -> None:
    async def greet(stream: SocketStream) -> None:
        async with stream:
            await stream.send(b"second")

    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            tcp_server(echo) as first,
            tcp_server(greet) as second,
            CuttingProxy("127.0.0.1", first) as proxy,
        ):
            proxy.target_port = second
            async with await anyio.connect_tcp("127.0.0.1", proxy.port) as stream:
                assert await receive_all(stream) == b"second"


# --- the Node peers -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with the v1 peers installed at the pinned version."""
    executable = shutil.which("node")
    if executable is None:
        pytest.fail(f"node is not on PATH: rsocket-js interop needs Node.js 20+ and npm; {INSTALL_HINT}")
    package = JS / "node_modules" / "rsocket-core" / "package.json"
    if not package.is_file():
        pytest.fail(f"rsocket-js peers are not installed ({package} is missing); {INSTALL_HINT}")
    installed = json.loads(package.read_text())["version"]
    if installed != VERSION:
        pytest.fail(f"rsocket-core {installed} installed, {VERSION} pinned; {INSTALL_HINT}")
    return executable


@asynccontextmanager
async def js_resume_server(node: str, session_timeout_ms: int = SESSION_TIMEOUT_MS) -> AsyncIterator[int]:
    """Run ``resume_server.js``; yield its port. Its stderr is inherited (pytest shows it)."""
    command = [node, str(JS / "resume_server.js"), "--session-timeout", str(session_timeout_ms)]
    process = await anyio.open_process(command, stdin=PIPE, stdout=PIPE, stderr=None)
    try:
        assert process.stdout is not None
        with anyio.fail_after(STARTUP_TIMEOUT):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 100)
        keyword, _, port = line.decode("ascii").partition(" ")
        assert keyword == "PORT", f"unexpected first line from resume_server.js: {line!r}"
        yield int(port)
        assert process.returncode is None, f"resume_server.js died (exit code {process.returncode})"
    finally:
        await stop_peer(process)


async def run_js_client(node: str, port: int, *, count: int = STREAM_COUNT, fnf: int = 3) -> dict[str, Any]:
    """Run ``resume_client.js`` against ``port``; check its items; return its summary line."""
    command = [node, str(JS / "resume_client.js"), "--port", str(port), "--count", str(count)]
    command += ["--fnf", str(fnf), "--timeout", str(TEST_TIMEOUT)]
    result = await anyio.run_process(command, check=False, stderr=None)
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert lines, f"the js client printed nothing (exit code {result.returncode})"
    *items, summary = lines
    assert summary["step"] == "done", summary
    assert summary["error"] is None, summary
    assert result.returncode == 0
    assert [item["data"] for item in items] == [str(index) for index in range(count)]
    assert summary["items"] == count
    assert not summary["overflow"], "more items arrived than the client requested"
    assert summary["echo"] == "echo:hello"
    return dict(summary)


def expected_fnf_log(fnf: int = 3) -> list[str]:
    return [f"before-{index}" for index in range(fnf)] + [f"after-{index}" for index in range(fnf)]


CUTS = pytest.mark.parametrize("cuts", [1, 3], ids=["one-cut", "three-cuts"])


# --- js client <-> proxy <-> js server: the peers and the proxy alone ----------------------------


@CUTS
async def test_js_client_js_server_through_cuts(node: str, cuts: int) -> None:
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with (
            js_resume_server(node) as port,
            CuttingProxy("127.0.0.1", port, cut_after_bytes=CUT_AFTER, auto_cuts=cuts) as proxy,
        ):
            summary = await run_js_client(node, proxy.port)
            assert summary["fnf_log"] == expected_fnf_log()
            assert (proxy.cuts, proxy.connections) == (cuts, cuts + 1)
            assert summary["reconnects"] == cuts


# --- our client <-> proxy <-> js server ---------------------------------------------------------


async def ask_json(rs: RSocket, question: bytes) -> Any:
    return json.loads((await rs.request_response(Payload(question))).data)


@CUTS
async def test_our_client_stream_survives_cuts(node: str, cuts: int) -> None:
    """Every item once and in order; fire-and-forget around the cuts reaches the js server once."""
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with (
            js_resume_server(node) as port,
            CuttingProxy("127.0.0.1", port, cut_after_bytes=CUT_AFTER, auto_cuts=cuts) as proxy,
            connect_tcp("127.0.0.1", proxy.port, resume=resume_policy()) as rs,
        ):
            for index in range(3):
                await rs.fire_and_forget(Payload(f"before-{index}".encode()))
            async with rs.request_stream(Payload(f"count {STREAM_COUNT}".encode())) as stream:
                items = [item.data async for item in stream]
            assert items == [str(index).encode() for index in range(STREAM_COUNT)]
            for index in range(3):
                await rs.fire_and_forget(Payload(f"after-{index}".encode()))
            assert await ask_json(rs, b"fnf-log") == expected_fnf_log()
            assert (proxy.cuts, proxy.connections) == (cuts, cuts + 1)
            assert await rs.request_response(Payload(b"still")) == Payload(b"echo:still")


async def test_our_client_request_while_down_completes_after_resume(node: str) -> None:
    """A request-response and a fire-and-forget issued while the proxy refuses connections."""
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with (
            js_resume_server(node) as port,
            CuttingProxy("127.0.0.1", port) as proxy,
            connect_tcp("127.0.0.1", proxy.port, resume=resume_policy()) as rs,
        ):
            assert await rs.request_response(Payload(b"first")) == Payload(b"echo:first")
            replies: list[Payload] = []

            async def ask_during() -> None:
                replies.append(await rs.request_response(Payload(b"during")))

            async with anyio.create_task_group() as task_group:
                async with proxy.down():
                    task_group.start_soon(ask_during)
                    await rs.fire_and_forget(Payload(b"fnf-during"))
                    await anyio.wait_all_tasks_blocked()  # the request went out (into the cut)
                    assert replies == []
            assert replies == [Payload(b"echo:during")]
            assert await ask_json(rs, b"fnf-log") == ["fnf-during"]
            assert proxy.connections == 2


async def test_our_client_rejected_by_server_without_the_session(node: str) -> None:
    """A js server that never saw the token answers RESUME with REJECTED_RESUME: calls fail."""
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with (
            js_resume_server(node) as first,
            js_resume_server(node) as second,
            CuttingProxy("127.0.0.1", first) as proxy,
            connect_tcp("127.0.0.1", proxy.port, resume=resume_policy()) as rs,
        ):
            assert await rs.request_response(Payload(b"first")) == Payload(b"echo:first")
            async with proxy.down():
                proxy.target_port = second
            with pytest.raises(RejectedResumeError):
                await rs.request_response(Payload(b"after"))


# --- js client <-> proxy <-> our server ---------------------------------------------------------


class ResumeContractHandler(RequestHandler):
    """Our side of ``resume_client.js`` (the contract of ``resume_server.js``)."""

    def __init__(self) -> None:
        self.fnf_log: list[str] = []

    async def request_response(self, payload: Payload) -> Payload:
        if payload.data == b"fnf-log":
            return Payload(json.dumps(self.fnf_log).encode())
        return Payload(b"echo:" + payload.data, payload.metadata)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.fnf_log.append(payload.data.decode("latin-1"))

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        keyword, _, count = payload.data.decode("latin-1").partition(" ")
        assert keyword == "count"
        for index in range(int(count)):
            yield Payload(str(index).encode())


@CUTS
async def test_js_client_against_our_resumable_server(node: str, cuts: int) -> None:
    handlers: list[ResumeContractHandler] = []

    def handler_factory(rsocket: RSocket) -> RequestHandler:
        handlers.append(ResumeContractHandler())
        return handlers[-1]

    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with anyio.create_task_group() as task_group:
            serve = partial(serve_tcp, handler_factory, "127.0.0.1", 0, resume=Resume(session_duration=30.0))
            port = await task_group.start(serve)
            async with CuttingProxy("127.0.0.1", port, cut_after_bytes=CUT_AFTER, auto_cuts=cuts) as proxy:
                summary = await run_js_client(node, proxy.port)
                assert (proxy.cuts, proxy.connections) == (cuts, cuts + 1)
            task_group.cancel_scope.cancel()
    assert summary["fnf_log"] == expected_fnf_log()
    assert summary["reconnects"] == cuts
    (handler,) = handlers  # one session, resumed: one handler
    assert handler.fnf_log == expected_fnf_log()  # exactly once each
