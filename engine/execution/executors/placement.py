"""Which idle worker runs a unit, and the bookkeeping behind it: what the pool and Ray share.

Policy, in order: a worker that holds the unit's model (no load); then the one that produced the
most of the unit's inputs (a seed's chain stays on one worker, next to the pipeline its decoder
reuses); then the one holding the fewest models; then the one that has run the fewest units, so
independent chains (the seeds of a sweep) spread over the workers. Placement never waits for a
busy worker: an idle device is always given the unit, which is what keeps every GPU busy.

Bookkeeping, written once for both: a worker's answer updates what placement knows of it and counts
its model loads per worker (`answered`); a worker that dies fails the nodes of the unit it was
running (`lost`) and is replaced, at most MAX_RESTARTS times per worker slot before the run
stops (`Restarts`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mora.engine.errors import MoraError
from mora.engine.execution.models import label
from mora.engine.execution.task import NodeResult, Unit

MAX_RESTARTS = 5
"""Replacements per worker slot before a runtime gives up on workers that keep dying."""


class Seat(Protocol):
    """What placement reads of a worker."""

    resident: set[str]
    produced: set[str]
    """Digests of the artifacts this worker has produced."""
    completed: int


S = TypeVar("S", bound=Seat)


def choose(idle: Sequence[S], unit: Unit) -> S:
    """The idle worker that should run `unit` (see the module's policy)."""
    model = model_identity(unit.model)
    inputs = set(input_digests(unit))

    def rank(seat: S) -> tuple[bool, int, int, int]:
        return (not (model and model in seat.resident), -len(inputs & seat.produced), len(seat.resident),
                seat.completed)

    return min(idle, key=rank)


def input_digests(unit: Unit) -> Iterator[str]:
    for task in unit.tasks:
        for meta in task.inputs.values():
            for m in meta if isinstance(meta, list) else [meta]:
                yield m["digest"]


def output_digests(outputs: dict[str, Any]) -> Iterator[str]:
    for meta in outputs.values():
        for m in meta if isinstance(meta, list) else [meta]:
            yield m["digest"]


def model_identity(ref: dict[str, Any] | None) -> str | None:
    return label(ref) if ref else None


def answered(seat: Seat, resident: Iterable[str], results: Iterable[NodeResult], loads: Counter[str],
             worker: str) -> None:
    """Take in a worker's answer: the models it now holds, what it produced, and its loads (counted per worker)."""
    seat.resident = set(resident)
    seat.completed += 1
    for result in results:
        seat.produced.update(output_digests(result.outputs))
        for ident in result.model_loads:
            loads[f"{worker} {ident}"] += 1


def lost(unit: Unit | None, device: str, worker: str, why: str) -> list[NodeResult]:
    """The results of the unit a dead worker was running: each of its nodes failed with `why`."""
    return [] if unit is None else [NodeResult(t.node_id, device=device, worker=worker, error=why) for t in unit.tasks]


@dataclass
class Restarts:
    """How many workers a runtime has replaced; more than MAX_RESTARTS per slot stops the run."""

    slots: int
    count: int = 0

    def one_more(self, runtime: str, why: str) -> None:
        self.count += 1
        if self.count > MAX_RESTARTS * self.slots:
            raise MoraError(f"{runtime}: workers keep dying ({why}); giving up")
