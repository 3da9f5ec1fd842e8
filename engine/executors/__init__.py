"""Executors run NodeTasks and hand back NodeResults; the scheduler never runs agents itself.

An executor has `slots` (how many nodes it can run at once), `submit(task)` (never blocks),
`wait()` (blocks until at least one submitted task has finished and returns the finished
ones) and `shutdown()`. The in-process executor runs tasks one at a time in this process (for
tests, debugging and one-device machines); the GPU pool and Ray runtimes implement the same
three calls.
"""
from __future__ import annotations

from typing import Protocol

from engine.task import NodeResult, NodeTask


class Executor(Protocol):
    slots: int

    def submit(self, task: NodeTask) -> None: ...

    def wait(self) -> list[NodeResult]: ...

    def shutdown(self) -> None: ...
