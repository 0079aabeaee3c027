"""The core stays sans-IO: nothing it imports, directly or transitively, reaches an event loop or I/O.

Importing ``anyio_rsocket.protocol`` the normal way runs ``anyio_rsocket/__init__.py``, which imports
anyio for the AnyIO peer; that file is not part of the core and is left out on purpose. The test
follows the imports of every module of ``anyio_rsocket/protocol/`` (with ``ast``, so nothing is
executed), and of every ``anyio_rsocket`` module they reach, and checks what they reach outside.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "anyio_rsocket"

FORBIDDEN = {
    "anyio",
    "asyncio",
    "trio",
    "sniffio",
    "httpx",
    "httpx_ws",
    "wsproto",
    "socket",
    "ssl",
    "selectors",
    "time",
}
#: The only modules outside the protocol package that the core may use (all sans-IO).
ALLOWED_LIBRARY_MODULES = {  # the wire layer, the only one below the core
    "anyio_rsocket.wire",
    "anyio_rsocket.wire.errors",
    "anyio_rsocket.wire.fragmentation",
    "anyio_rsocket.wire.frames",
    "anyio_rsocket.wire.framing",
    "anyio_rsocket.wire.lease",
    "anyio_rsocket.wire.payload",
}


def _source_of(module: str) -> tuple[Path, bool] | None:
    """(file, is_package) for a module of anyio_rsocket, or None if it is not one of ours."""
    parts = module.split(".")
    if parts[0] != "anyio_rsocket":
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    return None


def _imports(module: str) -> set[str]:
    """Absolute names of every module ``module`` imports (anywhere in its body, TYPE_CHECKING too)."""
    found = _source_of(module)
    assert found is not None, module
    path, is_package = found
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            names.add(target)
            for alias in node.names:  # ``from . import x`` may name a submodule
                if _source_of(f"{target}.{alias.name}") is not None:
                    names.add(f"{target}.{alias.name}")
    return names


def _closure() -> tuple[set[str], set[str]]:
    """(anyio_rsocket modules reached, external modules imported by them) from the protocol package."""
    start = ["anyio_rsocket.protocol"] + [
        f"anyio_rsocket.protocol.{path.stem}" for path in (PACKAGE_ROOT / "protocol").glob("*.py")
    ]
    seen: set[str] = set()
    external: set[str] = set()
    todo = [name for name in start if name != "anyio_rsocket.protocol.__init__"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _imports(module):
            if name == "anyio_rsocket":
                continue  # the package __init__ (the AnyIO peer's exports) is not part of the core
            if name.split(".")[0] == "anyio_rsocket":
                todo.append(name)
            else:
                external.add(name)
    return seen, external


def test_the_protocol_package_reaches_no_io_or_event_loop() -> None:
    modules, external = _closure()
    reached = {name.split(".")[0] for name in external}
    assert not reached & FORBIDDEN, sorted(reached & FORBIDDEN)
    assert "anyio_rsocket.protocol.connection" in modules  # the walk really ran


def test_the_protocol_package_uses_only_the_pure_library_modules() -> None:
    modules, _ = _closure()
    outside = {name for name in modules if not name.startswith("anyio_rsocket.protocol")}
    assert outside <= ALLOWED_LIBRARY_MODULES, sorted(outside - ALLOWED_LIBRARY_MODULES)


def test_importing_the_core_alone_loads_no_forbidden_module() -> None:
    """The same at run time: import the core without running anyio_rsocket/__init__.py.

    (``time`` is loaded by the interpreter itself at start-up, so only the AST walk above can see
    an import of it.)
    """
    code = f"""
import sys, types
before = set(sys.modules)
package = types.ModuleType("anyio_rsocket")
package.__path__ = [{str(PACKAGE_ROOT)!r}]
sys.modules["anyio_rsocket"] = package
import anyio_rsocket.protocol
loaded = {{name.split(".")[0] for name in set(sys.modules) - before}}
print(sorted(loaded & set({sorted(FORBIDDEN)!r})))
"""
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
