"""Batching: compatible nodes run as one call, per-item seeds, per-node results and cache entries."""
from __future__ import annotations

import itertools

import pool_agents
import yaml
from conftest import run_file

from mora.engine.cache.media import read_number
from mora.engine.cache.store import Store


def _graph(tmp, log, scales_and_seeds):
    nodes = {f"n{i}": {"agent": "p_scaled", "params": {"scale": sc, "seed": sd, "log": str(log)}}
             for i, (sc, sd) in enumerate(scales_and_seeds)}
    path = tmp / "g.yaml"
    path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": {k: {"from": f"{k}.value"} for k in nodes}}))
    return path


_RUNS = itertools.count()


def _run(tmp, graph, batch_size, cache="cache"):
    return run_file(graph, cache=tmp / cache, run_dir=tmp / f"run-{batch_size}-{cache}-{next(_RUNS)}", preset={},
                    registry=pool_agents.registry(), runtime={"batch_size": batch_size})


def _values(outcome, store_dir):
    store = Store(store_dir)
    return {k: read_number(store.ref(v)) for k, v in outcome.report.outputs.items()}


def test_compatible_nodes_share_a_batch_and_keep_their_own_seeds(tmp_path):
    log = tmp_path / "calls.log"
    graph = _graph(tmp_path, log, [(1, 10), (1, 11), (1, 12), (2, 13), (1, 14)])
    outcome = _run(tmp_path, graph, batch_size=3)
    assert sorted(int(n) for n in log.read_text().split()) == [1, 1, 3]
    nodes = outcome.manifest["nodes"]
    assert nodes["n0"]["batch"] == nodes["n1"]["batch"] == nodes["n2"]["batch"] is not None
    assert nodes["n3"]["batch"] is None and nodes["n4"]["batch"] is None
    assert _values(outcome, tmp_path / "cache") == {"n0": 1010, "n1": 1011, "n2": 1012, "n3": 2013, "n4": 1014}
    again = _run(tmp_path, graph, batch_size=3)
    assert all(n["cached"] for n in again.manifest["nodes"].values())


def test_batching_off_runs_every_node_alone_with_the_same_results(tmp_path):
    log = tmp_path / "calls.log"
    graph = _graph(tmp_path, log, [(1, 10), (1, 11), (1, 12)])
    alone = _run(tmp_path, graph, batch_size=1, cache="c1")
    batched = _run(tmp_path, graph, batch_size=8, cache="c8")
    assert log.read_text().split() == ["1", "1", "1", "3"]
    assert _values(alone, tmp_path / "c1") == _values(batched, tmp_path / "c8")
