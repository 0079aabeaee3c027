"""Usability of the ``anyio-rsocket`` command line (asyncio and trio): ``serve ws://.../path`` listens on
the path, user errors are one line without a traceback (64 usage, 2 connection), ``--version``,
``--show-metadata``, the exit status table in ``--help``, data MIME hints; plus the typing of
``RoutedRequester.retrieve`` (checked by mypy) and Ctrl-C in ``examples/asgi_server.py --serve``."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import PIPE

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import anyio_rsocket
from anyio_rsocket import Payload, RequestHandler, Router, serve_tcp
from anyio_rsocket import cli as cli_module
from anyio_rsocket.extensions import (
    MESSAGE_COMPOSITE_METADATA,
    MESSAGE_ROUTING,
    ZipkinTrace,
    accept_mime,
    bearer,
    composite,
    data_mime,
    encode_routing,
    entry,
    route,
    tracing,
)

from .test_cli import COMMAND, TIMEOUT, in_process, read_line, run_cli, stop
from .test_cli_resume import closed_port

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


# --- 1. serve ws://host:port/path listens on the path ----------------------------------------------


async def test_serve_websocket_listens_on_the_url_path() -> None:
    """``serve ws://127.0.0.1:0/rsocket --echo`` accepts upgrades on /rsocket (a channel works over it)
    and refuses / with 404; its banner names the path."""
    command = [*COMMAND, "serve", "ws://127.0.0.1:0/rsocket", "--echo"]
    with anyio.fail_after(TIMEOUT):
        process = await anyio.open_process(command, stdout=PIPE)
        try:
            assert process.stdout is not None
            banner = (await read_line(BufferedByteReceiveStream(process.stdout))).decode()
            assert banner.startswith("listening on ws://127.0.0.1:") and banner.endswith("/rsocket"), banner
            url = banner.removeprefix("listening on ")
            assert await run_cli("channel", url, input=b"a\nb\n") == (0, "a\nb\n", "")
            status, out, err = await run_cli("request", url.removesuffix("rsocket"), "-d", "x")
            assert (status, out) == (cli_module.EXIT_CONNECTION_FAILED, "") and "HTTP 404" in err
            assert "Traceback" not in err
        finally:
            await stop(process)


def test_banner_port_reads_urls_with_a_path() -> None:
    """``serve --workers`` reads the first worker's port from its banner, path or not."""
    assert cli_module._banner_port("listening on ws://127.0.0.1:4321/rsocket\n") == 4321
    assert cli_module._banner_port("listening on tcp://[::1]:7000") == 7000


# --- 2. user errors: one line, no traceback; 64 usage, 2 connection --------------------------------


