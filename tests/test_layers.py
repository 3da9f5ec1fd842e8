"""The engine's folders are layers, and the engine never imports the agents' package.

Layers, lowest first: the core modules at engine/'s top (errors, ports, userfiles, rundir), cache/,
graph/, execution/, frontends/. No import runs back up, and agents and the model loader are reached
only through entry points. Checked on the source, function-level imports included, so a lazy import
cannot hide a dependency the architecture forbids.
"""
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
    from mora.engine.execution.model_loader import model_loader
    from mora.engine.graph.registry import default_registry

    assert {"text_to_image", "image_to_video", "frame_pick"} <= set(default_registry().names())
    assert model_loader().build_version > 0


LAYERS = ["core", "cache", "graph", "execution", "frontends"]


def layer(module: str) -> str:
    """The layer of `mora.engine.X...`: X when it is a group folder, else the core."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[2] in LAYERS else "core"


def test_no_engine_module_imports_a_layer_above_its_own():
    bad = []
    for path in sorted(ENGINE.rglob("*.py")):
        own = layer("mora.engine." + ".".join(path.relative_to(ENGINE).with_suffix("").parts))
        for line, name in imported_modules(ast.parse(path.read_text(), str(path))):
            if name.startswith("mora.engine.") and LAYERS.index(layer(name)) > LAYERS.index(own):
                bad.append(f"{path.relative_to(ENGINE.parent)}:{line} ({own}) imports {name} ({layer(name)})")
    assert bad == []


def test_the_layer_check_sees_an_import_running_back_up():
    tree = ast.parse("def f():\n    from mora.engine.frontends import api\n")
    assert [layer(name) for _, name in imported_modules(tree)] == ["frontends", "frontends"]


def test_each_group_says_what_it_owns():
    for group in LAYERS[1:]:
        doc = ast.get_docstring(ast.parse((ENGINE / group / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"engine/{group}/__init__.py does not say what it owns and imports"
