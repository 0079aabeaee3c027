"""rsocket-js in headless Chromium against our WebSocket servers: what a web page really does.

The browser side lives in ``tests/browser``: rsocket-js 1.0.0-alpha.3 and 0.0.27, bundled for the
browser by esbuild (``npm run build``: ``dist/rsocket-v1.js``, ``dist/rsocket-v0.js``; 1.0.0-alpha.3
gets the ``buffer`` package injected as its global ``Buffer``), one small promise API over both
(``src/api.js``), the script the page runs (``src/scenario.js``) and the page (``page.html``). Install
it with ``npm ci --prefix tests/browser``; the bundles are (re)built here when missing or older than
their sources (esbuild takes well under a second). Without Chromium, Node or those packages these
tests fail with a message saying what to install; they never skip.

One headless Chromium serves the whole session. Each test opens a tab over the DevTools protocol
(our own small client below, over httpx-ws), loads the page over ``http://``, waits for its load
event and awaits the promise ``window.scenario``, which resolves with the page's results as JSON.
No polling and no ``--dump-dom``. The page, in each rsocket-js version:

* request-response with metadata (echoed), and one whose APPLICATION_ERROR code and message reach
  the page;
* fire-and-forget and METADATA_PUSH (checked on our side: each arrives exactly once);
* request-stream with manual credit: 3 at a time for 10 items; after each batch the page makes a
  round trip and checks that nothing beyond the credit arrived before it requests more;
* a stream failing with APPLICATION_ERROR after one item;
* a channel echoing three elements, sent only within our credit.

Servers: ``serve_websocket`` (page from a static server on another port: a cross-origin WebSocket,
as from any page), on asyncio and Trio; and ``RSocketASGIApp`` inside an ASGI app that also serves
the page, so the page connects to ``/rsocket`` on its own origin: under uvicorn (asyncio; uvicorn
has no Trio support) and under hypercorn's Trio worker.

rsocket-js quirks met here (see also ``docs/interop.md``): 1.0.0-alpha.3's requester cannot send
METADATA_PUSH (``metadataPush`` throws "Method not implemented."), so the page writes the frame
through its connection with rsocket-core's own encoder; 0.0.27 sends METADATA_PUSH without the M
flag, which we accept. 1.0.0-alpha.3's WebSocket transport rejects a failed connect with
``undefined`` in a browser (it passes on the error event's missing ``.error``); the page's API says
what failed instead.
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import anyio
import httpx
import pytest
from anyio.streams.memory import MemoryObjectSendStream
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, aconnect_ws

from anyio_rsocket import (
    ApplicationError,
    ErrorCode,
    Payload,
    RequestHandler,
    RSocket,
    RSocketASGIApp,
    serve_websocket,
)

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parent.parent
BROWSER = ROOT / "tests" / "browser"
#: The rsocket-js release each bundle pins: the package (as installed in tests/browser) and version.
VERSIONS = {"v1": ("rsocket-core", "1.0.0-alpha.3"), "v0": ("rsocket-core-v0", "0.0.27")}
BUNDLES = [BROWSER / "dist" / f"rsocket-{version}.js" for version in VERSIONS]
NPM_HINT = "run: npm ci --prefix tests/browser"
CHROMIUM_HINT = (
    "install Chromium (Debian/Ubuntu: apt-get install -y chromium; CI installs it), "
    "or point CHROMIUM at a Chrome or Chromium executable"
)

#: Seconds for Chromium to start and announce its DevTools endpoint (about 0.5 s here).
STARTUP_TIMEOUT = 20
#: Seconds for building the bundles (esbuild takes well under one).
BUILD_TIMEOUT = 60
#: Per-test budget: server start, page load, the whole scenario, the server's checks.
TEST_TIMEOUT = 15
#: Seconds for the page to load and finish its scenario (about 0.2 s here); then it fails with its log.
PAGE_TIMEOUT = 10
#: Largest DevTools message we accept (results and console messages are far smaller).
MAX_DEVTOOLS_MESSAGE = 16 * 1024 * 1024


# --- the bundles and the static site ------------------------------------------------------------


@pytest.fixture(scope="session")
def bundles() -> None:
    """The npm packages at their pinned versions, and the bundles built from the current sources."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH: the browser tests build their bundles with Node.js; {NPM_HINT}")
    modules = BROWSER / "node_modules"
    for package, version in VERSIONS.values():
        manifest = modules / package / "package.json"
        if not manifest.is_file():
            pytest.fail(
                f"the browser test's npm packages are not installed ({manifest} is missing); {NPM_HINT}"
            )
        installed = json.loads(manifest.read_text())["version"]
        if installed != version:
            pytest.fail(f"{package} {installed} is installed in tests/browser, {version} pinned; {NPM_HINT}")
    if not (modules / "esbuild" / "package.json").is_file():
        pytest.fail(f"esbuild is not installed in tests/browser; {NPM_HINT}")
    sources = [*(BROWSER / "src").glob("*.js"), BROWSER / "build.mjs", BROWSER / "package-lock.json"]
    newest_source = max(path.stat().st_mtime for path in sources)
    if all(bundle.is_file() and bundle.stat().st_mtime >= newest_source for bundle in BUNDLES):
        return
    result = subprocess.run(
        [node, "build.mjs"], cwd=BROWSER, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"building the browser bundles failed (npm run build --prefix tests/browser):\n{result.stderr}"
        )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def static_site(bundles: None) -> Iterator[str]:
    """The repository over HTTP (a stdlib server in a thread), for the test page and the example."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(ROOT)))
    thread = threading.Thread(target=server.serve_forever, name="browser-test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- headless Chromium ---------------------------------------------------------------------------


def find_chromium() -> str:
    configured = os.environ.get("CHROMIUM")
    if configured:
        executable = shutil.which(configured)
        if executable is None:
            pytest.fail(f"CHROMIUM={configured!r} is not an executable; {CHROMIUM_HINT}")
        return executable
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        executable = shutil.which(name)
        if executable is not None:
            return executable
    pytest.fail(f"no Chromium found on PATH: the browser tests need headless Chromium; {CHROMIUM_HINT}")


@dataclass
class _StderrReader:
    """Reads Chromium's stderr in a thread (so its pipe never fills) and finds the DevTools URL."""

    lines: list[str] = field(default_factory=list)
    devtools_url: str | None = None
    announced: threading.Event = field(default_factory=threading.Event)

    def run(self, stream: Any) -> None:
        prefix = "DevTools listening on "
        for line in stream:
            if len(self.lines) < 200:
                self.lines.append(line.rstrip())
            if self.devtools_url is None and line.startswith(prefix):
                self.devtools_url = line[len(prefix) :].strip()
                self.announced.set()
        self.announced.set()  # EOF: Chromium exited (or never started)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One headless Chromium for the session: the WebSocket URL of its DevTools endpoint."""
    executable = find_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    command = [
        executable,
        "--headless",
        "--no-sandbox",  # CI containers run as root, where the sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    reader = _StderrReader()
    thread = threading.Thread(target=reader.run, args=(process.stderr,), name="chromium-stderr", daemon=True)
    thread.start()
    try:
        reader.announced.wait(STARTUP_TIMEOUT)
        if reader.devtools_url is None:
            log = "\n".join(reader.lines[-30:])
            pytest.fail(
                f"{executable} did not start within {STARTUP_TIMEOUT} s (exit code {process.poll()}); "
                f"{CHROMIUM_HINT}\n{log}"
            )
        yield reader.devtools_url
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        thread.join(5)
        assert process.stderr is not None
        process.stderr.close()


# --- a minimal DevTools protocol client -----------------------------------------------------------


class DevTools:
    """Commands and events over one DevTools WebSocket, with flattened target sessions.

    :meth:`read_loop` must run in a task while the client is used: it routes each reply to its
    :meth:`call` and sets the events :meth:`expect` handed out; console output, exceptions and log
    entries of every page are kept in :attr:`log` for failure messages.
    """

    def __init__(self, ws: AsyncWebSocketSession) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._replies: dict[int, MemoryObjectSendStream[dict[str, Any]]] = {}
        self._expected: dict[tuple[str | None, str], anyio.Event] = {}
        self.log: list[str] = []

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> Any:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](1)
        self._replies[message["id"]] = send
        with receive:
            await self._ws.send_text(json.dumps(message))
            try:
                reply = await receive.receive()
            except anyio.EndOfStream:
                raise AssertionError(f"DevTools connection lost during {method}") from None
        if "error" in reply:
            raise AssertionError(f"DevTools {method} failed: {reply['error']}")
        return reply["result"]

    def expect(self, method: str, session: str | None = None) -> anyio.Event:
        """An event set when ``method`` next arrives (ask before causing it)."""
        return self._expected.setdefault((session, method), anyio.Event())

    async def read_loop(self) -> None:
        try:
            while True:
                message = json.loads(await self._ws.receive_text())
                if "id" in message:
                    send = self._replies.pop(message["id"], None)
                    if send is not None:
                        send.send_nowait(message)
                        send.close()
                    continue
                key = (message.get("sessionId"), message["method"])
                event = self._expected.pop(key, None)
                if event is not None:
                    event.set()
                self._note(message["method"], message.get("params", {}))
        except WebSocketDisconnect:
            pass
        finally:
            for send in self._replies.values():
                send.close()

    def _note(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            values = [arg.get("value", arg.get("description", "")) for arg in params.get("args", [])]
            self.log.append(f"console.{params.get('type')}: {' '.join(map(str, values))}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text")
            self.log.append(f"uncaught: {description}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.log.append(f"{entry.get('source')} {entry.get('level')}: {entry.get('text')}")


@asynccontextmanager
async def devtools(url: str) -> AsyncIterator[DevTools]:
    async with (
        httpx.AsyncClient() as client,
        aconnect_ws(
            url,
            client,
            max_message_size_bytes=MAX_DEVTOOLS_MESSAGE,
            keepalive_ping_interval_seconds=None,
            session_class=AsyncWebSocketSession,
        ) as ws,
        anyio.create_task_group() as task_group,
    ):
        tools = DevTools(ws)
        task_group.start_soon(tools.read_loop)
        try:
            yield tools
        finally:
            task_group.cancel_scope.cancel()


async def run_page(browser: str, url: str, expression: str = "window.scenario") -> dict[str, Any]:
    """Open ``url`` in a new tab, await ``expression`` there once it loaded, return its outcome.

    The outcome is a JSON object whose ``ok`` is true; otherwise its ``error`` and the page's log
    (console, uncaught exceptions, network errors) make the failure message.
    """
    evaluation: dict[str, Any] | None = None
    navigation: dict[str, Any] = {}
    async with devtools(browser) as tools:  # failures are raised after it, not in its task group
        target = (await tools.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        try:
            attached = await tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})
            session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                await tools.call(f"{domain}.enable", session=session)
            loaded = tools.expect("Page.loadEventFired", session)
            navigation = await tools.call("Page.navigate", {"url": url}, session)
            if "errorText" not in navigation:
                with anyio.move_on_after(PAGE_TIMEOUT):
                    await loaded.wait()
                    evaluation = await tools.call(
                        "Runtime.evaluate",
                        {"expression": expression, "awaitPromise": True, "returnByValue": True},
                        session,
                    )
        finally:
            with anyio.move_on_after(2, shield=True):
                await tools.call("Target.closeTarget", {"targetId": target})
    log = "\n".join(tools.log)
    assert "errorText" not in navigation, f"cannot load {url}: {navigation['errorText']}"
    if evaluation is None:
        pytest.fail(f"the page gave no outcome within {PAGE_TIMEOUT} s: {url}\npage log:\n{log}")
    assert "exceptionDetails" not in evaluation, f"the page failed: {evaluation['exceptionDetails']}\n{log}"
    outcome: dict[str, Any] = evaluation["result"]["value"]
    assert outcome["ok"], f"the page failed: {outcome['error']}\npage log:\n{log}"
    return outcome


# --- our side ---------------------------------------------------------------------------------------


class BrowserHandler(RequestHandler):
    """The server side of ``tests/browser/src/scenario.js``."""

    def __init__(self) -> None:
        #: Every request-response as received: (data, metadata).
        self.requests: list[tuple[bytes, bytes | None]] = []
        self.fire_and_forgets: list[Payload] = []
        self.pushes: list[bytes] = []
        self.fire_and_forget_seen = anyio.Event()
        self.push_seen = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload:
        self.requests.append((payload.data, payload.metadata))
        if payload.data == b"error":
            raise ApplicationError("boom")
        return Payload(b"echo:" + payload.data, payload.metadata)

    async def fire_and_forget(self, payload: Payload) -> None:
        self.fire_and_forgets.append(payload)
        self.fire_and_forget_seen.set()

    async def metadata_push(self, metadata: bytes) -> None:
        self.pushes.append(metadata)
        self.push_seen.set()

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


class Connections:
    """The handler factory of a test's server: it keeps every connection and its handler."""

    def __init__(self) -> None:
        self.accepted: list[tuple[RSocket, BrowserHandler]] = []

    def __call__(self, rsocket: RSocket) -> RequestHandler:
        self.accepted.append((rsocket, BrowserHandler()))
        return self.accepted[-1][1]


#: What the page reports in either rsocket-js version (``tests/browser/src/scenario.js``).
EXPECTED_STEPS: list[dict[str, Any]] = [
    {"step": "rr", "data": "echo:hello", "metadata": "meta"},
    {"step": "rr-error", "error": {"code": ErrorCode.APPLICATION_ERROR, "message": "boom"}},
    {"step": "fnf"},
    {"step": "metadata-push"},
    {
        "step": "stream",
        "items": [f"item-{index}" for index in range(10)],
        "credits": [3, 3, 3, 3],
        "receivedBeforeRequest": [3, 6, 9],  # never more than granted when it asked for more
        "overflow": False,
        "error": None,
    },
    {
        "step": "stream-error",
        "items": ["item-0"],
        "error": {"code": ErrorCode.APPLICATION_ERROR, "message": "stream-boom"},
    },
    {"step": "channel", "items": ["echo:a", "echo:b", "echo:c"]},
]


async def check_server_side(connections: Connections) -> None:
    """One connection with the page's SETUP; fire-and-forget and METADATA_PUSH arrived once each."""
    assert len(connections.accepted) == 1
    rsocket, handler = connections.accepted[0]
    await handler.fire_and_forget_seen.wait()
    await handler.push_seen.wait()
    await rsocket.wait_closed()  # the page closes its connection when done
    setup = rsocket.setup
    assert (setup.data_mime_type, setup.metadata_mime_type) == ("application/octet-stream",) * 2
    assert (setup.keepalive_interval, setup.max_lifetime) == (20.0, 90.0)
    assert handler.fire_and_forgets == [Payload(b"fnf-1", b"fnf-meta")]
    assert handler.pushes == [b"pushed"]
    assert dict(handler.requests)[b"hello"] == b"meta"


def page_url(base: str, version: str, rsocket_url: str | None = None) -> str:
    url = f"{base}/page.html?rsocket={version}"
    return url if rsocket_url is None else f"{url}&url={quote(rsocket_url, safe='')}"


# --- serve_websocket ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_browser_against_serve_websocket(browser: str, static_site: str, version: str) -> None:
    """The page (from another origin) against ``serve_websocket`` on ``/rsocket``."""
    connections = Connections()
    with anyio.fail_after(TEST_TIMEOUT):
        async with anyio.create_task_group() as task_group:
            serve = partial(serve_websocket, path="/rsocket")
            port = await task_group.start(serve, connections, "127.0.0.1", 0)
            rsocket_url = f"ws://127.0.0.1:{port}/rsocket"
            outcome = await run_page(browser, page_url(f"{static_site}/tests/browser", version, rsocket_url))
            await check_server_side(connections)
            task_group.cancel_scope.cancel()
    assert outcome["version"] == VERSIONS[version][1]
    assert (outcome["origin"], outcome["url"]) == (static_site, rsocket_url)
    assert outcome["steps"] == EXPECTED_STEPS


# --- RSocketASGIApp -------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Site:
    """One ASGI app, one origin: ``tests/browser`` over HTTP, RSocket over WebSocket on ``/rsocket``."""

    def __init__(self, rsocket_app: RSocketASGIApp) -> None:
        self.rsocket_app = rsocket_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._file(scope, send)
        elif scope["type"] == "websocket" and scope["path"] != "/rsocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await self.rsocket_app(scope, receive, send)

    @staticmethod
    async def _file(scope: Scope, send: Send) -> None:
        path = (BROWSER / unquote(scope["path"]).lstrip("/")).resolve()
        found = scope["method"] == "GET" and path.is_relative_to(BROWSER.resolve()) and path.is_file()
        body = await anyio.Path(path).read_bytes() if found else b"not found\n"
        content_type = (mimetypes.guess_type(path.name)[0] if found else None) or "text/plain"
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200 if found else 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@asynccontextmanager
async def asgi_server(server: str, app: Site) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn (asyncio) or hypercorn's Trio worker; yield the port."""
    sock = listening_socket()
    port: int = sock.getsockname()[1]
    async with anyio.create_task_group() as task_group:
        if server == "uvicorn":
            import uvicorn

            config = uvicorn.Config(
                app,
                lifespan="off",
                ws="wsproto",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=1,
            )
            uvicorn_server = uvicorn.Server(config)
            task_group.start_soon(uvicorn_server.serve, [sock])  # it accepts on the bound socket
            try:
                yield port
            finally:
                uvicorn_server.should_exit = True
        else:
            from hypercorn.config import Config
            from hypercorn.trio import serve

            hypercorn_config = Config()
            hypercorn_config.bind = [f"fd://{sock.detach()}"]  # hypercorn takes the socket over
            hypercorn_config.graceful_timeout = 1
            hypercorn_config.accesslog = None
            hypercorn_config.errorlog = None
            shutdown = anyio.Event()
            task_group.start_soon(partial(serve, app, hypercorn_config, shutdown_trigger=shutdown.wait))  # type: ignore[arg-type]
            try:
                yield port
            finally:
                shutdown.set()


@pytest.mark.parametrize(
    ("anyio_backend", "server"),
    [("asyncio", "uvicorn"), ("trio", "hypercorn")],
    ids=["uvicorn-asyncio", "hypercorn-trio"],
)
@pytest.mark.parametrize("version", VERSIONS)
async def test_browser_against_asgi_app(bundles: None, browser: str, server: str, version: str) -> None:
    """The page and ``RSocketASGIApp`` from one ASGI app: the page connects to its own origin.

    uvicorn runs on asyncio only, so the Trio run uses hypercorn's Trio worker.
    """
    connections = Connections()
    with anyio.fail_after(TEST_TIMEOUT):
        async with asgi_server(server, Site(RSocketASGIApp(connections))) as port:
            base = f"http://127.0.0.1:{port}"
            outcome = await run_page(browser, page_url(base, version))
            await check_server_side(connections)
    assert outcome["version"] == VERSIONS[version][1]
    assert (outcome["origin"], outcome["url"]) == (base, f"ws://127.0.0.1:{port}/rsocket")
    assert outcome["steps"] == EXPECTED_STEPS


# --- the example page ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_example_page_against_the_echo_server(
    browser: str, static_site: str, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``examples/browser``: its "Run all" against the handler of ``anyio-rsocket serve --echo``."""
    from anyio_rsocket.cli import EchoHandler

    connections: list[RSocket] = []

    def echo(rsocket: RSocket) -> RequestHandler:
        connections.append(rsocket)
        return EchoHandler()

    with anyio.fail_after(TEST_TIMEOUT):
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(partial(serve_websocket, path="/rsocket"), echo, "127.0.0.1", 0)
            rsocket_url = f"ws://127.0.0.1:{port}/rsocket"
            query = f"rsocket={version}&url={quote(rsocket_url, safe='')}"
            outcome = await run_page(
                browser, f"{static_site}/examples/browser/index.html?{query}", "runAll()"
            )
            (connection,) = connections
            await connection.wait_closed()  # "Run all" disconnects at the end
            task_group.cancel_scope.cancel()
    data = "hello from the browser"
    assert outcome["lines"] == [
        f"connecting to {rsocket_url} with rsocket-js {VERSIONS[version][1]}",
        "connected",
        f"request-response: {data}",
        "fire-and-forget sent (the server prints it)",
        "metadata push sent (the server prints it)",
        "stream requested with credit 2",
        f"stream item 1: {data}",
        "stream complete after 1 item(s)",
        "channel: one | two | three",
        "disconnected",
    ]
    printed = capsys.readouterr().out.splitlines()  # separate handler tasks: in either order
    assert sorted(printed) == [f"fnf: {data}", "push: pushed from the browser"]
