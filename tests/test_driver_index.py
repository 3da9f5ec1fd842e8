"""Only the driver writes the index: workers return entries, drivers share a cache through key leases.

Real processes throughout: pool workers and Ray actors (a real local Ray cluster) report which
files under the cache's `index/`, `leases/` and `locks/` they hold open while computing (none:
they open the artifact store only), and the entries the driver recorded serve the rerun. Two
driver processes on one cache compute a slow node once. A driver killed while computing leaves
its key lease behind: a driver on the same host takes it over as soon as it sees the holder's
process gone; one left by a driver on another machine lapses (its `lock_timeout`, at most
key_leases.MAX_TTL, after its last renewal) and the waiting driver then computes the node.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pool_agents
import pytest
import yaml
from conftest import subprocess_env

from mora.engine.cache.key_leases import PREFIX
from mora.engine.cache.media import read_text
from mora.engine.cache.store import Store
from mora.engine.execution.executors.pool import PoolExecutor
from mora.engine.frontends.api import load_plan, run

TESTS = Path(__file__).parent
CHILD = """
import json, logging, sys
from pathlib import Path
import pool_agents
from mora.engine.cache.store import Store
from mora.engine.execution.executors.inprocess import InProcessExecutor
from mora.engine.frontends.api import load_plan, run

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
graph, cache, run_dir, timeout = sys.argv[1:5]
plan = load_plan(Path(graph), {}, registry=pool_agents.registry())
outcome = run(plan, store=Store(Path(cache), lock_timeout=float(timeout)), preset={}, run_dir=Path(run_dir),
              runtime={}, quiet=True, executor=InProcessExecutor("cpu"))
