"""Interop with rsocket-js 1.0.0-alpha.3 and 0.0.27 (npm), run as Node subprocess peers.

The peers live in ``tests/interop/js``: ``v1/`` pins the 1.0.0-alpha.3 packages, ``v0/`` the 0.0.27
ones, each with its own ``package.json`` and lock file (the two majors share package names). Each
folder has a ``server.js`` (TCP or WebSocket; its handler contract is in ``v1/server.js``) and a
``client.js`` that runs a scripted sequence against our server and prints one JSON line per step.
Install them with ``npm ci --prefix tests/interop/js/v1`` and ``npm ci --prefix tests/interop/js/v0``;
without them these tests fail, they never skip.

Our client talks to the four js servers (two versions, TCP and WebSocket), started once per module:
their state (fire-and-forget log, stream credits, channel state) is per connection and every test
opens its own connection, so tests do not depend on each other. Each js client runs against our
server in its own test. Everything runs on asyncio and on trio.

The quirks of these peers are expected here, not worked around:

* 0.0.27's responder writes PAYLOAD frames without the M flag: response metadata is lost.
* 0.0.27's requester sets M whenever ``payload.metadata !== undefined``, so a JS payload whose
  metadata is ``null`` goes out as zero-length metadata (1.0.0-alpha.3 sends none). On receipt it
  reads zero-length metadata as ``null``: it cannot tell empty metadata from absent.
* 0.0.27 ignores C on an initial REQUEST_CHANNEL: it waits for a completion that never comes.
* 1.0.0-alpha.3 closes the connection on METADATA_PUSH; 0.0.27 receives it.
* Both close the connection on EXT (even with the IGNORE flag, on any stream) and on ERROR on
  stream 0, without answering a request that follows in the same read.
* Both close the connection silently (no ERROR) when the SETUP lifetime passes without KEEPALIVE.
* 1.0.0-alpha.3's TCP server decodes SETUP from the first TCP chunk only; our client writes SETUP
  (and the KEEPALIVE that confirms it) in one send, which every v1 TCP test relies on.
* Node 20 has no global WebSocket: both WebSocket clients get a ``ws``-based creator.
"""

from __future__ import annotations

import json
import selectors
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from anyio_rsocket import (
    ApplicationError,
    ConnectionClosedError,
    ConnectionErrorReceived,
    ErrorCode,
    Payload,
    RequestHandler,
    RSocket,
    connect_tcp,
    connect_websocket,
    serve_tcp,
    serve_websocket,
)
from anyio_rsocket.frames import (
    ErrorFrame,
    ExtFrame,
    Frame,
    PayloadFrame,
    RequestResponseFrame,
    SetupFrame,
)
from anyio_rsocket.transports.tcp import ByteStreamTransport

from .rawpeer import RawPeer

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

JS = Path(__file__).parent / "interop" / "js"
#: The rsocket-js release each peer folder pins (checked against what npm installed).
VERSIONS = {"v1": "1.0.0-alpha.3", "v0": "0.0.27"}
INSTALL_HINT = "run: npm ci --prefix tests/interop/js/v1 && npm ci --prefix tests/interop/js/v0"

#: Seconds allowed for a Node peer to start and print its port (it usually takes 0.1-0.5 s).
STARTUP_TIMEOUT = 15
#: Seconds a peer server gets to exit after its stdin is closed before it is killed.
EXIT_TIMEOUT = 5
#: Per-test budget for the interactions themselves.
TEST_TIMEOUT = 10


@dataclass(frozen=True)
class Peer:
    version: str  # "v1" (1.0.0-alpha.3) or "v0" (0.0.27)
    transport: str  # "tcp" or "ws"

    def __str__(self) -> str:
        return f"{self.version}-{self.transport}"


PEERS = [Peer(version, transport) for version in VERSIONS for transport in ("tcp", "ws")]
TCP_PEERS = [peer for peer in PEERS if peer.transport == "tcp"]


