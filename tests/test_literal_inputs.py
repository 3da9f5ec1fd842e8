"""Graph inputs typed on the command line are data: any text arrives as typed, `${...}` never resolves."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mora_inproc import ECHO_GRAPH, run_mora

from mora.engine.frontends.overrides import as_data, hydra_quoted

GRAPH = ECHO_GRAPH
SECRET = "hunter2-do-not-leak"

PROMPTS = ["it's a fox, in the snow", "a fox (red)", "лиса в снегу", "a fox 🦊", "a=b", "a, b, c", "[draft] a fox",
           "[a fox]", 'say "hi"', "back\\slash\\", "it\\'s", "costs ${price}", "${oc.env:MORA_TEST_SECRET}",
           "${now:%Y}", "100% {text} {0}", "a fox # not a comment", "key: value", "~tilde", "null", "3", "true",
           "choice(a,b)", "range(1,3)", "x\ny"]


@pytest.fixture
def graph(write_graph, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("MORA_TEST_SECRET", SECRET)
    monkeypatch.chdir(tmp_path)
    return write_graph(GRAPH)


def _no_secret_in(*folders: Path) -> None:
    for folder in folders:  # outputs, Hydra's record of the run (.hydra/) and the cache
        for path in folder.rglob("*"):
            assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def test_any_text_reaches_every_text_input_exactly_as_typed(capsys, write_graph, monkeypatch, tmp_path, cache_dir):
    """One graph with a text input per case, all set on one command line (one run keeps the test fast)."""
    monkeypatch.setenv("MORA_TEST_SECRET", SECRET)
    names = [f"p{i}" for i in range(len(PROMPTS))]
    path = write_graph({"inputs": {n: {"type": "text"} for n in names},
                        "nodes": {n: {"agent": "text_template", "in": {"text": {"input": n}},
                                      "params": {"template": "A {text}"}} for n in names},
                        "outputs": {n: {"from": f"{n}.text"} for n in names}})
    run_dir = tmp_path / "run"
    result = run_mora(capsys, f"graph_file={path}", "runtime=local", "runtime.device=cpu", "quiet=true",
                      *(f"inputs.{n}={text}" for n, text in zip(names, PROMPTS, strict=True)),
                      f"hydra.run.dir={run_dir}")
    assert result.status == 0, result.err
    assert {n: (run_dir / f"{n}.txt").read_text(encoding="utf-8") for n in names} == {
        n: f"A {text}" for n, text in zip(names, PROMPTS, strict=True)}
    _no_secret_in(run_dir, cache_dir)


@pytest.mark.parametrize("text", ["it's a fox, in the snow", "${oc.env:MORA_TEST_SECRET}", "costs ${price}"])
def test_the_prompt_alias_takes_text_as_typed(capsys, graph, tmp_path, cache_dir, text):
    run_dir = tmp_path / "run"
    result = run_mora(capsys, f"graph_file={graph}", "runtime=local", "runtime.device=cpu", "quiet=true",
                      f"prompt={text}", f"hydra.run.dir={run_dir}")
    assert result.status == 0, result.err
    assert (run_dir / "out.txt").read_text(encoding="utf-8") == f"A {text}"
    _no_secret_in(run_dir, cache_dir)


def test_a_sweep_keeps_hydras_syntax_and_still_never_resolves_values(capsys, graph, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_mora(capsys, "-m", f"graph_file={graph}", "runtime=local", "runtime.device=cpu", "quiet=true",
                      "prompt='${oc.env:MORA_TEST_SECRET}',dog", f"hydra.sweep.dir={sweep}", "hydra/launcher=basic")
    assert result.status == 0, result.err
    assert sorted((sweep / job / "out.txt").read_text() for job in ("0", "1")) == ["A ${oc.env:MORA_TEST_SECRET}",
                                                                                  "A dog"]


def test_only_graph_inputs_are_quoted_and_only_in_single_runs():
    argv = ["seed=3", "runtime.devices=[0,1]", "prompt=a,b", "inputs.x=it's", "+inputs.y=1"]
    assert as_data(argv) == ["seed=3", "runtime.devices=[0,1]", "prompt='a,b'", "++inputs.x='it\\'s'", "+inputs.y='1'"]
    assert as_data(["-m", *argv]) == ["-m", "seed=3", "runtime.devices=[0,1]", "prompt=a,b", "++inputs.x=it's",
                                      "+inputs.y=1"]


@pytest.mark.parametrize("text", PROMPTS + ["", "'", "\\", "\\\\'", "a\\'b\\"])
def test_hydra_quoting_round_trips(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override(f"k={hydra_quoted(text)}").value() == text


def test_text_is_read_by_the_declared_input_type(write_graph, registry):
    from mora.engine.frontends.api import load_plan

    path = write_graph({"inputs": {"a": {"type": "number"}, "b": {"type": "number"}, "names": {"type": "list[text]"}},
                        "nodes": {"sum": {"agent": "t_add", "in": {"a": {"input": "a"}, "b": {"input": "b"}}}},
                        "outputs": {"out": {"from": "sum.value"}}})
    plan = load_plan(path, {"a": "4", "b": " 2.5e-1 ", "names": "[it's a fox, a cat]"}, registry=registry)
    assert (plan.nodes["sum"].inputs["a"].value, plan.nodes["sum"].inputs["b"].value) == (4, 0.25)


def test_a_prompts_file_becomes_a_sweep_of_literal_prompts(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join([*PROMPTS[:-1], "", "  "]) + "\n", encoding="utf-8")  # blank lines are skipped
    result = subprocess.run([sys.executable, "-m", "mora.engine.frontends.overrides", str(prompts)], capture_output=True,
                            text=True, check=True)
    parser = OverridesParser.create()
    jobs = parser.parse_override(f"prompt={result.stdout.strip()}").sweep_string_iterator()  # as Hydra splits a sweep
    assert [parser.parse_override(f"prompt={job}").value() for job in jobs] == PROMPTS[:-1]
