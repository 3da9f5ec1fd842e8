"""The agent interface: what an agent declares, in one place, and how it is called.

An agent is a frozen `Agent` value: a stable type name, a version bumped whenever its output
would change, typed input/output ports, typed parameters with defaults, bounds and a one-line
description, the model role it needs (if any) and the libraries whose versions change its
numerics. `run(ctx, inputs, params)` does the work: inputs arrive as `ArtifactRef` handles
(lists of them for list ports), outputs leave as `Blob`s that the engine stores by content.

Agent modules must import without torch: heavy imports go inside `run`, so listing,
validating and cache lookups never pay for them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mora.engine.cache.artifacts import ArtifactRef, Blob
from mora.engine.errors import shown
from mora.engine.ports import PortType

ParamValue = bool | int | float | str | None


@dataclass(frozen=True)
class Port:
    """A typed input or output of an agent."""

    name: str
    type: PortType
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class Param:
    """A typed, bounded parameter. `run_only` ones (device, progress...) stay out of cache keys."""

    name: str
    type: type
    default: ParamValue
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    multiple_of: int | None = None
    run_only: bool = False
    batchable: bool = False
    """True when nodes differing only in this parameter can share one batched pipeline call."""
    only_with: tuple[str, str] | None = None
    """(param, value): this parameter means something, and enters the cache key, only while that one has that value
    (a step cache's threshold with no step cache changes nothing, so it must not make a cache miss)."""

    def check(self, value: Any) -> str | None:
        """Return why `value` is not allowed, or None if it is."""
        if value is None:
            return None if self.default is None else "must not be null"
        if self.type is bool:
            ok = isinstance(value, bool)
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, self.type)
        if not ok:
            return f"must be of type {self.type.__name__}, got {type(value).__name__} {shown(value)}"
        if self.type is float and not math.isfinite(value):
            return f"must be a finite number, got {shown(value)}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {list(self.choices)}, got {shown(value)}"
        if self.min is not None and value < self.min:
            return f"must be >= {self.min}, got {shown(value)}"
        if self.max is not None and value > self.max:
            return f"must be <= {self.max}, got {shown(value)}"
        if self.multiple_of and value % self.multiple_of:
            return f"must be divisible by {self.multiple_of}, got {shown(value)}"
        return None


class RunContext(Protocol):
    """What the engine hands an agent's `run`: device, seed, model loading, progress, logging."""

    node_id: str
    device: str
    seed: int | None
    model: Mapping[str, Any] | None
    """The resolved model reference (id/path/tiny name, dtype...), None for model-free agents."""

    def progress(self, total: int, description: str) -> Callable[[int], None]:
        """A callback that advances a progress bar by n steps."""
        ...

    seeds: list[int | None]
    """One seed per item in a batch call (`run_batch`); empty for single runs."""

    def note_model_load(self, identity: str) -> None:
        """Record that a model was loaded (for the manifest's `model_loads`)."""
        ...


RunFn = Callable[[RunContext, Mapping[str, "ArtifactRef | list[ArtifactRef]"], Mapping[str, Any]], dict[str, Any]]
BatchRunFn = Callable[
    [RunContext, list[Mapping[str, "ArtifactRef | list[ArtifactRef]"]], list[Mapping[str, Any]]], list[dict[str, Any]]
]
"""`run_batch(ctx, inputs_list, params_list)`: one result per item; per-item seeds are in `ctx.seeds`."""
PreloadFn = Callable[[RunContext, Mapping[str, Any]], None]
"""`preload(ctx, params)`: load (through mora.nodes.models with `prefetch=True`) what `run` will need."""


@dataclass(frozen=True)
class Agent:
    """An agent type: its declaration plus the function that runs it."""

    type: str
    version: int
    description: str
    run: RunFn
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    params: tuple[Param, ...] = ()
    model_role: str | None = None
    """Which entry of the model preset this agent uses (None: needs no model)."""
    random: bool = False
    """True when the agent draws random numbers: it takes a seed, and without one is not cached."""
    libraries: tuple[str, ...] = ()
    """Distributions whose versions change this agent's numerics (part of the cache key)."""
    run_batch: BatchRunFn | None = None
    """Optional: run several batch-compatible nodes in one pipeline call (see engine.scheduler)."""
    preload: PreloadFn | None = None
    """Optional: load the models `run` would load for these parameters, without running (see engine.runner)."""

    def __post_init__(self) -> None:
        for p in self.params:  # a wrong `only_with` would drop a parameter from every key: stale hits
            other = self.param(p.only_with[0]) if p.only_with else None
            if p.only_with and (other is None or (other.choices and p.only_with[1] not in other.choices)):
                raise ValueError(f"agent {self.type!r}: param {p.name!r} only_with {p.only_with!r} names no such "
                                 "parameter value")

    def input(self, name: str) -> Port | None:
        return next((p for p in self.inputs if p.name == name), None)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with the given values (validated beforehand by engine.validate)."""
        return {p.name: given.get(p.name, p.default) for p in self.params}

    def batch_params(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters that must be equal for nodes to share a batch (all but batchable ones)."""
        batchable = {p.name for p in self.params if p.batchable or p.run_only}
        return {k: v for k, v in resolved.items() if k not in batchable}

    def keyed_params(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        """The resolved parameters that take part in the cache key (run-only ones, and ones whose `only_with`
        condition does not hold, removed)."""
        idle = {p.name for p in self.params
                if p.run_only or (p.only_with is not None and resolved.get(p.only_with[0]) != p.only_with[1])}
        return {k: v for k, v in resolved.items() if k not in idle}


__all__ = ["Agent", "ArtifactRef", "Blob", "Param", "ParamValue", "Port", "PortType", "RunContext"]
