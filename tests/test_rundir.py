"""Outputs never collide: reserved and clashing output names are refused; no run shares or reuses a run directory."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import engine_agents
import pytest
from mora_inproc import ECHO_GRAPH, run_mora

from mora.engine.graph.agent import Agent, Port
from mora.engine.graph.registry import Registry
from mora.engine.ports import PortType

GRAPH = ECHO_GRAPH
LISTS = Agent("t_list", 1, "Two texts.", lambda ctx, inputs, params: {"items": ["a", "b"]},
              outputs=(Port("items", PortType.TEXT_LIST),))


@pytest.fixture
def registry() -> Registry:
    return Registry([*engine_agents.registry(), LISTS])


def _graph(outputs: dict[str, str]) -> dict:
    return {"nodes": {"n": {"agent": "t_text", "params": {"text": "x"}}, "l": {"agent": "t_list"}},
            "outputs": {name: {"from": src} for name, src in outputs.items()}}


@pytest.mark.parametrize("name", ["manifest", "Manifest", "MORA", "report", "index", "contact_sheet"])
def test_an_output_named_like_a_file_mora_writes_is_refused(write_graph, graph_problems, name):
    problems = graph_problems(write_graph(_graph({name: "n.text"})))
    assert [(p.field, "is reserved" in p.message) for p in problems] == [(f"outputs.{name}", True)]


@pytest.mark.parametrize("outputs, bad", [
    ({"out": "n.text", "Out": "n.text"}, "would be the same file on a case-insensitive disk"),
    ({"items": "l.items", "items_1": "n.text"}, "collides with item 1 of list output 'items'"),
])
def test_two_outputs_mapping_to_one_file_are_refused(write_graph, graph_problems, outputs, bad):
    problems = graph_problems(write_graph(_graph(outputs)))
    assert problems and all(bad in p.message for p in problems), problems


def test_names_that_only_look_alike_are_fine(write_graph, registry):
    from mora.engine.frontends.api import load_plan

    plan = load_plan(write_graph(_graph({"items": "l.items", "items_x": "n.text", "out_1": "n.text",
                                         "manifests": "n.text"})), {}, registry=registry)
    assert set(plan.outputs) == {"items", "items_x", "out_1", "manifests"}


def test_a_run_directory_holding_another_run_is_refused_and_kept(capsys, write_graph, tmp_path, cache_dir,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, run_dir = write_graph(GRAPH), tmp_path / "run"
    args = (f"graph_file={path}", "runtime=local", "runtime.device=cpu", "quiet=true", f"hydra.run.dir={run_dir}")
    assert run_mora(capsys, *args, "prompt=fox").status == 0
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    again = run_mora(capsys, *args, "prompt=owl")
    assert again.status == 2 and again.clean
    assert f"the run directory {run_dir} already holds another run (manifest.json)" in again.err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_a_run_directory_that_is_a_file_is_one_line_and_status_2(capsys, write_graph, tmp_path, cache_dir):
    (tmp_path / "taken").write_text("mine")
    result = run_mora(capsys, f"graph_file={write_graph(GRAPH)}", "runtime=local", "quiet=true", "prompt=fox",
                      f"hydra.run.dir={tmp_path / 'taken'}")
    assert result.status == 2 and result.clean and "is a file" in result.err, result.err
    assert (tmp_path / "taken").read_text() == "mine"


TOGETHER = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from mora.engine.frontends.cli import main

    me, other = Path(sys.argv.pop(1)), Path(sys.argv.pop(1))
    me.touch()
    while not other.exists():
        time.sleep(0.001)
    main()
""")
"""`mora` started by two processes at the same instant (each waits for the other to be ready)."""


def test_two_runs_started_in_the_same_second_get_their_own_run_directories(write_graph, tmp_path, cache_dir):
    path = write_graph(GRAPH)
    script = tmp_path / "together.py"
    script.write_text(TOGETHER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"ready{i}"),
                               str(tmp_path / f"ready{1 - i}"), f"graph_file={path}", "runtime=local",
                               "runtime.device=cpu", "quiet=true", f"prompt=fox {i}"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    dirs = [Path(out.strip().splitlines()[-1].removeprefix("mora: run directory: ")) for out, _ in results]
    assert dirs[0] != dirs[1] and all(d.is_relative_to(tmp_path / "outputs") for d in dirs)
    assert [(d / "out.txt").read_text() for d in dirs] == ["A fox 0", "A fox 1"]
    assert all(json.loads((d / "manifest.json").read_text())["ok"] for d in dirs)


@pytest.mark.parametrize("subdir", ["VICTIM", "../victim", "records/../../victim"])
def test_hydras_records_outside_the_run_directory_are_refused_before_anything_is_written(capsys, write_graph, tmp_path,
                                                                                         cache_dir, subdir):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.yaml").write_text("precious")
    subdir = subdir.replace("VICTIM", str(victim))
    args = (f"graph_file={write_graph(GRAPH)}", "runtime=local", "quiet=true", f"hydra.output_subdir={subdir}")
    for refused in (run_mora(capsys, *args, "prompt=fox", f"hydra.run.dir={tmp_path / 'run'}"),
                    run_mora(capsys, *args, "inputs.nosuch=1", f"hydra.run.dir={tmp_path / 'run'}"),
                    run_mora(capsys, "-m", *args, "prompt=a,b", f"hydra.sweep.dir={tmp_path / 'sweep'}")):
        assert refused.status == 2 and refused.clean, refused.err
        assert "hydra.output_subdir must be a folder inside the run directory" in refused.err, refused.err
    assert [p.name for p in victim.iterdir()] == ["config.yaml"] and (victim / "config.yaml").read_text() == "precious"
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("launcher", ["mora", "basic"])
def test_a_sweep_jobs_records_outside_its_directory_are_refused_before_it_runs(capsys, write_graph, tmp_path, cache_dir,
                                                                               launcher):
    victim = tmp_path / "victim"
    result = run_mora(capsys, "-m", f"graph_file={write_graph(GRAPH)}", "runtime=local", "quiet=true",
                      f"hydra/launcher={launcher}", "hydra.output_subdir=${prompt}", f"prompt=fine,{victim}",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.status == 2 and result.clean, result.err
    assert f"hydra.output_subdir must be a folder inside the run directory (a relative path that does not climb " \
           f"out with '..'; the default is .hydra), got '{victim}'" in result.err, result.err
    assert not victim.exists() and not list((tmp_path / "sweep").glob("*/out.txt"))
