"""The engine never imports the agents' package: it reaches agents and the model loader only through entry points."""
from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import statement names, at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_no_engine_module_imports_nodes():
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 30
    bad = [f"{path.relative_to(ENGINE.parent)}:{line} imports {name}"
           for path in files for line, name in imported_modules(ast.parse(path.read_text(), str(path)))
           if name == "mora.nodes" or name.startswith(("mora.nodes.", "nodes.")) or name == "nodes"]
    assert bad == []


def test_the_scan_sees_a_function_level_import():
    tree = ast.parse("def f():\n    from mora import nodes\n    import mora.nodes.models\n")
    assert {name for _, name in imported_modules(tree)} >= {"mora.nodes", "mora.nodes.models"}


def test_builtin_agents_and_the_model_loader_come_from_entry_points():
    from mora.engine.model_loader import model_loader
    from mora.engine.registry import default_registry

    assert {"text_to_image", "image_to_video", "frame_pick"} <= set(default_registry().names())
    assert model_loader().build_version > 0
