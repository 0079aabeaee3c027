"""Every example runs to completion on both backends (so the documented code keeps working)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(example: Path, backend: str) -> None:
    result = subprocess.run(
        [sys.executable, str(example), backend], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip(), "an example should show what it did"
    assert "Traceback" not in result.stderr, result.stderr


def test_quickstart_shows_every_interaction() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES[0].parent / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout
    for marker in (
        "request-response:",
        "request-response error: code 0x201",
        "server-to-client call",
        "fire-and-forget",
        "metadata push",
        "request-stream (automatic credit): ['tick 0', 'tick 1', 'tick 2', 'tick 3', 'tick 4']",
        "request-stream (manual credit): ['tick 0', 'tick 1', 'tick 2', 'tick 3']",
        "request-channel: ['running total 1', 'running total 3', 'running total 6', 'running total 10']",
        "no task left behind",
    ):
        assert marker in out, f"missing {marker!r} in:\n{out}"
