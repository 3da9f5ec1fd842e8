"""Executors run NodeTasks and hand back NodeResults; the scheduler never runs agents itself.

Words, one per idea: a *runtime* is what the config chooses (`runtime=local|pool|ray`); an
*executor* is the object the scheduler submits units to for that runtime (this package); a
*worker* is a process that runs units (the driver itself in-process, a pool worker process, a
Ray actor); the *runner* (mora.engine.execution.runner) is the code every worker runs for one unit.

An executor has `slots` (how many units it can run at once), `submit(unit)` (a NodeTask or a
BatchTask; never blocks), `wait(timeout=None)` (blocks until at least one submitted unit has
finished, or `timeout` seconds have passed, and returns the NodeResults of the finished ones,
none on a timeout) and `shutdown()`. Workers never touch the index: a result is the entry the
scheduler records. The in-process executor runs tasks one at a time in this process (for
tests, debugging and one-device machines); the GPU pool and Ray runtimes implement the same
three calls.
"""
from __future__ import annotations

from typing import Protocol

from mora.engine.execution.task import NodeResult, Unit


class Executor(Protocol):
    slots: int

    def submit(self, unit: Unit) -> None: ...

    def wait(self, timeout: float | None = None) -> list[NodeResult]: ...

    def shutdown(self) -> None: ...