def peer_params(peers: list[Peer]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("peer", peers, ids=str)


# --- the Node peers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with both peer folders installed at their pinned versions."""
    executable = shutil.which("node")
    if executable is None:
        pytest.fail(f"node is not on PATH: rsocket-js interop needs Node.js 20+ and npm; {INSTALL_HINT}")
    for folder, version in VERSIONS.items():
        package = JS / folder / "node_modules" / "rsocket-core" / "package.json"
        if not package.is_file():
            pytest.fail(f"rsocket-js peers are not installed ({package} is missing); {INSTALL_HINT}")
        installed = json.loads(package.read_text())["version"]
        if installed != version:
            pytest.fail(f"{folder}: rsocket-core {installed} installed, {version} pinned; {INSTALL_HINT}")
    return executable


def read_port(process: subprocess.Popen[bytes], name: str) -> int:
    """Wait (bounded) for the ``PORT <n>`` line a peer server prints once it listens."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(STARTUP_TIMEOUT):
            pytest.fail(f"{name} printed no port within {STARTUP_TIMEOUT} s")
    line = process.stdout.readline()  # the peer writes the whole line at once
    keyword, _, port = line.decode("ascii", "replace").strip().partition(" ")
    if keyword != "PORT":
        pytest.fail(f"{name} did not start (exit code {process.poll()}), first line: {line!r}")
    return int(port)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Close stdin (the peer's shutdown signal), wait for exit, kill if it lingers."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    assert process.stdout is not None
    process.stdout.close()


class JsServers:
    """The four js servers of this module; :meth:`port` checks that the server is still alive."""

    def __init__(self, processes: dict[Peer, subprocess.Popen[bytes]], ports: dict[Peer, int]) -> None:
        self._processes = processes
        self._ports = ports

    def port(self, peer: Peer) -> int:
        code = self._processes[peer].poll()
        if code is not None:
            pytest.fail(f"the rsocket-js {peer} server died earlier in this module (exit code {code})")
        return self._ports[peer]


@pytest.fixture(scope="module")
def js_servers(node: str) -> Iterator[JsServers]:
    """Start every js server once for the module (in parallel, before any event loop runs).

    The peers' stderr is inherited, so pytest shows their logs with a failing test.
    """
    processes: dict[Peer, subprocess.Popen[bytes]] = {}
    try:
        for peer in PEERS:
            processes[peer] = subprocess.Popen(
                [node, str(JS / peer.version / "server.js"), "--transport", peer.transport],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        ports = {peer: read_port(process, f"js server {peer}") for peer, process in processes.items()}
        yield JsServers(processes, ports)
        for peer, process in processes.items():
            assert process.poll() is None, f"the rsocket-js {peer} server died (exit code {process.poll()})"
    finally:
        for process in processes.values():
            stop_server(process)


def connect(peer: Peer, port: int, **options: Any) -> AbstractAsyncContextManager[RSocket]:
    if peer.transport == "tcp":
        return connect_tcp("127.0.0.1", port, **options)
    return connect_websocket(f"ws://127.0.0.1:{port}/", **options)


async def ask(rs: RSocket, question: bytes) -> Any:
    """One of the js server's JSON answers ("fnf-log", "stream-credits", ...).

    Node handles a connection's frames in order and the peers' handlers run synchronously, so the
    answer reflects every frame sent before the question: no polling needed.
    """
    return json.loads((await rs.request_response(Payload(question))).data)


# --- our client against the js servers -----------------------------------------------------------


@peer_params(PEERS)
async def test_request_response(js_servers: JsServers, peer: Peer) -> None:
    """IX1, MD1, E2: echo with and without metadata; APPLICATION_ERROR ends that request only.

    0.0.27's responder loses response metadata (its PAYLOAD frames never carry M).
    """
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect(peer, js_servers.port(peer)) as rs:
            reply = await rs.request_response(Payload(b"hello", b"meta"))
            expected_metadata = b"meta" if peer.version == "v1" else None
            assert reply == Payload(b"echo:hello", expected_metadata)

            assert await rs.request_response(Payload(b"plain")) == Payload(b"echo:plain")

            with pytest.raises(ApplicationError) as exc_info:
                await rs.request_response(Payload(b"error"))
            assert exc_info.value.code == ErrorCode.APPLICATION_ERROR
            assert exc_info.value.message == "boom"

            assert await rs.request_response(Payload(b"again")) == Payload(b"echo:again")


@peer_params(PEERS)
async def test_request_stream_credit(js_servers: JsServers, peer: Peer) -> None:
    """IX4, RN1, RN2: ten items through initial_n=4, with automatic and then manual credit."""
    expected = [Payload(f"item-{index}".encode()) for index in range(10)]
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect(peer, js_servers.port(peer)) as rs:
            # Automatic credit: 4 first, topped up by REQUEST_N as items are consumed. An item
            # beyond the credit would fail the stream (our requester enforces it).
            async with rs.request_stream(Payload(b"10"), initial_n=4) as stream:
                assert [item async for item in stream] == expected
            credits = await ask(rs, b"stream-credits")
            assert credits[0] == 4
            assert len(credits) >= 3  # several REQUEST_Ns were needed
            assert sum(credits) >= 10

            # Manual credit: exactly what we grant, nothing more.
            async with rs.request_stream(Payload(b"10"), initial_n=4, auto_request=False) as stream:
                first = [await stream.receive() for _ in range(4)]
                # The peers emit synchronously when credit arrives and Node handles frames in
                # order, so once a later request is answered an uncredited fifth item would be here.
                assert await rs.request_response(Payload(b"barrier")) == Payload(b"echo:barrier")
                assert stream.buffered == 0
                stream.request(2)
                second = [await stream.receive() for _ in range(2)]
                assert await rs.request_response(Payload(b"barrier")) == Payload(b"echo:barrier")
                assert stream.buffered == 0
                stream.request(4)
                rest = [item async for item in stream]  # ends with item-9's NEXT|COMPLETE
            assert first + second + rest == expected
            assert await ask(rs, b"stream-credits") == [4, 2, 4]

            # N == 0: a bare COMPLETE.
            async with rs.request_stream(Payload(b"0"), initial_n=4) as stream:
                assert [item async for item in stream] == []


@peer_params(PEERS)
async def test_request_stream_error(js_servers: JsServers, peer: Peer) -> None:
    """IX4, E2: item-0, then ERROR[APPLICATION_ERROR] "stream-boom" ends that stream only."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect(peer, js_servers.port(peer)) as rs:
            received: list[Payload] = []
            with pytest.raises(ApplicationError) as exc_info:
                async with rs.request_stream(Payload(b"error"), initial_n=2) as stream:
                    async for item in stream:
                        received.append(item)
            assert received == [Payload(b"item-0")]
            assert exc_info.value.code == ErrorCode.APPLICATION_ERROR
            assert exc_info.value.message == "stream-boom"
            assert await rs.request_response(Payload(b"still-up")) == Payload(b"echo:still-up")


@peer_params(PEERS)
async def test_request_channel_echo(js_servers: JsServers, peer: Peer) -> None:
    """IX5, RN1: echoes within the responder's credit (2 at a time), both halves complete."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect(peer, js_servers.port(peer)) as rs:
            async with rs.request_channel(Payload(b"a"), initial_n=2) as channel:
                await channel.send(Payload(b"b"))
                await channel.send(Payload(b"c"))
                await channel.send_eof()
                assert [item.data async for item in channel] == [b"echo:a", b"echo:b", b"echo:c"]
            state = await ask(rs, b"channel-state")
            assert state == {"inbound": ["a", "b", "c"], "complete": True}

            # Echoes arriving while we still send: more elements than one credit batch each way.
            async with rs.request_channel(Payload(b"0"), initial_n=1) as channel:
                echoes: list[bytes] = []
                for index in range(1, 7):
                    await channel.send(Payload(str(index).encode()))
                    echoes.append((await channel.receive()).data)
                await channel.send_eof()
                echoes.extend([item.data async for item in channel])
            assert echoes == [f"echo:{index}".encode() for index in range(7)]


@peer_params(PEERS)
async def test_request_channel_complete_on_first_frame(js_servers: JsServers, peer: Peer) -> None:
    """IX5: a channel of one element sends C on REQUEST_CHANNEL itself.

    1.0.0-alpha.3 honours it and completes its half after the echo. 0.0.27 ignores it (quirk): its
    handler never sees our half complete, so its half stays open and leaving our block cancels it.
    """
    v1 = peer.version == "v1"
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect(peer, js_servers.port(peer)) as rs:
            async with rs.request_channel(Payload(b"only"), complete=True) as channel:
                assert (await channel.receive()).data == b"echo:only"
                state = await ask(rs, b"channel-state")
                assert state == {"inbound": ["only"], "complete": v1}
                if v1:
                    assert [item async for item in channel] == []
            assert await rs.request_response(Payload(b"after")) == Payload(b"echo:after")


@peer_params(PEERS)
async def test_fire_and_forget_exactly_once(js_servers: JsServers, peer: Peer) -> None:
    """IX3: each fire-and-forget reaches the peer's handler once, in order."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect(peer, js_servers.port(peer)) as rs:
            await rs.fire_and_forget(Payload(b"x"))
            assert await ask(rs, b"fnf-log") == ["x"]
            await rs.fire_and_forget(Payload(b"y"))
            await rs.fire_and_forget(Payload(b"z"))
            assert await ask(rs, b"fnf-log") == ["x", "y", "z"]
            assert await ask(rs, b"fnf-log") == ["x", "y", "z"]


@peer_params(PEERS)
async def test_metadata_push(js_servers: JsServers, peer: Peer) -> None:
    """MP1: 0.0.27 receives METADATA_PUSH; 1.0.0-alpha.3 closes the connection on it (quirk)."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with connect(peer, js_servers.port(peer)) as rs:
            await rs.metadata_push(b"m")
            if peer.version == "v0":
                assert await ask(rs, b"push-log") == ["m"]
                assert await rs.request_response(Payload(b"still-up")) == Payload(b"echo:still-up")
            else:
                await rs.wait_closed()
                # No ERROR frame, just a close of the transport.
                assert isinstance(rs.close_reason, ConnectionClosedError)
                assert not isinstance(rs.close_reason, ConnectionErrorReceived)
                with pytest.raises(ConnectionClosedError):
                    await rs.request_response(Payload(b"too-late"))


# --- raw frames against the js TCP servers: how they end a connection -----------------------------


def setup_frame(max_lifetime_ms: int = 90_000) -> SetupFrame:
    return SetupFrame(
        keepalive_interval=20_000,
        max_lifetime=max_lifetime_ms,
        metadata_mime_type="application/octet-stream",
        data_mime_type="application/octet-stream",
    )


@asynccontextmanager
async def raw_connection(port: int) -> AsyncIterator[RawPeer]:
    """A TCP connection that speaks raw, length-prefixed frames (each ``send`` is one write)."""
    peer = RawPeer(ByteStreamTransport(await anyio.connect_tcp("127.0.0.1", port)))
    try:
        yield peer
    finally:
        await peer.transport.aclose()


@peer_params(TCP_PEERS)
@pytest.mark.parametrize(
    "frame",
    [
        ExtFrame(0, 7, b"x", ignore=True),
        ExtFrame(1, 7, b"x", ignore=True),
        ErrorFrame(0, ErrorCode.CONNECTION_ERROR, b"bye"),
    ],
    ids=["ext-stream-0", "ext-stream-1", "error-stream-0"],
)
async def test_peer_closes_on_ext_and_connection_error(
    js_servers: JsServers, peer: Peer, frame: Frame
) -> None:
    """U1, E2: both versions drop the connection on EXT, even with IGNORE, and on ERROR on stream 0.

    The frame and a request after it arrive in one read; the request is never answered. (Our
    library never sends EXT and closes after any ERROR it sends on stream 0 itself.)
    """
    with anyio.fail_after(TEST_TIMEOUT):
        async with raw_connection(js_servers.port(peer)) as raw:
            await raw.send(setup_frame(), frame, RequestResponseFrame(1, b"after"))
            assert await raw.expect_closed() == []


@peer_params(TCP_PEERS)
async def test_peer_closes_silently_when_lifetime_passes(js_servers: JsServers, peer: Peer) -> None:
    """K3: without KEEPALIVE for the SETUP's lifetime (300 ms) both versions close, no ERROR sent."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with raw_connection(js_servers.port(peer)) as raw:
            started = anyio.current_time()
            await raw.send(setup_frame(max_lifetime_ms=300), RequestResponseFrame(1, b"alive"))
            reply = await raw.expect_next(PayloadFrame)
            assert (reply.stream_id, reply.data) == (1, b"echo:alive")
            assert await raw.expect_closed() == []  # KEEPALIVEs asking for an answer are skipped
            assert anyio.current_time() - started >= 0.25


# --- the js clients against our server ----------------------------------------------------------


class ContractHandler(RequestHandler):
    """Our side of the js clients' script (see ``tests/interop/js/v1/client.js``)."""

    def __init__(self) -> None:
        self.fnf_log: list[str] = []
        #: Every request-response as we received it: (data, metadata), metadata None when absent.
        self.requests: list[tuple[bytes, bytes | None]] = []

    async def request_response(self, payload: Payload) -> Payload:
        self.requests.append((payload.data, payload.metadata))
        if payload.data == b"error":
            raise ApplicationError("boom")
        if payload.data == b"fnf-log":
            return Payload(json.dumps(self.fnf_log).encode())
        return Payload(b"echo:" + payload.data, payload.metadata)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.fnf_log.append(payload.data.decode("latin-1"))

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        if payload.data == b"error":
            yield Payload(b"item-0")
            raise ApplicationError("stream-boom")
        for index in range(int(payload.data)):
            yield Payload(f"item-{index}".encode())

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield Payload(b"echo:" + payload.data)
        async for item in inbound:
            yield Payload(b"echo:" + item.data)


#: What either js client prints against :class:`ContractHandler`, one dict per JSON line.
EXPECTED_CLIENT_STEPS: list[dict[str, Any]] = [
    {"step": "rr", "data": "echo:hello", "metadata": "meta"},
    {"step": "rr-plain", "data": "echo:plain", "metadata": None},
    # 0.0.27 sends M with zero bytes for null metadata; we echo that, and it reads it as null.
    {"step": "rr-null-metadata", "data": "echo:null-metadata", "metadata": None},
    {"step": "rr-error", "error": {"code": ErrorCode.APPLICATION_ERROR, "message": "boom"}},
    {"step": "fnf", "log": ["x"]},
    {
        "step": "stream",
        "items": [f"item-{index}" for index in range(10)],
        "credits": [3, 3, 3, 3],
        "overflow": False,
        "error": None,
    },
    {
        "step": "stream-error",
        "items": ["item-0"],
        "credits": [5],
        "overflow": False,
        "error": {"code": ErrorCode.APPLICATION_ERROR, "message": "stream-boom"},
    },
    {"step": "channel", "items": ["echo:a", "echo:b", "echo:c"]},
    {"step": "done"},
]


@peer_params(PEERS)
async def test_js_client_against_our_server(node: str, peer: Peer) -> None:
    """S1, S2, IX1-IX5, MD1, RN1, E2: each js client's script against serve_tcp / serve_websocket.

    Its stream grants credit 3 at a time for 10 items and checks that nothing arrives beyond it.
    """
    handlers: list[ContractHandler] = []
    connections: list[RSocket] = []

    def handler_factory(rsocket: RSocket) -> RequestHandler:
        connections.append(rsocket)
        handlers.append(ContractHandler())
        return handlers[-1]

    serve = serve_tcp if peer.transport == "tcp" else serve_websocket
    command = [node, str(JS / peer.version / "client.js"), "--transport", peer.transport]
    with anyio.fail_after(STARTUP_TIMEOUT + TEST_TIMEOUT):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(serve, handler_factory, "127.0.0.1", 0)
            result = await anyio.run_process(
                [*command, "--port", str(port), "--timeout", str(TEST_TIMEOUT)], check=False
            )
            task_group.cancel_scope.cancel()
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"rsocket-js {peer} client failed:\n{stderr}"
    steps = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert steps == EXPECTED_CLIENT_STEPS

    assert len(connections) == 1
    setup = connections[0].setup
    assert (setup.data_mime_type, setup.metadata_mime_type) == ("application/octet-stream",) * 2
    assert (setup.keepalive_interval, setup.max_lifetime) == (20.0, 90.0)
    (handler,) = handlers
    assert handler.fnf_log == ["x"]  # exactly once
    # How metadata arrived: absent stays absent; `metadata: null` is M with zero bytes from 0.0.27.
    seen = dict(handler.requests)
    assert seen[b"hello"] == b"meta"
    assert seen[b"plain"] is None
    assert seen[b"null-metadata"] == {"v1": None, "v0": b""}[peer.version]
