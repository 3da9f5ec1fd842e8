"""Running one node inside whatever process holds the device: the code every executor shares.

`execute_unit(unit, device)` installs the run's settings (mora.engine.execution.settings, carried by the
unit), opens the run's artifact store from them (never the index: the driver looked the nodes
up before dispatch and records what comes back), hands the agent its inputs as handles by
digest, calls the agent (its `run_batch` once for a BatchTask, with one seed per item), checks
that it returned every declared output with the declared type, stores the artifacts and returns
one NodeResult per node: its outputs' JSON, seconds and batch, which is the entry the driver
records. Exceptions become failed NodeResults naming the node and the cause; they never escape
into the executor. An input whose bytes fail verification as the agent reads them is
quarantined and the node fails with `corrupt` naming it, so that the scheduler recomputes its
producer.

`prefetch(unit, device)` hands the unit's `ahead` hints (models of the nodes downstream) to one
background thread per process, which loads them through each agent's `preload` while the unit
runs, so a chain's next model is resident when its node arrives. A failed preload is only logged:
the node that needs the model loads it itself and reports the error there. A preload runs only
while a node computes: a node holds the set-up lock from its start until its agent starts
computing (its first `progress` call, made once its imports and loads are done), and a preload
starts only then and holds the lock throughout. So a preload never delays a node's own imports
and loads, and no two threads import at once: importing diffusers and transformers from two
threads is not safe (their circular imports can hand one thread a half-initialised module).
"""
from __future__ import annotations

import importlib
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mora.engine.cache.artifacts import ArtifactRef, Blob, CorruptArtifact
from mora.engine.cache.media import mapped_inputs_checked
from mora.engine.cache.objects import ArtifactStore
from mora.engine.execution import interrupts
from mora.engine.execution.settings import ExecutionSettings, using
from mora.engine.execution.task import Ahead, BatchTask, NodeResult, NodeTask, Unit
from mora.engine.graph.agent import Agent
from mora.engine.graph.registry import default_registry

log = logging.getLogger("mora.run")
_STORES: dict[ExecutionSettings, ArtifactStore] = {}
_AHEAD: queue.SimpleQueue[tuple[Ahead, str]] | None = None
_SETTING_UP = threading.Lock()
_COMPUTING = threading.Event()
_HOLDS_SET_UP = threading.local()


@dataclass
class Context:
    """The RunContext an agent sees."""

    node_id: str
    device: str
    seed: int | None
    model: dict[str, Any] | None
    loads: list[str] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    """One seed per item when the agent runs a batch (`run_batch`)."""

    def progress(self, total: int, description: str) -> Callable[[int], None]:
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is not a terminal, so logs hold no carriage-return lines
        bar = tqdm(total=total, desc=f"{self.node_id}: {description}", leave=False, dynamic_ncols=True, disable=None)
        _end_set_up()  # imports and loads are done: preloads may run beside the computing part
        _COMPUTING.set()

        def advance(n: int = 1) -> None:
            bar.update(n)
            if bar.n >= total:
                bar.close()

        return advance

    def note_model_load(self, identity: str) -> None:
        self.loads.append(identity)


def store_for(settings: ExecutionSettings) -> ArtifactStore:
    """The run's artifact store, opened once per process from its settings."""
    if settings not in _STORES:
        _STORES[settings] = settings.open_artifacts()
    return _STORES[settings]


def find_agent(name: str, module: str) -> Agent:
    agent = default_registry().get(name)
    if agent is not None:
        return agent
    mod = importlib.import_module(module)
    for value in vars(mod).values():
        if isinstance(value, Agent) and value.type == name:
            return value
    raise LookupError(f"agent type '{name}' is not registered in this process")


def execute_unit(unit: Unit, device: str, worker: str = "main") -> list[NodeResult]:
    """Run a node or a batch of nodes with the run's settings; never raises for agent failures."""
    with using(unit.tasks[0].settings):
        results = _execute_unit(unit, device, worker)
    interrupts.check()  # a Ctrl-C that the agent's libraries swallowed (the node "failed") ends the run
    return results


