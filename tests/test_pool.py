"""The device pool on CPU workers: concurrency, placement, models loaded ahead, worker death, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import pool_agents
import psutil
import pytest
import yaml
from conftest import run_file

from mora.engine.execution.executors.placement import choose
from mora.engine.execution.executors.pool import PoolExecutor
from mora.engine.execution.runner import Context
from mora.engine.execution.settings import ExecutionSettings
from mora.engine.execution.task import NodeTask

TESTS = Path(__file__).parent


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    model_dir = tmp_path / "standin-model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"stand-in weights")
    return tmp_path, {"name": "test", "roles": {"standin": {"source": "path", "name": str(model_dir)}}}


def _graph(tmp: Path, nodes: dict, outputs: dict) -> Path:
    path = tmp / "graph.yaml"
    path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": outputs}))
    return path


def _run(tmp: Path, preset: dict, graph: Path, workers: int = 2):
    executor = PoolExecutor(workers, "cpu")
    try:
        return run_file(graph, cache=tmp / "cache", run_dir=tmp / "run", preset=preset,
                        registry=pool_agents.registry(), runtime={"name": "pool"}, executor=executor), executor
    finally:
        executor.shutdown()


def _epoch(when: float | str) -> float:
    """A manifest time (ISO 8601 for nodes, epoch seconds in worker timelines) as epoch seconds."""
    return when if isinstance(when, (int, float)) else datetime.fromisoformat(when).timestamp()


def test_independent_branches_overlap_in_time(env):
    tmp, preset = env
    graph = _graph(tmp, {"a": {"agent": "p_sleep", "params": {"seconds": 1.5, "value": 1}},
                         "b": {"agent": "p_sleep", "params": {"seconds": 1.5, "value": 2}}},
                   {"a": {"from": "a.value"}, "b": {"from": "b.value"}})
    outcome, _ = _run(tmp, preset, graph)
    nodes = outcome.manifest["nodes"]
    a, b = nodes["a"], nodes["b"]
    assert {a["device"], b["device"]} == {"cpu:0", "cpu:1"}
    sa, sb = _epoch(a["started"]), _epoch(b["started"])
    overlap = min(sa + a["seconds"], sb + b["seconds"]) - max(sa, sb)
    assert overlap > 1.0, f"branches did not run concurrently: overlap {overlap:.2f}s"


def test_node_goes_to_the_worker_holding_its_model(env):
    tmp, preset = env
    graph = _graph(tmp, {"first": {"agent": "p_modelled", "params": {"tag": "first"}},
                         "second": {"agent": "p_modelled", "in": {"after": {"from": "first.text"}},
                                    "params": {"tag": "second"}},
                         "third": {"agent": "p_modelled", "in": {"after": {"from": "second.text"}},
                                   "params": {"tag": "third"}}},
                   {"out": {"from": "third.text"}})
    outcome, executor = _run(tmp, preset, graph)
    nodes = outcome.manifest["nodes"]
    assert nodes["first"]["worker"] == nodes["second"]["worker"] == nodes["third"]["worker"]
    assert outcome.manifest["model_loads"] == 1
    assert sum(executor.loads.values()) == 1


def test_next_model_loads_while_the_node_before_it_runs(env):
    tmp, preset = env
    slow = tmp / "slow-model"
    slow.mkdir()
    (slow / "weights.bin").write_bytes(b"a model that takes 2 s to load")
    graph = _graph(tmp, {"first": {"agent": "p_loaded", "params": {"tag": "1", "seconds": 2.0, "load_seconds": 0.2}},
                         "second": {"agent": "p_loaded", "in": {"after": {"from": "first.text"}},
                                    "params": {"tag": "2", "model": f"path:{slow}", "load_seconds": 2.0}}},
                   {"out": {"from": "second.text"}})
    outcome, _ = _run(tmp, preset, graph)
    nodes, workers = outcome.manifest["nodes"], outcome.manifest["workers"]
    first, second = nodes["first"], nodes["second"]
    loads = [(w["worker"], load) for w in workers for load in w["loads"] if load["model"] == f"path:{slow}"]
    assert len(loads) == 1, f"the slow model was loaded {len(loads)} times"
    worker, load = loads[0]
    assert load["prefetch"] and _epoch(load["started"]) < _epoch(first["started"]) + first["seconds"] - 1.0, "it did not load ahead"
    assert second["worker"] == worker and second["seconds"] < 1.5, "the second node waited for a full load"
    assert second["model_loads"] == [f"path:{slow}"]  # a prefetched load is still counted, against its first user
    assert outcome.manifest["model_loads"] == 2
    assert [w["ready"] is not None for w in workers] == [True, True]


def test_a_chain_stays_on_the_worker_that_made_its_inputs(env, tmp_path):
    tmp, preset = env
    log = tmp_path / "runs.log"
    chain = {"a": {"agent": "p_count", "params": {"tag": "a", "log": str(log)}}}
    for prev, node in (("a", "b"), ("b", "c")):
        chain[node] = {"agent": "p_count", "in": {"after": {"from": f"{prev}.text"}},
                       "params": {"tag": node, "log": str(log)}}
    outcome, _ = _run(tmp, preset, _graph(tmp, chain, {"out": {"from": "c.text"}}))
    assert len({n["worker"] for n in outcome.manifest["nodes"].values()}) == 1


@dataclass
class _Seat:
    name: str
    resident: set[str] = field(default_factory=set)
    produced: set[str] = field(default_factory=set)
    completed: int = 0


def _unit(model: str | None = None, inputs: tuple[str, ...] = ()) -> NodeTask:
    ref = {"source": "path", "name": model} if model else None
    metas = {f"in{i}": {"digest": d} for i, d in enumerate(inputs)}
    return NodeTask("n", "agent", "module", {}, None, ref, metas, "key", True, ExecutionSettings("/cache"))


def test_placement_prefers_the_model_then_the_inputs_then_spreads():
    holder = _Seat("holder", resident={"path:/m"})
    maker = _Seat("maker", produced={"d1", "d2"})
    fresh, busier = _Seat("fresh"), _Seat("busier", completed=3)
    assert choose([maker, holder], _unit("/m", ("d1", "d2"))).name == "holder"  # a load costs more than a read
    assert choose([fresh, maker], _unit("/m", ("d1",))).name == "maker"
    assert choose([busier, fresh], _unit()).name == "fresh"  # independent chains spread over the workers
    assert choose([_Seat("two", resident={"x", "y"}), _Seat("one", resident={"x"})], _unit()).name == "one"


def test_a_prefetch_never_evicts_a_resident_model(monkeypatch, tmp_path):
    from mora.engine.execution import settings
    from mora.nodes import models

    monkeypatch.setattr(settings, "_CURRENT", replace(settings.current(), max_resident_models=1))
    models.clear_resident()
    try:
        dirs = []
        for name in ("held", "ahead"):
            (tmp_path / name).mkdir()
            dirs.append({"source": "path", "name": str(tmp_path / name), "dtype": "float32"})
        ctx = Context("n", "cpu", None, dirs[0])
        models.get_pipeline(ctx, "kind", lambda location, kwargs: {"from": location})
        ahead = Context("(ahead)", "cpu", None, dirs[1])
        assert models.get_pipeline(ahead, "kind", lambda location, kwargs: {"from": location}, prefetch=True) is None
        assert models.resident_identities() == [f"path:{tmp_path / 'held'}"]
        assert ctx.loads == [f"path:{tmp_path / 'held'}"] and ahead.loads == []
    finally:
        models.clear_resident()


def test_killed_worker_fails_only_its_node_and_is_replaced(env):
    tmp, preset = env
    graph = _graph(tmp, {"doomed": {"agent": "p_die"},
                         "fine": {"agent": "p_sleep", "params": {"seconds": 0.2, "value": 3}},
                         "after": {"agent": "p_sleep", "params": {"seconds": 0.1, "value": 4}}},
                   {"doomed": {"from": "doomed.value"}, "fine": {"from": "fine.value"},
                    "after": {"from": "after.value"}})
    outcome, executor = _run(tmp, preset, graph)
    nodes = outcome.manifest["nodes"]
    assert nodes["doomed"]["status"] == "failed"
    assert "died (signal SIGKILL)" in nodes["doomed"]["error"]
    assert nodes["fine"]["status"] == nodes["after"]["status"] == "done"
    assert outcome.manifest["failed"] == ["doomed"]
    assert executor.restarts.count == 1
    assert not list((tmp / "cache" / "tmp").iterdir())


SIGINT_SCRIPT = textwrap.dedent("""
    import sys, yaml
    from pathlib import Path
    import pool_agents
    from mora.engine.frontends.api import load_plan, run
    from mora.engine.execution.executors.pool import PoolExecutor
    from mora.engine.cache.store import Store
    tmp = Path(sys.argv[1])
    graph = tmp / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"a": {"agent": "p_sleep", "params": {"seconds": 30}},
                                               "b": {"agent": "p_sleep", "params": {"seconds": 30}}},
                                     "outputs": {"a": {"from": "a.value"}, "b": {"from": "b.value"}}}))
    plan = load_plan(graph, {}, registry=pool_agents.registry())
    ex = PoolExecutor(2, "cpu")
    print("PIDS", *ex.worker_pids(), flush=True)
    run(plan, store=Store(tmp / "cache"), preset={}, run_dir=tmp / "run", runtime={}, quiet=True, executor=ex)
