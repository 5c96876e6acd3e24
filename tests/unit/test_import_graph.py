"""The package's layers: no import circle, no import that runs back up, data blind to the
miniature corpora. Read from the source with ``ast`` (imports inside functions count too)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "audioexp"

#: Lowest first: a package may import itself and the packages before it, never one after it.
LAYERS = [
    "conf", "utils", "data", "features", "metrics", "losses", "networks", "backends", "probes", "figures",
    "inference", "embedders", "systems", "minicorpus", "tasks", "smoke", "predict", "export", "__main__",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> audioexp modules it imports (``from a import b`` names the module a.b when it is one)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            graph[name].update(t for t in targets if t.split(".")[0] == "audioexp" and t != name)
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = import_graph()


def test_every_package_has_a_layer():
    assert {layer(m) for m in GRAPH} - {"__init__"} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_runs_back_up(module):
    if layer(module) == "__init__":
        return
    rank = LAYERS.index(layer(module))
    upward = [t for t in GRAPH[module] if layer(t) != "__init__" and LAYERS.index(layer(t)) > rank]
    assert not upward, f"{module} ({layer(module)}) imports {upward}, which sit above it"


def test_no_import_circle():
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_real_loaders_do_not_know_the_miniature_corpora():
    for module, targets in GRAPH.items():
        if layer(module) == "data":
            assert not [t for t in targets if layer(t) == "minicorpus"], module
