"""The orchestrator: plans the runs, drives the worker processes, prints the table, writes JSON.

This process never measures anything itself. Each (implementation, backend, role) has its own
long-lived worker process (see ``bench/_worker.py``); a measurement starts a fresh event loop there.
In the one-process layout the client worker also runs the server, in its own event loop; in the
two-process layout a second worker of the same implementation and backend serves, and the client
connects to it over loopback. See bench/README.md for the rows, the modes and the method.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._common import (
    BENCH_BY_KEY,
    BENCHES,
    CHANNEL_WINDOW,
    POOL_SERVERS,
    RR_CONCURRENCY,
    STREAM_CREDIT,
    Bench,
    Metric,
)

TRANSPORTS = {"tcp": "TCP", "ws": "WebSocket"}
LAYOUTS = {"one": "one process", "two": "two processes"}
BACKENDS = ("asyncio", "uvloop", "trio")
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def uvloop_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


# ==================================================================================================
# Modes
# ==================================================================================================


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int
    timeout: float  # per measurement, inside the worker
    transports: tuple[str, ...]
    layouts: tuple[str, ...]
    backends: tuple[str, ...]
    benches: tuple[str, ...]

    def n(self, bench: Bench) -> int:
        return {"full": bench.n_full, "quick": bench.n_quick, "smoke": bench.n_smoke}[self.name]

    def warmup(self, bench: Bench) -> int:
        return min(bench.warmup, self.n(bench))


ALL_BENCHES = tuple(b.key for b in BENCHES)
MODES = {
    "full": Mode(
        "full",
        3,
        60.0,
        ("tcp", "ws"),
        ("one", "two"),
        ("asyncio", "uvloop", "trio") if uvloop_available() else ("asyncio", "trio"),
        ALL_BENCHES,
    ),
    "quick": Mode("quick", 1, 15.0, ("tcp",), ("one",), ("asyncio", "trio"), ALL_BENCHES),
    "smoke": Mode("smoke", 1, 10.0, ("tcp",), ("one",), ("asyncio",), ("rr_seq", "stream_256")),
}


# ==================================================================================================
# Worker processes
# ==================================================================================================


class WorkerProcess:
    """One worker process, with a reader thread so that replies can be awaited with a deadline."""

    def __init__(self, impl: str, backend: str, role: str) -> None:
        self.impl = impl
        self.backend = backend
        self.role = role
        self.ready: dict[str, Any] = {}
        self.proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def label(self) -> str:
        return f"{self.impl}-{self.backend}-{self.role}"

    def start(self) -> None:
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench", "--worker", self.impl, self.backend],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self._lines = lines = queue.Queue[str | None]()
        stdout = self.proc.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_ready(self) -> None:
        ready = self.read(STARTUP_TIMEOUT_S)
        if not ready.get("ready"):
            raise RuntimeError(f"worker {self.label} failed to start: {ready}")
        self.ready = ready

    def read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return {"ok": False, "error": "timeout", "hard": True}
        if line is None:
            return {"ok": False, "error": "worker died", "hard": True}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def send(self, message: dict[str, Any] | str) -> bool:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def request(self, message: dict[str, Any] | str, timeout: float) -> dict[str, Any]:
        """Send one command and wait for its reply; a stuck or dead worker is replaced."""
        reply = (
            self.read(timeout) if self.send(message) else {"ok": False, "error": "worker died", "hard": True}
        )
        if reply.get("hard"):
            self.restart()
        return reply

    def restart(self) -> None:
        self.kill()
        self.start()
        self.wait_ready()

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


class Workers:
    """Worker processes by (implementation, backend, role), started on first use."""

    def __init__(self) -> None:
        self._workers: dict[tuple[str, str, str], WorkerProcess] = {}

    def get(self, impl: str, backend: str, role: str) -> WorkerProcess:
        key = (impl, backend, role)
        worker = self._workers.get(key)
        if worker is None:
            self.start_many([key])
            worker = self._workers[key]
        return worker

    def start_many(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Start (or restart) several workers at once; their imports overlap."""
        started = []
        for key in keys:
            old = self._workers.pop(key, None)
            if old is not None:
                old.close()
            worker = self._workers[key] = WorkerProcess(*key)
            worker.start()
            started.append(worker)
        for worker in started:
            worker.wait_ready()

    def all(self) -> list[WorkerProcess]:
        return list(self._workers.values())

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()


