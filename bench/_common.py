"""What the suite measures (rows, metrics, counts) and helpers shared by every implementation.

Nothing here imports anyio_rsocket, rsocket-py or an event loop: this module is loaded by the
orchestrator and by every worker process alike.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # installed with anyio on Python 3.10

DATA16 = b"0123456789abcdef"
MIB = 1 << 20
DATA_MIB = bytes(range(256)) * (MIB // 256)
RR_CONCURRENCY = 64
STREAM_CREDIT = 256  # "credit 256 at a time": at most 256 outstanding, refilled by half-windows
CHANNEL_WINDOW = 256  # channel responders grant (and requesters keep) a 256-item window
MAX_REQUEST_N = 2**31 - 1
#: Our servers accept this many concurrent requests per connection (the default is 10,000, and the
#: 10,000-streams row also sends a few control requests while every stream is open).
SERVER_MAX_CONCURRENT = 20_000

# --- control requests ------------------------------------------------------------------------------
#
# The client drives every measurement and may run in another process than the server, so anything it
# needs to know about the responder travels in-band: a request-response whose metadata is CONTROL
# and whose data is one of the commands below. Benchmark requests carry no metadata, so a responder
# tells them apart with one truth test. Every server implements the same commands.

CONTROL = b"bench-control"
CTL_FNF = b"fnf"  # "fnf <total>": answer (with the count) once <total> fire-and-forgets arrived
CTL_IDLE = b"idle"  # answer once no stream handler of the hold row is alive
CTL_STREAMS = b"streams"  # answer with the connection's live stream count, not counting this request
CTL_RSS = b"rss"  # answer with the server process's resident set size in bytes
HOLD = b"hold"  # request-stream data of the 10,000-streams row: one item, then stay open


@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # appended to the row title when a row has several metrics
    unit: str
    higher_is_better: bool = True
    decimals: int = 0


RATE_REQ = (Metric("rate", "", "req/s"),)
RATE_ITEMS = (Metric("rate", "", "items/s"),)


@dataclass(frozen=True)
class Bench:
    key: str
    title: str
    metrics: tuple[Metric, ...]
    n_full: int
    n_quick: int
    n_smoke: int
    warmup: int
    #: rsocket-py responders measured against this row ("" = the only one).
    their_variants: tuple[str, ...] = ("",)
    #: A raw AnyIO baseline exists (TCP only).
    raw: bool = False
    #: Measured in freshly started worker processes (memory growth must not hide in old heaps).
    fresh_process: bool = False
    #: Ours only, against 1 and 2 server processes (its own table; see ``POOL_SERVERS``).
    pool: bool = False
    #: The raw one-in-flight limit (``bench/_limit.py``) runs this row too (TCP only).
    limit: bool = False
    #: gRPC (``bench/_grpc.py``) runs the same traffic (TCP, asyncio only).
    grpc: bool = False


STREAMS_N = 10_000
#: The ``pool_scaling`` row runs one client process (``connect_pool``, RR_CONCURRENCY callers) against
#: each of these numbers of server processes (one port each, the pool's targets).
POOL_SERVERS = (1, 2)
BENCHES: tuple[Bench, ...] = (
    Bench(
        "rr_seq",
        "request-response, sequential",
        RATE_REQ,
        20_000,
        3_000,
        50,
        300,
        raw=True,
        limit=True,
        grpc=True,
    ),
    Bench(
        "rr_conc",
        f"request-response, {RR_CONCURRENCY} concurrent",
        RATE_REQ,
        50_000,
        8_000,
        128,
        640,
        raw=True,
        grpc=True,
    ),
    *(
        Bench(
            key,
            title,
            RATE_ITEMS,
            100_000,
            20_000,
            200,
            2_000,
            ("StreamFromGenerator", "minimal Publisher"),
            grpc=grpc,
        )
        for key, title, grpc in (
            ("stream_unbounded", "request-stream, unbounded credit", True),
            ("stream_256", f"request-stream, credit {STREAM_CREDIT}", False),
        )
    ),
    Bench("channel", "request-channel echo", RATE_ITEMS, 50_000, 10_000, 200, 1_000),
    Bench("fnf", "fire-and-forget", RATE_REQ, 100_000, 20_000, 200, 1_000),
    Bench(
        "rr_1mib",
        "request-response, 1 MiB payloads",
        (Metric("rate", "", "MiB/s", decimals=1),),
        200,
        40,
        3,
        10,
        raw=True,
    ),
    Bench(
        "streams_10k",
        "{n:,} open streams",  # the count of the mode
        (
            Metric("open_s", "open all", "s", higher_is_better=False, decimals=3),
            Metric("close_s", "close all", "s", higher_is_better=False, decimals=3),
            Metric("rss_mb", "RSS growth", "MB", higher_is_better=False, decimals=1),
        ),
        STREAMS_N,
        STREAMS_N,
        100,
        100,
        fresh_process=True,
    ),
    Bench(
        "pool_scaling",
        f"request-response via connect_pool, {RR_CONCURRENCY} concurrent",
        RATE_REQ,
        50_000,
        10_000,
        200,
        640,
        pool=True,
    ),
)
BENCH_BY_KEY = {bench.key: bench for bench in BENCHES}


class BenchError(Exception):
    """A measurement finished but its result is wrong (counts do not match)."""


def check(got: int, expected: int, what: str) -> None:
    if got != expected:
        raise BenchError(f"expected {expected} {what}, got {got}")


def split(total: int, parts: int) -> list[int]:
    """``total`` shared out over at most ``parts`` workers (none gets zero)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts) if base or i < extra]


