"""The ``anyio-rsocket`` command line, run as a real subprocess against servers started in the test
(on asyncio and trio). Checks output, progressive streaming, stdin-driven channels and exit codes."""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from anyio_rsocket import ApplicationError, Payload, RejectedSetupError, Router, connect_tcp, serve_tcp
from anyio_rsocket import cli as cli_module
from anyio_rsocket.extensions import (
    MESSAGE_COMPOSITE_METADATA,
    MESSAGE_ROUTING,
    BearerAuthentication,
    SimpleAuthentication,
)
from anyio_rsocket.router import AuthRequest, RequestContext
from anyio_rsocket.websocket import serve_websocket

pytestmark = pytest.mark.anyio

COMMAND = [sys.executable, "-m", "anyio_rsocket.cli"]
TIMEOUT = 20  # several Python subprocesses start in each test


class Server:
    """A routed test server: events let tests see what arrived and pace the streams."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.forever_closed = anyio.Event()
        self.noted = anyio.Event()
        self.pinged = anyio.Event()
        self.notes: list[str] = []
        self.router = self._build()

    def _build(self) -> Router:
        router = Router()

        @router.authenticator
        def authenticate(request: AuthRequest) -> Any:
            auth = request.authentication
            if not request.is_setup or auth is None:
                return request.principal
            if auth == BearerAuthentication("tok"):
                return "bearer-user"
            if isinstance(auth, SimpleAuthentication) and auth.password == "pw":
                return auth.username
            raise RejectedSetupError("who are you?")

        @router.response("greet")
        async def greet(name: str, context: RequestContext) -> str:
            return f"hello {name} from {context.principal}"

        @router.response("setup")
        async def setup(context: RequestContext) -> str:
            setup = context.rsocket.setup
            data = setup.payload.data.decode() if setup.payload is not None else ""
            return f"{data} {setup.data_mime_type} {setup.metadata_mime_type}"

        @router.response("fail")
        async def fail() -> None:
            raise ApplicationError("boom")

        @router.response("slow")
        async def slow() -> None:
            await anyio.sleep_forever()

        @router.stream("ticks")
        async def ticks() -> AsyncIterator[str]:
            yield "tick-0"
            await self.release.wait()  # the test releases this once it has seen tick-0
            yield "tick-1"

        @router.stream("forever")
        async def forever() -> AsyncIterator[str]:
            try:
                count = 0
                while True:
                    yield f"n{count}"
                    count += 1
            finally:
                self.forever_closed.set()

        @router.channel("upper")
        async def upper(lines: AsyncIterator[str]) -> AsyncIterator[str]:
            async for line in lines:
                yield line.upper()

        @router.fire_and_forget("note")
        async def note(text: str) -> None:
            self.notes.append(text)
            self.noted.set()

        @router.metadata_push("ping")
        async def ping() -> None:
            self.pinged.set()

        return router


@asynccontextmanager
async def running_server() -> AsyncIterator[tuple[Server, str]]:
    server = Server()
    async with anyio.create_task_group() as task_group:
        port = await task_group.start(serve_tcp, server.router, "127.0.0.1", 0)
        yield server, f"tcp://127.0.0.1:{port}"
        task_group.cancel_scope.cancel()


async def run_cli(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = await anyio.run_process([*COMMAND, *args], input=input, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def read_line(stream: BufferedByteReceiveStream) -> bytes:
    return await stream.receive_until(b"\n", 65536)


async def stop(process: Process) -> None:
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.kill()
        await process.wait()
        await process.aclose()


async def in_process(
    capsys: pytest.CaptureFixture[str], *argv: str, finished: threading.Event | None = None
) -> tuple[int, str, str]:
    """Run ``cli.main(argv)`` in a worker thread (its own event loop); return status, stdout, stderr.

    Cheaper than a subprocess, for the checks that do not need the process boundary. ``finished``
    is set when the thread is done, even if this call was cancelled and the thread abandoned."""
    capsys.readouterr()

    def main() -> int:
        try:
            return cli_module.main(list(argv))
        except SystemExit as exit_:  # argparse's usage errors
            return int(exit_.code or 0)
        finally:
            if finished is not None:
                finished.set()

    # abandon_on_cancel: the caller's fail_after can end the wait even if main() hangs (the thread
    # is left behind, and the test fails with TimeoutError instead of blocking the suite).
    status = await anyio.to_thread.run_sync(main, abandon_on_cancel=True)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def test_in_process_time_bound_stops_a_hung_command(capsys: pytest.CaptureFixture[str]) -> None:
    """The fail_after around an in-process run really ends it: a request that never gets an answer
    (no --timeout) is abandoned when the bound expires, instead of hanging the test."""
    finished = threading.Event()
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (_, url):
            started = anyio.current_time()
            with pytest.raises(TimeoutError), anyio.fail_after(0.5):
                await in_process(capsys, "request", url, "-r", "slow", finished=finished)
            assert anyio.current_time() - started < 5
            assert not finished.is_set()  # main() was still waiting for its answer
        # The server is gone, so the abandoned command fails and its thread ends: wait for that, so
        # that nothing it prints lands in another test's captured output.
        assert await anyio.to_thread.run_sync(finished.wait, TIMEOUT)


# --- the console script in a subprocess ---------------------------------------------------------------


async def test_request_with_route_auth_and_data_sources() -> None:
    """X5, X7, X8: --route and --auth-* build composite metadata, auth travels in SETUP; --data takes
    a literal or - (stdin)."""
    results: dict[str, tuple[int, str, str]] = {}
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (_, url):

            async def run(key: str, *args: str) -> None:
                stdin = b"piped" if "-" in args else None
                results[key] = await run_cli("request", url, "-r", "greet", *args, input=stdin)

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(run, "bearer", "-d", "world", "--auth-bearer", "tok")
                task_group.start_soon(run, "simple", "--data", "-", "--auth-simple", "ann:pw")
    assert results["bearer"] == (0, "hello world from bearer-user\n", "")
    assert results["simple"] == (0, "hello piped from ann\n", "")


async def test_stream_prints_items_as_they_arrive() -> None:
    """IX4: the first item is printed (and flushed) while the stream is still open."""
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (server, url):
            process = await anyio.open_process([*COMMAND, "stream", url, "-r", "ticks"], stdout=PIPE)
            try:
                assert process.stdout is not None
                lines = BufferedByteReceiveStream(process.stdout)
                assert await read_line(lines) == b"tick-0"
                assert not server.release.is_set()  # the stream cannot have finished yet
                server.release.set()
                assert await read_line(lines) == b"tick-1"
                assert await process.wait() == 0
            finally:
                await stop(process)


async def test_channel_reads_stdin_line_by_line() -> None:
    """IX5: each stdin line is sent as it is typed and its answer printed before the next line."""
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (_, url):
            command = [*COMMAND, "channel", url, "-r", "upper"]
            process = await anyio.open_process(command, stdin=PIPE, stdout=PIPE)
            try:
                assert process.stdin is not None and process.stdout is not None
                lines = BufferedByteReceiveStream(process.stdout)
                for word in (b"first", b"second"):
                    await process.stdin.send(word + b"\n")
                    assert await read_line(lines) == word.upper()
                await process.stdin.aclose()  # EOF completes our half; the responder completes too
                assert await process.wait() == 0
            finally:
                await stop(process)


async def test_exit_codes() -> None:
    """1 the peer answered with an error, 124 --timeout expired."""
    results: dict[str, tuple[int, str, str]] = {}
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (_, url):
            cases: dict[str, list[str]] = {
                "app-error": ["request", url, "-r", "fail"],
                "timeout": ["request", url, "-r", "slow", "--timeout", "0.3"],
            }

            async def run(key: str) -> None:
                results[key] = await run_cli(*cases[key])

            async with anyio.create_task_group() as task_group:
                for key in cases:
                    task_group.start_soon(run, key)
    assert results["app-error"] == (1, "", "anyio-rsocket: ApplicationError (0x201): boom\n")
    assert results["timeout"] == (124, "", "anyio-rsocket: no result within 0.3 s\n")


# --- the CLI's code in-process (same code paths, no interpreter start-up) -------------------------------


async def test_fire_and_forget_metadata_push_and_file_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """IX3, MP1: fnf and push reach their routes and print nothing; --data @file reads a file;
    a channel's --data literal is split into lines; --take works on channels too."""
    data_file = tmp_path / "note.txt"
    data_file.write_bytes(b"from a file")
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (server, url):
            assert await in_process(capsys, "fnf", url, "-r", "note", "-d", f"@{data_file}") == (0, "", "")
            assert await in_process(capsys, "push", url, "-r", "ping") == (0, "", "")
            await server.noted.wait()
            await server.pinged.wait()
            channel = await in_process(capsys, "channel", url, "-r", "upper", "-d", "x\ny\nz", "--take", "2")
            assert channel == (0, "X\nY\n", "")
    assert server.notes == ["from a file"]