record = outcome.report.records["g"]
print(json.dumps({"status": str(record.status), "cached": record.cached}), flush=True)
"""


def _index_graph(tmp: Path) -> Any:
    graph = tmp / "g.yaml"
    graph.write_text(yaml.safe_dump({
        "nodes": {"a": {"agent": "p_index_files", "params": {"tag": "a"}},
                  "b": {"agent": "p_index_files", "in": {"after": {"from": "a.text"}}, "params": {"tag": "b"}}},
        "outputs": {"a": {"from": "a.text"}, "b": {"from": "b.text"}}}))
    return load_plan(graph, {}, registry=pool_agents.registry())


def _workers_never_open_the_index(tmp: Path, make_executor: Any) -> set[int]:
    plan = _index_graph(tmp)
    store = Store(tmp / "cache")
    executor = make_executor()
    try:
        first = run(plan, store=store, preset={}, run_dir=tmp / "run0", runtime={}, quiet=True, executor=executor)
        again = run(plan, store=store, preset={}, run_dir=tmp / "run1", runtime={}, quiet=True, executor=executor)
    finally:
        executor.shutdown()
    records = first.report.records
    assert all(r.status == "done" and not r.cached for r in records.values())
    seen = {n: json.loads(read_text(store.ref(store.lookup(records[n].key)["outputs"]["text"]))) for n in "ab"}
    assert {n: s["held"] for n, s in seen.items()} == {"a": [], "b": []}  # no index, lease or lock file open
    assert all(seen[n]["pid"] != os.getpid() for n in "ab")  # computed in worker processes, not the driver
    entry = store.lookup(records["b"].key)  # recorded by the driver from what the worker returned
    assert entry["node"] == "b" and entry["agent"] == "p_index_files" and entry["seconds"] > 0
    assert all(r.status == "cached" and r.cached for r in again.report.records.values())
    return {s["pid"] for s in seen.values()}


def test_pool_workers_never_open_the_index(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    _workers_never_open_the_index(tmp_path, lambda: PoolExecutor(2, "cpu"))


def test_ray_actors_never_open_the_index(ray_cluster, tmp_path):
    from mora.engine.execution.executors.ray import RayExecutor

    _workers_never_open_the_index(tmp_path, lambda: RayExecutor({"device": "cpu", "devices": "all"}))


def _gated_graph(tmp: Path) -> tuple[Path, Path, Path]:
    log, gate = tmp / "executions.log", tmp / "gate"
    graph = tmp / "gated.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"g": {"agent": "p_gated", "params": {
        "tag": "slow", "log": str(log), "gate": str(gate)}}}, "outputs": {"g": {"from": "g.text"}}}))
    return graph, log, gate


@pytest.fixture
def drivers() -> Iterator[list[subprocess.Popen[str]]]:
    """Driver processes a test starts; any still running when it ends (a failed test) are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _driver(tmp: Path, graph: Path, name: str, lock_timeout: float,
            started: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    started.append(subprocess.Popen([sys.executable, "-c", CHILD, str(graph), str(tmp / "cache"), str(tmp / name),
                                     str(lock_timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=subprocess_env()))
    return started[-1]


def _until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> None:
    """Read the child's stderr until a line holds `text` (the child logs at INFO); the rest is left unread."""
    found = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"the driver did not log {text!r} within {timeout:.0f} s"


def _finish(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def test_two_drivers_on_one_cache_compute_a_node_once(tmp_path, drivers):
    graph, log, gate = _gated_graph(tmp_path)
    first = _driver(tmp_path, graph, "run-a", 3600, drivers)
    _until(log.exists, "the first driver to compute the node")
    second = _driver(tmp_path, graph, "run-b", 3600, drivers)
    _wait_for_line(second, "is computing it; waiting for its result")
    gate.touch()
    results = [_finish(first)[0], _finish(second)[0]]
    assert results == [{"status": "done", "cached": False}, {"status": "cached", "cached": True}]
    assert len(log.read_text().splitlines()) == 1  # computed exactly once
    assert (tmp_path / "run-a" / "g.txt").read_bytes() == (tmp_path / "run-b" / "g.txt").read_bytes()
    store = Store(tmp_path / "cache")
    assert not [k for k in store.index.iterkeys() if k.startswith(PREFIX)]  # both released their leases


def test_a_killed_drivers_lease_is_taken_over_and_the_other_driver_computes_the_node(tmp_path, drivers):
    graph, log, gate = _gated_graph(tmp_path)
    doomed = _driver(tmp_path, graph, "run-a", 3, drivers)
    _until(log.exists, "the first driver to compute the node")
    other = _driver(tmp_path, graph, "run-b", 3600, drivers)  # would wait an hour for a live driver
    _wait_for_line(other, "is computing it; waiting for its result")
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    gate.touch()
    killed = time.monotonic()
    result, err = _finish(other)
    assert result == {"status": "done", "cached": False}
    assert time.monotonic() - killed < 60 and "computing anyway" not in err  # took over the lapsed lease
    pids = [line.split()[1] for line in log.read_text().splitlines()]
    assert pids == [str(doomed.pid), str(other.pid)]
    assert (tmp_path / "run-b" / "g.txt").read_text() == "slow"


def test_a_lease_left_by_a_driver_on_another_machine_lapses(tmp_path):
    graph, _, gate = _gated_graph(tmp_path)
    gate.touch()
    plan = load_plan(graph, {}, registry=pool_agents.registry())
    store = Store(tmp_path / "cache")  # waits an hour for a live driver
    key = run(plan, store=Store(tmp_path / "probe"), preset={}, run_dir=tmp_path / "probe-run", runtime={},
              quiet=True).report.records["g"].key
    store.index.add(f"{PREFIX}{key}", "elsewhere:4242:0123456789ab", expire=1.0)  # never renewed: its driver died
    t0 = time.monotonic()
    outcome = run(plan, store=store, preset={}, run_dir=tmp_path / "run", runtime={}, quiet=True)
    assert 1.0 <= time.monotonic() - t0 < 30
    record = outcome.report.records["g"]
    assert record.status == "done" and not record.cached
    assert store.lookup(key) is not None and store.index.get(f"{PREFIX}{key}") is None


def test_the_same_work_twice_in_one_graph_is_computed_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "executions.log"
    same = {"agent": "p_count", "params": {"tag": "same", "seconds": 0.5, "log": str(log)}}
    graph = tmp_path / "twice.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"x": same, "y": same},
                                     "outputs": {"x": {"from": "x.text"}, "y": {"from": "y.text"}}}))
    plan = load_plan(graph, {}, registry=pool_agents.registry())
    executor = PoolExecutor(2, "cpu")  # two idle workers: without the key's lease both would run at once
    try:
        outcome = run(plan, store=Store(tmp_path / "cache"), preset={}, run_dir=tmp_path / "run", runtime={},
                      quiet=True, executor=executor)
    finally:
        executor.shutdown()
    records = outcome.report.records
    assert records["x"].key == records["y"].key
    assert sorted((r.status, r.cached) for r in records.values()) == [("cached", True), ("done", False)]
    assert len(log.read_text().splitlines()) == 1
