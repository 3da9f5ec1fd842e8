"""A composed Hydra config made into a `Job` (its plan, cache, preset and runtime): what the CLI and a sweep run.

Policy: a config is read in two parts. `configured(cfg)` reads everything but the graph's input
values (validation, the graph file, the preset, the runtime), and `Configured.job(inputs)` plans
the graph for one set of input values. The cache is opened only once a job's plan is valid, so a
refused graph or input never creates a cache directory. A single run does both
once; a sweep whose jobs differ only in their inputs does the first once and the second per job.
Graph inputs are read from the config unresolved: `${...}` in a value is text, never a lookup.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mora.engine.cache.media import read_number
from mora.engine.cache.store import Store, default_cache_dir
from mora.engine.errors import MoraError
from mora.engine.execution.settings import ExecutionSettings
from mora.engine.frontends import api
from mora.engine.frontends.config import validate
from mora.engine.graph.expand import TemplateLoader
from mora.engine.graph.spec import GraphSpec, read_graph_file
from mora.engine.graph.validate import Preset
from mora.engine.ports import PortType
from mora.engine.userfiles import expand_user

INPUT_KEYS = ("inputs", "prompt", "seed")
"""The config keys that hold graph input values (`prompt` and `seed` are aliases for `inputs.prompt`/`inputs.seed`)."""


def graph_inputs(cfg: DictConfig) -> dict[str, Any]:
    """`inputs.*` plus the `prompt`/`seed` aliases, unresolved: `${...}` in a value is text, never a lookup."""
    values = OmegaConf.to_container(cfg.inputs, resolve=False) or {}
    aliases = OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["prompt", "seed"]), resolve=False)
    assert isinstance(values, dict) and isinstance(aliases, dict)
    return {**values, **{k: v for k, v in aliases.items() if v is not None}}


@dataclass(frozen=True)
class Configured:
    """Everything a config says but the graph's input values: shared by every job that differs only in those."""

    path: Path
    spec: GraphSpec
    loader: TemplateLoader
    outputs: list[str] | None
    defaults: dict[str, Any]
    cache: dict[str, Any]
    """The `cache` config: where the store is and how it is opened."""
    preset: dict[str, Any]
    runtime: dict[str, Any]
    video_format: str
    quiet: bool
    objective: str | None

    @cached_property
    def store(self) -> Store:
        cache_dir = expand_user(self.cache["dir"], "cache.dir") if self.cache["dir"] else default_cache_dir()
        return Store(cache_dir, salt=self.cache["salt"], lock_timeout=self.cache["lock_timeout"],
                     artifacts=self.cache["artifacts"])

    @cached_property
    def settings(self) -> ExecutionSettings:
        return ExecutionSettings.for_store(self.store, self.runtime)

    def job(self, inputs: dict[str, Any]) -> api.Job:
        """The job for these graph input values (raises GraphError, or MoraError for a bad objective)."""
        plan = api.plan_graph(self.spec, inputs, self.outputs, defaults=self.defaults, loader=self.loader)
        if self.objective is not None:
            numbers = sorted(name for name, src in plan.outputs.items() if src.type == PortType.NUMBER)
            if self.objective not in plan.outputs and self.objective in self.spec.outputs:
                raise MoraError(f"objective '{self.objective}' is an output of {self.path} that outputs=["
                                f"{', '.join(self.outputs or ())}] leaves out; add it to outputs= (numeric outputs "
                                f"kept: {numbers})")
            if self.objective not in plan.outputs:
                raise MoraError(f"objective '{self.objective}' is not an output of {self.path}; "
                                f"numeric outputs: {numbers}")
            if plan.outputs[self.objective].type != PortType.NUMBER:
                raise MoraError(f"objective '{self.objective}' is a {plan.outputs[self.objective].type.value} output "
                                f"of {self.path}, not a number; numeric outputs: {numbers}")
        return api.Job(plan, self.store, self.preset, self.runtime, self.video_format, self.quiet, self.objective,
                       self.settings)


def configured(cfg: DictConfig) -> Configured:
    """Validate the config and read the graph file (raises MoraError); the cache opens with the first valid job."""
    validate(cfg)
    path = api.graph_path(cfg.graph.name, cfg.graph_file)
    outputs = list(cfg.outputs) if cfg.outputs is not None else None
    defaults = preset_inputs(cfg)
    preset = OmegaConf.to_container(cfg.model, resolve=True)
    runtime = OmegaConf.to_container(cfg.runtime, resolve=True, enum_to_str=True)
    assert isinstance(preset, dict) and isinstance(runtime, dict)
    cache = OmegaConf.to_container(cfg.cache, resolve=True)
    assert isinstance(cache, dict)
    return Configured(path, read_graph_file(path), TemplateLoader([api.GRAPHS_DIR]), outputs, defaults, cache,
                      preset, runtime, cfg.video_format.value, cfg.quiet, cfg.objective)


def preset_inputs(cfg: DictConfig) -> dict[str, Preset]:
    """The model preset's `inputs`, each noting where it was written, so a value the graph refuses is blamed on the
    preset's file, not on the graph's line that declares the input."""
    values = OmegaConf.to_container(cfg.model.inputs, resolve=True) or {}
    assert isinstance(values, dict)
    name = cfg.model.get("name")
    file = files("mora.conf") / "model" / f"{name}.yaml"
    origin = f"{file} (or model.inputs on the command line)" if name and file.is_file() else "model.inputs"
    return {str(k): Preset(v, origin) for k, v in values.items()}


def job_from_config(cfg: DictConfig) -> api.Job:
    """Validate the configured graph and open the cache (raises MoraError/GraphError)."""
    return configured(cfg).job(graph_inputs(cfg))


def objective_value(job: api.Job, outputs: dict[str, Any]) -> float | None:
    """The numeric output named by `objective`, read from the store."""
    if job.objective is None:
        return None
    meta = outputs.get(job.objective)
    if meta is None:
        raise MoraError(f"objective output '{job.objective}' was not produced")
    return read_number(job.store.ref(meta))


__all__ = ["INPUT_KEYS", "Configured", "configured", "graph_inputs", "job_from_config", "objective_value",
           "preset_inputs"]
