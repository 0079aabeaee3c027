"""Loopback WebSocket benchmark: anyio_rsocket against rsocket-py 0.4.20's aiohttp transport, side by side.

Usage::

    python bench/bench_websocket.py [--quick] [--json out.json] [--backend asyncio|trio|both]

Every measurement runs in a fresh worker process (``--worker ours-asyncio|ours-trio|theirs``) whose
single event loop holds both the server and the client of one loopback WebSocket connection: ours is
``serve_websocket`` + ``connect_websocket`` (wsproto over AnyIO; the client side through httpx),
theirs is an aiohttp web server with rsocket-py's ``websocket_handler_factory`` + aiohttp's
``ws_connect`` with ``TransportAioHttpClient``. The worker warms up, measures, checks the counts and
prints one JSON line. Runs alternate between implementations and the best of 3 (1 with ``--quick``)
is reported, with ratios ours / theirs (above 1 means we are faster). A worker that runs out of time
is killed and its cell says ``timeout``.

Rows: request-response sequential and with 64 concurrent requesters (16-byte payloads, echoed),
request-stream of 16-byte items with credit 256 (refilled by half-windows) and unbounded. rsocket-py
streams come from a minimal synchronous Publisher (its ``StreamFromGenerator`` is slower).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DATA16 = b"0123456789abcdef"
RR_CONCURRENCY = 64
STREAM_CREDIT = 256
MAX_REQUEST_N = 2**31 - 1
WORKER_TIMEOUT = 120.0


@dataclass(frozen=True)
class Bench:
    key: str
    title: str
    unit: str
    n_full: int
    n_quick: int
    warmup: int


BENCHES = (
    Bench("rr_seq", "request-response, sequential", "req/s", 10_000, 2_000, 200),
    Bench("rr_conc", f"request-response, {RR_CONCURRENCY} concurrent", "req/s", 30_000, 5_000, 640),
    Bench("stream_256", f"request-stream, credit {STREAM_CREDIT}", "items/s", 100_000, 20_000, 2_000),
    Bench("stream_unbounded", "request-stream, unbounded credit", "items/s", 100_000, 20_000, 2_000),
)


class BenchError(Exception):
    """A measurement finished but its result is wrong."""


def _check(actual: int, expected: int, what: str) -> None:
    if actual != expected:
        raise BenchError(f"{what}: got {actual}, expected {expected}")


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


# --- worker: ours ---------------------------------------------------------------------------------


def _ours(backend: str, bench: str, n: int, warmup: int) -> float:
    import anyio

    from anyio_rsocket import Payload, RequestHandler, connect_websocket, serve_websocket

    class Handler(RequestHandler):
        async def request_response(self, payload: Payload) -> Payload:
            return payload

        async def request_stream(self, payload: Payload):  # type: ignore[no-untyped-def]
            item = Payload(DATA16)
            for _ in range(int(payload.data)):
                yield item

    payload16 = Payload(DATA16)

    async def rr_seq(rs: Any, count: int) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            if (await rs.request_response(payload16)).data != DATA16:
                raise BenchError("bad response")
        return time.perf_counter() - t0

    async def rr_conc(rs: Any, count: int) -> float:
        done = 0

        async def worker(k: int) -> None:
            nonlocal done
            for _ in range(k):
                if (await rs.request_response(payload16)).data != DATA16:
                    raise BenchError("bad response")
                done += 1

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for k in _split(count, RR_CONCURRENCY):
                tg.start_soon(worker, k)
        elapsed = time.perf_counter() - t0
        _check(done, count, "responses")
        return elapsed

    async def stream(rs: Any, count: int, credit: int) -> float:
        received = 0
        t0 = time.perf_counter()
        async with rs.request_stream(Payload(str(count).encode()), initial_n=credit) as items:
            async for item in items:
                received += len(item.data) == 16
        elapsed = time.perf_counter() - t0
        _check(received, count, "stream items")
        return elapsed

    runners: dict[str, Callable[[Any, int], Any]] = {
        "rr_seq": rr_seq,
        "rr_conc": rr_conc,
        "stream_256": lambda rs, c: stream(rs, c, STREAM_CREDIT),
        "stream_unbounded": lambda rs, c: stream(rs, c, MAX_REQUEST_N),
    }
    run = runners[bench]

    async def main() -> float:
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_websocket, lambda rs: Handler(), "127.0.0.1", 0)
            async with connect_websocket(f"ws://127.0.0.1:{port}/") as rs:
                await run(rs, warmup)
                elapsed: float = await run(rs, n)
            tg.cancel_scope.cancel()
        return elapsed

    return anyio.run(main, backend=backend)


# --- worker: rsocket-py over aiohttp --------------------------------------------------------------


def _theirs(bench: str, n: int, warmup: int) -> float:
    import asyncio
    from datetime import timedelta

    import aiohttp
    from aiohttp import web
    from reactivestreams.publisher import Publisher
    from reactivestreams.subscriber import Subscriber
    from reactivestreams.subscription import Subscription
    from rsocket.extensions.mimetypes import WellKnownMimeTypes
    from rsocket.helpers import create_future, single_transport_provider
    from rsocket.payload import Payload
    from rsocket.request_handler import BaseRequestHandler
    from rsocket.rsocket_client import RSocketClient
    from rsocket.transports.aiohttp_websocket import TransportAioHttpClient, websocket_handler_factory

    octet = WellKnownMimeTypes.APPLICATION_OCTET_STREAM

    class CountPublisher(Publisher, Subscription):  # type: ignore[misc]
        """Emits synchronously as credit arrives; the last item carries COMPLETE."""

        def __init__(self, count: int, payload: Payload) -> None:
            self._remaining = count
            self._payload = payload
            self._subscriber: Any = None

        def subscribe(self, subscriber: Any) -> None:
            self._subscriber = subscriber
            subscriber.on_subscribe(self)

        def request(self, n: int) -> None:
            while n > 0 and self._remaining > 0:
                n -= 1
                self._remaining -= 1
                self._subscriber.on_next(self._payload, self._remaining == 0)

        def cancel(self) -> None:
            self._remaining = 0

    class Counter(Subscriber):  # type: ignore[misc]
        def __init__(self, refill: int | None) -> None:
            self.count = 0
            self.error: BaseException | None = None
            self.done = asyncio.Event()
            self.subscription: Any = None
            self._refill = refill
            self._since = 0

        def on_subscribe(self, subscription: Any) -> None:
            self.subscription = subscription

        def on_next(self, value: Any, is_complete: bool = False) -> None:
            self.count += len(value.data) == 16
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

    class Handler(BaseRequestHandler):  # type: ignore[misc]
        async def request_response(self, payload: Payload) -> Any:
            return create_future(payload)

        async def request_stream(self, payload: Payload) -> Any:
            return CountPublisher(int(payload.data), Payload(DATA16))

    payload16 = Payload(DATA16)

    async def rr_seq(client: Any, count: int) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            if (await client.request_response(payload16)).data != DATA16:
                raise BenchError("bad response")
        return time.perf_counter() - t0

    async def rr_conc(client: Any, count: int) -> float:
        done = 0

        async def worker(k: int) -> None:
            nonlocal done
            for _ in range(k):
                if (await client.request_response(payload16)).data != DATA16:
                    raise BenchError("bad response")
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in _split(count, RR_CONCURRENCY)))
        elapsed = time.perf_counter() - t0
        _check(done, count, "responses")
        return elapsed

    async def stream(client: Any, count: int, credit: int | None) -> float:
        counter = Counter(None if credit is None else credit // 2)
        t0 = time.perf_counter()
        client.request_stream(Payload(str(count).encode())).initial_request_n(
            MAX_REQUEST_N if credit is None else credit
        ).subscribe(counter)
        await counter.done.wait()
        elapsed = time.perf_counter() - t0
        if counter.error is not None:
            raise BenchError(f"stream failed: {counter.error!r}")
        _check(counter.count, count, "stream items")
        return elapsed

    runners: dict[str, Callable[[Any, int], Any]] = {
        "rr_seq": rr_seq,
        "rr_conc": rr_conc,
        "stream_256": lambda c, k: stream(c, k, STREAM_CREDIT),
        "stream_unbounded": lambda c, k: stream(c, k, None),
    }
    run = runners[bench]

    async def main() -> float:
        servers: list[Any] = []
        app = web.Application()
        app.router.add_get(
            "/",
            websocket_handler_factory(
                on_server_create=servers.append,
                handler_factory=Handler,
                data_encoding=octet,
                metadata_encoding=octet,
            ),
        )
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(f"ws://127.0.0.1:{port}/", max_msg_size=0) as websocket,
            ):
                client = RSocketClient(
                    single_transport_provider(TransportAioHttpClient(websocket=websocket)),
                    handler_factory=BaseRequestHandler,
                    data_encoding=octet,
                    metadata_encoding=octet,
                    keep_alive_period=timedelta(seconds=20),  # whole seconds (see interop notes)
                    max_lifetime_period=timedelta(seconds=90),
                )
                async with client:
                    await run(client, warmup)
                    elapsed: float = await run(client, n)
        finally:
            for server in servers:
                await server.close()
            await runner.cleanup()
        return elapsed

    return asyncio.run(main())


# --- orchestration --------------------------------------------------------------------------------


def _worker(impl: str, bench: str, n: int, warmup: int) -> int:
    try:
        if impl == "theirs":
            elapsed = _theirs(bench, n, warmup)
        else:
            elapsed = _ours(impl.removeprefix("ours-"), bench, n, warmup)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}))
        return 1
    print(json.dumps({"elapsed": elapsed}))
    return 0


def _measure(impl: str, bench: Bench, n: int) -> float | str:
    """Items (or requests) per second from one fresh worker process, or why there is none."""
    command = [sys.executable, __file__, "--worker", impl, "--bench", bench.key, "-n", str(n)]
    command += ["--warmup", str(bench.warmup)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=WORKER_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return "timeout"
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        return f"crashed ({done.stderr.strip().splitlines()[-1:]})"
    if "error" in result:
        return f"error {result['error']}"
    return n / float(result["elapsed"])


def _cell(value: float | str | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if isinstance(value, float) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, one run each (under 30 s)")
    parser.add_argument("--backend", choices=("asyncio", "trio", "both"), default="both")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--bench", help=argparse.SUPPRESS)
    parser.add_argument("-n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.bench, args.n, args.warmup)

    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    ours = [f"ours-{backend}" for backend in backends]
    runs = 1 if args.quick else 3
    results: dict[str, dict[str, float | str]] = {}
    started = time.perf_counter()
    for bench in BENCHES:
        n = bench.n_quick if args.quick else bench.n_full
        best: dict[str, float | str] = {}
        for _ in range(runs):
            for impl in [*ours, "theirs"]:  # alternate, so drift hits every implementation alike
                value = _measure(impl, bench, n)
                previous = best.get(impl)
                if isinstance(value, float):
                    best[impl] = max(value, previous) if isinstance(previous, float) else value
                elif previous is None:
                    best[impl] = value
        results[bench.key] = best
        print(f"  {bench.title}: done", file=sys.stderr, flush=True)

    import aiohttp

    versions = f"Python {platform.python_version()}, rsocket-py 0.4.20 + aiohttp {aiohttp.__version__}"
    print(f"\nRSocket over WebSocket, loopback ({versions}); best of {runs}, higher is better\n")
    header = ["benchmark", "unit", *[f"ours {impl[5:]}" for impl in ours], "rsocket-py aiohttp"]
    header += [f"{impl[5:]} / rsocket-py" for impl in ours]
    rows = []
    for bench in BENCHES:
        best = results[bench.key]
        theirs = best.get("theirs")
        row = [bench.title, bench.unit, *[_cell(best.get(impl)) for impl in ours], _cell(theirs)]
        for impl in ours:
            mine = best.get(impl)
            ok = isinstance(mine, float) and isinstance(theirs, float)
            row.append(f"{mine / theirs:.2f}x" if ok else "-")  # type: ignore[operator]
        rows.append(row)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
    print(f"\n({time.perf_counter() - started:.1f} s)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"python": platform.python_version(), "runs": runs, "results": results}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