def rss_bytes() -> int:
    """This process's current resident set size."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best the standard library offers
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def describe(exc: BaseException) -> str:
    """One line naming the leaf exceptions (task groups wrap the interesting one)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(is_timeout(inner) for inner in exc.exceptions)
    return isinstance(exc, TimeoutError)


# --- runners shared by every implementation ---------------------------------------------------------


class Requester(Protocol):
    def request_response(self, payload: Any, /) -> Awaitable[Any]: ...


class Session:
    """One measured connection, seen from the client: its requester and the in-band controls."""

    def __init__(self, requester: Any, server_in_process: bool) -> None:
        self.requester = requester
        self.server_in_process = server_in_process
        self.fnf_sent = 0

    def control_payload(self, command: bytes) -> Any:
        raise NotImplementedError

    async def control(self, command: bytes) -> bytes:
        response = await self.requester.request_response(self.control_payload(command))
        data: bytes = response.data
        return data

    async def server_rss(self) -> int:
        """The server's resident set size, or 0 when it shares our process (already counted)."""
        return 0 if self.server_in_process else int(await self.control(CTL_RSS))


Runner = Callable[[Session, int], Awaitable["float | dict[str, float]"]]


async def rr_sequential(requester: Requester, payload: Any, count: int) -> float:
    request = requester.request_response
    expected = payload.data
    t0 = time.perf_counter()
    for _ in range(count):
        response = await request(payload)
        if response.data != expected:
            raise BenchError(f"bad response of {len(response.data or b'')} bytes")
    return time.perf_counter() - t0


async def rr_concurrent(requester: Requester, payload: Any, count: int) -> float:
    """``count`` requests from 64 tasks (an AnyIO task group: it runs on any asyncio loop too)."""
    import anyio

    done = 0
    request = requester.request_response
    expected = payload.data

    async def worker(k: int) -> None:
        nonlocal done
        for _ in range(k):
            response = await request(payload)
            if response.data != expected:
                raise BenchError(f"bad response {response!r}")
            done += 1

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for k in split(count, RR_CONCURRENCY):
            tg.start_soon(worker, k)
    elapsed = time.perf_counter() - t0
    check(done, count, "responses")
    return elapsed


#: The request-response rows: the shared runner and the request data (echoed by every server).
RR_ROWS: dict[str, tuple[Callable[[Requester, Any, int], Awaitable[float]], bytes]] = {
    "rr_seq": (rr_sequential, DATA16),
    "rr_conc": (rr_concurrent, DATA16),
    "rr_1mib": (rr_sequential, DATA_MIB),
}


def pick_runner(bench: str, make_payload: Callable[[bytes], Any], others: dict[str, Runner]) -> Runner:
    """The runner of row ``bench``: a shared request-response one, or the implementation's own."""
    if bench in RR_ROWS:
        function, data = RR_ROWS[bench]
        payload = make_payload(data)
        return lambda session, count: function(session.requester, payload, count)
    return others[bench]


def check_items(received: int, bad: int, count: int, what: str) -> None:
    check(received, count, what)
    check(bad, 0, f"malformed {what}")


async def run_fnf(session: Session, count: int, fire: Callable[[Any], Awaitable[Any]], payload: Any) -> float:
    """``count`` fire-and-forgets, timed until the responder has counted all of them."""
    session.fnf_sent += count
    t0 = time.perf_counter()
    for _ in range(count):
        await fire(payload)
    seen = int(await session.control(b"%s %d" % (CTL_FNF, session.fnf_sent)))
    elapsed = time.perf_counter() - t0
    check(seen, session.fnf_sent, "fire-and-forget requests seen by the responder")
    return elapsed


class HeldStreams(Protocol):
    """How one implementation opens many streams that stay open, and closes them."""

    async def open_all(self, count: int) -> int:
        """Open ``count`` streams and wait for each one's first item; return how many were malformed."""

    async def close_all(self) -> None: ...

    def live(self) -> int:
        """Streams the client connection still tracks."""


async def run_hold(session: Session, held: HeldStreams, count: int) -> dict[str, float]:
    """The 10,000-streams row: time to open and to close, RSS growth while open, nothing left after."""
    gc.collect()
    client_before = rss_bytes()
    server_before = await session.server_rss()
    t0 = time.perf_counter()
    try:
        bad = await held.open_all(count)
        open_s = time.perf_counter() - t0
        live_open = held.live()
        client_growth = rss_bytes() - client_before
        server_growth = await session.server_rss() - server_before
    finally:
        t1 = time.perf_counter()
        await held.close_all()
    await session.control(CTL_IDLE)  # returns once every responder handler has ended
    close_s = time.perf_counter() - t1
    check(bad, 0, "malformed first items")
    check(live_open, count, "live streams on the requester while all were open")
    check(held.live(), 0, "live streams left on the requester after closing")
    check(int(await session.control(CTL_STREAMS)), 0, "live streams left on the responder after closing")
    return {
        "open_s": open_s,
        "close_s": close_s,
        "rss_mb": (client_growth + server_growth) / 1e6,
        "client_rss_mb": client_growth / 1e6,
        "server_rss_mb": server_growth / 1e6,
    }