async def test_option_values_the_library_refuses_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Every option value the library validates is checked before any I/O: status 64 and one line
    naming the option and the valid range (no server is needed: nothing connects)."""
    url = f"tcp://127.0.0.1:{await closed_port()}"
    fragment_range = "fragment_size must be between 64 and 16777215 bytes"
    cases: list[tuple[str, list[str]]] = [
        (f"--fragment-size 10: {fragment_range}", ["request", url, "--fragment-size", "10"]),
        (f"--fragment-size 16777216: {fragment_range}", ["stream", url, "--fragment-size", "16777216"]),
        (
            f"--fragment-size 10: {fragment_range}",
            ["serve", "ws://127.0.0.1:0", "--echo", "--fragment-size", "10"],
        ),
        ("--data-mime é: data MIME type must be US-ASCII", ["request", url, "--data-mime", "é"]),
        (
            f"--metadata-mime {'m' * 300}: metadata MIME type is 300 bytes long",
            ["request", url, "--metadata-mime", "m" * 300],
        ),
        ("argument --connect-timeout: must be positive", ["request", url, "--connect-timeout", "0"]),
        ("argument --timeout: must be positive", ["request", url, "--timeout", "-1"]),
        ("argument --resume-duration: must be positive", ["stream", url, "--resume-duration", "nan"]),
        ("argument --request-n: must be at least 1", ["stream", url, "--request-n", "-5"]),
        ("argument --take: must be at least 1", ["channel", url, "--take", "0"]),
        (
            "argument --workers: must be at least 1",
            ["serve", "tcp://127.0.0.1:0", "--echo", "--workers", "0"],
        ),
        ("invalid port in 'tcp://127.0.0.1:99999'", ["request", "--target", "tcp://127.0.0.1:99999"]),
        ("tcps:// URLs take no path", ["request", "tcps://127.0.0.1:1/x"]),
        ("ws:// URLs need a host", ["request", "ws:///x"]),
        ("URLs take no query or fragment", ["request", "tcp://127.0.0.1:1?x=1"]),
        ("serve supports tcp:// and ws:// URLs", ["serve", "udp://127.0.0.1:0", "--echo"]),
        ("tcp:// URLs take no path", ["serve", "tcp://127.0.0.1:0/x", "--echo"]),
    ]
    for message, argv in cases:
        status, out, err = await in_process(capsys, *argv)
        assert (status, out) == (cli_module.EXIT_USAGE, ""), (message, err)
        assert message in err and "Traceback" not in err, (message, err)
        # One line (argparse's errors come after its usage summary).
        assert err.endswith("\n") and err.splitlines()[-1].startswith("anyio-rsocket"), err
        assert err.startswith("usage: ") or err.count("\n") == 1, err


async def test_errors_before_any_interaction_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A payload over the frame limit is a usage error suggesting --fragment-size; SETUP too large
    (setup data) a usage error; serve on a port in use a connection error (2); all without traceback."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    busy = listener.extra(anyio.abc.SocketAttribute.local_port)
    big = "x" * (1 << 24)
    async with listener, anyio.create_task_group() as task_group:
        port = await task_group.start(serve_tcp, Router(), "127.0.0.1", 0)
        url = f"tcp://127.0.0.1:{port}"
        with anyio.fail_after(TIMEOUT):
            status, out, err = await in_process(capsys, "fnf", url, "-d", big)
            assert (status, out) == (cli_module.EXIT_USAGE, "") and "try --fragment-size" in err, err
            status, out, err = await in_process(capsys, "request", url, "--setup-data", big)
            assert (status, out) == (cli_module.EXIT_USAGE, "") and "SETUP frame is too large" in err, err
            for scheme in ("tcp", "ws"):
                status, out, err = await in_process(capsys, "serve", f"{scheme}://127.0.0.1:{busy}", "--echo")
                assert (status, out) == (cli_module.EXIT_CONNECTION_FAILED, ""), err
                assert err.startswith(f"anyio-rsocket: cannot listen on {scheme}://127.0.0.1:{busy}: "), err
                assert err.count("\n") == 1 and "Traceback" not in err
        task_group.cancel_scope.cancel()


async def test_port_in_use_in_a_subprocess_on_both_backends(anyio_backend_name: str) -> None:
    """The console script itself: ``serve`` on a port in use prints one line and exits 2."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    busy = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:
        with anyio.fail_after(TIMEOUT):
            result = await run_cli(
                "serve", f"tcp://127.0.0.1:{busy}", "--echo", "--backend", anyio_backend_name
            )
    status, out, err = result
    assert (status, out) == (2, "")
    assert err == f"anyio-rsocket: cannot listen on tcp://127.0.0.1:{busy}: " + err.split(": ", 2)[2]
    assert "Traceback" not in err and err.count("\n") == 1


