"""The Ray runtime: the pool's worker code as Ray actors, for more than one machine.

Policy. Ray is imported only when this runtime is chosen (`pip install -e '.[ray]'`). The
executor connects to `runtime.address` (an existing cluster; `auto` finds a local one) or starts
a local cluster for the run; an address where nothing answers within `CONNECT_TIMEOUT` is refused, as is
asking more devices than the cluster has GPUs (those actors would wait for ever). It creates one
long-lived actor per GPU with `num_gpus=1` (actors,
not tasks: a GPU task starts a fresh process per call and would reload its models), each
running `mora.engine.execution.runner.execute_unit` on its device with its models resident, and loading the
models of the nodes downstream meanwhile (mora.engine.execution.runner.prefetch). Placement is the pool's
(engine.executors.placement): an idle actor holding the node's model, then the one that produced
its inputs, then the one holding the fewest models and having run the fewest units. Actors
never open the index or take a lock: the driver looks nodes up before dispatch and records the
entries actors return, so the index stays on the driver's disk. Actors write artifacts to the
cache's artifact store: with `cache.artifacts` an object store (`s3://`, `gs://`) that every node
reaches, so the cluster needs no shared filesystem (each node keeps its copies under a local
`cache.dir`); without one, the cache directory itself, which must then be on a filesystem every
node mounts at the same path: at start-up each actor reads a token file the driver just wrote
there, and the run stops with a clear error naming the node that cannot see it. An actor that dies fails its node and is
replaced. Actors take the driver's OMP_NUM_THREADS (unset: torch's default), as pool workers
do, not Ray's one thread per reserved CPU, so a CPU run gives the same artifacts as the pool and
in-process runtimes.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mora.engine.errors import MoraError
from mora.engine.execution.executors.placement import Restarts, answered, choose, lost
from mora.engine.execution.task import NodeResult, Unit, unit_from_json, unit_to_json
from mora.engine.execution.worker import result_from_json


@dataclass
class _Seat:
    """What the driver knows of one actor, for placement."""

    index: int
    resident: set[str] = field(default_factory=set)
    produced: set[str] = field(default_factory=set)
    completed: int = 0


class _Actor:
    """The body of a worker actor (wrapped with ray.remote at run time)."""

    def __init__(self, device: str, name: str, threads: str | None = None):
        import ray

        if ray.get_runtime_context().get_actor_id() is not None:
            # Ray sets OMP_NUM_THREADS to the actor's CPU reservation (1) where it is unset, and
            # torch's intra-op thread count changes CPU numerics: before torch is imported, take the
            # driver's setting instead (unset: torch's default), as a pool worker inherits it.
            if threads is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = threads
        from mora.engine.execution.devices import choose_device

        self.device = choose_device(device)
        self.name = name

    def check_store(self, token_path: str, token: str) -> str | None:
        """None if the store is reachable with the right content here, else why not."""
        import socket

        try:
            seen = Path(token_path).read_text()
        except OSError as e:
            return f"{socket.gethostname()}: cannot read {token_path} ({e.strerror})"
        return None if seen == token else f"{socket.gethostname()}: {token_path} holds other content"

    def run(self, unit: dict[str, Any]) -> dict[str, Any]:
        from mora.engine.execution.model_loader import model_loader
        from mora.engine.execution.runner import execute_unit, prefetch

        task = unit_from_json(unit)
        prefetch(task, self.device)
        results = execute_unit(task, self.device, self.name)
        return {"results": [dataclasses.asdict(r) for r in results], "resident": model_loader().resident_models()}


CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a cluster's address to answer: Ray itself retries an address that never answers for minutes."""


def reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise a MoraError naming `runtime.address` unless something listens at its HOST:PORT within `timeout`."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        why = f"no answer within {timeout:g} s" if isinstance(e, TimeoutError) else getattr(e, "strerror", None) or e
        raise MoraError(f"cannot connect to the Ray cluster at runtime.address={address} ({why})") from None


