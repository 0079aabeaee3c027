"""Running the helper scripts of this package (``server_process.py``, ``client_process.py``) as children.

A child prints one line on stdout when it is ready (``PORT <n>`` or ``READY``); the test reads that
line instead of sleeping. Only AnyIO process I/O is used, so the event loop never blocks while a child
starts. Leaving :func:`child` always reaps the process: a frozen child is continued, stdin is closed
(the children's shutdown signal), and whatever has not exited shortly after is killed.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

HERE = Path(__file__).parent
#: Seconds a child may take to start (a fresh interpreter importing anyio_rsocket) and report ready.
STARTUP_TIMEOUT = 15
#: Seconds a child gets to exit once its stdin is closed before it is killed.
EXIT_TIMEOUT = 5


class Child:
    """A running helper script: its process, its stdout as lines, and its stderr when captured."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self.stderr = bytearray()

    async def read_line(self, timeout: float = STARTUP_TIMEOUT) -> str:
        """The next line the child prints (fails the test if none comes in time)."""
        with anyio.fail_after(timeout):
            line = await self._stdout.receive_until(b"\n", 65536)
        return line.decode()

    async def expect_line(self, keyword: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """Read a line, assert it starts with ``keyword``; return the rest."""
        line = await self.read_line(timeout)
        word, _, rest = line.partition(" ")
        assert word == keyword, f"expected {keyword} from the child, got {line!r}"
        return rest

    async def stats(self) -> dict[str, Any]:
        """Ask a ``server_process.py`` child for its task count."""
        assert self.process.stdin is not None
        await self.process.stdin.send(b"stats\n")
        result: dict[str, Any] = json.loads(await self.expect_line("STATS", timeout=5))
        return result

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def stop(self) -> int:
        """Close stdin and wait for a clean exit (killing a child that lingers); the exit status."""
        with anyio.CancelScope(shield=True):
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # reaped in the meantime
                    self.process.send_signal(signal.SIGCONT)  # a frozen child cannot see stdin close
            if self.process.stdin is not None:
                await self.process.stdin.aclose()
            with anyio.move_on_after(EXIT_TIMEOUT):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            returncode = self.process.returncode
            assert returncode is not None
            return returncode


async def _drain(stream: Any, sink: bytearray) -> None:
    try:
        async for chunk in stream:
            sink.extend(chunk)
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


@asynccontextmanager
async def child(script: str, *args: str | int, capture_stderr: bool = False) -> AsyncIterator[Child]:
    """Run ``python <script> <args>`` from this package; yield it, reap it on the way out.

    The child's stderr is inherited (pytest shows it when a test fails) unless ``capture_stderr``,
    in which case a task collects it into ``Child.stderr`` (so the pipe never fills up).
    """
    process = await anyio.open_process(
        [sys.executable, str(HERE / script), *map(str, args)],
        stdin=PIPE,
        stdout=PIPE,
        stderr=PIPE if capture_stderr else None,
    )
    running = Child(process)
    try:
        async with anyio.create_task_group() as task_group:
            if process.stderr is not None:
                task_group.start_soon(_drain, process.stderr, running.stderr)
            try:
                yield running
            finally:
                await running.stop()
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()


@asynccontextmanager
async def server_child(
    backend: str, transport: str = "tcp", *, capture_stderr: bool = False
) -> AsyncIterator[tuple[Child, int]]:
    """``server_process.py`` on ``backend``: yield the child and the port it serves on."""
    async with child("server_process.py", backend, transport, capture_stderr=capture_stderr) as server:
        port = int(await server.expect_line("PORT"))
        yield server, port
