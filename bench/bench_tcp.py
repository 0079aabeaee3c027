"""Loopback TCP benchmark: anyio_rsocket against rsocket-py 0.4.20, side by side in one run.

Usage::

    python bench/bench_tcp.py [--quick] [--json out.json] [--backend asyncio|trio|both]
    python -m bench ...                       # same thing

Layout: this process only orchestrates. Each implementation runs in its own long-lived worker
process (``--worker ours-asyncio``, ``--worker ours-trio``, ``--worker theirs``); for every
measurement the worker starts a fresh event loop holding both the server and the client of one
loopback TCP connection, warms up, measures, checks the counts and reports one JSON line. Runs
alternate between the implementations (ours, theirs, ours, theirs, ...) and the best of 3 runs (1
with ``--quick``) is reported. Every measurement has a timeout (inside the worker, and a harder
one here that kills and restarts a stuck worker); a cell that ran out of time says ``timeout``.

See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # installed with anyio on Python 3.10

DATA16 = b"0123456789abcdef"
assert len(DATA16) == 16
RR_CONCURRENCY = 64
STREAM_CREDIT = 256  # "credit 256 at a time": at most 256 outstanding, refilled by half-windows
CHANNEL_WINDOW = 256  # rsocket-py channel responder: inbound credit window (ours uses the same)
MAX_REQUEST_N = 2**31 - 1


# ==================================================================================================
# Benchmark table
# ==================================================================================================


@dataclass(frozen=True)
class Bench:
    key: str
    title: str
    unit: str
    n_full: int
    n_quick: int
    warmup: int
    #: rsocket-py variants measured against this row ("" = the only one).
    their_variants: tuple[str, ...] = ("",)


BENCHES: tuple[Bench, ...] = (
    Bench("rr_seq", "request-response, sequential", "req/s", 20_000, 3_000, 300),
    Bench("rr_conc", f"request-response, {RR_CONCURRENCY} concurrent", "req/s", 50_000, 8_000, 640),
    Bench(
        "stream_unbounded",
        "request-stream, unbounded credit",
        "items/s",
        100_000,
        20_000,
        2_000,
        ("StreamFromGenerator", "minimal Publisher"),
    ),
    Bench(
        "stream_256",
        f"request-stream, credit {STREAM_CREDIT}",
        "items/s",
        100_000,
        20_000,
        2_000,
        ("StreamFromGenerator", "minimal Publisher"),
    ),
    Bench("channel", "request-channel echo", "items/s", 50_000, 10_000, 1_000),
    Bench("fnf", "fire-and-forget", "req/s", 100_000, 20_000, 1_000),
)


# ==================================================================================================
# Worker: our implementation (anyio_rsocket, on asyncio or trio through AnyIO)
# ==================================================================================================


class BenchError(Exception):
    """A measurement finished but its result is wrong (counts do not match)."""


def _ours_measure(backend: str, bench: str, n: int, warmup: int, variant: str, timeout: float) -> float:
    import anyio

    from anyio_rsocket import Payload, RequestHandler, connect_tcp, serve_tcp

    class State:
        def __init__(self) -> None:
            self.fnf = 0
            self.fnf_target = 0
            self.fnf_done = anyio.Event()

        def expect_fnf(self, target: int) -> None:
            self.fnf = 0
            self.fnf_target = target
            self.fnf_done = anyio.Event()

    class Handler(RequestHandler):
        def __init__(self, state: State) -> None:
            self.state = state

        async def request_response(self, payload: Payload) -> Payload:
            return payload

        async def fire_and_forget(self, payload: Payload) -> None:
            state = self.state
            state.fnf += 1
            if state.fnf == state.fnf_target:
                state.fnf_done.set()

        async def request_stream(self, payload: Payload):  # type: ignore[override]
            item = Payload(DATA16)
            for _ in range(int(payload.data)):
                yield item

        async def request_channel(self, payload: Payload, inbound):  # type: ignore[override]
            yield payload
            async for item in inbound:
                yield item

    payload16 = Payload(DATA16)

    async def rr_seq(rs: Any, state: State, count: int) -> float:
        request = rs.request_response
        t0 = time.perf_counter()
        for _ in range(count):
            response = await request(payload16)
            if response.data != DATA16:
                raise BenchError(f"bad response {response!r}")
        return time.perf_counter() - t0

    async def rr_conc(rs: Any, state: State, count: int) -> float:
        done = 0
        request = rs.request_response

        async def worker(k: int) -> None:
            nonlocal done
            for _ in range(k):
                response = await request(payload16)
                if response.data != DATA16:
                    raise BenchError(f"bad response {response!r}")
                done += 1

        shares = _split(count, RR_CONCURRENCY)
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for k in shares:
                tg.start_soon(worker, k)
        elapsed = time.perf_counter() - t0
        _check(done, count, "responses")
        return elapsed

    async def stream(rs: Any, state: State, count: int, initial_n: int) -> float:
        received = bad = 0
        t0 = time.perf_counter()
        async with rs.request_stream(Payload(str(count).encode()), initial_n=initial_n) as items:
            async for item in items:
                received += 1
                if len(item.data) != 16:
                    bad += 1
        elapsed = time.perf_counter() - t0
        _check(received, count, "stream items")
        _check(bad, 0, "malformed stream items")
        return elapsed

    async def channel(rs: Any, state: State, count: int) -> float:
        received = bad = 0
        t0 = time.perf_counter()
        async with rs.request_channel(payload16, initial_n=STREAM_CREDIT) as ch:

            async def send_rest() -> None:
                for _ in range(count - 1):  # the first element travels in REQUEST_CHANNEL
                    await ch.send(payload16)
                await ch.send_eof()

            async with anyio.create_task_group() as tg:
                tg.start_soon(send_rest)
                async for item in ch:
                    received += 1
                    if len(item.data) != 16:
                        bad += 1
        elapsed = time.perf_counter() - t0
        _check(received, count, "channel echoes")
        _check(bad, 0, "malformed channel echoes")
        return elapsed

    async def fnf(rs: Any, state: State, count: int) -> float:
        state.expect_fnf(count)
        fire = rs.fire_and_forget
        t0 = time.perf_counter()
        for _ in range(count):
            await fire(payload16)
        await state.fnf_done.wait()
        elapsed = time.perf_counter() - t0
        _check(state.fnf, count, "fire-and-forget requests seen by the responder")
        return elapsed

    runners: dict[str, Callable[..., Any]] = {
        "rr_seq": rr_seq,
        "rr_conc": rr_conc,
        "stream_unbounded": lambda rs, st, c: stream(rs, st, c, MAX_REQUEST_N),
        "stream_256": lambda rs, st, c: stream(rs, st, c, STREAM_CREDIT),
        "channel": channel,
        "fnf": fnf,
    }
    run = runners[bench]

    async def main() -> float:
        state = State()
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                port = await tg.start(serve_tcp, lambda rs: Handler(state), "127.0.0.1", 0)
                async with connect_tcp("127.0.0.1", port) as rs:
                    await run(rs, state, warmup)
                    gc.collect()
                    elapsed = await run(rs, state, n)
                tg.cancel_scope.cancel()
        return elapsed

    return anyio.run(main, backend=backend)


# ==================================================================================================
# Worker: rsocket-py 0.4.20 (asyncio only)
# ==================================================================================================


def _theirs_measure(bench: str, n: int, warmup: int, variant: str, timeout: float) -> float:
    import asyncio
    from datetime import timedelta

    from reactivestreams.publisher import Publisher
    from reactivestreams.subscriber import Subscriber
    from reactivestreams.subscription import Subscription
    from rsocket.extensions.mimetypes import WellKnownMimeTypes
    from rsocket.helpers import create_future, single_transport_provider
    from rsocket.payload import Payload
    from rsocket.request_handler import BaseRequestHandler
    from rsocket.rsocket_client import RSocketClient
    from rsocket.rsocket_server import RSocketServer
    from rsocket.streams.stream_from_generator import StreamFromGenerator
    from rsocket.transports.tcp import TransportTCP

    octet = WellKnownMimeTypes.APPLICATION_OCTET_STREAM

    class CountPublisher(Publisher, Subscription):
        """Minimal publisher: emits synchronously as credit arrives; the last item completes."""

        def __init__(self, count: int, payload: Payload) -> None:
            self._remaining = count
            self._payload = payload
            self._subscriber: Any = None
            self._stopped = False

        def subscribe(self, subscriber: Any) -> None:
            self._subscriber = subscriber
            subscriber.on_subscribe(self)

        def request(self, n: int) -> None:
            subscriber = self._subscriber
            if self._remaining == 0 and not self._stopped:
                self._stopped = True
                subscriber.on_complete()
                return
            while n > 0 and self._remaining > 0 and not self._stopped:
                n -= 1
                self._remaining -= 1
                subscriber.on_next(self._payload, self._remaining == 0)
            if self._remaining == 0:
                self._stopped = True

        def cancel(self) -> None:
            self._stopped = True

    class CountingSubscriber(Subscriber):
        """Counts items; with ``refill`` it tops up credit by ``refill`` every ``refill`` items."""

        def __init__(self, refill: int | None) -> None:
            self.count = 0
            self.bad = 0
            self.error: BaseException | None = None
            self.done = asyncio.Event()
            self.subscription: Any = None
            self._refill = refill
            self._since = 0

        def on_subscribe(self, subscription: Any) -> None:
            self.subscription = subscription

        def on_next(self, value: Any, is_complete: bool = False) -> None:
            self.count += 1
            if value.data is None or len(value.data) != 16:
                self.bad += 1
            if is_complete:
                self.done.set()
            elif self._refill is not None:
                self._since += 1
                if self._since >= self._refill:
                    self._since = 0
                    self.subscription.request(self._refill)

        def on_error(self, exception: Exception) -> None:
            self.error = exception
            self.done.set()

        def on_complete(self) -> None:
            self.done.set()

    class EchoChannel(Publisher, Subscription, Subscriber):
        """Channel responder: echoes every inbound element, honouring the requester's credit."""

        def __init__(self, first: Payload) -> None:
            self._pending: deque[Payload] = deque([first])
            self._credit = 0
            self._inbound_done = False
            self._terminated = False
            self._since = 0
            self._outbound: Any = None
            self._inbound: Any = None

        def subscribe(self, subscriber: Any) -> None:
            self._outbound = subscriber
            subscriber.on_subscribe(self)
            self._drain()

        def request(self, n: int) -> None:
            self._credit = min(self._credit + n, MAX_REQUEST_N)
            self._drain()

        def cancel(self) -> None:
            self._terminated = True
            self._pending.clear()

        def on_subscribe(self, subscription: Any) -> None:
            self._inbound = subscription
            subscription.request(CHANNEL_WINDOW)

        def on_next(self, value: Any, is_complete: bool = False) -> None:
            self._pending.append(value)
            if is_complete:
                self._inbound_done = True
            else:
                self._since += 1
                if self._since >= CHANNEL_WINDOW // 2:
                    self._since = 0
                    self._inbound.request(CHANNEL_WINDOW // 2)
            self._drain()

        def on_complete(self) -> None:
            self._inbound_done = True
            self._drain()

        def on_error(self, exception: Exception) -> None:
            self._terminated = True
            self._pending.clear()

        def _drain(self) -> None:
            outbound = self._outbound
            if outbound is None or self._terminated:
                return
            pending = self._pending
            while pending and self._credit > 0:
                self._credit -= 1
                outbound.on_next(pending.popleft())
            if self._inbound_done and not pending:
                self._terminated = True
                outbound.on_complete()

    class State:
        def __init__(self) -> None:
            self.fnf = 0
            self.fnf_target = 0
            self.fnf_done = asyncio.Event()

        def expect_fnf(self, target: int) -> None:
            self.fnf = 0
            self.fnf_target = target
            self.fnf_done = asyncio.Event()

    class Handler(BaseRequestHandler):
        def __init__(self, state: State) -> None:
            self.state = state

        async def request_response(self, payload: Payload) -> Any:
            return create_future(payload)

        async def request_fire_and_forget(self, payload: Payload) -> None:
            state = self.state
            state.fnf += 1
            if state.fnf == state.fnf_target:
                state.fnf_done.set()

        async def request_stream(self, payload: Payload) -> Any:
            count = int(payload.data)
            item = Payload(DATA16)
            if variant == "minimal Publisher":
                return CountPublisher(count, item)

            def generator() -> Any:
                last = count - 1
                for index in range(count):
                    yield item, index == last

            return StreamFromGenerator(generator)

        async def request_channel(self, payload: Payload) -> Any:
            channel = EchoChannel(payload)
            return channel, channel

    payload16 = Payload(DATA16)

    async def rr_seq(client: Any, state: State, count: int) -> float:
        request = client.request_response
        t0 = time.perf_counter()
        for _ in range(count):
            response = await request(payload16)
            if response.data != DATA16:
                raise BenchError(f"bad response {response!r}")
        return time.perf_counter() - t0

    async def rr_conc(client: Any, state: State, count: int) -> float:
        done = 0
        request = client.request_response

        async def worker(k: int) -> None:
            nonlocal done
            for _ in range(k):
                response = await request(payload16)
                if response.data != DATA16:
                    raise BenchError(f"bad response {response!r}")
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in _split(count, RR_CONCURRENCY)))
        elapsed = time.perf_counter() - t0
        _check(done, count, "responses")
        return elapsed

    async def stream(client: Any, state: State, count: int, credit: int | None) -> float:
        subscriber = CountingSubscriber(None if credit is None else credit // 2)
        t0 = time.perf_counter()
        client.request_stream(Payload(str(count).encode())).initial_request_n(
            MAX_REQUEST_N if credit is None else credit
        ).subscribe(subscriber)
        await subscriber.done.wait()
        elapsed = time.perf_counter() - t0
        if subscriber.error is not None:
            raise BenchError(f"stream failed: {subscriber.error!r}")
        _check(subscriber.count, count, "stream items")
        _check(subscriber.bad, 0, "malformed stream items")
        return elapsed

    async def channel(client: Any, state: State, count: int) -> float:
        subscriber = CountingSubscriber(STREAM_CREDIT // 2)
        source = CountPublisher(count - 1, payload16)  # the first element travels in REQUEST_CHANNEL
        t0 = time.perf_counter()
        client.request_channel(payload16, publisher=source).initial_request_n(STREAM_CREDIT).subscribe(
            subscriber
        )
        await subscriber.done.wait()
        elapsed = time.perf_counter() - t0
        if subscriber.error is not None:
            raise BenchError(f"channel failed: {subscriber.error!r}")
        _check(subscriber.count, count, "channel echoes")
        _check(subscriber.bad, 0, "malformed channel echoes")
        return elapsed

    async def fnf(client: Any, state: State, count: int) -> float:
        state.expect_fnf(count)
        fire = client.fire_and_forget
        t0 = time.perf_counter()
        for _ in range(count):
            await fire(payload16)
        await state.fnf_done.wait()
        elapsed = time.perf_counter() - t0
        _check(state.fnf, count, "fire-and-forget requests seen by the responder")
        return elapsed

    runners: dict[str, Callable[..., Any]] = {
        "rr_seq": rr_seq,
        "rr_conc": rr_conc,
        "stream_unbounded": lambda c, st, k: stream(c, st, k, None),
        "stream_256": lambda c, st, k: stream(c, st, k, STREAM_CREDIT),
        "channel": channel,
        "fnf": fnf,
    }
    run = runners[bench]

    async def measure(state: State, servers: list[Any], port: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = RSocketClient(  # needs a running loop
            single_transport_provider(TransportTCP(reader, writer)),
            handler_factory=BaseRequestHandler,
            data_encoding=octet,
            metadata_encoding=octet,
            # Whole seconds: rsocket-py's timedelta -> ms conversion is wrong for sub-second parts.
            keep_alive_period=timedelta(seconds=20),
            max_lifetime_period=timedelta(seconds=90),
        )
        async with client:
            await run(client, state, warmup)
            gc.collect()
            return await run(client, state, n)

    async def main() -> float:
        state = State()
        servers: list[Any] = []

        async def on_connect(reader: Any, writer: Any) -> None:
            servers.append(
                RSocketServer(
                    TransportTCP(reader, writer),
                    handler_factory=lambda: Handler(state),
                    data_encoding=octet,
                    metadata_encoding=octet,
                )
            )

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.wait_for(measure(state, servers, port), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError from None
        finally:

            async def teardown() -> None:
                for connection in servers:
                    await connection.close()
                server.close()
                await server.wait_closed()

            with contextlib.suppress(Exception):  # best effort: the result is already decided
                await asyncio.wait_for(teardown(), 5)

    return asyncio.run(main())


# ==================================================================================================
# Worker process
# ==================================================================================================


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base or i < extra]


def _check(got: int, expected: int, what: str) -> None:
    if got != expected:
        raise BenchError(f"expected {expected} {what}, got {got}")


def _describe(exc: BaseException) -> str:
    """One line naming the leaf exceptions (task groups wrap the interesting one)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_timeout(inner) for inner in exc.exceptions)
    return isinstance(exc, TimeoutError)


def worker_main(impl: str) -> int:
    """Answer one JSON command per stdin line with one JSON result line on the real stdout."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # nothing else may write on the protocol channel
    if impl == "ours-asyncio":
        import anyio_rsocket
    elif impl == "ours-trio":
        import trio  # noqa: F401

        import anyio_rsocket  # noqa: F401
    elif impl == "theirs":
        import logging

        import rsocket  # noqa: F401

        # rsocket-py warns "Dropping frame from unknown stream" when a REQUEST_N refill crosses the
        # stream's final frame (harmless); keep its errors visible, drop the noise.
        logging.getLogger("pyrsocket").setLevel(logging.ERROR)
    else:
        raise SystemExit(f"unknown worker {impl!r}")
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            if impl == "theirs":
                elapsed = _theirs_measure(
                    cmd["bench"], cmd["n"], cmd["warmup"], cmd["variant"], cmd["timeout"]
                )
            else:
                elapsed = _ours_measure(
                    impl.split("-", 1)[1],
                    cmd["bench"],
                    cmd["n"],
                    cmd["warmup"],
                    cmd["variant"],
                    cmd["timeout"],
                )
            result = {"ok": True, "elapsed": elapsed, "value": cmd["n"] / elapsed}
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # report, keep serving
            if _is_timeout(exc):
                result = {"ok": False, "error": "timeout"}
            else:
                traceback.print_exc(file=sys.stderr)
                result = {"ok": False, "error": _describe(exc)}
        protocol.write(json.dumps(result) + "\n")
    return 0


# ==================================================================================================
# Orchestrator
# ==================================================================================================


class Worker:
    """A worker process with a line reader thread, so replies can be awaited with a deadline."""

    STARTUP_TIMEOUT = 60.0

    def __init__(self, impl: str) -> None:
        self.impl = impl
        self._spawn()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", self.impl],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                self._lines.put(line)
            self._lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        ready = self._read(self.STARTUP_TIMEOUT)
        if not (isinstance(ready, dict) and ready.get("ready")):
            raise RuntimeError(f"worker {self.impl} failed to start: {ready!r}")

    def _read(self, timeout: float) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return "hard-timeout"
        if line is None:
            return "died"
        return json.loads(line)

    def run(self, command: dict[str, Any], hard_timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._restart()
            return {"ok": False, "error": "worker died"}
        reply = self._read(hard_timeout)
        if reply == "hard-timeout":
            self._restart()
            return {"ok": False, "error": "timeout"}
        if reply == "died":
            self._restart()
            return {"ok": False, "error": "worker died"}
        return reply  # type: ignore[no-any-return]

    def _restart(self) -> None:
        self.kill()
        self._spawn()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Cell:
    """All runs of one (benchmark, implementation, variant)."""

    bench: Bench
    impl: str  # ours-asyncio / ours-trio / theirs
    variant: str
    values: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def best(self) -> float | None:
        return max(self.values) if self.values else None

    @property
    def failed(self) -> bool:
        return bool(self.errors) and "timeout" in self.errors

    def display(self) -> str:
        if self.best is not None:
            mark = "*" if self.errors else ""
            return f"{self.best:,.0f}{mark}"
        if not self.errors:
            return "-"
        return "timeout" if "timeout" in self.errors else "error"


def _machine_info() -> dict[str, Any]:
    from importlib import metadata

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    info: dict[str, Any] = {
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "packages": {
            name: version(name) for name in ("anyio-rsocket", "anyio", "trio", "rsocket", "sniffio")
        },
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def _interleave(first: list[Any], second: list[Any]) -> list[Any]:
    out: list[Any] = []
    for i in range(max(len(first), len(second))):
        if i < len(first):
            out.append(first[i])
        if i < len(second):
            out.append(second[i])
    return out


def _ratio(ours: Cell, theirs: Cell) -> str:
    if ours.best is None or theirs.best is None:
        return "-"
    return f"{ours.best / theirs.best:.2f}x"


def _table(rows: list[tuple[Cell, Cell]]) -> str:
    header = ("benchmark", "ours on", "rsocket-py variant", "unit", "ours", "rsocket-py", "ours/theirs")
    lines = [header]
    for ours, theirs in rows:
        lines.append(
            (
                ours.bench.title,
                ours.impl.split("-", 1)[1],
                theirs.variant or "-",
                ours.bench.unit,
                ours.display(),
                theirs.display(),
                _ratio(ours, theirs),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {4, 5, 6}
    out = []
    for index, line in enumerate(lines):
        cells = [
            line[i].rjust(widths[i]) if i in right else line[i].ljust(widths[i]) for i in range(len(line))
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_tcp", description="anyio_rsocket vs rsocket-py 0.4.20 over loopback TCP"
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, 1 run each (< 1 minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--backend", choices=("asyncio", "trio", "both"), default="asyncio", help="backend(s) for our side"
    )
    parser.add_argument("--repeat", type=int, default=None, help="runs per cell (default 3, 1 with --quick)")
    parser.add_argument(
        "--only",
        metavar="KEY",
        action="append",
        help="run only these rows (repeatable): " + ", ".join(b.key for b in BENCHES),
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return worker_main(args.worker)

    repeats = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    timeout = 10.0 if args.quick else 60.0
    hard_timeout = timeout + 20.0
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    benches = [b for b in BENCHES if not args.only or b.key in args.only]
    if not benches:
        parser.error(f"--only matches no row; rows are {', '.join(b.key for b in BENCHES)}")

    started = time.perf_counter()
    info = _machine_info()
    print(
        f"anyio_rsocket {info['packages']['anyio-rsocket']} vs rsocket-py {info['packages']['rsocket']}"
        f" | Python {platform.python_version()} | {info['platform']} | {info['cpu_count']} CPUs"
        f" | {'quick' if args.quick else 'full'} mode, best of {repeats}",
        file=sys.stderr,
    )

    ours_cells = {(b.key, be): Cell(b, f"ours-{be}", "") for b in benches for be in backends}
    theirs_cells = {(b.key, v): Cell(b, "theirs", v) for b in benches for v in b.their_variants}

    workers: dict[str, Worker] = {}
    try:
        for be in backends:
            workers[f"ours-{be}"] = Worker(f"ours-{be}")
        workers["theirs"] = Worker("theirs")

        for rep in range(repeats):
            for bench in benches:
                n = bench.n_quick if args.quick else bench.n_full
                ours = [ours_cells[(bench.key, be)] for be in backends]
                theirs = [theirs_cells[(bench.key, v)] for v in bench.their_variants]
                for cell in _interleave(ours, theirs):
                    if cell.failed:
                        continue  # it already timed out: do not burn the time budget again
                    command = {
                        "bench": bench.key,
                        "n": n,
                        "warmup": min(bench.warmup, n),
                        "variant": cell.variant,
                        "timeout": timeout,
                    }
                    reply = workers[cell.impl].run(command, hard_timeout)
                    label = f"{cell.impl}{' / ' + cell.variant if cell.variant else ''}"
                    if reply.get("ok"):
                        cell.values.append(reply["value"])
                        shown = f"{reply['value']:,.0f} {bench.unit}"
                    else:
                        cell.errors.append(reply.get("error", "error"))
                        shown = f"FAILED: {reply.get('error')}"
                    print(f"  [{rep + 1}/{repeats}] {bench.key:<17} {label:<34} {shown}", file=sys.stderr)
    finally:
        for worker in workers.values():
            worker.close()

    rows: list[tuple[Cell, Cell]] = []
    for bench in benches:
        for be in backends:
            for variant in bench.their_variants:
                rows.append((ours_cells[(bench.key, be)], theirs_cells[(bench.key, variant)]))

    total = time.perf_counter() - started
    print()
    print(_table(rows))
    print()
    for cell in [*ours_cells.values(), *theirs_cells.values()]:
        for error in dict.fromkeys(cell.errors):
            label = f"{cell.impl}{' / ' + cell.variant if cell.variant else ''}"
            print(f"FAILED {cell.bench.key} {label}: {error} ({cell.errors.count(error)}x)")
    print(
        f"best of {repeats} run(s); ratio = ours / rsocket-py (higher = anyio_rsocket faster); "
        f"'*' = some runs failed; total {total:.1f} s"
    )

    if args.json:
        document = {
            "benchmark": "bench_tcp",
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "mode": "quick" if args.quick else "full",
            "repeats": repeats,
            "timeout_s": timeout,
            "machine": info,
            "settings": {
                "payload_bytes": len(DATA16),
                "rr_concurrency": RR_CONCURRENCY,
                "stream_credit": STREAM_CREDIT,
                "channel_window": CHANNEL_WINDOW,
                "backends": backends,
            },
            "rows": [
                {
                    "key": ours.bench.key,
                    "title": ours.bench.title,
                    "unit": ours.bench.unit,
                    "n": ours.bench.n_quick if args.quick else ours.bench.n_full,
                    "ours_backend": ours.impl.split("-", 1)[1],
                    "theirs_variant": theirs.variant or None,
                    "ours": {"best": ours.best, "runs": ours.values, "errors": ours.errors},
                    "theirs": {"best": theirs.best, "runs": theirs.values, "errors": theirs.errors},
                    "ratio": (ours.best / theirs.best) if ours.best and theirs.best else None,
                }
                for ours, theirs in rows
            ],
            "total_seconds": total,
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        print(f"JSON written to {args.json}", file=sys.stderr)

    failed = any(c.best is None for c in [*ours_cells.values(), *theirs_cells.values()])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
