"""The in-process executor: runs each submitted node synchronously, in submission order.

The driver is its own worker here, and still runs nodes through the artifact store alone: the
scheduler records their entries, exactly as for the pool and Ray."""
from __future__ import annotations

from collections import deque

from mora.engine.execution.runner import execute_unit
from mora.engine.execution.task import NodeResult, Unit


class InProcessExecutor:
    """One slot, this process, one device; models stay resident in this process between nodes."""

    slots = 1

    def __init__(self, device: str = "auto"):
        self._device_name = device
        self._device: str | None = None
        self._queue: deque[Unit] = deque()

    def submit(self, unit: Unit) -> None:
        self._queue.append(unit)

    def wait(self, timeout: float | None = None) -> list[NodeResult]:
        """Run the next unit here (no timeout: this process is the worker, and it is free)."""
        if not self._queue:
            return []
        if self._device is None:
            from mora.engine.execution.devices import choose_device

            self._device = choose_device(self._device_name)
        return execute_unit(self._queue.popleft(), self._device)

    def shutdown(self) -> None:
        self._queue.clear()