async def test_take_cancels_an_endless_stream(capsys: pytest.CaptureFixture[str]) -> None:
    """RN1, IX4: --take N prints N items, then cancels (the responder's generator is closed)."""
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (server, url):
            result = await in_process(capsys, "stream", url, "-r", "forever", "--take", "3", "--request-n=2")
            assert result == (0, "n0\nn1\nn2\n", "")
            await server.forever_closed.wait()


async def test_debug_traces_frames_and_fragment_size(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--debug prints each frame to stderr; --fragment-size splits a large request (FG*)."""
    name = "x" * 300
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (_, url):
            status, out, err = await in_process(
                capsys, "request", url, "-r", "greet", "-d", name, "--debug", "--fragment-size", "100"
            )
    assert (status, out) == (0, f"hello {name} from None\n")
    assert "-> Setup(" in err and "<- Payload(" in err
    assert err.count("-> RequestResponse(") == 1 and "follows=True" in err


async def test_rejected_setup_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """2 for a refused connection or SETUP; 64 for usage errors (argparse's 2 would mean the former)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    closed_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (_, url):
            status, out, err = await in_process(capsys, "request", f"tcp://127.0.0.1:{closed_port}")
            assert (status, out) == (2, "") and "cannot connect to 127.0.0.1" in err
            status, _, err = await in_process(capsys, "request", url, "-r", "greet", "--auth-bearer", "bad")
            assert status == 2 and "RejectedSetupError (0x3): who are you?" in err
            usage_errors = {
                "unknown option": ["request", url, "--bogus"],
                "--metadata cannot be combined": ["request", url, "-r", "greet", "-m", "raw"],
                "at most 255": ["request", url, "-r", "r" * 256],
                "cannot read": ["request", url, "-d", "@/no/such/file"],
                "USER:PASS": ["request", url, "--auth-simple", "no-colon"],
                "unsupported URL scheme": ["request", "udp://127.0.0.1:1"],
                "needs --metadata or --route": ["push", url],
                "the following arguments are required: url": ["request"],
                "--echo": ["serve", "tcp://127.0.0.1:0"],
            }
            for message, argv in usage_errors.items():
                status, out, err = await in_process(capsys, *argv)
                assert (status, out) == (cli_module.EXIT_USAGE, ""), message
                assert message in err.replace("unrecognized arguments", "unknown option")


async def test_setup_data_mime_types_and_bare_routing(capsys: pytest.CaptureFixture[str]) -> None:
    """--setup-data, --data-mime and --metadata-mime reach SETUP; with the routing MIME (X5) the
    route travels as bare routing metadata."""
    with anyio.fail_after(TIMEOUT):
        async with running_server() as (_, url):
            result = await in_process(
                capsys, "request", url, "-r", "setup", "--setup-data", "hello", "--data-mime", "text/plain"
            )
            assert result == (0, f"hello text/plain {MESSAGE_COMPOSITE_METADATA}\n", "")
            result = await in_process(
                capsys, "request", url, "-r", "setup", "--metadata-mime", MESSAGE_ROUTING
            )
            assert result == (0, f" application/octet-stream {MESSAGE_ROUTING}\n", "")


async def test_websocket_url(capsys: pytest.CaptureFixture[str]) -> None:
    """ws:// URLs go through ``anyio_rsocket.connect``."""
    with anyio.fail_after(TIMEOUT):
        server = Server()
        async with anyio.create_task_group() as task_group:
            port = await task_group.start(serve_websocket, server.router, "127.0.0.1", 0)
            result = await in_process(capsys, "request", f"ws://127.0.0.1:{port}/", "-r", "greet", "-d", "ws")
            assert result == (0, "hello ws from None\n", "")
            task_group.cancel_scope.cancel()


# --- the demo server ----------------------------------------------------------------------------------


async def test_serve_echo() -> None:
    """``serve URL --echo`` prints where it listens, then echoes every interaction; with --debug
    it traces the frames of every connection to stderr."""
    command = [*COMMAND, "serve", "tcp://127.0.0.1:0", "--echo", "--debug"]
    with anyio.fail_after(TIMEOUT):
        process = await anyio.open_process(command, stdout=PIPE, stderr=PIPE)
        try:
            assert process.stdout is not None and process.stderr is not None
            lines = BufferedByteReceiveStream(process.stdout)
            banner = (await read_line(lines)).decode()
            assert banner.startswith("listening on tcp://127.0.0.1:")
            port = int(banner.rpartition(":")[2])
            async with connect_tcp("127.0.0.1", port) as rs:
                assert await rs.request_response(Payload(b"hi", b"md")) == Payload(b"hi", b"md")
                async with rs.request_channel(Payload(b"a")) as channel:
                    await channel.send(Payload(b"b"))
                    await channel.send_eof()
                    assert [item.data async for item in channel] == [b"a", b"b"]
                await rs.fire_and_forget(Payload(b"event"))
                assert await read_line(lines) == b"fnf: event"
                async with rs.request_stream(Payload(b"once")) as stream:
                    assert [item.data async for item in stream] == [b"once"]
            trace = BufferedByteReceiveStream(process.stderr)
            assert (await read_line(trace)).startswith(b"<- Setup(")
            while not (line := await read_line(trace)).startswith(b"<- RequestResponse("):
                assert line.startswith((b"<- ", b"-> ")), line  # one line per frame, and nothing else
            assert b"stream_id=1, data=b'hi', metadata=b'md'" in line
        finally:
            await stop(process)


def test_unsupported_fragment_size_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--fragment-size is refused clearly when the connect function has no such option."""
    monkeypatch.setattr(cli_module, "_accepts", lambda function, option: False)
    status = cli_module.main(["request", "tcp://127.0.0.1:9", "--fragment-size", "100"])
    assert status == cli_module.EXIT_USAGE
    assert "--fragment-size is not supported yet" in capsys.readouterr().err
