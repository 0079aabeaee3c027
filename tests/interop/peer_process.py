"""Independent RSocket peers (rsocket-py scripts in ``peers/``) run as subprocesses.

rsocket-py is asyncio-only, so it runs in its own process and our side can be tested on trio too.
A peer server prints ``PORT <n>`` once it listens and exits when its stdin closes. Only AnyIO
process I/O is used, so the test's event loop is never blocked while a peer starts.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

PEERS = Path(__file__).parent / "peers"
#: Seconds allowed for a peer process to start (Python + rsocket-py imports) and print its port.
STARTUP_TIMEOUT = 15
#: Seconds a peer gets to exit after its stdin is closed before it is killed.
EXIT_TIMEOUT = 5


async def stop_peer(process: Process) -> None:
    """Close stdin (the peer's shutdown signal), wait for exit, kill if it lingers."""
    with anyio.CancelScope(shield=True):
        if process.stdin is not None:
            await process.stdin.aclose()
        with anyio.move_on_after(EXIT_TIMEOUT):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


@asynccontextmanager
async def peer_server(script: str, *options: str) -> AsyncIterator[int]:
    """Run ``peers/<script>`` with ``options``; yield the port it listens on.

    The peer's stderr (its logs) is inherited, so pytest shows it when a test fails.
    """
    async with peer_process(script, *options) as (port, _):
        yield port


@asynccontextmanager
async def peer_process(script: str, *options: str) -> AsyncIterator[tuple[int, Process]]:
    """As :func:`peer_server`, yielding the process too (for tests that kill it)."""
    process = await anyio.open_process(
        [sys.executable, str(PEERS / script), *options], stdin=PIPE, stdout=PIPE, stderr=None
    )
    try:
        assert process.stdout is not None
        with anyio.fail_after(STARTUP_TIMEOUT):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 100)
        keyword, _, port = line.decode("ascii").partition(" ")
        assert keyword == "PORT", f"unexpected first line from {script}: {line!r}"
        yield int(port), process
    finally:
        await stop_peer(process)
