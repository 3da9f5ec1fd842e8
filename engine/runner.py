"""Running one node inside whatever process holds the device: the code every executor shares.

`execute(task, device)` takes the node's lock, re-checks the index (another process may have
finished it meanwhile), reads the inputs from the store by digest, calls the agent, checks that
it returned every declared output with the declared type, stores the artifacts and records the
index entry. Exceptions become a failed NodeResult naming the node and the cause; they never
escape into the executor.
"""
from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.agent import Agent
from engine.artifacts import ArtifactRef, Blob
from engine.registry import default_registry
from engine.store import Store, Timeout
from engine.task import NodeResult, NodeTask

log = logging.getLogger("mora.run")
_STORES: dict[str, Store] = {}


@dataclass
class Context:
    """The RunContext an agent sees."""

    node_id: str
    device: str
    seed: int | None
    model: dict[str, Any] | None
    loads: list[str] = field(default_factory=list)

    def progress(self, total: int, description: str) -> Callable[[int], None]:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"{self.node_id}: {description}", leave=False, dynamic_ncols=True)

        def advance(n: int = 1) -> None:
            bar.update(n)
            if bar.n >= total:
                bar.close()

        return advance

    def note_model_load(self, identity: str) -> None:
        self.loads.append(identity)


def store_for(cache_dir: str) -> Store:
    """One Store per cache directory per process (the index connection is reused)."""
    if cache_dir not in _STORES:
        _STORES[cache_dir] = Store(cache_dir)
    return _STORES[cache_dir]


def find_agent(name: str, module: str) -> Agent:
    agent = default_registry().get(name)
    if agent is not None:
        return agent
    mod = importlib.import_module(module)
    for value in vars(mod).values():
        if isinstance(value, Agent) and value.type == name:
            return value
    raise LookupError(f"agent type '{name}' is not registered in this process")


def execute(task: NodeTask, device: str, worker: str = "main") -> NodeResult:
    """Run one node; never raises for agent failures."""
    started = time.time()
    t0 = time.perf_counter()
    try:
        store = store_for(task.cache_dir)
        lock = store.lock(task.key) if task.cacheable else None
        if lock is not None:
            try:
                lock.acquire()
            except Timeout:
                log.warning("node %s: lock held for over %.0f s; computing anyway", task.node_id, store.lock_timeout)
                lock = None
            entry = store.lookup(task.key)
            if entry is not None:
                if lock is not None:
                    lock.release()
                return NodeResult(task.node_id, entry["outputs"], time.perf_counter() - t0, started, device, worker,
                                  reused=True)
        try:
            outputs, loads = _run_agent(task, store, device)
            if task.cacheable:
                store.record(task.key, {"node": task.node_id, "agent": task.agent, "outputs": outputs,
                                        "seconds": time.perf_counter() - t0})
        finally:
            if lock is not None:
                lock.release()
        return NodeResult(task.node_id, outputs, time.perf_counter() - t0, started, device, worker, tuple(loads))
    except Exception as e:  # the node fails, the run goes on
        return NodeResult(task.node_id, seconds=time.perf_counter() - t0, started=started, device=device,
                          worker=worker, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())


def _run_agent(task: NodeTask, store: Store, device: str) -> tuple[dict[str, Any], list[str]]:
    agent = find_agent(task.agent, task.agent_module)
    inputs: dict[str, ArtifactRef | list[ArtifactRef]] = {
        port: [store.ref(m) for m in meta] if isinstance(meta, list) else store.ref(meta)
        for port, meta in task.inputs.items()
    }
    for ref in _flatten(inputs.values()):
        problem = store.check(ref)
        if problem:
            raise RuntimeError(f"input artifact {ref.digest[:12]} is {problem}")
    ctx = Context(task.node_id, device, task.seed, task.model)
    produced = agent.run(ctx, inputs, dict(task.params))
    return _store_outputs(agent, produced, store), ctx.loads


def _store_outputs(agent: Agent, produced: Any, store: Store) -> dict[str, Any]:
    if not isinstance(produced, dict):
        raise TypeError(f"agent '{agent.type}' returned {type(produced).__name__}, not a dict of outputs")
    outputs: dict[str, Any] = {}
    for port in agent.outputs:
        if port.name not in produced:
            raise TypeError(f"agent '{agent.type}' did not produce its output '{port.name}'")
        value = produced[port.name]
        items = value if port.type.is_list else [value]
        if not isinstance(items, list) or not all(isinstance(b, Blob) and b.kind == port.type.item for b in items):
            raise TypeError(f"agent '{agent.type}' output '{port.name}' must be {port.type.value} blob(s)")
        metas = [store.put(b).to_json() for b in items]
        outputs[port.name] = metas if port.type.is_list else metas[0]
    return outputs


def _flatten(values: Any) -> list[ArtifactRef]:
    out: list[ArtifactRef] = []
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out
