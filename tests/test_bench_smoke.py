"""Keeps the benchmark scripts from rotting: ``python -m bench --smoke`` runs and prints its tables.

The smoke mode measures a couple of rows with tiny counts (ours, rsocket-py, the raw AnyIO baseline,
the raw one-in-flight limit and gRPC, each in its own worker process). Nothing here looks at the
numbers: benchmarks never take part in the suite's assertions, only the fact that the suite runs and
reports does. uvloop and grpcio are optional (the ``bench`` extra, not the test dependencies): when
one is missing, its cells must say "not installed" instead of failing, which
``test_bench_smoke_without_uvloop_and_grpcio`` checks by hiding both.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import rsocket  # noqa: F401  (the benchmark compares against rsocket-py: a test dependency)

ROOT = Path(__file__).resolve().parent.parent
#: A smoke run takes a few seconds; the bound only keeps a hang from stalling the suite (it is
#: generous because other test runs may share this machine's cores).
TIMEOUT_S = 100
RATIO = re.compile(r"\d+\.\d\dx")
NUMBER = r"\d[\d,]*(\.\d+)?"
#: Run ``bench._harness.main`` with uvloop and grpc unimportable (``find_spec`` then says None).
HIDDEN = (
    "import sys; sys.modules['uvloop'] = None; sys.modules['grpc'] = None; "
    "from bench._harness import main; sys.exit(main(sys.argv[1:]))"
)


def run_bench(*args: str, hide_optional: bool = False) -> str:
    command = (
        [sys.executable, "-c", HIDDEN, *args] if hide_optional else [sys.executable, "-m", "bench", *args]
    )
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout, done.stdout
    return done.stdout


def lines_starting(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


def table_after(output: str, title: str) -> list[str]:
    """The rows of the table printed under the line that contains ``title``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line)
    rows = []
    for line in lines[start + 4 :]:  # title, blank, header, rule
        if not line.strip():
            break
        rows.append(line)
    return rows


def row(rows: list[str], backend: str) -> str:
    return next(line for line in rows if f"  {backend}  " in line)


def test_bench_smoke_runs_and_prints_a_table() -> None:
    output = run_bench("--smoke")
    header = next((line for line in output.splitlines() if line.startswith("benchmark")), None)
    assert header is not None, output
    assert "vs rsocket-py" in header and "vs raw" in header
    rows = lines_starting(output, "request-response, sequential")
    assert rows, output
    assert RATIO.search(rows[0]), rows[0]  # a ratio, so both sides produced a number
    assert "quiet (no added CPU contention)" in output


def test_bench_smoke_limit_grpc_and_issue_targets() -> None:
    """The one-in-flight limit and gRPC rows run, and every target of the rows run gets a verdict."""
    output = run_bench("--smoke", "--only", "rr_seq", "--only", "rr_conc", "--only", "stream_unbounded")
    uvloop = importlib.util.find_spec("uvloop") is not None
    grpc = importlib.util.find_spec("grpc") is not None

    limit = table_after(output, "against the raw one-in-flight limit")
    assert RATIO.search(row(limit, "asyncio")), limit
    assert (
        (RATIO.search(row(limit, "uvloop")) is not None)
        if uvloop
        else "not installed" in row(limit, "uvloop")
    )
    assert "one-in-flight limit" in output and "vs limit" in output

    grpc_rows = table_after(output, "anyio_rsocket vs gRPC")
    assert len(grpc_rows) >= 3, grpc_rows  # unary sequential, unary 64 concurrent, server-streaming
    for line in grpc_rows:
        assert (RATIO.search(line) is not None) if grpc else "not installed" in line, line

    targets = output.split("Targets of the performance issue", 1)[1].splitlines()[1:]
    verdicts = [line for line in targets if line.startswith("  [")]
    assert any("one-in-flight limit" in line and "[asyncio]" in line for line in verdicts), targets
    assert any("gRPC" in line for line in verdicts), targets
    assert any("WebSocket: sequential request-response" in line for line in verdicts), targets
    for line in verdicts:
        assert re.match(r"  \[(met|NOT met|n/a)\] ", line), line
        if line.startswith(("  [met]", "  [NOT met]")):
            assert RATIO.search(line), line


def test_bench_smoke_without_uvloop_and_grpcio() -> None:
    """Missing optional packages are reported as "not installed", and the run still succeeds."""
    output = run_bench("--smoke", "--only", "rr_seq", hide_optional=True)
    main_rows = table_after(output, "TCP, one process:")
    assert re.search(rf"\s{NUMBER}\s", row(main_rows, "asyncio")), main_rows
    assert "not installed" in row(main_rows, "uvloop"), main_rows
    limit = table_after(output, "against the raw one-in-flight limit")
    assert RATIO.search(row(limit, "asyncio")), limit
    assert "not installed" in row(limit, "uvloop"), limit
    grpc_rows = table_after(output, "anyio_rsocket vs gRPC")
    assert grpc_rows and all("not installed" in line for line in grpc_rows), grpc_rows
    assert "uvloop not installed" in output and "grpcio not installed" in output
    assert re.search(r"\[n/a\] .*one-in-flight limit.*\[uvloop\]: .*uvloop not installed", output), output
    assert re.search(r"\[n/a\] .*gRPC.*grpcio not installed", output), output


def test_bench_smoke_under_contention() -> None:
    output = run_bench("--smoke", "--only", "rr_seq", "--contention", "1")
    assert "under contention: 1 busy-loop process(es)" in output
    assert RATIO.search(lines_starting(output, "request-response, sequential")[0])
