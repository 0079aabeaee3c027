"""Keeps the benchmark scripts from rotting: ``python -m bench --smoke`` runs and prints its table.

The smoke mode measures a couple of rows over TCP with tiny counts (ours, rsocket-py and the raw
AnyIO baseline, each in its own worker process). Nothing here looks at the numbers: benchmarks never
take part in the suite's assertions, only the fact that the suite runs and reports does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import rsocket  # noqa: F401  (the benchmark compares against rsocket-py: a test dependency)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 30  # it takes about a second; the bound only keeps a hang from stalling the suite


def test_bench_smoke_runs_and_prints_a_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    header = next((line for line in done.stdout.splitlines() if line.startswith("benchmark")), None)
    assert header is not None, done.stdout
    assert "vs rsocket-py" in header and "vs raw" in header
    rows = [line for line in done.stdout.splitlines() if line.startswith("request-response, sequential")]
    assert rows, done.stdout
    assert re.search(r"\d+\.\d\dx", rows[0]), rows[0]  # a ratio, so both sides produced a number
    assert "FAILED" not in done.stdout