def _execute_unit(unit: Unit, device: str, worker: str) -> list[NodeResult]:
    tasks = list(unit.tasks)
    label = unit.label if isinstance(unit, BatchTask) else None
    started = time.time()
    t0 = time.perf_counter()
    _begin_set_up()
    try:
        store = store_for(tasks[0].settings)
        produced, loads = _run_agent(tasks, store, device)
        seconds = time.perf_counter() - t0
        return [NodeResult(task.node_id, outputs, seconds, started, device, worker, tuple(loads) if i == 0 else (),
                           batch=label) for i, (task, outputs) in enumerate(zip(tasks, produced))]
    except Exception as e:  # noqa: BLE001 (the node (or batch) fails, the run goes on)
        cause, tb = f"{type(e).__name__}: {e}", traceback.format_exc()
        bad = _corruption(e)
        if bad is not None:
            store.quarantine(bad.ref, bad.why, bad.inode, node=tasks[0].node_id)
            cause = f"input {bad}"
        return [NodeResult(t.node_id, seconds=time.perf_counter() - t0, started=started, device=device, worker=worker,
                           error=cause, traceback=tb, batch=label, corrupt=(bad.ref.digest,) if bad else ())
                for t in tasks]
    finally:
        _COMPUTING.clear()
        _end_set_up()


def _begin_set_up() -> None:
    _SETTING_UP.acquire()
    _HOLDS_SET_UP.held = True


def _end_set_up() -> None:
    if getattr(_HOLDS_SET_UP, "held", False):
        _HOLDS_SET_UP.held = False
        _SETTING_UP.release()


def prefetch(unit: Unit, device: str) -> None:
    """Start loading the models of the nodes downstream of `unit` on this process's prefetch thread."""
    global _AHEAD
    if not unit.ahead:
        return
    if _AHEAD is None:
        _AHEAD = queue.SimpleQueue()
        threading.Thread(target=_preload_forever, args=(_AHEAD,), name="mora-prefetch", daemon=True).start()
    for ahead in unit.ahead:
        _AHEAD.put((ahead, device))


def _preload_forever(hints: queue.SimpleQueue[tuple[Ahead, str]]) -> None:
    while True:
        ahead, device = hints.get()
        _while_a_node_computes()
        try:
            agent = find_agent(ahead.agent, ahead.agent_module)
            if agent.preload is not None:
                agent.preload(Context(f"(ahead) {ahead.agent}", device, None, ahead.model), ahead.params)
        except Exception as e:  # noqa: BLE001 (the node that needs the model will load it and report the error)
            log.info("preloading the model of a %s node failed: %s: %s", ahead.agent, type(e).__name__, e)
        finally:
            _SETTING_UP.release()


def _while_a_node_computes() -> None:
    """Wait until a node is computing, then take the set-up lock (the caller releases it)."""
    while True:
        _COMPUTING.wait()
        if _SETTING_UP.acquire(timeout=0.01):
            if _COMPUTING.is_set():
                return
            _SETTING_UP.release()  # that node ended meanwhile: wait for the next one to compute


def _corruption(e: BaseException) -> CorruptArtifact | None:
    """The failed verification behind an exception, even one an agent wrapped in its own."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, CorruptArtifact):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _run_agent(tasks: list[NodeTask], store: ArtifactStore, device: str) -> tuple[list[dict[str, Any]], list[str]]:
    first = tasks[0]
    agent = find_agent(first.agent, first.agent_module)
    inputs_list: list[dict[str, ArtifactRef | list[ArtifactRef]]] = [
        {port: [store.ref(m) for m in meta] if isinstance(meta, list) else store.ref(meta)
         for port, meta in task.inputs.items()}
        for task in tasks
    ]
    if len(tasks) == 1:
        ctx = Context(first.node_id, device, first.seed, first.model)
        with mapped_inputs_checked():
            produced = [agent.run(ctx, inputs_list[0], dict(first.params))]
    else:
        if agent.run_batch is None:
            raise TypeError(f"agent '{agent.type}' cannot run batches")
        ctx = Context(f"{first.node_id} (+{len(tasks) - 1} batched)", device, None, first.model,
                      seeds=[t.seed for t in tasks])
        with mapped_inputs_checked():
            produced = agent.run_batch(ctx, inputs_list, [dict(t.params) for t in tasks])
        if len(produced) != len(tasks):
            raise TypeError(f"agent '{agent.type}' returned {len(produced)} results for a batch of {len(tasks)}")
    return [_store_outputs(agent, p, store) for p in produced], ctx.loads


def _store_outputs(agent: Agent, produced: Any, store: ArtifactStore) -> dict[str, Any]:
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

