"""The device pool: one long-lived worker process per device, nodes placed near their models.

Policy. The scheduler process never initialises CUDA: it counts GPUs with `nvidia-smi` and
starts one worker (`python -m mora.engine.execution.worker`) per device, in its own session, with
`CUDA_VISIBLE_DEVICES` set before the process starts; the workers start as soon as the executor
is made, and warm up (torch, CUDA context) while the driver finishes planning. Tasks and results
cross the pipes as JSON (digests, never tensors). Placement is engine.executors.placement's: an
idle worker holding the unit's model, then the one that produced its inputs, then the one
holding the fewest models and having run the fewest units. Each task carries the models of the
nodes downstream, which the worker loads while the task computes (mora.engine.execution.runner.prefetch).
`timeline()` gives, per worker, when it was started and ready and every model load (start,
seconds, loaded ahead or not), for the manifest's `workers`. A worker that dies (killed, out of
memory) fails only the node it was running, with an error naming the device and the signal, and
is replaced; the store's atomic writes mean nothing is left half-written, and since workers
never write the index (they return their entries: the scheduler records them) a dead worker
leaves it untouched. `shutdown` closes the workers' stdin, then terminates and kills
stragglers, so Ctrl-C leaves no processes behind. CPU "devices" (`device: cpu`) let tests and
CPU machines run several workers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

from mora.engine.errors import MoraError
from mora.engine.execution.executors.placement import Restarts, answered, choose, lost
from mora.engine.execution.task import NodeResult, Unit, unit_to_json
from mora.engine.execution.worker import result_from_json

log = logging.getLogger("mora.pool")


def count_gpus() -> int:
    """How many GPUs are visible, without initialising CUDA in this process."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


MAX_CPU_WORKERS = 128
"""The most CPU workers a pool starts: more than cores is useful for agents that wait (bench/sim_scale.py runs 64 on
two cores), but each is a process, and a typo such as runtime.devices=1000000 must not fork until memory runs out."""


def device_ids(devices: Any, kind: str) -> list[str]:
    """Device ids from config: `all`, a count, or a list of ids."""
    if kind == "cpu":
        n = devices if isinstance(devices, int) else len(devices) if isinstance(devices, (list, tuple)) else 2
        if n > MAX_CPU_WORKERS:
            raise MoraError(f"runtime.devices={n} CPU workers is more than the {MAX_CPU_WORKERS} one machine may start")
        return [str(i) for i in range(int(n))]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(count_gpus())]
    if devices == "all":
        chosen = ids
    elif isinstance(devices, int):
        chosen = ids[:devices]
        if len(chosen) < devices:
            raise MoraError(f"runtime.devices={devices} but only {len(ids)} GPU(s) are visible")
    else:
        chosen = [str(d) for d in devices]
    if not chosen:
        raise MoraError("the pool runtime found no GPU; use runtime=local, or runtime.device=cpu for CPU workers")
    return chosen


@dataclass
class _Worker:
    name: str
    device_id: str
    kind: str
    proc: subprocess.Popen
    task: Unit | None = None
    resident: set[str] = field(default_factory=set)
    produced: set[str] = field(default_factory=set)
    completed: int = 0
    log: dict[str, Any] = field(default_factory=dict)
    """Timeline: started, ready (epoch seconds), pid and the model loads it reported."""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.device_id}"


class PoolExecutor:
    """Runs nodes on a pool of worker processes, one per device."""

    def __init__(self, devices: Any = "all", kind: str = "cuda"):
        self.kind = "cpu" if kind == "cpu" else "cuda"
        self._events: queue.Queue[tuple[str, _Worker, Any]] = queue.Queue()
        self._log: list[dict[str, Any]] = []
        self._workers = [self._spawn(i, d) for i, d in enumerate(device_ids(devices, self.kind))]
        self.slots = len(self._workers)
        self.loads: Counter[str] = Counter()
        self.restarts = Restarts(self.slots)

    def _spawn(self, index: int, device_id: str) -> _Worker:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["CUDA_VISIBLE_DEVICES"] = "" if self.kind == "cpu" else device_id
        name = f"worker{index}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "mora.engine.execution.worker", self.kind, name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1, start_new_session=True,
        )
        worker = _Worker(name, device_id, self.kind, proc)
        worker.log = {"worker": name, "device": worker.label, "pid": proc.pid, "started": time.time(), "ready": None,
                      "loads": []}
        self._log.append(worker.log)
        threading.Thread(target=self._read, args=(worker, proc.stdout), daemon=True).start()
        return worker

    def _read(self, worker: _Worker, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "results" in msg:
                self._events.put(("result", worker, msg))
            elif "ready" in msg:
                worker.log["ready"] = msg.get("time")
        self._events.put(("died", worker, worker.proc.wait()))

    def _place(self, task: Unit) -> _Worker:
        idle = [w for w in self._workers if w.task is None]
        if not idle:
            raise MoraError("pool: submit with no idle worker (the scheduler keeps at most `slots` in flight)")
        return choose(idle, task)

    def submit(self, unit: Unit) -> None:
        worker = self._place(unit)
        worker.task = unit
        assert worker.proc.stdin is not None
        try:
            worker.proc.stdin.write(json.dumps(unit_to_json(unit)) + "\n")
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader thread reports the death and the task fails there

    def wait(self, timeout: float | None = None) -> list[NodeResult]:
        if all(w.task is None for w in self._workers):
            return []
        results = []
        while not results:
            try:
                kind, worker, payload = self._events.get(timeout=timeout)
            except queue.Empty:
                return []
            if kind == "result":
                worker.log["loads"].extend(payload.get("loads", []))
                worker.task = None
                answer = [dataclasses.replace(result_from_json(d), device=worker.label) for d in payload["results"]]
                answered(worker, payload.get("resident", []), answer, self.loads, worker.label)
                results.extend(answer)
            elif kind == "died" and worker in self._workers:
                results.extend(self._replace(worker, payload))
        return results

    def _replace(self, worker: _Worker, code: int) -> list[NodeResult]:
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self.restarts.one_more("pool", f"{how} on {worker.label}")
        log.warning("pool: worker on %s died (%s); starting a new one", worker.label, how)
        index = self._workers.index(worker)
        self._workers[index] = self._spawn(index, worker.device_id)
        return lost(worker.task, worker.label, worker.name,
                    f"worker process on {worker.label} died ({how}) while running this node")

    def timeline(self) -> list[dict[str, Any]]:
        """Per worker started (also replacements): when it started and was ready, and its model loads."""
        return [dict(entry, loads=list(entry["loads"])) for entry in self._log]

    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def shutdown(self) -> None:
        for w in self._workers:
            try:
                if w.proc.stdin:
                    w.proc.stdin.close()
            except OSError:
                pass
        for w in self._workers:
            try:
                w.proc.wait(timeout=5 if w.task is None else 0.1)
            except subprocess.TimeoutExpired:
                w.proc.terminate()
                try:
                    w.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait()