""")


def test_sigint_leaves_no_worker_processes(env):
    tmp, _ = env
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, str(tmp)], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    assert proc.stdout is not None
    line = proc.stdout.readline()
    pids = [int(p) for p in line.split()[1:]]
    assert len(pids) == 2
    time.sleep(3)  # both workers are inside their 30 s node now
    assert all(psutil.pid_exists(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "worker processes outlived Ctrl-C"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_swept_runtime_gets_its_own_pool_and_no_worker_outlives_the_sweep(tmp_path):
    graph = _graph(tmp_path, {"fill": {"agent": "text_template", "in": {"text": {"input": "word"}},
                                       "params": {"template": "a {text}"}}},
                   {"text": {"from": "fill.text"}})
    text = graph.read_text().replace("nodes:", "inputs:\n  word: {type: text, default: fox}\nnodes:", 1)
    graph.write_text(text)
    env = dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "-m", f"graph_file={graph}",
         "inputs.word=fox,owl", "runtime=pool", "runtime.device=cpu", "runtime.devices=2", "runtime.batch_size=1,2",
         "hydra/launcher=mora", f"hydra.sweep.dir={tmp_path / 'sweep'}", "quiet=true"],
        env=env, capture_output=True, text=True, timeout=300, cwd=TESTS.parent)
    assert result.returncode == 0, result.stderr
    jobs = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/manifest.json"))]
    pools = {j["runtime"]["batch_size"]: tuple(w["pid"] for w in j["workers"]) for j in jobs}
    assert len(jobs) == 4 and set(pools) == {1, 2}
    assert all(len(pids) == 2 for pids in pools.values()) and not set(pools[1]) & set(pools[2])
    assert not any(_alive(pid) for pids in pools.values() for pid in pids), "workers outlived the sweep"