def test_an_internal_error_shows_its_traceback_and_exits_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a user error (a bug): the traceback is kept, and the status is 70, not 1 (the peer's)."""

    def broken(args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli_module, "plan_client", broken)
    assert cli_module.main(["request", "tcp://127.0.0.1:1"]) == cli_module.EXIT_INTERNAL_ERROR == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err and "internal error" in err


# --- 3. --version -----------------------------------------------------------------------------------


async def test_version() -> None:
    assert await run_cli("--version") == (0, f"anyio-rsocket {anyio_rsocket.__version__}\n", "")


# --- 4. --show-metadata -----------------------------------------------------------------------------


#: The metadata of MetadataReplies's answer, by the request's data.
REPLIES: dict[bytes, bytes | None] = {
    b"composite": composite(
        route("a.b", "c"),
        data_mime("application/json"),
        accept_mime("text/plain", "application/json"),
        bearer("secret-token"),
        tracing(ZipkinTrace(trace_id=0xABC, span_id=0x12)),
        entry("application/x.custom", b"\x00\xff"),
        entry("text/plain", "héllo".encode()),
    ),
    b"none": None,
    b"text": b"plain words",
    b"binary": b"\x00\x01\xfe",
    b"routing": encode_routing("x", "y"),
    b"broken": b"\x05",
}


class MetadataReplies(RequestHandler):
    """Answers with the metadata named by the request's data; streams two items with metadata."""

    async def request_response(self, payload: Payload) -> Payload:
        return Payload(b"the data", REPLIES[payload.data])

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        for index in range(2):
            yield Payload(f"item {index}".encode(), f"md {index}".encode())


async def test_show_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    """--show-metadata prints the answer's metadata (composite entries decoded, one per line) before
    ``data: ...``; without it only the data is printed."""
    async with anyio.create_task_group() as task_group:
        port = await task_group.start(serve_tcp, lambda rs: MetadataReplies(), "127.0.0.1", 0)
        url = f"tcp://127.0.0.1:{port}"

        async def show(kind: str, *options: str) -> str:
            status, out, err = await in_process(
                capsys, "request", url, "-d", kind, "--show-metadata", *options
            )
            assert (status, err) == (0, ""), err
            return out

        with anyio.fail_after(TIMEOUT):
            composite_md = ["--metadata-mime", MESSAGE_COMPOSITE_METADATA]
            assert await show("composite", *composite_md) == (
                "metadata: message/x.rsocket.routing.v0: a.b, c\n"
                "metadata: message/x.rsocket.mime-type.v0: application/json\n"
                "metadata: message/x.rsocket.accept-mime-types.v0: text/plain, application/json\n"
                "metadata: message/x.rsocket.authentication.v0: bearer (credentials not shown)\n"
                "metadata: message/x.rsocket.tracing-zipkin.v0: trace=abc span=12 sampling=undecided\n"
                "metadata: application/x.custom: hex:00ff\n"
                "metadata: text/plain: héllo\n"
                "data: the data\n"
            )
            assert await show("none") == "metadata: none\ndata: the data\n"
            assert await show("text") == "metadata: plain words\ndata: the data\n"
            assert await show("binary") == "metadata: hex:0001fe\ndata: the data\n"
            routing = await show("routing", "--metadata-mime", MESSAGE_ROUTING)
            assert routing == "metadata: x, y\ndata: the data\n"
            broken = await show("broken", *composite_md)
            assert broken.startswith("metadata: hex:05 (not valid composite metadata: ")
            status, out, _ = await in_process(capsys, "stream", url, "--show-metadata")
            assert (status, out) == (0, "metadata: md 0\ndata: item 0\nmetadata: md 1\ndata: item 1\n")
            assert await in_process(capsys, "request", url, "-d", "text") == (0, "the data\n", "")
        task_group.cancel_scope.cancel()


# --- 5. the exit status table -----------------------------------------------------------------------


async def test_help_has_the_exit_status_table() -> None:
    """``--help`` (and each command's) ends with the exit status table, every status the code uses."""
    status, out, err = await run_cli("--help")
    assert (status, err) == (0, "")
    assert "--version" in out
    table = out[out.index("exit status:") :]
    for code in (0, 1, 2, 64, 70, 124, 130):
        assert f"\n  {code} " in table, code
    assert "128+N" in table and "143 SIGTERM" in table and "Ctrl-C" in table
    for command in ("request", "serve"):
        status, out, _ = await run_cli(command, "--help")
        assert status == 0 and "exit status:" in out and "  64 " in out
    _, out, _ = await run_cli("request", "--help")
    assert "--show-metadata" in out


def test_the_table_matches_the_status_constants() -> None:
    constants = {
        cli_module.EXIT_OK: 0,
        cli_module.EXIT_RSOCKET_ERROR: 1,
        cli_module.EXIT_CONNECTION_FAILED: 2,
        cli_module.EXIT_USAGE: 64,
        cli_module.EXIT_INTERNAL_ERROR: 70,
        cli_module.EXIT_TIMEOUT: 124,
        cli_module.EXIT_INTERRUPTED: 130,
    }
    assert all(key == value for key, value in constants.items())
    for code in constants:
        assert f"  {code} " in cli_module.EXIT_STATUS_HELP


# --- 6. a data MIME type that does not fit says what to change ----------------------------------------


async def test_data_mime_hints(capsys: pytest.CaptureFixture[str]) -> None:
    """A Router serving ints needs --data-mime application/json: the error says so."""
    router = Router()

    @router.stream("numbers")
    async def numbers() -> AsyncIterator[int]:
        for number in range(3):
            yield number

    @router.response("double")
    async def double(number: int) -> int:
        return 2 * number

    async with anyio.create_task_group() as task_group:
        port = await task_group.start(serve_tcp, router, "127.0.0.1", 0)
        url = f"tcp://127.0.0.1:{port}"
        with anyio.fail_after(TIMEOUT):
            status, out, err = await in_process(capsys, "stream", url, "-r", "numbers")
            assert (status, out) == (cli_module.EXIT_RSOCKET_ERROR, "")
            assert err.splitlines()[1] == (
                "anyio-rsocket: hint: the server's data is not application/octet-stream; "
                "try --data-mime application/json"
            )
            json = ["--data-mime", "application/json"]
            assert await in_process(capsys, "stream", url, "-r", "numbers", *json) == (0, "0\n1\n2\n", "")
            status, _, err = await in_process(capsys, "request", url, "-r", "double", "-d", "4")
            assert (
                status == 1 and "hint: the server expects other data than application/octet-stream; " in err
            )
            assert "try --data-mime application/json with JSON --data" in err
            status, _, err = await in_process(capsys, "request", url, "-r", "double", "-d", "four", *json)
            assert status == 1 and "hint: --data is not the application/json the server expects" in err
            assert await in_process(capsys, "request", url, "-r", "double", "-d", "4", *json) == (
                0,
                "8\n",
                "",
            )
        task_group.cancel_scope.cancel()


# --- 7. RoutedRequester.retrieve is typed ------------------------------------------------------------


def test_retrieve_is_typed_however_into_is_passed() -> None:
    """mypy --strict on ``tests/typing_checks/routed_retrieve.py``: ``retrieve(into=User)``,
    ``retrieve(data, into=User)`` and ``retrieve(data, User)`` are ``User`` (assert_type fails on Any)."""
    mypy_api = pytest.importorskip("mypy.api")
    checked = ROOT / "tests" / "typing_checks" / "routed_retrieve.py"
    out, err, status = mypy_api.run(
        ["--strict", "--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", str(checked)]
    )
    assert status == 0, out + err


# --- 8. Ctrl-C in examples/asgi_server.py --serve ----------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_asgi_example_stops_cleanly_on_ctrl_c(anyio_backend_name: str) -> None:
    """``asgi_server.py BACKEND --serve``, then SIGINT once it says it serves: a message, hypercorn
    stops, status 130, and no traceback (a BaseExceptionGroup on trio before)."""
    pytest.importorskip("hypercorn")
    example = ROOT / "examples" / "asgi_server.py"
    command = [sys.executable, str(example), anyio_backend_name, "--serve", "--port", "0"]
    with anyio.fail_after(60):
        process = await anyio.open_process(command, stdout=PIPE, stderr=PIPE)
        try:
            assert process.stdout is not None and process.stderr is not None
            lines = BufferedByteReceiveStream(process.stdout)
            while b"Ctrl-C to stop" not in (line := await read_line(lines)):
                assert line.startswith(b"request-"), line
            assert line.startswith(b"serving RSocket at ws://127.0.0.1:"), line
            process.send_signal(signal.SIGINT)
            rest = b""
            while True:
                try:
                    rest += await lines.receive()
                except anyio.EndOfStream:
                    break
            err = b""
            async for chunk in process.stderr:
                err += chunk
            assert await process.wait() == 130
            assert rest == b"SIGINT: stopping hypercorn\nhypercorn stopped\n", rest
            assert b"Traceback" not in err, err.decode()
        finally:
            await stop(process)
