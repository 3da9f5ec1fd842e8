"""The scheduler: cache first, failure isolation, exact recomputation, random nodes, retries."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from mora.engine.cache.store import Store
from mora.engine.errors import MoraError
from mora.engine.execution.scheduler import run_plan


def diamond(write_graph, offset: float = 0.0, **extra_nodes):
    """src -> left -> join <- right <- src; `join` -> leaf; plus an independent `side` node."""
    return write_graph({"nodes": {
        "src": {"agent": "t_source", "params": {"value": 1}},
        "left": {"agent": "t_add", "in": {"a": {"from": "src.value"}, "b": 10}},
        "right": {"agent": "t_add", "in": {"a": {"from": "src.value"}, "b": 100}, "params": {"offset": offset}},
        "join": {"agent": "t_add", "in": {"a": {"from": "left.value"}, "b": {"from": "right.value"}}},
        "leaf": {"agent": "t_add", "in": {"a": {"from": "join.value"}, "b": 0}},
        "side": {"agent": "t_source", "params": {"value": 7}},
        **extra_nodes,
    }, "outputs": {"leaf": {"from": "leaf.value"}, "side": {"from": "side.value"}}})


def value(outcome, name):
    return json.loads((outcome.run_dir / outcome.manifest["outputs"][name]).read_text())


def test_first_run_computes_everything_and_second_run_nothing(write_graph, run_graph, executions, status_of):
    path = diamond(write_graph)
    first = run_graph(path)
    assert status_of(first) == dict.fromkeys(["src", "left", "right", "side", "join", "leaf"], "done")
    assert value(first, "leaf") == 112.0 and value(first, "side") == 7.0
    assert executions() == Counter({n: 1 for n in ["src", "left", "right", "join", "leaf", "side"]})
    second = run_graph(path)
    assert status_of(second) == dict.fromkeys(status_of(first), "cached")
    assert executions() == Counter({n: 1 for n in ["src", "left", "right", "join", "leaf", "side"]})
    for node, rec in second.manifest["nodes"].items():
        assert rec["key"] == first.manifest["nodes"][node]["key"]
        assert rec["outputs"] == first.manifest["nodes"][node]["outputs"]
        assert rec["cached"] is True
    assert second.manifest["output_digests"] == first.manifest["output_digests"]
    assert value(second, "leaf") == 112.0


def test_manifest_describes_every_node(write_graph, run_graph):
    m = run_graph(diamond(write_graph)).manifest
    assert m["ok"] is True and m["failed"] == [] and m["skipped"] == []
    rec = m["nodes"]["right"]
    assert {k: rec[k] for k in ("agent", "status", "cached", "params", "seed", "model", "error")} == {
        "agent": "t_add", "status": "done", "cached": False, "params": {"offset": 0.0}, "seed": None, "model": None,
        "error": None}
    assert len(rec["key"]) == 64 and rec["seconds"] >= 0 and rec["device"] == "cpu"
    assert rec["outputs"]["value"]["kind"] == "number"
    assert m["outputs"] == {"leaf": "leaf.json", "side": "side.json"}


def test_manifest_file_matches_the_report(write_graph, run_graph):
    outcome = run_graph(diamond(write_graph))
    on_disk = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert on_disk["nodes"] == outcome.manifest["nodes"]
    assert on_disk["outputs"] == outcome.manifest["outputs"]
    assert sorted(p.name for p in outcome.run_dir.iterdir()) == ["leaf.json", "manifest.json", "side.json"]


def test_changing_one_param_recomputes_exactly_the_nodes_below_it(write_graph, run_graph, executions, status_of):
    run_graph(diamond(write_graph))
    before = executions()
    changed = run_graph(diamond(write_graph, offset=1.0))
    assert status_of(changed) == {"src": "cached", "left": "cached", "side": "cached",
                                  "right": "done", "join": "done", "leaf": "done"}
    assert executions() - before == Counter(["right", "join", "leaf"])
    assert value(changed, "leaf") == 113.0


def test_an_unchanged_upstream_result_cuts_off_recomputation(write_graph, run_graph, executions, status_of):
    def graph(a, b):
        return write_graph({"nodes": {"sum": {"agent": "t_add", "in": {"a": a, "b": b}},
                                      "below": {"agent": "t_add", "in": {"a": {"from": "sum.value"}, "b": 1}}},
                            "outputs": {"out": {"from": "below.value"}}})

    first = run_graph(graph(1, 2))
    second = run_graph(graph(2, 1))
    assert status_of(second) == {"sum": "done", "below": "cached"}
    assert second.manifest["nodes"]["sum"]["key"] != first.manifest["nodes"]["sum"]["key"]
    assert second.manifest["nodes"]["below"]["key"] == first.manifest["nodes"]["below"]["key"]
    assert executions() == Counter({"sum": 2, "below": 1})


def test_a_failing_node_skips_its_dependants_and_spares_other_branches(write_graph, run_graph, executions, status_of):
    path = diamond(write_graph, bad={"agent": "t_fail", "in": {"x": {"from": "left.value"}},
                                     "params": {"message": "boom in bad"}},
                   below={"agent": "t_add", "in": {"a": {"from": "bad.value"}, "b": {"from": "side.value"}}},
                   further={"agent": "t_add", "in": {"a": {"from": "below.value"}, "b": 1}})
    text = path.read_text().replace("outputs:\n", "outputs:\n  broken:\n    from: further.value\n")
    path.write_text(text)
    first = run_graph(path)
    m = first.manifest
    assert status_of(first) == {"src": "done", "left": "done", "right": "done", "join": "done", "leaf": "done",
                                "side": "done", "bad": "failed", "below": "skipped", "further": "skipped"}
    assert m["ok"] is False and m["failed"] == ["bad"] and m["skipped"] == ["below", "further"]
    assert m["nodes"]["bad"]["error"] == "RuntimeError: boom in bad"
    assert m["nodes"]["below"]["error"] is None and m["nodes"]["below"]["outputs"] == {}
    assert m["outputs"] == {"leaf": "leaf.json", "side": "side.json"}
    assert m["output_digests"]["broken"] is None
    assert not (first.run_dir / "broken.json").exists()
    assert "below" not in executions() and "further" not in executions()
    second = run_graph(path)
    assert status_of(second) == {**status_of(first), **dict.fromkeys(["src", "left", "right", "join", "leaf",
                                                                      "side"], "cached")}
    assert executions()["bad"] == 2 and executions()["leaf"] == 1


def test_node_failures_do_not_leave_index_entries(write_graph, run_graph, cache_dir):
    path = write_graph({"nodes": {"bad": {"agent": "t_fail"}}, "outputs": {"out": {"from": "bad.value"}}})
    key = run_graph(path).manifest["nodes"]["bad"]["key"]
    store = Store(cache_dir)
    assert store.lookup(key) is None and not store.findings
    assert len(store.index) == 0


def test_random_node_without_seed_runs_every_time(write_graph, run_graph, executions, status_of):
    path = write_graph({"nodes": {"r": {"agent": "t_random"},
                                  "below": {"agent": "t_add", "in": {"a": {"from": "r.value"}, "b": 0}}},
                        "outputs": {"out": {"from": "below.value"}}})
    runs = [run_graph(path) for _ in range(3)]
    assert [status_of(o) for o in runs] == [{"r": "done", "below": "done"}] * 3
    assert executions() == Counter({"r": 3, "below": 3})
    seeds = [o.manifest["nodes"]["r"]["seed"] for o in runs]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) == 3
    assert all(o.manifest["nodes"]["r"]["key"].startswith("uncached-") for o in runs)
    assert len({value(o, "out") for o in runs}) == 3


def test_random_node_with_a_seed_is_cached_and_reproducible(write_graph, run_graph, executions, status_of):
    def graph(seed):
        return write_graph({"nodes": {"r": {"agent": "t_random", "params": {"seed": seed}}},
                            "outputs": {"out": {"from": "r.value"}}})

    first, again, other = run_graph(graph(3)), run_graph(graph(3)), run_graph(graph(4))
    assert [status_of(o)["r"] for o in (first, again, other)] == ["done", "cached", "done"]
    assert first.manifest["nodes"]["r"]["seed"] == 3
    assert value(first, "out") == value(again, "out") != value(other, "out")
    assert executions()["r"] == 2


def test_retries_rerun_a_failed_node(write_graph, run_graph, tmp_path, executions, status_of):
    path = write_graph({"nodes": {"f": {"agent": "t_flaky", "params": {"marker": str(tmp_path / "marker")}}},
                        "outputs": {"out": {"from": "f.value"}}})
    outcome = run_graph(path, retries=1)
    assert status_of(outcome) == {"f": "done"}
    assert outcome.report.records["f"].attempts == 2
    assert executions()["f"] == 2 and value(outcome, "out") == 1.0


def test_without_retries_a_flaky_node_fails(write_graph, run_graph, tmp_path, status_of):
    path = write_graph({"nodes": {"f": {"agent": "t_flaky", "params": {"marker": str(tmp_path / "marker")}}},
                        "outputs": {"out": {"from": "f.value"}}})
    outcome = run_graph(path, retries=0)
    assert status_of(outcome) == {"f": "failed"}
    assert outcome.manifest["nodes"]["f"]["error"] == "RuntimeError: first attempt fails"
    assert outcome.report.records["f"].attempts == 1


def test_retries_are_bounded(write_graph, run_graph, executions, status_of):
    path = write_graph({"nodes": {"f": {"agent": "t_fail"}}, "outputs": {"out": {"from": "f.value"}}})
    outcome = run_graph(path, retries=2)
    assert status_of(outcome) == {"f": "failed"} and executions()["f"] == 3


def test_agent_retries_give_one_agent_more_tries_than_the_rest(write_graph, run_graph, tmp_path, executions,
                                                              status_of):
    path = write_graph({"nodes": {"f": {"agent": "t_flaky", "params": {"marker": str(tmp_path / "marker")}},
                                  "x": {"agent": "t_fail"}},
                        "outputs": {"out": {"from": "f.value"}, "bad": {"from": "x.value"}}})
    outcome = run_graph(path, retries=0, agent_retries={"t_flaky": 1})
    assert status_of(outcome) == {"f": "done", "x": "failed"}
    assert executions()["f"] == 2 and executions()["x"] == 1


def test_agent_retries_naming_an_unknown_agent_is_an_error(write_graph, run_graph):
    path = write_graph({"nodes": {"x": {"agent": "t_fail"}}, "outputs": {"bad": {"from": "x.value"}}})
    with pytest.raises(MoraError, match=r"agent_retries names unknown agent type\(s\) \['t_flakey'\]"):
        run_graph(path, agent_retries={"t_flakey": 1})


def test_missing_artifact_is_recomputed_and_reported(write_graph, run_graph, executions, status_of, cache_dir):
    path = write_graph({"nodes": {"a": {"agent": "t_source", "params": {"value": 4}},
                                  "b": {"agent": "t_add", "in": {"a": {"from": "a.value"}, "b": 1}}},
                        "outputs": {"out": {"from": "b.value"}}})
    first = run_graph(path)
    digest = first.manifest["nodes"]["a"]["outputs"]["value"]["digest"]
    (cache_dir / "objects" / digest[:2] / f"{digest}.json").unlink()
    second = run_graph(path)
    assert status_of(second) == {"a": "done", "b": "cached"}
    assert len(second.manifest["cache_findings"]) == 1
    assert second.manifest["cache_findings"][0].startswith(f"missing: {digest}.json (node a)")
    assert executions() == Counter({"a": 2, "b": 1})
    assert value(second, "out") == 5.0


def test_an_agent_exception_fails_its_node_with_the_cause(write_graph, run_graph, status_of):
    path = write_graph({"nodes": {"t": {"agent": "t_text", "params": {"text": "x"}},
                                  "bad": {"agent": "text_template", "in": {"text": {"from": "t.text"}},
                                          "params": {"template": "no placeholder"}}},
                        "outputs": {"out": {"from": "bad.text"}}})
    outcome = run_graph(path)
    assert status_of(outcome) == {"t": "done", "bad": "failed"}
    assert outcome.manifest["nodes"]["bad"]["error"].startswith("ValueError: `template` must contain '{text}'")


def test_an_agent_returning_the_wrong_artifact_type_fails_its_node(write_graph, run_graph, status_of, cache_dir):
    path = write_graph({"nodes": {"w": {"agent": "t_wrong"}}, "outputs": {"out": {"from": "w.value"}}})
    outcome = run_graph(path)
    assert status_of(outcome) == {"w": "failed"}
    error = outcome.manifest["nodes"]["w"]["error"]
    assert error == "TypeError: agent 't_wrong' output 'value' must be number blob(s)"
    assert len(Store(cache_dir).index) == 0


def test_nodes_run_in_dependency_order(write_graph, run_graph, cache_dir, registry):
    from mora.engine.execution.executors.inprocess import InProcessExecutor
    from mora.engine.frontends.api import load_plan

    path = diamond(write_graph)
    submitted: list[str] = []

    class Recording(InProcessExecutor):
        def submit(self, task):
            submitted.append(task.node_id)
            super().submit(task)

    report = run_plan(load_plan(path, {}, registry=registry), Store(cache_dir), Recording("cpu"), {"name": "t"})
    assert not report.failed
    position = {n: i for i, n in enumerate(submitted)}
    assert sorted(submitted) == sorted(["src", "left", "right", "join", "leaf", "side"])
    for before, after in [("src", "left"), ("src", "right"), ("left", "join"), ("right", "join"), ("join", "leaf")]:
        assert position[before] < position[after]


def test_uncached_node_leaves_no_lease_or_index_entry(write_graph, run_graph, cache_dir):
    path = write_graph({"nodes": {"r": {"agent": "t_random"}}, "outputs": {"out": {"from": "r.value"}}})
    run_graph(path)
    assert len(Store(cache_dir).index) == 0  # neither an entry nor a key lease row
