"""The Ray runtime against a real local Ray cluster on CPU with logical GPUs."""
from __future__ import annotations

import pool_agents
import pytest
import yaml

from mora.engine.cache.store import Store
from mora.engine.errors import MoraError
from mora.engine.frontends.api import load_plan, run

pytest.importorskip("ray")


def test_ray_actors_run_branches_with_affinity(ray_cluster, tmp_path):
    from mora.engine.execution.executors.ray import RayExecutor

    model_dir = tmp_path / "standin"
    model_dir.mkdir()
    (model_dir / "w.bin").write_bytes(b"w")
    preset = {"roles": {"standin": {"source": "path", "name": str(model_dir)}}}
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({
        "nodes": {"a": {"agent": "p_modelled", "params": {"tag": "a"}},
                  "b": {"agent": "p_modelled", "in": {"after": {"from": "a.text"}}, "params": {"tag": "b"}},
                  "s": {"agent": "p_sleep", "params": {"seconds": 0.1, "value": 5}}},
        "outputs": {"b": {"from": "b.text"}, "s": {"from": "s.value"}}}))
    plan = load_plan(graph, {}, registry=pool_agents.registry())
    executor = RayExecutor({"device": "cpu", "devices": "all"})
    try:
        outcome = run(plan, store=Store(tmp_path / "cache"), preset=preset, run_dir=tmp_path / "run",
                      runtime={"name": "ray"}, quiet=True, executor=executor)
    finally:
        executor.shutdown()
    nodes = outcome.manifest["nodes"]
    assert executor.slots == 2
    assert all(n["status"] == "done" for n in nodes.values())
    assert nodes["a"]["worker"] == nodes["b"]["worker"]
    assert outcome.manifest["model_loads"] == 1


def test_store_check_names_the_node_that_cannot_see_the_cache(ray_cluster, tmp_path):
    from mora.engine.execution.executors.ray import RayExecutor, _Actor

    here = _Actor("cpu", "probe")
    token = tmp_path / ".token"
    token.write_text("abc")
    assert here.check_store(str(token), "abc") is None
    assert "holds other content" in here.check_store(str(token), "xyz")
    assert "cannot read" in here.check_store(str(tmp_path / "elsewhere" / ".token"), "abc")
    executor = RayExecutor({"device": "cpu"})
    try:
        executor.check_store(str(tmp_path))  # reachable: no error
        with pytest.raises(MoraError, match="cannot write to the cache directory"):
            executor.check_store(str(tmp_path / "missing-dir"))
    finally:
        executor.shutdown()
