"""Which idle worker runs a unit: the placement policy the pool and Ray share.

Policy, in order: a worker that holds the unit's model (no load); then the one that produced the
most of the unit's inputs (a seed's chain stays on one worker, next to the pipeline its decoder
reuses); then the one holding the fewest models; then the one that has run the fewest units, so
independent chains (the seeds of a sweep) spread over the workers. Placement never waits for a
busy worker: an idle device is always given the unit, which is what keeps every GPU busy.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

from mora.engine.models import label
from mora.engine.task import Unit


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
