"""The run's execution settings reach the process that runs its nodes, in every runtime.

`cache.lock_timeout` is the witness: another driver holds a node's key lease (a row in the index,
renewed while it lives), and a run with a tiny timeout computes the node anyway within seconds
(the documented behaviour) instead of waiting the default hour, whether the node runs
in-process, on a pool worker or on a Ray actor (the driver waits; the timeout reaches it
with the run's settings).
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pool_agents
import pytest
import yaml

from mora.engine.cache.key_leases import KeyLeases
from mora.engine.cache.store import Store
from mora.engine.execution.executors.inprocess import InProcessExecutor
from mora.engine.execution.executors.pool import PoolExecutor
from mora.engine.frontends.api import load_plan, run

TESTS = Path(__file__).parent
DEADLINE = 90.0
"""Seconds: far above a run with a 0.2 s lock timeout, far below the default timeout of an hour."""


@contextmanager
def key_leased(store: Store, key: str) -> Iterator[None]:
    """Hold `key`'s lease as another driver computing the node would (its own index connection, an hour's expiry)."""
    other = KeyLeases(Store(store.root).index, 3600.0)
    assert other.take(key)
    try:
        yield
    finally:
        other.close()


def _run_with_the_key_held(tmp: Path, make_executor: Callable[[], Any], caplog: pytest.LogCaptureFixture) -> Any:
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
        with caplog.at_level(logging.WARNING), key_leased(store, key), concurrent.futures.ThreadPoolExecutor(1) as pool:
            job = pool.submit(run, plan, store=store, preset={}, run_dir=tmp / "run", runtime={}, quiet=True,
                              executor=executor)
            outcome = job.result(timeout=DEADLINE)  # raises TimeoutError while the lock is waited for an hour
    finally:
        executor.shutdown()
    record = outcome.report.records["a"]
    assert record.status == "done" and not record.cached
    assert "node a: another run has held its key for over 0 s; computing anyway" in caplog.text
    return record


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def test_lock_timeout_is_honoured_in_process(tmp_path, caplog):
    record = _run_with_the_key_held(tmp_path, lambda: InProcessExecutor("cpu"), caplog)
    assert record.worker == "main"


def test_lock_timeout_is_honoured_on_a_pool_worker(tmp_path, on_path, caplog):
    record = _run_with_the_key_held(tmp_path, lambda: PoolExecutor(1, "cpu"), caplog)
    assert record.worker == "worker0"


def test_lock_timeout_is_honoured_on_a_ray_actor(ray_cluster, tmp_path, caplog):
    from mora.engine.execution.executors.ray import RayExecutor

    record = _run_with_the_key_held(tmp_path, lambda: RayExecutor({"device": "cpu", "devices": 1}), caplog)
    assert record.worker == "actor0"
