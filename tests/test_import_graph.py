"""The package's import structure: no cycles (TYPE_CHECKING imports included) and five layers.

wire (frames, framing, fragmentation, errors, payload, lease) < protocol (the sans-IO core) <
transports < peer (the AnyIO driver and its entry points) < the conveniences (extensions, codecs,
router, routed, cli). A layer imports only from the layers below it, and the old top-level module
paths are aliases that nothing inside the package imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "anyio_rsocket"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports anywhere in its source (TYPE_CHECKING blocks and
    function bodies included; ``from . import x`` counts as importing ``x``)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                candidates = [source, *(f"{source}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in modules and c != name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "anyio_rsocket.connection" in graph and "anyio_rsocket.protocol.connection" in graph
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_sees_type_checking_imports() -> None:
    """Planted-bug check: imports under TYPE_CHECKING are edges, and an edge back is a cycle."""
    graph = import_graph()
    # options.py imports connection only under TYPE_CHECKING (for the handler factory's type).
    assert "anyio_rsocket.peer.connection" in graph["anyio_rsocket.peer.options"]
    assert "anyio_rsocket.peer.requester" in graph["anyio_rsocket.peer.connection"]
    graph["anyio_rsocket.peer.requester"].add("anyio_rsocket.peer.connection")
    assert find_cycle(graph) is not None


#: ``extensions`` holds the metadata extension codecs: wire formats, pure (it imports nothing of ours
#: but itself), so it sits with the wire layer and the peer layer may read routes and deadlines.
LAYERS = {"wire": 1, "extensions": 1, "protocol": 2, "transports": 3, "peer": 4}
CONVENIENCES = 5
#: The one sanctioned upward import: ``RSocket.route`` builds a RoutedRequester (a convenience).
UPWARD_ALLOWED = {("anyio_rsocket.peer.connection", "anyio_rsocket.routed")}


def is_alias(name: str) -> bool:
    """An old top-level module path kept for existing imports (it replaces itself in sys.modules)."""
    path = PACKAGE / (name.rpartition(".")[2] + ".py")
    return name.count(".") == 1 and path.exists() and "sys.modules[__name__]" in path.read_text()


def layer_of(name: str) -> int | None:
    """The layer of a module (None for the package __init__ and the alias modules)."""
    if name == "anyio_rsocket" or is_alias(name):
        return None
    return LAYERS.get(name.split(".")[1], CONVENIENCES)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in sorted(graph.items()):
        source_layer = layer_of(source)
        if source_layer is None:
            continue
        for target in sorted(targets):
            target_layer = layer_of(target)
            if target_layer is None and target != "anyio_rsocket":
                problems.append(f"{source} imports the alias {target}: use the layered path")
            elif target == "anyio_rsocket" and source_layer < CONVENIENCES:
                problems.append(f"{source} imports the package root")
            elif (
                target_layer is not None
                and target_layer > source_layer
                and (source, target) not in UPWARD_ALLOWED
            ):
                problems.append(f"{source} (layer {source_layer}) imports {target} (layer {target_layer})")
    return problems


def test_every_layer_imports_only_the_layers_below() -> None:
    graph = import_graph()
    for package in LAYERS:
        assert any(name.startswith(f"anyio_rsocket.{package}.") for name in graph), package
    assert layer_violations(graph) == []


def test_the_layer_check_catches_an_upward_import() -> None:
    """Planted-bug check: the core importing the peer, or the wire importing the core, is caught."""
    graph = import_graph()
    graph["anyio_rsocket.protocol.core"].add("anyio_rsocket.peer.connection")
    graph["anyio_rsocket.wire.frames"].add("anyio_rsocket.protocol.streams")
    graph["anyio_rsocket.transports.tcp"].add("anyio_rsocket.frames")  # an alias, not the layer
    problems = layer_violations(graph)
    assert len(problems) == 3, problems


def test_old_module_paths_are_the_layered_modules() -> None:
    import anyio_rsocket.connection
    import anyio_rsocket.frames
    import anyio_rsocket.peer.connection
    import anyio_rsocket.wire.frames

    assert anyio_rsocket.frames is anyio_rsocket.wire.frames
    assert anyio_rsocket.connection is anyio_rsocket.peer.connection
    aliases = [name for name in import_graph() if is_alias(name)]
    assert "anyio_rsocket.frames" in aliases and "anyio_rsocket.websocket" in aliases


@pytest.mark.parametrize("package", ["anyio_rsocket.wire", "anyio_rsocket.protocol"])
def test_the_lower_layers_load_no_websocket_stack(package: str) -> None:
    """``import anyio_rsocket.wire`` runs ``anyio_rsocket/__init__.py`` first: it must stay light."""
    code = (
        f"import {package}, sys\n"
        "heavy = sorted(m for m in ('httpx', 'wsproto', 'h11') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "from anyio_rsocket import connect_websocket, serve_websocket, RSocketASGIApp, connect\n"
        "assert 'wsproto' in sys.modules and 'httpx' in sys.modules  # loaded on first use\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
