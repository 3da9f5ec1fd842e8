"""Graph files cannot run code, agent names cannot be hijacked, and the engine stays torch-free.

A graph file is untrusted input: YAML's Python tags must be refused by the safe loader before
anything is constructed, `_target_` (Hydra's instantiate hook) means nothing to Mora, and an
agent type resolves through the registry only, where a second agent with a taken name is an
error rather than a silent replacement. Output-name path traversal is covered in test_spec.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from mora.engine.errors import GraphError, MoraError
from mora.engine.graph.agent import Agent, Port
from mora.engine.graph.registry import Registry
from mora.engine.ports import PortType

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "diffusers", "transformers")


def _tagged_graph(marker: Path) -> dict[str, str]:
    """Graph files whose YAML asks for Python objects; under an unsafe loader each would touch `marker`."""
    apply = f'!!python/object/apply:os.system ["touch {marker}"]'
    new = f'!!python/object/new:os.system ["touch {marker}"]'
    text = "nodes:\n  a:\n    agent: t_text\n    params:\n      text: {}\noutputs:\n  out: {{from: a.text}}\n"
    return {
        "python/object/apply": text.format(apply),
        "python/object/new": text.format(new),
        "python/name": "nodes:\n  a:\n    agent: !!python/name:os.system\noutputs:\n  out: {from: a.text}\n",
        "python/module": "nodes:\n  a:\n    agent: t_text\n    params:\n      text: !!python/module:os\n"
                         "outputs:\n  out: {from: a.text}\n",
    }


@pytest.mark.parametrize("tag", ["python/object/apply", "python/object/new", "python/name", "python/module"])
def test_python_yaml_tags_are_refused_and_nothing_runs(tmp_path, write_graph, graph_problems, tag):
    marker = tmp_path / "pwned"
    path = write_graph(_tagged_graph(marker)[tag])
    problems = graph_problems(path)
    assert [p.file for p in problems] == [str(path)]
    assert f"tag:yaml.org,2002:{tag}" in problems[0].message  # refused for the tag, not for a later symptom
    assert problems[0].line is not None
    assert not marker.exists()


def test_cli_refuses_a_tagged_graph_without_running_or_touching_the_cache(tmp_path, child_env):
    marker = tmp_path / "pwned"
    graph = tmp_path / "evil.yaml"
    graph.write_text(_tagged_graph(marker)["python/object/apply"])
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", f"graph_file={graph}", "runtime=local",
         "runtime.device=cpu", f"hydra.run.dir={tmp_path / 'run'}"],
        env=child_env(MORA_CACHE_DIR=str(cache)), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "python/object/apply:os.system" in result.stderr and str(graph) in result.stderr
    assert not marker.exists()
    assert not cache.exists()


TARGET_CASES = {
    "node key": ("nodes:\n  a:\n    agent: t_text\n    _target_: os.system\n", "a", "_target_", "unknown key"),
    "param": ("nodes:\n  a:\n    agent: t_text\n    params:\n      _target_: os.system\n", "a", "params._target_",
              "has no parameter '_target_'"),
    "input port": ("nodes:\n  a:\n    agent: t_text\n    in:\n      _target_: os.system\n", "a", "in._target_",
                   "has no input port '_target_'"),
    "param value": ("nodes:\n  a:\n    agent: t_text\n    params:\n      text: {_target_: os.system, _args_: [ls]}\n",
                    "a", "params.text", "must be a link"),
    "agent type": ("nodes:\n  a:\n    agent: os.system\n", "a", "agent", "unknown agent type 'os.system'"),
}


@pytest.mark.parametrize("case", sorted(TARGET_CASES))
def test_target_in_a_graph_file_is_refused_naming_file_node_and_field(write_graph, graph_problems, case):
    nodes, node, field, message = TARGET_CASES[case]
    path = write_graph(nodes + "outputs:\n  out: {from: a.text}\n")
    problems = graph_problems(path)
    assert [(p.file, p.node, p.field) for p in problems] == [(str(path), node, field)]
    assert message in problems[0].message
    shown = str(GraphError(problems))
    assert str(path) in shown and f"node '{node}'" in shown and f"field '{field}'" in shown


def test_target_at_the_top_level_is_an_unknown_key(write_graph, graph_problems):
    path = write_graph("_target_: os.system\nnodes:\n  a:\n    agent: t_text\noutputs:\n  out: {from: a.text}\n")
    problems = graph_problems(path)
    assert [(p.file, p.line) for p in problems] == [(str(path), 1)]
    assert "unknown top-level key '_target_'" in problems[0].message


def test_target_inside_a_template_names_the_template_file(write_graph, graph_problems):
    template = write_graph("nodes:\n  inner:\n    agent: t_text\n    params:\n      _target_: os.system\n"
                           "outputs:\n  text: {from: inner.text}\n", "tpl.yaml")
    path = write_graph("nodes:\n  step:\n    graph: tpl\noutputs:\n  out: {from: step.text}\n")
    problems = graph_problems(path)
    assert [(p.file, p.node, p.field) for p in problems] == [(str(template), "step/inner", "params._target_")]


def _agent(name: str, doc: str) -> Agent:
    return Agent(name, 1, doc, lambda ctx, inputs, params: {}, outputs=(Port("text", PortType.TEXT),))


def test_registering_a_taken_agent_name_is_an_error_and_keeps_the_first():
    first, impostor = _agent("echo", "the original"), _agent("echo", "an impostor")
    registry = Registry([first])
    with pytest.raises(MoraError, match="agent type 'echo' is registered twice"):
        registry.register(impostor)
    assert registry.get("echo") is first
    with pytest.raises(MoraError, match="registered twice"):
        Registry([first, impostor])


def test_a_plugin_cannot_replace_a_builtin_agent(tmp_path, child_env):
    site = tmp_path / "site"
    dist = site / "evil_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mora.agents]\ntext_template = evil_plugin\n")
    (site / "evil_plugin.py").write_text(textwrap.dedent("""\
        from mora.engine.graph.agent import Agent, Port
        from mora.engine.ports import PortType
        AGENT = Agent("text_template", 1, "Not the real one.", lambda ctx, i, p: {},
                      outputs=(Port("text", PortType.TEXT),))
    """))
    code = "from mora.engine.graph.registry import default_registry; default_registry()"
    env = child_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode != 0
    assert "agent type 'text_template' is registered twice" in result.stderr


def test_an_agent_module_is_imported_when_its_type_is_asked_for_and_must_define_that_type(tmp_path, monkeypatch):
    (tmp_path / "lazy_plugin.py").write_text(textwrap.dedent("""\
        from mora.engine.graph.agent import Agent, Port
        from mora.engine.ports import PortType
        AGENT = Agent("lazy", 1, "Registered under its own type.", lambda ctx, i, p: {},
                      outputs=(Port("text", PortType.TEXT),))
        ALIAS = Agent("text_template", 1, "Registered under another type's name.", lambda ctx, i, p: {},
                      outputs=(Port("text", PortType.TEXT),))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(entry_points=[EntryPoint("lazy", "lazy_plugin", "mora.agents"),
                                      EntryPoint("alias", "lazy_plugin:ALIAS", "mora.agents")])
    assert registry.names() == ["alias", "lazy"] and "lazy" in registry
    assert "lazy_plugin" not in sys.modules  # listing names imports nothing
    assert registry.get("lazy").description == "Registered under its own type."
    with pytest.raises(MoraError, match="entry point 'alias' .* defines agent type 'text_template'"):
        registry.get("alias")
    with pytest.raises(MoraError, match="agent type 'lazy' is registered twice"):
        Registry([_agent("lazy", "a second one")], entry_points=[EntryPoint("lazy", "lazy_plugin", "mora.agents")])


IMPORT_EVERYTHING = textwrap.dedent("""\
    import importlib, importlib.util, json, pkgutil, sys
    from pathlib import Path
    import mora.engine
    modules = [m.name for m in pkgutil.walk_packages(mora.engine.__path__, "mora.engine.")]
    for name in modules:
        importlib.import_module(name)
    from mora.engine.frontends.api import load_plan
    from mora.engine.graph.registry import default_registry
    default_registry()
    load_plan(Path("graphs/text_to_video.yaml"), {})
    print(json.dumps({"modules": modules, "installed": [m for m in sys.argv[1:] if importlib.util.find_spec(m)],
                      "imported": [m for m in sys.argv[1:] if m in sys.modules]}))
""")


def test_engine_never_imports_torch_diffusers_or_transformers():
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING, *HEAVY], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    if sorted(seen["installed"]) != sorted(HEAVY):
        pytest.skip(f"needs {HEAVY} installed to show they are not imported; found {seen['installed']}")
    expected = {"frontends.cli", "frontends.api", "execution.scheduler", "cache.store", "execution.executors.pool"}
    assert {f"mora.engine.{m}" for m in expected} <= set(seen["modules"])
    assert seen["imported"] == []
