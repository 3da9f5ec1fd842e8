"""The run's execution settings reach the process that runs its nodes, in every runtime.

`cache.lock_timeout` is the witness: another process holds a node's key lock, and a run with a
tiny timeout computes the node anyway within seconds (the documented behaviour) instead of
waiting the default hour, whether the node runs in-process, on a pool worker or on a Ray actor.
"""
from __future__ import annotations

import concurrent.futures
import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pool_agents
import pytest
import yaml

from mora.engine.cache.store import Store
from mora.engine.execution.executors.inprocess import InProcessExecutor
from mora.engine.execution.executors.pool import PoolExecutor
from mora.engine.frontends.api import load_plan, run

TESTS = Path(__file__).parent
DEADLINE = 90.0
"""Seconds: far above a run with a 0.2 s lock timeout, far below the default timeout of an hour."""


@contextmanager
def key_locked(store: Store, key: str) -> Iterator[None]:
    """Hold `key`'s lock as another process computing the node would (flock on its own descriptor)."""
    path = store.root / "locks" / key[:2] / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run_with_the_key_held(tmp: Path, make_executor: Callable[[], Any]) -> Any:
    graph = tmp / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"a": {"agent": "p_sleep", "params": {"seconds": 0, "value": 7}}},
                                     "outputs": {"a": {"from": "a.value"}}}))
    plan = load_plan(graph, {}, registry=pool_agents.registry())
    probe = Store(tmp / "probe")  # the key does not depend on the cache directory: learn it from a first run
    key = run(plan, store=probe, preset={}, run_dir=tmp / "probe-run", runtime={}, quiet=True,
              executor=InProcessExecutor("cpu")).report.records["a"].key
    store = Store(tmp / "cache", lock_timeout=0.2)
    executor = make_executor()
    try:
        with key_locked(store, key), concurrent.futures.ThreadPoolExecutor(1) as pool:
            job = pool.submit(run, plan, store=store, preset={}, run_dir=tmp / "run", runtime={}, quiet=True,
                              executor=executor)
            outcome = job.result(timeout=DEADLINE)  # raises TimeoutError while the lock is waited for an hour
    finally:
        executor.shutdown()
    record = outcome.report.records["a"]
    assert record.status == "done" and not record.cached
    return record


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def test_lock_timeout_is_honoured_in_process(tmp_path, caplog):
    record = _run_with_the_key_held(tmp_path, lambda: InProcessExecutor("cpu"))
    assert record.worker == "main"
    assert "lock held for over 0 s; computing anyway" in caplog.text


def test_lock_timeout_is_honoured_on_a_pool_worker(tmp_path, on_path):
    record = _run_with_the_key_held(tmp_path, lambda: PoolExecutor(1, "cpu"))
    assert record.worker == "worker0"


def test_lock_timeout_is_honoured_on_a_ray_actor(ray_cluster, tmp_path):
    from mora.engine.execution.executors.ray import RayExecutor

    record = _run_with_the_key_held(tmp_path, lambda: RayExecutor({"device": "cpu", "devices": 1}))
    assert record.worker == "actor0"
