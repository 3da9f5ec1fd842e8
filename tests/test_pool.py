"""The device pool on CPU workers: concurrency, model affinity, worker death, Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

import pool_agents
from mora.engine.api import load_plan, run
from mora.engine.executors.pool import PoolExecutor
from mora.engine.store import Store

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
    plan = load_plan(graph, {}, registry=pool_agents.registry())
    executor = PoolExecutor(workers, "cpu")
    try:
        return run(plan, store=Store(tmp / "cache"), preset=preset, run_dir=tmp / "run", runtime={"name": "pool"},
                   quiet=True, executor=executor), executor
    finally:
        executor.shutdown()


def test_independent_branches_overlap_in_time(env):
    tmp, preset = env
    graph = _graph(tmp, {"a": {"agent": "p_sleep", "params": {"seconds": 1.5, "value": 1}},
                         "b": {"agent": "p_sleep", "params": {"seconds": 1.5, "value": 2}}},
                   {"a": {"from": "a.value"}, "b": {"from": "b.value"}})
    outcome, _ = _run(tmp, preset, graph)
    nodes = outcome.manifest["nodes"]
    a, b = nodes["a"], nodes["b"]
    assert {a["device"], b["device"]} == {"cpu:0", "cpu:1"}
    overlap = min(a["started"] + a["seconds"], b["started"] + b["seconds"]) - max(a["started"], b["started"])
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
    assert executor.restarts == 1
    assert not list((tmp / "cache" / "tmp").iterdir())


SIGINT_SCRIPT = textwrap.dedent("""
    import sys, yaml
    from pathlib import Path
    import pool_agents
    from mora.engine.api import load_plan, run
    from mora.engine.executors.pool import PoolExecutor
    from mora.engine.store import Store
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
