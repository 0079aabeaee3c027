"""Soak and hostile-client runs with the server's memory and task count watched: ``python bench/soak.py``.

The server runs in a subprocess (this script started with ``--serve``), on the chosen backend, over
TCP or WebSocket, with a handler that echoes request-responses and answers ``request_stream(b"<n>")``
with n small items. The load runs in this process on the same backend. Every scenario gets a fresh
server, and the server's RSS is read with psutil while its task count comes from the server itself
(``stats`` on its stdin is answered with one JSON line on its stdout), sampled every
``--sample-interval`` seconds.

Scenarios (``--scenario``, repeatable; all by default):

* ``normal``: N request-responses and N streams of ``--stream-items`` items from ``--concurrency``
  workers, each reconnecting every ``--per-connection`` operations.
* ``flood``: raw clients send SETUP, then KEEPALIVE(respond) + REQUEST_FNF + REQUEST_RESPONSE frames
  as fast as they can for ``--flood-seconds`` and never read a byte.
* ``trickle``: ``--trickle-connections`` clients send SETUP, declare a 16 MiB frame, then send it one
  byte every ``--trickle-interval`` seconds.
* ``stall``: ``--stall-connections`` clients send SETUP and most (``--stall-fraction``) of a
  ``--stall-size`` frame, then stall.

Over WebSocket the raw clients do the upgrade (wsproto) and then the same with WebSocket frames: a
binary frame header declares the size and the payload follows (unmasked: a zero masking key).

During each hostile scenario a probe client connected beforehand sends a request-response every
sample; after the attackers hang up, the script waits (``--settle`` seconds at most) for the
server's task count to return to where it was, reads the RSS, and checks a new client is served.

Server limits (``--max-frame-size``, ``--frame-timeout``, ``--max-connections``,
``--max-lifetime-cap``, ``--setup-timeout``, ``--max-concurrent-requests``) are passed to the
server only when given, so the defaults are the library's.

"RSS after close" is read once the task count is back and the server has run ``gc.collect()``. The
allocator keeps some freed memory, so a number that stays high after one round but does not grow
with ``--rounds`` is retention, not a leak; "2nd half" (normal scenario) is the growth between half
and all of the operations, which a leak would make grow with N.

Examples::

    python bench/soak.py                                  # everything, asyncio and trio, TCP and WS
    python bench/soak.py --backend trio --transport tcp -n 5000
    python bench/soak.py --scenario trickle --frame-timeout 2 --markdown
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from subprocess import PIPE
from typing import Any

import anyio

MIB = 1 << 20
#: The largest frame RSocket's 24-bit length prefix can declare.
MAX_FRAME = (1 << 24) - 1
SCENARIOS = ("normal", "flood", "trickle", "stall")
#: Server options the script can pass: flag name -> (type, help).
SERVER_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "max_frame_size": (int, "largest frame the server accepts, in bytes"),
    "frame_timeout": (float, "seconds a frame may take to arrive once its first byte has"),
    "max_connections": (int, "connections the server serves at once"),
    "max_lifetime_cap": (float, "largest max lifetime (seconds) a client may ask for"),
    "setup_timeout": (float, "seconds a new connection may take to send SETUP"),
    "max_concurrent_requests": (int, "requests handled at once per connection"),
}


# --- the server (this script with --serve) ----------------------------------------------------------


def count_tasks(backend: str) -> int:
    """Tasks alive in the running event loop."""
    if backend == "trio":
        import trio

        def walk(task: trio.lowlevel.Task) -> int:
            return 1 + sum(walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

        return walk(trio.lowlevel.current_root_task())
    import asyncio

    return len(asyncio.all_tasks())


async def serve_main(backend: str, transport: str, options: dict[str, Any]) -> None:
    from anyio_rsocket import Payload, RequestHandler, serve_tcp, serve_websocket

    class SoakHandler(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            return Payload(payload.data, payload.metadata)

        async def fire_and_forget(self, payload: Payload) -> None:
            pass

        async def metadata_push(self, metadata: bytes) -> None:
            pass

        async def request_stream(self, payload: Payload) -> AsyncIterator[Payload]:
            try:
                count = int(payload.data)
            except ValueError:
                count = 1
            for index in range(count):
                yield Payload(b"item-%d" % index)

    serve = serve_tcp if transport == "tcp" else serve_websocket
    async with anyio.create_task_group() as task_group:
        port = await task_group.start(
            lambda task_status: serve(lambda rs: SoakHandler(), task_status=task_status, **options)
        )
        print(f"PORT {port}", flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                break
            command = line.split()
            if command and command[0] == "stats":
                if command[1:] == ["gc"]:
                    gc.collect()  # what is left after this is held, not garbage waiting for a collection
                print("STATS " + json.dumps({"tasks": count_tasks(backend)}), flush=True)
        task_group.cancel_scope.cancel()


# --- the server as seen from here ---------------------------------------------------------------------


class Server:
    """The server subprocess: its port, RSS (psutil) and task count (asked on its stdin)."""

    def __init__(self, process: Any, port: int, lines: Any) -> None:
        import psutil

        self.process = process
        self.port = port
        self._lines = lines
        self._psutil = psutil.Process(process.pid)
        self._lock = anyio.Lock()
        self._owed = 0  # stats requests whose answer has not been read yet

    def rss(self) -> int:
        return int(self._psutil.memory_info().rss)

    async def tasks(self, timeout: float = 5.0, collect: bool = False) -> int | None:
        """The server's task count, or None if it does not answer in time (too busy).

        With ``collect`` the server runs a full garbage collection first.
        """
        async with self._lock:
            await self.process.stdin.send(b"stats gc\n" if collect else b"stats\n")
            self._owed += 1
            tasks = None
            with anyio.move_on_after(timeout):
                while self._owed:  # late answers to earlier requests come first: skip them
                    line = (await self._lines.receive_until(b"\n", 65536)).decode()
                    self._owed -= 1
                    tasks = int(json.loads(line.partition(" ")[2])["tasks"])
            return tasks if not self._owed else None


@asynccontextmanager
async def running_server(backend: str, transport: str, options: dict[str, Any]) -> AsyncIterator[Server]:
    from anyio.streams.buffered import BufferedByteReceiveStream

    command = [sys.executable, os.path.abspath(__file__), "--serve", backend, transport, json.dumps(options)]
    process = await anyio.open_process(command, stdin=PIPE, stdout=PIPE, stderr=None)
    try:
        lines = BufferedByteReceiveStream(process.stdout)
        try:
            with anyio.fail_after(30):
                first = (await lines.receive_until(b"\n", 65536)).decode()
        except anyio.IncompleteRead:
            raise RuntimeError("the server exited before reporting its port (its stderr is above)") from None
        keyword, _, port = first.partition(" ")
        if keyword != "PORT":
            raise RuntimeError(f"unexpected first line from the server: {first!r}")
        yield Server(process, int(port), lines)
    finally:
        with anyio.CancelScope(shield=True):
            await process.stdin.aclose()
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()


# --- clients ------------------------------------------------------------------------------------------


@asynccontextmanager
async def rsocket_client(transport: str, port: int) -> AsyncIterator[Any]:
    from anyio_rsocket import connect_tcp, connect_websocket

    if transport == "tcp":
        async with connect_tcp("127.0.0.1", port) as rsocket:
            yield rsocket
    else:
        async with connect_websocket(f"ws://127.0.0.1:{port}/") as rsocket:
            yield rsocket


def ws_header(length: int) -> bytes:
    """A client's binary WebSocket frame header (FIN) for ``length`` bytes, with a zero masking key."""
    if length < 126:
        head = bytes([0x82, 0x80 | length])
    elif length < 1 << 16:
        head = bytes([0x82, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big")
    return head + b"\0\0\0\0"  # XOR with zeros: the payload travels as is


class RawClient:
    """A connection that speaks raw bytes: length-prefixed frames over TCP, or WebSocket frames."""

    def __init__(self, stream: Any, transport: str) -> None:
        self.stream = stream
        self.transport = transport

    @classmethod
    async def connect(cls, transport: str, port: int) -> RawClient:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        if transport == "ws":
            try:
                await _upgrade(stream, port)
            except BaseException:
                await stream.aclose()
                raise
        return cls(stream, transport)

    def header(self, length: int) -> bytes:
        """What precedes a frame of ``length`` bytes on this transport."""
        return length.to_bytes(3, "big") if self.transport == "tcp" else ws_header(length)

    def frames(self, frames: list[bytes]) -> bytes:
        return b"".join(self.header(len(frame)) + frame for frame in frames)


async def _upgrade(stream: Any, port: int) -> None:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, RejectConnection, Request

    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send(ws.send(Request(host=f"127.0.0.1:{port}", target="/")))
    with anyio.fail_after(10):
        while True:
            ws.receive_data(await stream.receive())
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise RuntimeError(f"WebSocket upgrade refused ({event.status_code})")


def setup_frame() -> bytes:
    from anyio_rsocket.frames import SetupFrame, encode_frame

    return encode_frame(SetupFrame(20_000, 90_000, "application/octet-stream", "application/octet-stream"))


_CLOSED_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@dataclass
class Attack:
    """What the raw clients of a hostile scenario did."""

    connections: int = 0
    sent: int = 0  # bytes
    dropped: int = 0  # connections the server closed before the scenario ended


async def _watch_close(client: RawClient, until: float) -> bool:
    """Read (and discard) until the server closes or ``until``; True if the server closed."""
    with anyio.move_on_after(max(0.0, until - anyio.current_time())):
        try:
            while True:
                await client.stream.receive()
        except _CLOSED_ERRORS:
            return True
    return False


async def flood_one(transport: str, port: int, until: float, payload: int, attack: Attack) -> None:
    from anyio_rsocket.frames import (
        KeepaliveFrame,
        RequestFireAndForgetFrame,
        RequestResponseFrame,
        encode_frame,
    )

    client = await RawClient.connect(transport, port)
    attack.connections += 1
    data = b"x" * payload
    keepalive = encode_frame(KeepaliveFrame(True, 0, data))
    stream_id = 1
    try:
        await client.stream.send(client.frames([setup_frame()]))
        with anyio.move_on_after(max(0.0, until - anyio.current_time())):
            while True:
                batch = []
                for _ in range(32):  # 96 frames per write
                    batch.append(keepalive)
                    batch.append(encode_frame(RequestFireAndForgetFrame(stream_id, data)))
                    batch.append(encode_frame(RequestResponseFrame(stream_id + 2, data)))
                    stream_id = stream_id + 4 if stream_id < (1 << 31) - 8 else 1
                chunk = client.frames(batch)
                await client.stream.send(chunk)  # blocks while the server does not read
                attack.sent += len(chunk)
    except _CLOSED_ERRORS:
        attack.dropped += 1
    finally:
        await client.stream.aclose()


async def trickle_one(transport: str, port: int, until: float, interval: float, attack: Attack) -> None:
    client = await RawClient.connect(transport, port)
    attack.connections += 1
    try:
        opening = client.frames([setup_frame()]) + client.header(MAX_FRAME)
        await client.stream.send(opening)
        attack.sent += len(opening)
        async with anyio.create_task_group() as task_group:

            async def drip() -> None:
                try:
                    while anyio.current_time() < until:
                        await client.stream.send(b"\0")
                        attack.sent += 1
                        await anyio.sleep(interval)
                except _CLOSED_ERRORS:
                    pass

            task_group.start_soon(drip)
            if await _watch_close(client, until):
                attack.dropped += 1
            task_group.cancel_scope.cancel()
    except _CLOSED_ERRORS:
        attack.dropped += 1
    finally:
        await client.stream.aclose()


async def stall_one(
    transport: str, port: int, until: float, size: int, fraction: float, attack: Attack
) -> None:
    client = await RawClient.connect(transport, port)
    attack.connections += 1
    try:
        await client.stream.send(client.frames([setup_frame()]) + client.header(size))
        remaining = int(size * fraction)
        block = b"\0" * (256 * 1024)
        with anyio.move_on_after(max(0.0, until - anyio.current_time())):
            while remaining > 0:
                piece = block[: min(remaining, len(block))]
                await client.stream.send(piece)
                attack.sent += len(piece)
                remaining -= len(piece)
        if await _watch_close(client, until):
            attack.dropped += 1
    except _CLOSED_ERRORS:
        attack.dropped += 1
    finally:
        await client.stream.aclose()


# --- measurement ----------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    backend: str
    transport: str
    rss_before: int = 0
    rss_peak: int = 0
    rss_after: int = 0
    tasks_before: int | None = None
    tasks_peak: int | None = None
    tasks_after: int | None = None
    settle_times: list[float | None] = field(default_factory=list)  # per round; None: not in time
    seconds: float = 0.0
    attack: Attack | None = None
    operations: int = 0  # normal scenario: request-responses + streams completed
    failures: int = 0  # normal scenario: workers that failed
    rss_half: int | None = None  # normal scenario: RSS when half of the operations were done
    rss_end: int = 0  # RSS when the load ended (before the connections closed)
    rss_rounds: list[int] = field(default_factory=list)  # RSS after close, round by round
    probe_max_ms: float | None = None
    probe_failures: int = 0
    new_client_ok: bool | None = None
    notes: list[str] = field(default_factory=list)


class Sampler:
    """Reads the server's RSS and task count every ``interval`` seconds; keeps the peaks."""

    def __init__(self, server: Server, result: Result, interval: float) -> None:
        self.server = server
        self.result = result
        self.interval = interval

    async def run(self) -> None:
        while True:
            self.sample_rss()
            tasks = await self.server.tasks()
            if tasks is not None:
                self.result.tasks_peak = max(self.result.tasks_peak or 0, tasks)
            self.sample_rss()
            await anyio.sleep(self.interval)

    def sample_rss(self) -> None:
        self.result.rss_peak = max(self.result.rss_peak, self.server.rss())


async def probe(
    transport: str,
    port: int,
    result: Result,
    interval: float,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A well-behaved client during the attack: one request-response per interval, timed."""
    from anyio_rsocket import Payload

    async with rsocket_client(transport, port) as rsocket:
        await rsocket.request_response(Payload(b"probe"))
        task_status.started()
        while True:
            started = time.perf_counter()
            try:
                with anyio.fail_after(10):
                    await rsocket.request_response(Payload(b"probe"))
            except Exception:  # the point is to report it, whatever it is
                result.probe_failures += 1
                if rsocket.is_closed:
                    result.notes.append("probe connection lost")
                    return
            else:
                elapsed = (time.perf_counter() - started) * 1000
                result.probe_max_ms = max(result.probe_max_ms or 0.0, elapsed)
            await anyio.sleep(interval)


async def settle(server: Server, result: Result, limit: float) -> None:
    """Wait (at most ``limit`` s) for the task count to come back; then read RSS and tasks."""
    started = anyio.current_time()
    baseline = result.tasks_before or 0
    settled = None
    with anyio.move_on_after(limit):
        while True:
            tasks = await server.tasks()
            if tasks is not None and tasks <= baseline:
                settled = anyio.current_time() - started
                break
            await anyio.sleep(0.1)
    result.settle_times.append(settled)
    result.tasks_after = await server.tasks(collect=True)
    result.rss_after = server.rss()
    result.rss_rounds.append(result.rss_after)


async def new_client_served(transport: str, port: int) -> bool:
    from anyio_rsocket import Payload

    try:
        with anyio.fail_after(10):
            async with rsocket_client(transport, port) as rsocket:
                answer = await rsocket.request_response(Payload(b"hello"))
                return bool(answer.data == b"hello")
    except Exception:
        return False


async def run_normal(server: Server, args: argparse.Namespace, result: Result) -> None:
    from anyio_rsocket import Payload

    todo = {"rr": args.requests, "stream": args.requests}
    items = args.stream_items
    stream_data = b"%d" % items
    half = args.requests  # of 2 * requests operations

    def take() -> str | None:
        for kind in ("rr", "stream") if todo["rr"] >= todo["stream"] else ("stream", "rr"):
            if todo[kind] > 0:
                todo[kind] -= 1
                return kind
        return None

    async def worker() -> None:
        try:
            await work()
        except Exception as exc:  # reported, and the other workers carry on
            result.failures += 1
            result.notes.append(f"worker failed: {exc!r}")

    async def work() -> None:
        while todo["rr"] or todo["stream"]:
            async with rsocket_client(args.transport_now, server.port) as rsocket:
                for _ in range(args.per_connection):
                    kind = take()
                    if kind is None:
                        return
                    if kind == "rr":
                        await rsocket.request_response(Payload(b"0123456789abcdef"))
                    else:
                        received = 0
                        async with rsocket.request_stream(Payload(stream_data), initial_n=items) as stream:
                            async for _ in stream:
                                received += 1
                        assert received == items, f"stream gave {received} of {items} items"
                    result.operations += 1
                    if result.operations == half:
                        result.rss_half = server.rss()

    async with anyio.create_task_group() as task_group:
        for _ in range(args.concurrency):
            task_group.start_soon(worker)


async def run_attack(server: Server, args: argparse.Namespace, result: Result, scenario: str) -> None:
    transport = args.transport_now
    if result.attack is None:
        result.attack = Attack()
    attack = result.attack
    if scenario == "flood":
        count, seconds = args.flood_connections, args.flood_seconds
    elif scenario == "trickle":
        count, seconds = args.trickle_connections, args.trickle_seconds
    else:
        count, seconds = args.stall_connections, args.stall_seconds
    until = anyio.current_time() + seconds

    async def attacker() -> None:
        try:
            if scenario == "flood":
                await flood_one(transport, server.port, until, args.flood_payload, attack)
            elif scenario == "trickle":
                await trickle_one(transport, server.port, until, args.trickle_interval, attack)
            else:
                await stall_one(transport, server.port, until, args.stall_size, args.stall_fraction, attack)
        except (*_CLOSED_ERRORS, RuntimeError, TimeoutError) as exc:  # refused before it started
            result.notes.append(f"attacker failed: {type(exc).__name__}")

    async with anyio.create_task_group() as task_group:
        for _ in range(count):
            task_group.start_soon(attacker)
    # Leaving the group closed every attacking connection.


async def run_scenario(backend: str, args: argparse.Namespace, scenario: str) -> Result:
    transport = args.transport_now
    result = Result(scenario, backend, transport)
    rounds = 1 if scenario == "normal" else args.rounds
    async with running_server(backend, transport, args.server_options) as server:
        result.tasks_before = await server.tasks()
        result.rss_before = result.rss_peak = server.rss()
        sampler = Sampler(server, result, args.sample_interval)
        for _ in range(rounds):
            started = anyio.current_time()
            async with anyio.create_task_group() as watchers:
                watchers.start_soon(sampler.run)
                if scenario == "normal":
                    await run_normal(server, args, result)
                else:
                    # The probe is connected (and served) before the attack starts.
                    await watchers.start(probe, transport, server.port, result, args.sample_interval)
                    await run_attack(server, args, result, scenario)
                result.seconds += anyio.current_time() - started
                sampler.sample_rss()
                result.rss_end = server.rss()
                watchers.cancel_scope.cancel()
            # The probe connection is closed now, so the count can come back to the baseline.
            await settle(server, result, args.settle)
            if scenario != "normal":
                served = await new_client_served(transport, server.port)
                result.new_client_ok = served and result.new_client_ok is not False
    return result


# --- report ---------------------------------------------------------------------------------------------


def _mib(value: int) -> str:
    return f"{value / MIB:+.1f} MiB"


def _size(value: int) -> str:
    return f"{value / MIB:.1f} MiB" if value >= MIB else f"{value / 1024:.0f} KiB"


def _after(result: Result) -> str:
    text = _mib(result.rss_after - result.rss_before)
    if len(result.rss_rounds) > 1:
        text += f" (round 1: {_mib(result.rss_rounds[0] - result.rss_before)})"
    return text


def _settled(result: Result) -> str:
    if not result.settle_times or None in result.settle_times:
        return "not within --settle"
    return f"{max(t for t in result.settle_times if t is not None):.1f} s"


def _tasks(result: Result) -> str:
    def show(value: int | None) -> str:
        return "?" if value is None else str(value)

    return f"{show(result.tasks_before)} / {show(result.tasks_peak)} / {show(result.tasks_after)}"


def _load(result: Result) -> str:
    if result.attack is None:
        rate = result.operations / result.seconds if result.seconds else 0.0
        drift = "" if result.rss_half is None else f", 2nd half {_mib(result.rss_end - result.rss_half)}"
        failed = f", {result.failures} workers FAILED" if result.failures else ""
        return f"{result.operations} ops in {result.seconds:.1f} s ({rate:,.0f}/s){drift}{failed}"
    attack = result.attack
    return (
        f"{attack.connections} conns, {_size(attack.sent)} sent in {result.seconds:.1f} s, "
        f"{attack.dropped} dropped by server"
    )


def _probe(result: Result) -> str:
    if result.attack is None:
        return "-"
    worst = "-" if result.probe_max_ms is None else f"{result.probe_max_ms:.0f} ms"
    failures = f", {result.probe_failures} failed" if result.probe_failures else ""
    after = {True: "yes", False: "NO", None: "-"}[result.new_client_ok]
    return f"{worst}{failures}; new client served: {after}"


HEADER = (
    "scenario",
    "backend",
    "transport",
    "load",
    "RSS before",
    "peak RSS growth",
    "RSS after close",
    "tasks before/peak/after",
    "settled in",
    "probe worst; after",
)


def table_rows(results: list[Result]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for result in results:
        rows.append(
            (
                result.scenario,
                result.backend,
                result.transport,
                _load(result),
                f"{result.rss_before / MIB:.1f} MiB",
                _mib(result.rss_peak - result.rss_before),
                _after(result),
                _tasks(result),
                _settled(result),
                _probe(result),
            )
        )
    return rows


def print_table(results: list[Result], markdown: bool) -> None:
    rows = [HEADER, *table_rows(results)]
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for row in rows[1:]:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(row[column]) for row in rows) for column in range(len(HEADER))]
        for index, row in enumerate(rows):
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
            if index == 0:
                print("  ".join("-" * width for width in widths))
    notes = [(result, note) for result in results for note in dict.fromkeys(result.notes)]
    for result, note in notes:
        print(f"note: {result.scenario}/{result.backend}/{result.transport}: {note}")


# --- command line ---------------------------------------------------------------------------------------


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as the description, and every default shown."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/soak.py", description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--serve", nargs=3, metavar=("BACKEND", "TRANSPORT", "OPTIONS"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio", "both"], default="both", help="event loop of both sides"
    )
    parser.add_argument("--transport", choices=["tcp", "ws", "both"], default="both", help="TCP or WebSocket")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        default=argparse.SUPPRESS,
        help="run only these (repeatable; default: all of them)",
    )
    normal = parser.add_argument_group("normal scenario")
    normal.add_argument(
        "-n", "--requests", type=int, default=30_000, help="request-responses, and as many streams"
    )
    normal.add_argument("--stream-items", type=int, default=8, help="items per stream")
    normal.add_argument("--concurrency", type=int, default=16, help="workers, each with its own connection")
    normal.add_argument(
        "--per-connection", type=int, default=500, help="operations before a worker reconnects"
    )
    hostile = parser.add_argument_group("hostile scenarios")
    hostile.add_argument(
        "--rounds", type=int, default=1, help="run each attack this many times on the same server"
    )
    hostile.add_argument("--flood-connections", type=int, default=4, help="raw clients flooding")
    hostile.add_argument("--flood-seconds", type=float, default=5.0, help="how long they flood")
    hostile.add_argument("--flood-payload", type=int, default=1024, help="bytes of data in every flood frame")
    hostile.add_argument("--trickle-connections", type=int, default=200, help="raw clients trickling")
    hostile.add_argument("--trickle-seconds", type=float, default=5.0, help="how long they trickle")
    hostile.add_argument("--trickle-interval", type=float, default=0.005, help="seconds between two bytes")
    hostile.add_argument("--stall-connections", type=int, default=16, help="raw clients stalling")
    hostile.add_argument("--stall-seconds", type=float, default=5.0, help="how long they hold")
    hostile.add_argument("--stall-size", type=int, default=MAX_FRAME, help="declared frame size in bytes")
    hostile.add_argument(
        "--stall-fraction", type=float, default=0.9, help="part of the frame sent before stalling"
    )
    limits = parser.add_argument_group("server limits (passed to the server only when given)")
    for name, (kind, text) in SERVER_OPTIONS.items():
        limits.add_argument("--" + name.replace("_", "-"), type=kind, default=argparse.SUPPRESS, help=text)
    parser.add_argument("--sample-interval", type=float, default=0.25, help="seconds between samples")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="max seconds to wait for tasks to come back"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--json", metavar="PATH", default=argparse.SUPPRESS, help="also write the results as JSON"
    )
    args = parser.parse_args(argv)
    args.server_options = {name: getattr(args, name) for name in SERVER_OPTIONS if hasattr(args, name)}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        backend, transport, options = args.serve
        anyio.run(serve_main, backend, transport, json.loads(options), backend=backend)
        return 0
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    transports = ["tcp", "ws"] if args.transport == "both" else [args.transport]
    scenarios = getattr(args, "scenario", None) or list(SCENARIOS)
    options = (
        ", ".join(f"{name}={value}" for name, value in args.server_options.items()) or "library defaults"
    )
    print(f"server options: {options}", flush=True)
    results: list[Result] = []
    for backend in backends:
        for transport in transports:
            args.transport_now = transport
            for scenario in scenarios:
                print(f"running {scenario} on {backend} over {transport} ...", file=sys.stderr, flush=True)
                results.append(anyio.run(run_scenario, backend, args, scenario, backend=backend))
    print_table(results, args.markdown)
    if hasattr(args, "json"):
        with open(args.json, "w") as out:
            json.dump(
                {"server_options": args.server_options, "results": [asdict(r) for r in results]},
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
