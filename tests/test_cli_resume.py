"""The CLI's ``--resume``, ``--resume-duration`` and ``--reconnect``, on asyncio and trio.

Client commands run in-process (``cli.main`` in a worker thread, as in ``tests/test_cli.py``) against
a server started in the test, through :class:`~tests.interop.cutting_proxy.CuttingProxy`, which cuts
each connection after a given number of server-to-client bytes, so every cut falls mid-stream (and
usually mid-frame). ``serve --resume`` runs as a subprocess, as ``test_serve_echo`` does.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from subprocess import DEVNULL, PIPE

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from anyio_rsocket import Backoff, ConnectionState, Payload, RequestHandler, Resume, connect_tcp, serve_tcp
from anyio_rsocket import cli as cli_module
from anyio_rsocket.websocket import serve_websocket

from .interop.cutting_proxy import CuttingProxy
from .test_cli import COMMAND, TIMEOUT, in_process, read_line, stop

pytestmark = pytest.mark.anyio

RESUMABLE = Resume(session_duration=30.0)


class Handler(RequestHandler):
    """Streams ``item-00000``, ``item-00001``, ... (as many as the request's data says); echoes."""

    def __init__(self) -> None:
        self.streaming = anyio.Event()

    async def request_response(self, payload: Payload) -> Payload:
        return Payload(b"echo:" + payload.data)

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        self.streaming.set()
        for index in range(int(payload.data)):
            yield Payload(b"item-%05d" % index)

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        yield Payload(payload.data.upper())
        async for item in inbound:
            yield Payload(item.data.upper())


def items(count: int, start: int = 0) -> str:
    return "".join(f"item-{index:05d}\n" for index in range(start, count))


@asynccontextmanager
async def server(resume: Resume | None = RESUMABLE) -> AsyncIterator[tuple[Handler, int]]:
    """A server (resumable unless ``resume`` is None) on an ephemeral port."""
    handler = Handler()
    async with anyio.create_task_group() as task_group:
        serve = functools.partial(serve_tcp, lambda rsocket: handler, "127.0.0.1", 0, resume=resume)
        yield handler, await task_group.start(serve)
        task_group.cancel_scope.cancel()


async def closed_port() -> int:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


# --- client commands --------------------------------------------------------------------------------


async def test_stream_with_resume_prints_every_item_once_through_two_cuts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``stream --resume``: the proxy cuts the first connection and the resumed one mid-stream;
    every item is printed exactly once and in order, and the command succeeds."""
    with anyio.fail_after(TIMEOUT):
        async with (
            server() as (_, port),
            CuttingProxy("127.0.0.1", port, cut_after_bytes=4000, auto_cuts=2) as proxy,
        ):
            url = f"tcp://127.0.0.1:{proxy.port}"
            result = await in_process(capsys, "stream", url, "-d", "3000", "--resume")
            assert result == (0, items(3000), "")
            await proxy.wait_cuts(2)
            assert proxy.connections == 3  # the first connection, then one RESUME per cut


async def test_stream_with_resume_over_websocket(capsys: pytest.CaptureFixture[str]) -> None:
    """``stream ws://... --resume``: WebSocket connections are dialled again and resumed too."""
    handler = Handler()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as task_group:
            serve = functools.partial(
                serve_websocket, lambda rsocket: handler, "127.0.0.1", 0, resume=RESUMABLE
            )
            port = await task_group.start(serve)
            async with CuttingProxy("127.0.0.1", port, cut_after_bytes=4000, auto_cuts=2) as proxy:
                url = f"ws://127.0.0.1:{proxy.port}/"
                result = await in_process(capsys, "stream", url, "-d", "3000", "--resume")
                assert result == (0, items(3000), "")
                await proxy.wait_cuts(2)
                assert proxy.connections == 3
            task_group.cancel_scope.cancel()


async def test_channel_with_resume_duration_survives_cuts(capsys: pytest.CaptureFixture[str]) -> None:
    """``channel --resume-duration`` (which implies --resume): lines sent and answers received both
    continue across two cuts, each answer printed once and in order."""
    lines = [f"line-{index:04d}" for index in range(1500)]
    with anyio.fail_after(TIMEOUT):
        async with (
            server() as (_, port),
            CuttingProxy("127.0.0.1", port, cut_after_bytes=3000, auto_cuts=2) as proxy,
        ):
            url = f"tcp://127.0.0.1:{proxy.port}"
            data = "\n".join(lines)
            result = await in_process(capsys, "channel", url, "-d", data, "--resume-duration", "20")
            assert result == (0, "".join(line.upper() + "\n" for line in lines), "")
            await proxy.wait_cuts(2)


async def test_request_with_resume_and_a_server_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    """``request --resume`` works with a resumable server; a server without resumption refuses the
    SETUP, which is a refused connection (status 2) with the server's reason."""
    with anyio.fail_after(TIMEOUT):
        async with server() as (_, port):
            result = await in_process(capsys, "request", f"tcp://127.0.0.1:{port}", "-d", "hi", "--resume")
            assert result == (0, "echo:hi\n", "")
        async with server(resume=None) as (_, port):
            status, out, err = await in_process(capsys, "request", f"tcp://127.0.0.1:{port}", "--resume")
            assert (status, out) == (cli_module.EXIT_CONNECTION_FAILED, "")
            assert (
                err == "anyio-rsocket: RejectedSetupError (0x3): resumption is not supported by this server\n"
            )


async def test_a_session_not_resumed_in_time_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    """After a cut, every new connection leads nowhere: once ``--resume-duration`` has passed the
    command fails with status 2 and RejectedResumeError, having printed a prefix of the items,
    each once and in order, and no traceback."""
    unreachable = await closed_port()
    with anyio.fail_after(TIMEOUT):
        async with (
            server() as (handler, port),
            CuttingProxy("127.0.0.1", port, cut_after_bytes=2000) as proxy,
        ):
            url = f"tcp://127.0.0.1:{proxy.port}"
            result: list[tuple[int, str, str]] = []

            async def run() -> None:
                result.append(
                    await in_process(capsys, "stream", url, "-d", "1000000", "--resume-duration", "0.5")
                )

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(run)
                await handler.streaming.wait()  # the first connection is relayed to the server
                proxy.target_port = unreachable  # later ones are relayed nowhere: RESUME gets no answer
            [(status, out, err)] = result
            assert status == cli_module.EXIT_CONNECTION_FAILED
            assert (
                err == "anyio-rsocket: RejectedResumeError (0x4): the session was not resumed within 0.5 s\n"
            )
            printed = out.splitlines(keepends=True)
            assert 0 < len(printed) < 1000 and "".join(printed) == items(len(printed))
            assert proxy.connections > 2  # it kept trying until the session's time was up


async def test_reconnect(capsys: pytest.CaptureFixture[str]) -> None:
    """``--reconnect``: requests work as usual; a cut mid-stream fails the stream (status 2,
    ConnectionLostError, no resume) and the command ends at once although the server is gone."""
    with anyio.fail_after(TIMEOUT):
        async with (
            server(resume=None) as (handler, port),
            CuttingProxy("127.0.0.1", port, cut_after_bytes=2000) as proxy,
        ):
            url = f"tcp://127.0.0.1:{proxy.port}"
            assert await in_process(capsys, "request", url, "-d", "x", "--reconnect") == (0, "echo:x\n", "")
            unreachable = await closed_port()
            result: list[tuple[int, str, str]] = []

            async def run() -> None:
                result.append(await in_process(capsys, "stream", url, "-d", "1000000", "--reconnect"))

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(run)
                await handler.streaming.wait()
                proxy.target_port = unreachable  # new connections after the cut lead nowhere
            [(status, out, err)] = result
            assert status == cli_module.EXIT_CONNECTION_FAILED
            assert err.startswith("anyio-rsocket: ConnectionLostError (0x102): ") and err.count("\n") == 1
            printed = out.splitlines(keepends=True)
            assert 0 < len(printed) < 1000 and "".join(printed) == items(len(printed))


async def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Exclusive or invalid flags are usage errors (64) with a clear message and no traceback."""
    url = "tcp://127.0.0.1:9"  # never dialled: the options are refused first
    usage_errors = {
        "choose --resume (or --resume-duration) or --reconnect, not both": [
            ["stream", url, "--resume", "--reconnect"],
            ["request", url, "--reconnect", "--resume-duration", "5"],
        ],
        "argument --resume-duration: must be positive: 0": [["channel", url, "--resume-duration", "0"]],
        "argument --resume-duration: not a number: 'soon'": [["serve", url, "--resume-duration", "soon"]],
        "unrecognized arguments: --resume": [["fnf", url, "--resume"], ["push", url, "-r", "x", "--resume"]],
        "unrecognized arguments: --reconnect": [["serve", "tcp://127.0.0.1:0", "--echo", "--reconnect"]],
    }
    with anyio.fail_after(TIMEOUT):
        for message, cases in usage_errors.items():
            for argv in cases:
                status, out, err = await in_process(capsys, *argv)
                assert (status, out) == (cli_module.EXIT_USAGE, ""), argv
                assert message in err and "Traceback" not in err, err


def test_resume_options_reach_the_connect_call() -> None:
    """What the flags become: ``Resume`` (default or with the duration) or the ``Backoff``."""
    parser = cli_module.build_parser()

    def options(*flags: str) -> dict[str, object]:
        args = parser.parse_args(["stream", "tcp://127.0.0.1:9", *flags])
        return cli_module.plan_client(args).connect_options

    assert "resume" not in options() and "reconnect" not in options()
    resume = options("--resume")["resume"]
    assert isinstance(resume, Resume) and resume.session_duration == Resume().session_duration == 60.0
    resume = options("--resume-duration", "2.5")["resume"]
    assert isinstance(resume, Resume) and resume.session_duration == 2.5
    assert options("--reconnect")["reconnect"] == Backoff(initial=0.1, maximum=30.0)
    serve_args = parser.parse_args(["serve", "tcp://127.0.0.1:0", "--echo", "--resume-duration", "9"])
    served = cli_module.resume_option(serve_args)
    assert served is not None and served.session_duration == 9.0


# --- the demo server -----------------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
async def test_serve_resume_keeps_sessions_across_cuts(debug: bool) -> None:
    """``serve --echo --resume`` (also with --debug, whose traced connections must share one session
    registry; --fragment-size is accepted with it): a resumable client's channel goes on through two
    cuts, every echo once, in order."""
    command = [
        *COMMAND,
        "serve",
        "tcp://127.0.0.1:0",
        "--echo",
        "--resume",
        *(["--debug", "--fragment-size", "64"] if debug else []),
    ]
    count = 1500
    with anyio.fail_after(TIMEOUT):
        process = await anyio.open_process(command, stdout=PIPE, stderr=DEVNULL)
        try:
            assert process.stdout is not None
            banner = (await read_line(BufferedByteReceiveStream(process.stdout))).decode()
            assert banner.startswith("listening on tcp://127.0.0.1:")
            port = int(banner.rpartition(":")[2])
            resume = Resume(retry=Backoff(initial=0.01, maximum=0.1))
            async with (
                CuttingProxy("127.0.0.1", port, cut_after_bytes=3000, auto_cuts=2) as proxy,
                connect_tcp("127.0.0.1", proxy.port, resume=resume) as rs,
                rs.request_channel(Payload(b"0")) as channel,
                anyio.create_task_group() as task_group,
            ):

                async def send() -> None:
                    for index in range(1, count):
                        await channel.send(Payload(b"%d" % index))
                    await channel.send_eof()

                task_group.start_soon(send)
                assert [int(item.data) async for item in channel] == list(range(count))
                await proxy.wait_cuts(2)
                assert rs.state is ConnectionState.CONNECTED
        finally:
            await stop(process)
