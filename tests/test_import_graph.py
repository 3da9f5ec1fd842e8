"""The engine's modules import one another without a cycle, counting imports inside functions too.

A lazy import that runs back up (artifacts -> media -> artifacts, as it was) hides a layering
fault: the lower module cannot be understood, tested or reused without the upper one.
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def _module(path: Path) -> str:
    parts = path.relative_to(ENGINE).with_suffix("").parts
    return ".".join(("mora", "engine", *parts[:-1], *(() if parts[-1] == "__init__" else parts[-1:])))


def engine_imports() -> nx.DiGraph:
    files = {_module(p): p for p in ENGINE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mora.engine"):
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("mora.engine")]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t != name)
    return graph


def test_engine_modules_import_without_a_cycle():
    graph = engine_imports()
    assert graph.has_edge("mora.engine.cache.media", "mora.engine.cache.artifacts")  # the graph is read, not empty
    assert list(nx.simple_cycles(graph)) == []
