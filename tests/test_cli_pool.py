"""``anyio-rsocket request|stream|channel --target URL --target URL``: the CLI over
:func:`~anyio_rsocket.connect_pool`, against servers started in the test (asyncio and trio).

Commands run in-process (``cli.main`` in a worker thread, as in ``tests/test_cli.py``), plus one real
subprocess for the console script's argument handling.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from anyio_rsocket import Payload, RequestHandler, RSocket, serve_tcp
from anyio_rsocket import cli as cli_module

from .test_cli import COMMAND, TIMEOUT, in_process
from .test_cli_resume import closed_port

pytestmark = pytest.mark.anyio


class Named(RequestHandler):
    """Answers with its server's name; streams ``name-0``, ``name-1``, ...; upper-cases channels."""

    def __init__(self, name: str, served: list[str], fnf: anyio.Event) -> None:
        self.name = name
        self.served = served
        self.fnf = fnf

    async def request_response(self, payload: Payload) -> Payload:
        self.served.append(self.name)
        return Payload(f"{self.name}:{payload.data.decode()}".encode())

    async def fire_and_forget(self, payload: Payload) -> None:
        self.served.append(self.name)
        self.fnf.set()

    async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        self.served.append(self.name)
        for index in range(int(payload.data)):
            yield Payload(f"{self.name}-{index}".encode())

    async def request_channel(
        self, payload: Payload, inbound: AsyncIterator[Payload]
    ) -> AsyncIterator[Payload]:
        self.served.append(self.name)
        yield Payload(payload.data.upper())
        async for item in inbound:
            yield Payload(item.data.upper())


@asynccontextmanager
async def servers(*names: str) -> AsyncIterator[tuple[list[str], list[str], dict[str, Named]]]:
    """One server per name; yields their URLs, the names of the servers that served each
    interaction (in order), and the handlers by name (their ``fnf`` event is shared)."""
    served: list[str] = []
    fnf = anyio.Event()  # shared: set by whichever server gets a fire-and-forget
    handlers = {name: Named(name, served, fnf) for name in names}
    async with anyio.create_task_group() as task_group:
        urls = []
        for name in names:

            def factory(rsocket: RSocket, name: str = name) -> Named:
                return handlers[name]

            port = await task_group.start(functools.partial(serve_tcp, factory, "127.0.0.1", 0))
            urls.append(f"tcp://127.0.0.1:{port}")
        yield urls, served, handlers
        task_group.cancel_scope.cancel()


def targets(*urls: str) -> list[str]:
    return [argument for url in urls for argument in ("--target", url)]


async def test_request_over_two_targets_is_served_by_one_of_them(capsys: pytest.CaptureFixture[str]) -> None:
    """Each ``request --target A --target B`` is answered by one server; repeated, every run
    succeeds and each picks one of the two (at random, so which one is not asserted)."""
    with anyio.fail_after(TIMEOUT):
        async with servers("a", "b") as (urls, served, _):
            for index in range(6):
                status, out, err = await in_process(capsys, "request", *targets(*urls), "-d", str(index))
                assert (status, err) == (0, "")
                assert out in (f"a:{index}\n", f"b:{index}\n")
            assert len(served) == 6 and set(served) <= {"a", "b"}


async def test_stream_and_channel_over_a_pool(capsys: pytest.CaptureFixture[str]) -> None:
    """``stream`` and ``channel`` with ``--target``: every item of the one chosen server, in order; a
    positional URL is one more target."""
    with anyio.fail_after(TIMEOUT):
        async with servers("a", "b") as (urls, served, _):
            status, out, err = await in_process(capsys, "stream", urls[0], *targets(urls[1]), "-d", "3")
            assert (status, err) == (0, "")
            assert out == "".join(f"{served[-1]}-{index}\n" for index in range(3))
            status, out, err = await in_process(capsys, "channel", *targets(*urls), "-d", "x\ny")
            assert (status, out, err) == (0, "X\nY\n", "")
            assert len(served) == 2


async def test_a_down_target_does_not_break_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """With one target down (nothing listens) and one up, every command works and the up target
    serves it, whichever order the targets are given in."""
    down = f"tcp://127.0.0.1:{await closed_port()}"
    with anyio.fail_after(TIMEOUT):
        async with servers("up") as (urls, served, _):
            for order in ((down, urls[0]), (urls[0], down)):
                for index in range(3):
                    result = await in_process(capsys, "request", *targets(*order), "-d", str(index))
                    assert result == (0, f"up:{index}\n", "")
            result = await in_process(capsys, "stream", *targets(down, urls[0]), "-d", "2")
            assert result == (0, "up-0\nup-1\n", "")
            assert served == ["up"] * 7


async def test_every_target_down_fails_after_the_connect_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    """No target available within ``--connect-timeout``: status 2, naming each target and why."""
    down = [f"tcp://127.0.0.1:{await closed_port()}" for _ in range(2)]
    with anyio.fail_after(TIMEOUT):
        status, out, err = await in_process(
            capsys, "request", *targets(*down), "--connect-timeout", "0.3", "-d", "x"
        )
    assert (status, out) == (cli_module.EXIT_CONNECTION_FAILED, "")
    assert "no target available within 0.3 s" in err
    assert all(url in err for url in down)


async def test_target_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with anyio.fail_after(TIMEOUT):
        for message, argv in {
            "required: url (or --target URL)": ["request", "-d", "x"],
            "--reconnect cannot be combined with --target": [
                "request",
                "--target",
                "tcp://h:1",
                "--reconnect",
            ],
            "unsupported URL scheme": ["request", "--target", "udp://127.0.0.1:1"],
            "unrecognized arguments: --target": ["fnf", "tcp://h:1", "--target", "tcp://h:2"],
        }.items():
            status, out, err = await in_process(capsys, *argv)
            assert (status, out) == (cli_module.EXIT_USAGE, ""), message
            assert message in err, err


async def test_target_in_the_console_script() -> None:
    """The real command line, in a subprocess: ``--help`` documents --target, and a pool request works."""
    with anyio.fail_after(TIMEOUT):
        done = await anyio.run_process([*COMMAND, "request", "--help"], check=False)
        assert done.returncode == 0 and b"--target URL" in done.stdout
        async with servers("a", "b") as (urls, _, _):
            done = await anyio.run_process([*COMMAND, "request", *targets(*urls), "-d", "sub"], check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout in (b"a:sub\n", b"b:sub\n")
