"""The in-process executor: runs each submitted node synchronously, in submission order."""
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

    def wait(self) -> list[NodeResult]:
        if not self._queue:
            return []
        if self._device is None:
            from mora.engine.execution.devices import choose_device

            self._device = choose_device(self._device_name)
        return execute_unit(self._queue.popleft(), self._device)

    def shutdown(self) -> None:
        self._queue.clear()
