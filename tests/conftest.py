"""Shared fixtures: an isolated cache directory, graph files written from literals, and in-process runs.

`run_graph` plans a file against the built-in plus test agents (tests/engine_agents.py) and runs
it in this process on the CPU; `executions` counts the test agents' real executions (cache hits
do not run an agent, so they do not count).
"""
from __future__ import annotations

import os
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

TESTS = Path(__file__).resolve().parent
# Tests never reach the real hub (huggingface_hub reads this once, at import); the stand-in hub test sets its own.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import engine_agents

from mora.engine import api
from mora.engine.errors import GraphError, Problem
from mora.engine.registry import Registry
from mora.engine.store import Store

PRESET: dict[str, Any] = {"name": "test", "roles": {}}
"""A model preset with no models: engine tests use model-free agents only."""


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory, also exported as MORA_CACHE_DIR (it does not exist yet)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MORA_CACHE_DIR", str(path))
    return path


@pytest.fixture
def write_graph(tmp_path: Path) -> Callable[..., Path]:
    """write_graph(data, name='graph.yaml'): a dict is dumped as YAML, a str is dedented and written."""

    def write(data: Mapping[str, Any] | str, name: str = "graph.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(data) if isinstance(data, str) else yaml.safe_dump(dict(data), sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def registry() -> Registry:
    return engine_agents.registry()


@pytest.fixture
def executions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Counter[str]]:
    """executions(): how many times each node id has really run (test agents only)."""
    log = tmp_path / "executions.log"
    monkeypatch.setenv(engine_agents.LOG_ENV, str(log))

    def read() -> Counter[str]:
        return Counter(log.read_text(encoding="utf-8").split()) if log.exists() else Counter()

    return read


@pytest.fixture
def run_graph(tmp_path: Path, cache_dir: Path, registry: Registry) -> Callable[..., api.RunOutcome]:
    """run_graph(path, inputs=None, *, outputs=None, retries=0, agent_retries=None, run_dir=None) -> RunOutcome."""
    runs = iter(range(1_000))

    def run(path: Path, inputs: Mapping[str, Any] | None = None, *, outputs: list[str] | None = None,
            retries: int = 0, agent_retries: Mapping[str, int] | None = None,
            run_dir: Path | None = None) -> api.RunOutcome:
        plan = api.load_plan(path, dict(inputs or {}), outputs, registry=registry)
        store = Store(cache_dir)
        try:
            return api.run(plan, store=store, preset=PRESET, run_dir=run_dir or tmp_path / f"run{next(runs)}",
                           runtime={"name": "local", "device": "cpu", "retries": retries,
                                    "agent_retries": dict(agent_retries or {})}, quiet=True)
        finally:
            store.close()

    return run


@pytest.fixture
def graph_problems(registry: Registry) -> Callable[..., list[Problem]]:
    """graph_problems(path, inputs=None, **kw): the problems load_plan raises (fails if it raises none)."""

    def problems(path: Path, inputs: Mapping[str, Any] | None = None, **kw: Any) -> list[Problem]:
        with pytest.raises(GraphError) as info:
            api.load_plan(path, dict(inputs or {}), registry=kw.pop("registry", registry), **kw)
        assert info.value.problems, "a GraphError must carry at least one problem"
        return info.value.problems

    return problems


def statuses(outcome: api.RunOutcome) -> dict[str, str]:
    return {node: rec["status"] for node, rec in outcome.manifest["nodes"].items()}


@pytest.fixture
def status_of() -> Callable[[api.RunOutcome], dict[str, str]]:
    return statuses


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder, set as MORA_MODELS_DIR, for the tiny models every real-pipeline test uses: built once a session.

    Session-scoped, so it is in place before any module fixture (a Ray cluster hands it to its actors).
    """
    path = tmp_path_factory.getbasetemp() / "models"
    mp = pytest.MonkeyPatch()
    mp.setenv("MORA_MODELS_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster on CPU with two logical GPUs, for one test module; shut down after it.

    Ray starts it (and its auth token, where recent Ray enables token authentication for local
    clusters) itself. The actors inherit PYTHONPATH (so they import the test agents) and
    MORA_MODELS_DIR as they are when the cluster starts (`tiny_models`, session-scoped, comes first).
    """
    ray = pytest.importorskip("ray")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, runtime_env={"env_vars": {
        "PYTHONPATH": os.environ["PYTHONPATH"], "MORA_MODELS_DIR": os.environ.get("MORA_MODELS_DIR", "")}})
    yield
    ray.shutdown()
    mp.undo()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that must import the test agents."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


@pytest.fixture
def child_env() -> Callable[..., dict[str, str]]:
    return subprocess_env
