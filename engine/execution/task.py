"""What travels between the scheduler and an executor: a node to run and what came of it.

Both are plain frozen dataclasses of JSON-able fields (artifact digests, never tensors), so the
in-process executor, a pool of worker processes and Ray actors all carry them unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mora.engine.execution.settings import ExecutionSettings

ArtifactMeta = dict[str, Any]
"""An artifact's JSON form: digest, kind, fmt, size."""


@dataclass(frozen=True)
class Ahead:
    """A model a node downstream will need: what a worker can load while the current node runs."""

    agent: str
    agent_module: str
    params: dict[str, Any]
    model: dict[str, Any]


@dataclass(frozen=True)
class NodeTask:
    node_id: str
    agent: str
    agent_module: str
    params: dict[str, Any]
    seed: int | None
    model: dict[str, Any] | None
    inputs: dict[str, ArtifactMeta | list[ArtifactMeta]]
    key: str
    cacheable: bool
    settings: ExecutionSettings
    """The run's settings: the runner opens the artifact store from them and the model loader reads them."""
    ahead: tuple[Ahead, ...] = ()
    """Models of the nodes downstream, nearest first (engine.runner.prefetch loads them meanwhile)."""

    @property
    def tasks(self) -> tuple[NodeTask, ...]:
        """A unit of one node: every unit iterates as its tasks."""
        return (self,)


@dataclass(frozen=True)
class BatchTask:
    """Batch-compatible nodes (same agent, model and non-batchable parameters) run as one call."""

    tasks: tuple[NodeTask, ...]

    @property
    def model(self) -> dict[str, Any] | None:
        return self.tasks[0].model

    @property
    def label(self) -> str:
        return f"batch:{self.tasks[0].node_id}+{len(self.tasks) - 1}"

    @property
    def ahead(self) -> tuple[Ahead, ...]:
        """The first node's: batched nodes share agent and model, and as a rule what follows them."""
        return self.tasks[0].ahead


Unit = NodeTask | BatchTask
"""What an executor runs in one slot."""


def unit_to_json(unit: Unit) -> dict[str, Any]:
    from dataclasses import asdict

    return {"batch": [asdict(t) for t in unit.tasks]} if isinstance(unit, BatchTask) else {"task": asdict(unit)}


def unit_from_json(data: dict[str, Any]) -> Unit:
    if "batch" in data:
        return BatchTask(tuple(_task_from_json(t) for t in data["batch"]))
    return _task_from_json(data["task"])


def _task_from_json(data: dict[str, Any]) -> NodeTask:
    return NodeTask(**{**data, "settings": ExecutionSettings.from_json(data["settings"]),
                        "ahead": tuple(Ahead(**a) for a in data.get("ahead", ()))})


@dataclass(frozen=True)
class NodeResult:
    """What came of a node; for a cacheable one that succeeded, the entry the driver records (workers never do)."""

    node_id: str
    outputs: dict[str, ArtifactMeta | list[ArtifactMeta]] = field(default_factory=dict)
    seconds: float = 0.0
    started: float = 0.0
    device: str = ""
    worker: str = ""
    model_loads: tuple[str, ...] = ()
    error: str | None = None
    traceback: str | None = None
    batch: str | None = None
    """The batch this node ran in (None: alone)."""
    corrupt: tuple[str, ...] = ()
    """Digests of inputs that failed verification when read (quarantined; their producers must rerun)."""
