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
CPU machines run several workers. With `attach` (`runtime.attach`) the pool starts no workers: it takes the
standing workers of a folder (mora.engine.execution.standing), whose models outlive the command, and leaves them
running at shutdown; one that dies is replaced by a worker of the pool's own, as above.
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
from pathlib import Path
from typing import IO, Any

from mora.engine.errors import MoraError
from mora.engine.execution import standing
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


class _Spawned:
    """A worker process this pool started: it ends with the pool."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid = proc.pid

    @property
    def lines(self) -> IO[str] | None:
        return self.proc.stdout

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def ended(self) -> str:
        """How the process ended (called once its output has ended)."""
        code = self.proc.wait()
        return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"

    def leave(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass

    def join(self, busy: bool) -> None:
        try:
            self.proc.wait(timeout=0.1 if busy else 5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Standing:
    """A standing worker this pool attached to (mora.engine.execution.standing): it outlives the pool."""

    def __init__(self, attached: standing.Attached):
        self.attached = attached
        self.pid = int(attached.hello["pid"])

    @property
    def lines(self) -> IO[str]:
        return self.attached.lines

    def send(self, line: str) -> None:
        self.attached.out.write(line)
        self.attached.out.flush()

    def ended(self) -> str:
        try:
            self.attached.lines.close()  # the reader is done with it
        except OSError:
            pass
        if not standing.wait_gone(self.pid, 1.0):  # a process closes its sockets a moment before it has ended
            return "its connection closed: the standing worker hung up on this run (its log says why)"
        return "its connection closed: the standing worker stopped or died"

    def leave(self) -> None:
        self.attached.close()

    def join(self, busy: bool) -> None:
        pass


@dataclass
class _Worker:
    name: str
    device_id: str
    kind: str
    channel: _Spawned | _Standing
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
    """Runs nodes on a pool of worker processes, one per device: its own, or standing workers it attaches to."""

    def __init__(self, devices: Any = "all", kind: str = "cuda", attach: str | None = None):
        self.kind = "cpu" if kind == "cpu" else "cuda"
        self._events: queue.Queue[tuple[str, _Worker, Any]] = queue.Queue()
        self._log: list[dict[str, Any]] = []
        if attach is None:
            self._workers = [self._spawn(i, d) for i, d in enumerate(device_ids(devices, self.kind))]
        else:
            self._workers = self._attach(standing.workers_dir(attach))
        self.slots = len(self._workers)
        self.loads: Counter[str] = Counter()
        self.restarts = Restarts(self.slots)

    def _spawn(self, index: int, device_id: str, kind: str | None = None) -> _Worker:
        kind = kind or self.kind
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["CUDA_VISIBLE_DEVICES"] = "" if kind == "cpu" else device_id
        name = f"worker{index}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "mora.engine.execution.worker", kind, name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1, start_new_session=True,
        )
        worker = _Worker(name, device_id, kind, _Spawned(proc))
        worker.log = {"worker": name, "device": worker.label, "pid": proc.pid, "started": time.time(), "ready": None,
                      "loads": []}
        self._start(worker)
        return worker

    def _attach(self, folder: Path) -> list[_Worker]:
        """Take every standing worker in `folder` for this pool, or none (one busy or of another Mora: an error)."""
        paths = standing.sockets(folder)
        if not paths:
            raise standing.WorkersError(f"no standing workers in {folder}: start them with `mora-admin workers "
                                        f"start{'' if folder == standing.workers_dir(None) else f' --dir {folder}'}`")
        taken: list[standing.Attached] = []
        gone: list[standing.NotRunning] = []
        try:
            for path in paths:
                try:
                    taken.append(standing.attach(path))
                except standing.NotRunning as e:  # one dead worker does not stop the others from serving
                    log.warning("pool: %s", e)
                    gone.append(e)
        except standing.WorkersError:
            for attached in taken:
                attached.close()
            raise
        if not taken:
            raise gone[0]
        workers = []
        for attached in taken:
            hello = attached.hello
            worker = _Worker(str(hello["name"]), str(hello["device_id"]), str(hello["kind"]), _Standing(attached))
            worker.log = {"worker": worker.name, "device": worker.label, "pid": hello["pid"], "standing": True,
                          "started": hello["since"], "ready": hello["since"], "loads": []}
            worker.resident.update(hello.get("resident", []))
            self._start(worker)
            workers.append(worker)
        log.info("pool: attached to %d standing worker(s) in %s", len(workers), folder)
        return workers

    def _start(self, worker: _Worker) -> None:
        self._log.append(worker.log)
        threading.Thread(target=self._read, args=(worker,), daemon=True).start()

    def _read(self, worker: _Worker) -> None:
        stream = worker.channel.lines
        assert stream is not None
        try:
            for line in stream:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "results" in msg:
                    self._events.put(("result", worker, msg))
                elif "ready" in msg:
                    worker.log["ready"] = msg.get("time")
        except (OSError, ValueError):
            pass  # a standing worker's connection, closed under the reader
        self._events.put(("died", worker, worker.channel.ended()))

    def _place(self, task: Unit) -> _Worker:
        idle = [w for w in self._workers if w.task is None]
        if not idle:
            raise MoraError("pool: submit with no idle worker (the scheduler keeps at most `slots` in flight)")
        return choose(idle, task)

    def submit(self, unit: Unit) -> None:
        worker = self._place(unit)
        worker.task = unit
        try:
            worker.channel.send(json.dumps(unit_to_json(unit)) + "\n")
        except (BrokenPipeError, OSError, ValueError):
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

    def _replace(self, worker: _Worker, how: str) -> list[NodeResult]:
        """A worker of this run's own in place of a dead one (of a lost standing worker too: the run goes on)."""
        self.restarts.one_more("pool", f"{how} on {worker.label}")
        log.warning("pool: worker on %s died (%s); starting a new one", worker.label, how)
        index = self._workers.index(worker)
        self._workers[index] = self._spawn(index, worker.device_id, worker.kind)
        return lost(worker.task, worker.label, worker.name,
                    f"worker process on {worker.label} died ({how}) while running this node")

    def timeline(self) -> list[dict[str, Any]]:
        """Per worker started (also replacements): when it started and was ready, and its model loads."""
        return [dict(entry, loads=list(entry["loads"])) for entry in self._log]

    def worker_pids(self) -> list[int]:
        return [w.channel.pid for w in self._workers]

    def shutdown(self) -> None:
        """Close the workers' input (its own workers exit, stragglers are killed; standing ones are only left)."""
        for w in self._workers:
            w.channel.leave()
        for w in self._workers:
            w.channel.join(busy=w.task is not None)
