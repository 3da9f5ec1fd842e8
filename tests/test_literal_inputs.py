"""Graph inputs typed on the command line are data: any text arrives as typed, `${...}` never resolves."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mora_inproc import ECHO_GRAPH, run_mora

from mora.engine.errors import GraphError
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


LIST_GRAPH = {"inputs": {"a": {"type": "number"}, "b": {"type": "number"}, "names": {"type": "list[text]"}},
              "nodes": {"sum": {"agent": "t_add", "in": {"a": {"input": "a"}, "b": {"input": "b"}}}},
              "outputs": {"out": {"from": "sum.value"}}}
ALIAS_BOMB = "[[&a [x, x, x, x, x, x, x, x, x, x]" + "".join(
    f", &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(7)) + "]]"  # 10^8 strings expanded


@pytest.mark.timeout(20)  # a guard, not a measurement: unbounded, this took seconds and a 58 MB message at 10^7
def test_a_typed_list_input_is_read_within_a_graph_file_s_bounds(write_graph, registry):
    from mora.engine.frontends.api import load_plan

    with pytest.raises(GraphError) as info:
        load_plan(write_graph(LIST_GRAPH), {"a": "1", "b": "2", "names": ALIAS_BOMB}, registry=registry)
    [problem] = info.value.problems
    assert problem.field == "inputs.names" and "takes list[text]" in problem.message and len(problem.message) < 300


def test_a_list_whose_aliases_repeat_a_long_text_is_refused(write_graph, registry):
    from mora.engine.frontends.api import load_plan

    names = "[&t " + "x" * 90_000 + ", " + ", ".join(["*t"] * 12) + "]"  # 1.17 million characters in all
    with pytest.raises(GraphError) as info:
        load_plan(write_graph(LIST_GRAPH), {"a": "1", "b": "2", "names": names}, registry=registry)
    [problem] = info.value.problems
    assert "the list's texts are 1170000 characters in all; at most 1000000 are allowed" in problem.message
    plan = load_plan(write_graph(LIST_GRAPH), {"a": "1", "b": "2", "names": names.replace(", *t" * 2, "", 1)},
                     registry=registry)
    assert plan.nodes["sum"].inputs["a"].value == 1  # 11 of them, 990,000 characters: within the bound


def test_a_refused_value_is_shown_cut_short(write_graph, registry):
    from mora.engine.frontends.api import load_plan

    nested = [[str(i) * 50 for i in range(100)]] * 3
    with pytest.raises(GraphError) as info:
        load_plan(write_graph(LIST_GRAPH), {"a": "1", "b": "2", "names": nested}, registry=registry)
    [problem] = info.value.problems
    assert problem.message.startswith("graph input 'names': expected text, got list ['0000") and "..." in problem.message
    assert len(problem.message) < 600