class RayExecutor:
    """Runs nodes on Ray actors, one per GPU (or per logical GPU in tests)."""

    def __init__(self, runtime: dict[str, Any]):
        try:
            import ray
        except ImportError:
            raise MoraError("runtime=ray needs Ray: pip install -e '.[ray]'") from None
        self.ray = ray
        self.started_cluster = not ray.is_initialized()
        if self.started_cluster:
            address = runtime.get("address") or None
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address is None and runtime.get("num_gpus") is not None:
                kwargs["num_gpus"] = int(runtime["num_gpus"])
            if address not in (None, "auto", "local"):
                reachable(address)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, ValueError) as e:
                raise MoraError(f"cannot connect to the Ray cluster at runtime.address={address}: {e}") from None
        gpus = int(ray.cluster_resources().get("GPU", 0))
        devices = runtime.get("devices", "all")
        count = gpus if devices == "all" else devices if isinstance(devices, int) else len(devices)
        if count < 1:
            raise MoraError("runtime=ray found no GPU resources in the cluster; start Ray with --num-gpus, or set "
                            "runtime.num_gpus for a local cluster")
        if count > gpus:  # an actor asks one GPU: the ones beyond the cluster's would wait for ever
            if self.started_cluster:
                ray.shutdown()
            raise MoraError(f"runtime.devices asks {count} GPU(s) but the Ray cluster has {gpus}")
        self.device = "cpu" if runtime.get("device") == "cpu" else "cuda"
        self._remote = ray.remote(num_gpus=1, max_concurrency=1)(_Actor)
        self._actors = [self._spawn(i) for i in range(count)]
        self._task: list[Unit | None] = [None] * count
        self._seats = [_Seat(i) for i in range(count)]
        self._refs: dict[Any, int] = {}
        self.slots = count
        self.loads: Counter[str] = Counter()
        self.restarts = Restarts(count)
        self.cache_dir: str | None = None

    def _spawn(self, index: int) -> Any:
        return self._remote.remote(self.device, f"actor{index}", os.environ.get("OMP_NUM_THREADS"))

    def check_store(self, cache_dir: str) -> None:
        token = secrets.token_hex(16)
        path = Path(cache_dir) / f".ray-check-{token}"
        try:
            path.write_text(token)
        except OSError as e:
            raise MoraError(f"cannot write to the cache directory {cache_dir} ({e.strerror})") from None
        try:
            problems = [p for p in self.ray.get([a.check_store.remote(str(path), token) for a in self._actors]) if p]
        finally:
            path.unlink(missing_ok=True)
        if problems:
            raise MoraError("the cache directory must be on a filesystem every Ray node mounts at the same path "
                            f"(cache.dir=...); not reachable from: {'; '.join(problems)}")
        self.cache_dir = cache_dir

    def submit(self, task: Unit) -> None:
        settings = task.tasks[0].settings
        if not settings.artifacts and self.cache_dir != settings.cache_dir:  # artifacts in the cache directory
            self.check_store(settings.cache_dir)
        index = choose([s for s in self._seats if self._task[s.index] is None], task).index
        self._task[index] = task
        self._refs[self._actors[index].run.remote(unit_to_json(task))] = index

    def wait(self, timeout: float | None = None) -> list[NodeResult]:
        if not self._refs:
            return []
        done, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        results = []
        for ref in done:
            index = self._refs.pop(ref)
            task = self._task[index]
            self._task[index] = None
            assert task is not None
            try:
                payload = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as e:
                results.extend(self._replace(index, task, e))
                continue
            answer = [dataclasses.replace(result_from_json(d), device=f"{self.device}:{index}")
                      for d in payload["results"]]
            answered(self._seats[index], payload["resident"], answer, self.loads, f"actor{index}")
            results.extend(answer)
        return results

    def _replace(self, index: int, task: Unit, error: Exception) -> list[NodeResult]:
        self.restarts.one_more("ray", str(error))
        self._actors[index] = self._spawn(index)
        self._seats[index] = _Seat(index)
        return lost(task, f"{self.device}:{index}", f"actor{index}",
                    f"Ray actor {index} died while running this node ({type(error).__name__})")

    def shutdown(self) -> None:
        for actor in self._actors:
            self.ray.kill(actor)
        if self.started_cluster:
            self.ray.shutdown()
