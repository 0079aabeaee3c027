"""Every Python code block in README.md and docs/ runs as pasted.

Each fenced block whose info string is ``python`` (or ``py``) is written to a temporary file and run
in a fresh interpreter (``runpy``, as ``__main__``, in a temporary working directory), with a time
bound of :data:`TIMEOUT` seconds. It must exit with status 0 and print no traceback.

Backends: a block that calls ``anyio.run(...)`` runs twice, once per backend. The runner gives
``anyio.run`` a different default backend (``asyncio``, then ``trio``), so the block itself stays
exactly as a reader pastes it (``anyio.run(main)``); a block that names its backend explicitly keeps
it. Blocks that do not call ``anyio.run`` run once.

Fragments: a block that is not meant to run on its own (a signature, lines lifted out of a larger
program, a deployment-specific snippet) is marked by an HTML comment on the line just before its
opening fence::

    <!-- fragment -->
    ```python
    await tg.start(serve_tcp, handler_factory, host, port)
    ```

The comment is invisible on GitHub and in the MkDocs site. A fragment is not run, but it must still
be valid Python (top-level ``await`` allowed), so a typo is caught. A block that is neither marked
nor runnable fails this test: mark it, or make it self-contained (a block that needs a server starts
one itself on a loopback port, as ``examples/quickstart.py`` does).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0
FRAGMENT_MARK = "<!-- fragment -->"
OPENING = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")

#: Runs one block file as ``__main__`` with ``anyio.run`` defaulting to the backend given.
RUNNER = """
import functools, runpy, sys
import anyio
path, backend = sys.argv[1], sys.argv[2]
if backend != "-":
    anyio.run = functools.partial(anyio.run, backend=backend)
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
"""


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    source: str
    fragment: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(path: Path) -> list[Block]:
    """The fenced ``python`` blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = OPENING.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        language = (match["info"].split() or [""])[0].lower()
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if language in ("python", "py"):
            previous = next((text.strip() for text in reversed(lines[:index]) if text.strip()), "")
            content = lines[index + 1 : end]
            body = "\n".join(text[indent:] if text[:indent].isspace() else text for text in content)
            blocks.append(Block(path, index + 1, body + "\n", previous == FRAGMENT_MARK))
        index = end + 1
    return blocks


ALL_BLOCKS = [block for path in markdown_files() for block in python_blocks(path)]
RUNNABLE = [block for block in ALL_BLOCKS if not block.fragment]
FRAGMENTS = [block for block in ALL_BLOCKS if block.fragment]
BACKENDS = ["asyncio", "trio"] if importlib.util.find_spec("trio") is not None else ["asyncio"]


def runs() -> list[object]:
    cases: list[object] = []
    for block in RUNNABLE:
        backends = BACKENDS if "anyio.run(" in block.source else ["-"]
        for backend in backends:
            suffix = "" if backend == "-" else f"-{backend}"
            cases.append(pytest.param(block, backend, id=block.name + suffix))
    return cases


def test_blocks_are_found() -> None:
    """The collector sees the README's blocks (a broken collector must not pass vacuously)."""
    readme = [block for block in ALL_BLOCKS if block.path.name == "README.md"]
    assert len(readme) >= 2
    assert any(not block.fragment for block in readme)


@pytest.mark.parametrize(("block", "backend"), runs())
def test_block_runs(block: Block, backend: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(block.source, encoding="utf-8")
    try:
        result = subprocess.run(
            [sys.executable, "-c", RUNNER, str(script), backend],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.name} did not finish within {TIMEOUT} s (a fragment? mark it {FRAGMENT_MARK})")
    output = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, f"{block.name} exited with {result.returncode}\n{output}"
    assert "Traceback" not in result.stdout + result.stderr, f"{block.name} printed a traceback\n{output}"


@pytest.mark.parametrize("block", [pytest.param(block, id=block.name) for block in FRAGMENTS])
def test_fragment_is_valid_python(block: Block) -> None:
    try:
        compile(block.source, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as error:
        pytest.fail(f"{block.name}: fragment is not valid Python: {error}")
