"""Shared fixtures and helpers: an isolated cache, graph files from literals, graph runs, a fake agent context.

`run_file` plans a graph file (a preset's inputs as defaults) and runs it, in this process on the
CPU unless given another executor: every test that runs a graph goes through it. `run_graph` is
the fixture form for engine tests (the built-in plus test agents of tests/engine_agents.py, a
model-free preset); `executions` counts the test agents' real executions (cache hits do not run
an agent, so they do not count). `FakeContext` is the RunContext an agent test hands an agent.
"""
from __future__ import annotations

import os
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
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

from mora.engine.cache.store import Store
from mora.engine.errors import GraphError, Problem
from mora.engine.execution.executors import Executor
from mora.engine.frontends import api
from mora.engine.graph.registry import Registry

PRESET: dict[str, Any] = {"name": "test", "roles": {}}
"""A model preset with no models: engine tests use model-free agents only."""
TINY: dict[str, Any] = yaml.safe_load((TESTS.parent / "conf" / "model" / "tiny.yaml").read_text(encoding="utf-8"))
"""The tiny preset: real pipelines with tiny random weights, for every test that runs real agents."""


def run_file(path: Path, inputs: Mapping[str, Any] | None = None, *, cache: Path, run_dir: Path,
             preset: Mapping[str, Any] = TINY, registry: Registry | None = None, outputs: list[str] | None = None,
             runtime: Mapping[str, Any] | None = None, executor: Executor | None = None) -> api.RunOutcome:
    """Plan `path` with `inputs` (the preset's `inputs` as defaults) and run it, locally on the CPU by default.

    A given `executor` is the caller's to shut down; otherwise `runtime` (merged over local/cpu) picks one.
    """
    plan = api.load_plan(path, dict(inputs or {}), outputs, registry=registry, defaults=preset.get("inputs"))
    store = Store(cache)
    try:
        return api.run(plan, store=store, preset=preset, run_dir=run_dir, quiet=True, executor=executor,
                       runtime={"name": "local", "device": "cpu", **(runtime or {})})
    finally:
        store.close()


def params_of(agent: Any, **given: Any) -> dict[str, Any]:
    """An agent's resolved parameters with `given` set, each checked against the agent's own bounds first."""
    for name, value in given.items():
        assert agent.param(name) is not None, name
        assert agent.param(name).check(value) is None, (name, value)
    return agent.resolve_params(given)


def pixels(blob: Any) -> Any:
    """The pixels of an image artifact's bytes, as a numpy array."""
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(blob.data)))


def tiny_ref(name: str) -> dict[str, Any]:
    """The model reference of one of the tiny preset's models (nodes/zoo)."""
    return {"source": "tiny", "name": name, "revision": None, "dtype": "float32", "variant": None}


@dataclass
class FakeContext:
    """The RunContext an agent sees, without the engine: it records model loads and progress steps."""

    model: dict[str, Any] | None = None
    seed: int | None = 0
    node_id: str = "test"
    device: str = "cpu"
    seeds: list[int | None] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    steps: int = 0

    def progress(self, total: int, description: str) -> Callable[[int], None]:
        def advance(n: int = 1) -> None:
            self.steps += n

        return advance

    def note_model_load(self, identity: str) -> None:
        self.loads.append(identity)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory, also exported as MORA_CACHE_DIR (it does not exist yet)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MORA_CACHE_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def kept_configs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test keeps the configs `mora` composes in a folder of its own (runs in this process only)."""
    path = tmp_path_factory.mktemp("kept-configs")
    monkeypatch.setattr("mora.engine.frontends.config_cache.cache_dir", lambda: path)
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
        return run_file(path, inputs, cache=cache_dir, run_dir=run_dir or tmp_path / f"run{next(runs)}",
                        preset=PRESET, registry=registry, outputs=outputs,
                        runtime={"retries": retries, "agent_retries": dict(agent_retries or {})})

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


@pytest.fixture(scope="module")
def own_resident_models() -> Iterator[None]:
    """A module's pipelines stay resident between its tests and leave with it (for modules that load real models)."""
    from mora.nodes.models import clear_resident

    clear_resident()
    yield
    clear_resident()


@pytest.fixture
def put(tmp_path: Path) -> Callable[[Any], Any]:
    """Write a blob as a loose artifact file (no cache) and return its ArtifactRef: an agent's input in unit tests."""
    from mora.engine.cache.artifacts import ArtifactRef

    def put(blob: Any) -> ArtifactRef:
        path = tmp_path / blob.digest
        path.write_bytes(blob.data)
        return ArtifactRef(blob.digest, blob.kind, blob.fmt, len(blob.data), path)

    return put


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small input files for the templates: two 3-frame clips (`first` red, `second` blue) and an `image`."""
    import numpy as np
    from PIL import Image

    from mora.engine.cache.media import Frames, write_mp4

    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    paths = {}
    for name, colour in (("first", (220, 40, 40)), ("second", (40, 40, 220))):
        frames = np.full((3, 48, 64, 3), colour, dtype=np.uint8)
        frames += rng.integers(0, 20, frames.shape, dtype=np.uint8)
        paths[name] = root / f"{name}.mp4"
        write_mp4(Frames(frames, 8.0), paths[name])
    paths["image"] = root / "photo.png"
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(paths["image"])
    return paths


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