# ==================================================================================================
# Cells: every run of one (transport, layout, implementation, backend, row, variant)
# ==================================================================================================


@dataclass
class Cell:
    transport: str
    layout: str
    impl: str
    backend: str
    bench: Bench
    variant: str = ""
    values: dict[str, list[float]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    na: str | None = None

    @property
    def label(self) -> str:
        variant = f" / {self.variant}" if self.variant else ""
        return f"{self.transport}/{self.layout} {self.bench.key} {self.impl}-{self.backend}{variant}"

    @property
    def skip(self) -> bool:
        return self.na is not None or "timeout" in self.errors

    def best(self, metric: Metric) -> float | None:
        values = self.values.get(metric.key)
        if not values:
            return None
        return max(values) if metric.higher_is_better else min(values)

    def display(self, metric: Metric) -> str:
        if self.na is not None:
            return "n/a"
        best = self.best(metric)
        if best is not None:
            return f"{best:,.{metric.decimals}f}{'*' if self.errors else ''}"
        if not self.errors:
            return "-"
        return "timeout" if "timeout" in self.errors else "error"

    def record(self, rep: int, reply: dict[str, Any]) -> str:
        self.runs.append({"repetition": rep, **reply})
        if reply.get("ok"):
            for key, value in reply["metrics"].items():
                self.values.setdefault(key, []).append(value)
            return ", ".join(
                f"{reply['metrics'][m.key]:,.{m.decimals}f} {m.unit}" for m in self.bench.metrics
            )
        if "na" in reply:
            self.na = reply["na"]
            return f"n/a: {self.na}"
        self.errors.append(reply.get("error") or "error")
        return f"FAILED: {reply.get('error')}"


def ratio(ours: float | None, other: float | None, metric: Metric) -> float | None:
    """How many times better ours is: ours/other for rates, other/ours for times and sizes."""
    if not ours or not other:
        return None
    return ours / other if metric.higher_is_better else other / ours


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def interleave(*groups: Sequence[Cell]) -> list[Cell]:
    out: list[Cell] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(group[i] for group in groups if i < len(group))
    return out


# ==================================================================================================
# The suite
# ==================================================================================================


class Suite:
    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.backends = list(mode.backends)
        self.benches = [BENCH_BY_KEY[key] for key in mode.benches]
        # rsocket-py is asyncio only: trio rows compare with its asyncio numbers.
        self.their_backends = ["asyncio"] + (["uvloop"] if "uvloop" in self.backends else [])
        self.cells: dict[tuple[str, str, str, str, str, str], Cell] = {}
        self.workers = Workers()

    def cell(
        self, transport: str, layout: str, impl: str, backend: str, bench: Bench, variant: str = ""
    ) -> Cell:
        key = (transport, layout, impl, backend, bench.key, variant)
        if key not in self.cells:
            self.cells[key] = Cell(transport, layout, impl, backend, bench, variant)
        return self.cells[key]

    def their_backend(self, backend: str) -> str:
        return backend if backend in self.their_backends else "asyncio"

    def group(self, transport: str, layout: str, bench: Bench) -> list[Cell]:
        """The cells of one row, in the order they run (implementations alternate)."""
        ours = [self.cell(transport, layout, "ours", be, bench) for be in self.backends]
        theirs = [
            self.cell(transport, layout, "theirs", tb, bench, variant)
            for tb in self.their_backends
            for variant in bench.their_variants
        ]
        raw = []
        if bench.raw and transport == "tcp":
            raw = [self.cell(transport, layout, "raw", be, bench) for be in self.backends]
        return interleave(ours, theirs, raw)

    def run(self) -> None:
        repeats = self.mode.repeats
        try:
            for rep in range(repeats):
                for transport in self.mode.transports:
                    for layout in self.mode.layouts:
                        for bench in self.benches:
                            if bench.pool:
                                continue  # its own layouts: see run_pool
                            for cell in self.group(transport, layout, bench):
                                if cell.skip:
                                    continue  # n/a, or it already timed out: do not burn the budget
                                try:
                                    reply = self.measure(cell)
                                except RuntimeError as exc:  # a worker that cannot start
                                    reply = {"ok": False, "error": str(exc)}
                                shown = cell.record(rep, reply)
                                print(f"  [{rep + 1}/{repeats}] {cell.label:<58} {shown}", file=sys.stderr)
                self.run_pool(rep)
        finally:
            self.workers.close()

    # --- the pool_scaling row: one client pool against 1 and 2 server processes ------------------

    def pool_benches(self) -> list[Bench]:
        return [bench for bench in self.benches if bench.pool] if "tcp" in self.mode.transports else []

    def run_pool(self, rep: int) -> None:
        for bench in self.pool_benches():
            for backend in self.backends:
                for servers in POOL_SERVERS:  # alternate 1 and 2 servers within a repetition
                    cell = self.cell("tcp", f"pool{servers}", "ours", backend, bench)
                    if cell.skip:
                        continue
                    try:
                        reply = self.measure_pool(cell, servers)
                    except RuntimeError as exc:
                        reply = {"ok": False, "error": str(exc)}
                    shown = cell.record(rep, reply)
                    if reply.get("ok"):
                        shown += f", client CPU {reply['info']['client_cpu']:.0%}"
                    print(f"  [{rep + 1}/{self.mode.repeats}] {cell.label:<58} {shown}", file=sys.stderr)

    def measure_pool(self, cell: Cell, servers: int) -> dict[str, Any]:
        """Start ``servers`` server workers (one port each), run the pool client against them, stop them."""
        mode = self.mode
        roles = ["server"] + [f"server{index}" for index in range(2, servers + 1)]
        server_workers = [self.workers.get("ours", cell.backend, role) for role in roles]
        ports: list[int] = []
        try:
            for worker in server_workers:
                started = worker.request(
                    {"op": "serve", "transport": "tcp", "variant": ""}, STARTUP_TIMEOUT_S
                )
                if "port" not in started:
                    return {"ok": False, "error": f"server: {started.get('error')}"}
                ports.append(started["port"])
            command = {
                "op": "measure",
                "bench": cell.bench.key,
                "transport": "tcp",
                "n": mode.n(cell.bench),
                "warmup": mode.warmup(cell.bench),
                "variant": "",
                "timeout": mode.timeout,
                "port": None,
                "ports": ports,
            }
            client = self.workers.get("ours", cell.backend, "client")
            reply = client.request(command, mode.timeout + 20.0)
        finally:
            for worker in server_workers[: len(ports)]:
                stopped = worker.request("stop", STOP_TIMEOUT_S)
        if reply.get("ok") and not stopped.get("ok"):
            return {"ok": False, "error": f"server: {stopped.get('error')}", "client": reply}
        return reply

    def pool_rows(self) -> list[dict[str, Any]]:
        rows = []
        for bench in self.pool_benches():
            metric = bench.metrics[0]
            for backend in self.backends:
                cells = [
                    self.cells.get(("tcp", f"pool{n}", "ours", backend, bench.key, "")) for n in POOL_SERVERS
                ]
                if any(cell is None for cell in cells):
                    continue
                one, two = (cell.best(metric) if cell else None for cell in cells)
                cpu = [
                    max((run["info"]["client_cpu"] for run in cell.runs if run.get("ok")), default=None)
                    if cell
                    else None
                    for cell in cells
                ]
                rows.append(
                    {
                        "key": bench.key,
                        "title": bench.title.format(n=self.mode.n(bench)),
                        "backend": backend,
                        "unit": metric.unit,
                        "servers": dict(zip(POOL_SERVERS, (one, two), strict=True)),
                        "scaling": ratio(two, one, metric),
                        "client_cpu": dict(zip(POOL_SERVERS, cpu, strict=True)),
                        "cells": (cells, metric),
                    }
                )
        return rows

    def pool_table(self, markdown: bool) -> str:
        header = (
            "benchmark",
            "backend",
            "unit",
            "1 server process",
            "2 server processes",
            "scaling (2 vs 1)",
            "client CPU (1 / 2)",
        )
        lines: list[tuple[str, ...]] = [header]
        for row in self.pool_rows():
            cells, metric = row["cells"]
            cpu = " / ".join("-" if share is None else f"{share:.0%}" for share in row["client_cpu"].values())
            lines.append(
                (
                    row["title"],
                    row["backend"],
                    row["unit"],
                    *(cell.display(metric) for cell in cells),
                    fmt_ratio(row["scaling"]),
                    cpu,
                )
            )
        return render(lines, right={3, 4, 5, 6}, markdown=markdown)

    def measure(self, cell: Cell) -> dict[str, Any]:
        mode = self.mode
        bench = cell.bench
        roles = ["client"] if cell.layout == "one" else ["client", "server"]
        if bench.fresh_process:
            self.workers.start_many([(cell.impl, cell.backend, role) for role in roles])
        command: dict[str, Any] = {
            "op": "measure",
            "bench": bench.key,
            "transport": cell.transport,
            "n": mode.n(bench),
            "warmup": mode.warmup(bench),
            "variant": cell.variant,
            "timeout": mode.timeout,
            "port": None,
        }
        client = self.workers.get(cell.impl, cell.backend, "client")
        hard_timeout = mode.timeout + 20.0
        if cell.layout == "one":
            return client.request(command, hard_timeout)
        server = self.workers.get(cell.impl, cell.backend, "server")
        started = server.request(
            {"op": "serve", "transport": cell.transport, "variant": cell.variant}, STARTUP_TIMEOUT_S
        )
        if "port" not in started:
            return {"ok": False, "error": f"server: {started.get('error')}"}
        reply = client.request({**command, "port": started["port"]}, hard_timeout)
        stopped = server.request("stop", STOP_TIMEOUT_S)
        if reply.get("ok") and not stopped.get("ok"):
            return {"ok": False, "error": f"server: {stopped.get('error')}", "client": reply}
        return reply

    # --- results ----------------------------------------------------------------------------------

    def rows(self, transport: str, layout: str) -> list[dict[str, Any]]:
        rows = []
        for bench in self.benches:
            for metric in bench.metrics:
                for backend in self.backends:
                    for variant in bench.their_variants:
                        ours = self.cells.get((transport, layout, "ours", backend, bench.key, ""))
                        theirs = self.cells.get(
                            (transport, layout, "theirs", self.their_backend(backend), bench.key, variant)
                        )
                        raw = self.cells.get((transport, layout, "raw", backend, bench.key, ""))
                        if ours is None:
                            continue
                        title = bench.title.format(n=self.mode.n(bench))
                        title += f": {metric.label}" if metric.label else ""
                        ours_best = ours.best(metric)
                        theirs_best = theirs.best(metric) if theirs else None
                        raw_best = raw.best(metric) if raw else None
                        rows.append(
                            {
                                "transport": transport,
                                "layout": layout,
                                "key": bench.key,
                                "metric": metric.key,
                                "title": title,
                                "backend": backend,
                                "theirs_backend": self.their_backend(backend),
                                "variant": variant,
                                "unit": metric.unit,
                                "ours": ours_best,
                                "theirs": theirs_best,
                                "raw": raw_best,
                                "vs_theirs": ratio(ours_best, theirs_best, metric),
                                "vs_raw": ratio(ours_best, raw_best, metric),
                                "cells": (ours, theirs, raw, metric),
                            }
                        )
        return rows

    def table(self, transport: str, layout: str, markdown: bool) -> str:
        header = (
            "benchmark",
            "backend",
            "rsocket-py responder",
            "unit",
            "anyio_rsocket",
            "rsocket-py",
            "vs rsocket-py",
            "raw AnyIO",
            "vs raw",
        )
        lines: list[tuple[str, ...]] = [header]
        for row in self.rows(transport, layout):
            ours, theirs, raw, metric = row["cells"]
            lines.append(
                (
                    row["title"],
                    row["backend"],
                    row["variant"] or "-",
                    row["unit"],
                    ours.display(metric),
                    theirs.display(metric) if theirs else "-",
                    fmt_ratio(row["vs_theirs"]),
                    raw.display(metric) if raw else "-",
                    fmt_ratio(row["vs_raw"]),
                )
            )
        return render(lines, right={4, 5, 6, 7, 8}, markdown=markdown)

    def failures(self) -> list[str]:
        out = []
        for cell in self.cells.values():
            for error in dict.fromkeys(cell.errors):
                out.append(f"FAILED {cell.label}: {error} ({cell.errors.count(error)}x)")
            if cell.na is not None:
                out.append(f"n/a    {cell.label}: {cell.na}")
        return out


def render(lines: list[tuple[str, ...]], right: set[int], markdown: bool) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for index, line in enumerate(lines):
        cells = [
            line[i].rjust(widths[i]) if i in right else line[i].ljust(widths[i]) for i in range(len(line))
        ]
        if markdown:
            out.append("| " + " | ".join(cells) + " |")
            if index == 0:
                out.append(
                    "|"
                    + "|".join(
                        ("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)
                    )
                    + "|"
                )
        else:
            out.append("  ".join(cells).rstrip())
            if index == 0:
                out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# ==================================================================================================
# Targets (issue 6): asyncio, one process, TCP, ratios from the same run
# ==================================================================================================


@dataclass(frozen=True)
class Target:
    key: str
    against: str  # "theirs", "raw", or "absolute"
    variant: str
    threshold: float
    text: str


TARGETS = (
    Target("rr_seq", "theirs", "", 1.3, "request-response sequential: at least 1.3x rsocket-py"),
    Target("rr_seq", "raw", "", 0.75, "request-response sequential: at least 75% of raw AnyIO"),
    Target("rr_conc", "theirs", "", 4.0, "request-response 64 concurrent: at least 4x rsocket-py"),
    Target(
        "stream_unbounded",
        "theirs",
        "StreamFromGenerator",
        10.0,
        "request-stream, unbounded: at least 10x rsocket-py's StreamFromGenerator",
    ),
    Target(
        "stream_unbounded",
        "theirs",
        "minimal Publisher",
        4.0,
        "request-stream, unbounded: at least 4x a minimal rsocket-py Publisher",
    ),
    Target(
        "stream_256",
        "theirs",
        "StreamFromGenerator",
        10.0,
        "request-stream, credit 256: at least 10x rsocket-py's StreamFromGenerator",
    ),
    Target(
        "stream_256",
        "theirs",
        "minimal Publisher",
        4.0,
        "request-stream, credit 256: at least 4x a minimal rsocket-py Publisher",
    ),
    Target("channel", "theirs", "", 8.0, "request-channel echo: at least 8x rsocket-py"),
    Target("fnf", "theirs", "", 8.0, "fire-and-forget: at least 8x rsocket-py"),
    Target("rr_1mib", "raw", "", 0.75, "1 MiB request-response: at least 75% of raw AnyIO MiB/s"),
    Target("streams_10k", "absolute", "", 100.0, "10,000 open streams: under 100 MB RSS growth, all closed"),
)


def evaluate_targets(suite: Suite, backend: str) -> list[dict[str, Any]]:
    results = []
    for target in TARGETS:
        bench = BENCH_BY_KEY[target.key]
        ours = suite.cells.get(("tcp", "one", "ours", backend, target.key, ""))
        if ours is None:
            continue
        if target.against == "absolute":
            metric = next(m for m in bench.metrics if m.key == "rss_mb")
            value = ours.best(metric)
            clean = bool(ours.runs) and not ours.errors
            met = value is not None and clean and max(ours.values["rss_mb"]) < target.threshold
            shown = "-" if value is None else f"{max(ours.values['rss_mb']):.1f} MB (worst run)"
            if not clean:
                shown += f"; {len(ours.errors)} failed run(s)"
            results.append({"target": target.text, "value": shown, "met": met})
            continue
        metric = bench.metrics[0]
        other_backend = suite.their_backend(backend) if target.against == "theirs" else backend
        other = suite.cells.get(("tcp", "one", target.against, other_backend, target.key, target.variant))
        value = ratio(ours.best(metric), other.best(metric) if other else None, metric)
        results.append(
            {
                "target": target.text,
                "value": fmt_ratio(value),
                "ratio": value,
                "met": value is not None and value >= target.threshold,
            }
        )
    return results


# ==================================================================================================
# Machine info and main
# ==================================================================================================


def machine_info() -> dict[str, Any]:
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
        "cpu_count": os.cpu_count(),
        "packages": {
            name: version(name)
            for name in ("anyio-rsocket", "anyio", "trio", "rsocket", "aiohttp", "httpx", "wsproto", "uvloop")
        },
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def source_revision(path: str) -> str:
    """The git commit a package directory was checked out at, with ``+dirty`` for local changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", path, *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (commit or "not a git checkout") + ("+dirty" if dirty else "")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="anyio_rsocket vs rsocket-py 0.4.20 (and raw AnyIO TCP) over loopback TCP and WebSocket",
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument(
        "--quick", action="store_true", help="TCP, one process, asyncio + trio, 1 run (< 1 min)"
    )
    modes.add_argument("--smoke", action="store_true", help="a few seconds: keeps the scripts from rotting")
    parser.add_argument("--transport", action="append", choices=tuple(TRANSPORTS), help="(repeatable)")
    parser.add_argument("--layout", action="append", choices=tuple(LAYOUTS), help="(repeatable)")
    parser.add_argument(
        "--backend",
        action="append",
        choices=("asyncio", "uvloop", "trio", "both"),
        help="backend(s) of our side and of the raw baseline (repeatable; 'both' = asyncio + trio)",
    )
    parser.add_argument(
        "--only", metavar="KEY", action="append", help="rows (repeatable): " + ", ".join(ALL_BENCHES)
    )
    parser.add_argument("--repeat", type=int, help="runs per cell (best is kept)")
    parser.add_argument(
        "--timeout", type=float, help="seconds per measurement (default 60, quick 15, smoke 10)"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write every run, the table and the machine as JSON"
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        unknown = sorted(set(args.only) - set(ALL_BENCHES))
        if unknown:
            parser.error(f"unknown row(s) {', '.join(unknown)}; rows are {', '.join(ALL_BENCHES)}")
    if args.backend and "uvloop" in args.backend and not uvloop_available():
        parser.error("uvloop is not installed")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        from ._worker import worker_main

        return worker_main(*args.worker)

    base = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    backends: list[str] = []
    for choice in args.backend or base.backends:
        backends += ["asyncio", "trio"] if choice == "both" else [choice]
    mode = Mode(
        base.name,
        args.repeat or base.repeats,
        args.timeout or base.timeout,
        tuple(t for t in TRANSPORTS if t in (args.transport or base.transports)),
        tuple(layout for layout in LAYOUTS if layout in (args.layout or base.layouts)),
        tuple(b for b in BACKENDS if b in backends),
        tuple(k for k in ALL_BENCHES if k in (args.only or base.benches)),
    )
    suite = Suite(mode)
    info = machine_info()
    started = time.perf_counter()
    print(
        f"anyio_rsocket {info['packages']['anyio-rsocket']} vs rsocket-py {info['packages']['rsocket']}"
        f" | Python {platform.python_version()} | {info.get('cpu_model', platform.machine())}"
        f" | {info['cpu_count']} CPUs | {mode.name} mode, best of {mode.repeats}",
        file=sys.stderr,
    )
    suite.run()
    total = time.perf_counter() - started

    ours_paths = sorted({str(w.ready["anyio_rsocket"]) for w in suite.workers.all() if w.impl == "ours"})
    info["anyio_rsocket_source"] = {path: source_revision(path) for path in ours_paths}
    print()
    print(
        f"anyio_rsocket {info['packages']['anyio-rsocket']}"
        f" ({', '.join(f'{p} @ {r}' for p, r in info['anyio_rsocket_source'].items()) or '?'}) vs rsocket-py"
        f" {info['packages']['rsocket']}; Python {platform.python_version()}; {info.get('cpu_model', '?')},"
        f" {info['cpu_count']} CPUs; {mode.name} mode, best of {mode.repeats}"
    )
    for transport in mode.transports:
        for layout in mode.layouts:
            if not suite.rows(transport, layout):
                continue  # e.g. --only pool_scaling
            print(f"\n{TRANSPORTS[transport]}, {LAYOUTS[layout]}:\n")
            print(suite.table(transport, layout, args.markdown))
    if suite.pool_rows():
        print(
            f"\nTCP, one client process (connect_pool, {RR_CONCURRENCY} concurrent callers) against 1 and 2"
            " server processes (one port each):\n"
        )
        print(suite.pool_table(args.markdown))
    print()
    for line in suite.failures():
        print(line)
    print(
        "ratios: how many times better anyio_rsocket is (ours/theirs for rates, theirs/ours for times and"
        " memory); rsocket-py runs on asyncio only, so trio rows compare with its asyncio numbers;"
        f" '*' = some runs failed; total {total:.1f} s"
    )
    targets = {backend: evaluate_targets(suite, backend) for backend in mode.backends}
    for backend, results in targets.items():
        if results:
            note = "" if mode.name == "full" else f"; {mode.name}-mode counts, indicative only"
            print(f"\nTargets (TCP, one process, {backend}{note}):")
            for result in results:
                print(f"  [{'met' if result['met'] else 'NOT met'}] {result['target']}: {result['value']}")

    if args.json:
        document = {
            "benchmark": "anyio_rsocket bench suite",
            "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "mode": mode.name,
            "repeats": mode.repeats,
            "timeout_s": mode.timeout,
            "machine": info,
            "workers": {w.label: w.ready for w in suite.workers.all()},
            "settings": {
                "transports": mode.transports,
                "layouts": mode.layouts,
                "backends": mode.backends,
                "rr_concurrency": RR_CONCURRENCY,
                "stream_credit": STREAM_CREDIT,
                "channel_window": CHANNEL_WINDOW,
                "counts": {key: mode.n(BENCH_BY_KEY[key]) for key in mode.benches},
            },
            "pool_rows": [{k: v for k, v in row.items() if k != "cells"} for row in suite.pool_rows()],
            "rows": [
                {k: v for k, v in row.items() if k != "cells"}
                for transport in mode.transports
                for layout in mode.layouts
                for row in suite.rows(transport, layout)
            ],
            "cells": [
                {
                    "transport": c.transport,
                    "layout": c.layout,
                    "impl": c.impl,
                    "backend": c.backend,
                    "bench": c.bench.key,
                    "variant": c.variant or None,
                    "best": {m.key: c.best(m) for m in c.bench.metrics},
                    "runs": c.runs,
                    "errors": c.errors,
                    "na": c.na,
                }
                for c in suite.cells.values()
            ],
            "targets": targets,
            "total_seconds": total,
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
        print(f"JSON written to {args.json}", file=sys.stderr)

    return 1 if any(c.na is None and not c.values for c in suite.cells.values()) else 0
