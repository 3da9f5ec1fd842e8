"""The scheduler: the ready/done loop that runs a Plan through an executor, cache first.

Policy. The plan's DAG drives a `graphlib.TopologicalSorter`. Before anything runs, every node's
model is resolved and every literal input is read (a bad file or model path fails the whole run
here, before any model load or cache write). Then, for each node that becomes ready: if an
upstream node failed or was skipped, it is skipped; otherwise its cache key is computed from
its inputs' content digests and looked up, and a verified hit completes it without running it
(its model is never loaded); a miss joins the pending list. Pending nodes are handed to the
executor in the order they became ready, at most `executor.slots` units in flight. With
`batch_size > 1`, a pending node whose agent can run batches takes along up to `batch_size - 1`
other pending nodes of the same agent, model and non-batchable parameters (they may differ in
inputs, seeds and batchable parameters), and the group runs as one pipeline call whose results
are split back into per-node artifacts and cache entries. Batching changes floating-point
results slightly (different kernel shapes), so it is off by default and the manifest records
which nodes ran together.
A failed node is retried up to `retries` times, then reported with its error; independent
branches still finish and are cached. Random nodes without a seed get a fresh seed and are
never cached.
Each task carries `ahead`: the models of the nodes up to AHEAD_DEPTH steps downstream whose agents
can preload, nearest first, so a worker can load them while this node runs (engine.runner.prefetch).
"""
from __future__ import annotations

import graphlib
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from mora.engine import models
from mora.engine.errors import GraphError, InputError, MoraError, Problem
from mora.engine.executors import Executor
from mora.engine.ingest import to_blob
from mora.engine.keys import digest_of, node_key
from mora.engine.plan import Plan, PlanNode, Source
from mora.engine.progress import Reporter
from mora.engine.registry import default_registry
from mora.engine.store import Store
from mora.engine.task import Ahead, BatchTask, NodeResult, NodeTask, Unit

log = logging.getLogger("mora.scheduler")
AHEAD_DEPTH = 3
"""How many steps downstream a task looks for models to load ahead (further ones are hinted later)."""


@dataclass
class NodeRecord:
    """How one node went: what the manifest says of it."""

    id: str
    agent: str
    file: str
    params: dict[str, Any]
    seed: int | None
    model: dict[str, Any] | None
    key: str = ""
    cacheable: bool = True
    status: str = "pending"
    cached: bool = False
    seconds: float = 0.0
    started: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    worker: str | None = None
    model_loads: list[str] = field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    batch: str | None = None


@dataclass
class RunReport:
    records: dict[str, NodeRecord]
    outputs: dict[str, Any]
    seconds: float
    findings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [r.id for r in self.records.values() if r.status == "failed"]

    @property
    def skipped(self) -> list[str]:
        return [r.id for r in self.records.values() if r.status == "skipped"]

    @property
    def model_loads(self) -> int:
        return sum(len(r.model_loads) for r in self.records.values())


def prepare(plan: Plan, store: Store, preset: Mapping[str, Any]) -> tuple[dict[str, NodeRecord], dict[Source, Any]]:
    """Resolve models and seeds, and read every literal input; raise with every problem found."""
    problems: list[Problem] = []
    records: dict[str, NodeRecord] = {}
    literals: dict[tuple[str, Any], Any] = {}
    blobs: dict[Source, Any] = {}
    for node in (plan.nodes[n] for n in plan.dag.nodes):
        ref, problem = models.resolve(node.agent, node.params, preset)
        if problem:
            problems.append(Problem(node.file, problem, node.id, "params.model"))
        seed = node.params.get("seed") if node.agent.random else None
        cacheable = not (node.agent.random and seed is None)
        if not cacheable:
            seed = secrets.randbits(31)
        records[node.id] = NodeRecord(node.id, node.agent.type, node.file, dict(node.params), seed, ref,
                                      cacheable=cacheable)
        for port, src in node.inputs.items():
            for s in src if isinstance(src, list) else [src]:
                if not s.is_literal or s in blobs:
                    continue
                memo = (s.type.value, s.value)
                try:
                    if memo not in literals:
                        literals[memo] = to_blob(s.type, s.value)
                    blobs[s] = literals[memo]
                except (InputError, ValueError) as e:
                    problems.append(Problem(node.file, str(e), node.id, f"in.{port}"))
    for name, src in plan.outputs.items():
        if src.is_literal and src not in blobs:
            try:
                blobs[src] = to_blob(src.type, src.value)
            except (InputError, ValueError) as e:
                problems.append(Problem(plan.file, str(e), field=f"outputs.{name}"))
    if problems:
        raise GraphError(problems)
    return records, {s: store.put(b).to_json() for s, b in blobs.items()}


def run_plan(plan: Plan, store: Store, executor: Executor, preset: Mapping[str, Any],
             reporter: Reporter | None = None, retries: int = 0, batch_size: int = 1,
             agent_retries: Mapping[str, int] | None = None) -> RunReport:
    """Run every node of the plan (cache first) and report how each went.

    A failed node is retried `agent_retries[its agent type]` times if its agent is named there
    (a flaky model can get more tries than the rest), else `retries` times.
    """
    t0 = time.perf_counter()
    agent_retries = dict(agent_retries or {})
    known = {n.agent.type for n in plan.nodes.values()} | set(default_registry().names())
    unknown = sorted(set(agent_retries) - known)
    if unknown:
        raise MoraError(f"runtime.agent_retries names unknown agent type(s) {unknown}")
    records, literal_meta = prepare(plan, store, preset)
    reporter = reporter or Reporter(len(records))
    identities: dict[str, Any] = {}
    sorter = graphlib.TopologicalSorter({n: set(plan.dag.predecessors(n)) for n in plan.dag.nodes})
    sorter.prepare()
    order = {n: i for i, n in enumerate(plan.nodes)}
    pending: list[NodeTask] = []
    in_flight: dict[str, Unit] = {}
    unfinished: dict[int, int] = {}

    def source_meta(src: Source) -> Any:
        if src.is_literal:
            return literal_meta[src]
        return records[src.node].outputs[src.port]  # type: ignore[index]

    preloading = any(n.agent.preload is not None for n in plan.nodes.values())

    def ahead(node_id: str) -> tuple[Ahead, ...]:
        if not preloading:
            return ()
        depth = nx.single_source_shortest_path_length(plan.dag, node_id, cutoff=AHEAD_DEPTH)
        found: dict[str, Ahead] = {}
        for d in sorted(depth, key=lambda n: (depth[n], order[n])):
            agent, model = plan.nodes[d].agent, records[d].model
            if d != node_id and agent.preload is not None and model is not None:
                found.setdefault(digest_of([agent.type, model]), Ahead(agent.type, agent.run.__module__,
                                                                        dict(plan.nodes[d].params), model))
        return tuple(found.values())

    def compatible(task: NodeTask) -> str | None:
        agent = plan.nodes[task.node_id].agent
        if batch_size <= 1 or agent.run_batch is None:
            return None
        return digest_of([agent.type, agent.version, task.model, agent.batch_params(task.params)])

    def submit(unit: Unit) -> None:
        tasks = unit.tasks if isinstance(unit, BatchTask) else (unit,)
        for t in tasks:
            rec = records[t.node_id]
            rec.status = "running"
            rec.attempts += 1
            in_flight[t.node_id] = unit
            reporter.event(rec)
        unfinished[id(unit)] = len(tasks)
        executor.submit(unit)

    while sorter.is_active():
        for node_id in sorted(sorter.get_ready(), key=order.__getitem__):
            node = plan.nodes[node_id]
            rec = records[node_id]
            if any(records[d].status in ("failed", "skipped") for d in node.upstream()):
                rec.status = "skipped"
                reporter.event(rec)
                sorter.done(node_id)
                continue
            inputs = {p: [source_meta(s) for s in v] if isinstance(v, list) else source_meta(v)
                      for p, v in node.inputs.items()}
            task = _task(node, rec, inputs, store, identities)
            hit = store.lookup(task.key) if rec.cacheable else None
            if hit is not None:
                rec.status, rec.cached, rec.outputs = "cached", True, hit["outputs"]
                reporter.event(rec)
                sorter.done(node_id)
                continue
            pending.append(replace(task, ahead=ahead(node_id)))
        while pending and len(unfinished) < executor.slots:
            first = pending.pop(0)
            group = [first]
            kind = compatible(first)
            if kind is not None:
                for other in [t for t in pending if compatible(t) == kind][: batch_size - 1]:
                    pending.remove(other)
                    group.append(other)
            submit(first if len(group) == 1 else BatchTask(tuple(group)))
        if not in_flight:
            continue
        for result in executor.wait():
            unit = in_flight.pop(result.node_id)
            unfinished[id(unit)] -= 1
            if not unfinished[id(unit)]:
                del unfinished[id(unit)]
            rec = records[result.node_id]
            task = next(t for t in (unit.tasks if isinstance(unit, BatchTask) else (unit,)) if t.node_id == rec.id)
            allowed = agent_retries.get(plan.nodes[rec.id].agent.type, retries)
            if result.error and rec.attempts <= allowed:
                log.warning("node %s failed (%s); retrying (%d/%d)", rec.id, result.error, rec.attempts, allowed)
                pending.insert(0, task)
                continue
            _finish(rec, result)
            reporter.event(rec)
            if result.error and result.traceback:
                log.debug("node %s traceback:\n%s", rec.id, result.traceback)
            sorter.done(result.node_id)
    outputs = {name: source_meta(src) if (src.is_literal or records[src.node].outputs) else None
               for name, src in plan.outputs.items()}
    findings = [f"missing: {m}" for m in store.findings.missing] + [f"corrupt: {c}" for c in store.findings.corrupt]
    return RunReport(records, outputs, time.perf_counter() - t0, findings)


def _task(node: PlanNode, rec: NodeRecord, inputs: dict[str, Any], store: Store, identities: dict[str, Any]) -> NodeTask:
    ident_key = repr(sorted((rec.model or {}).items()))
    if ident_key not in identities:
        identities[ident_key] = models.identity(rec.model, store)
    if rec.cacheable:
        digests = {p: [m["digest"] for m in v] if isinstance(v, list) else v["digest"] for p, v in inputs.items()}
        rec.key = node_key(agent=node.agent.type, agent_version=node.agent.version,
                           params=node.agent.keyed_params(node.params), seed=rec.seed, inputs=digests,
                           model=identities[ident_key], libraries=node.agent.libraries, salt=store.salt)
    else:
        rec.key = f"uncached-{uuid.uuid4().hex}"
    return NodeTask(node.id, node.agent.type, node.agent.run.__module__, dict(node.params), rec.seed, rec.model,
                    inputs, rec.key, rec.cacheable, str(store.root))


def _finish(rec: NodeRecord, result: NodeResult) -> None:
    rec.seconds = result.seconds
    rec.started = result.started
    rec.device = result.device
    rec.worker = result.worker
    rec.model_loads = list(result.model_loads)
    rec.batch = result.batch
    if result.error:
        rec.status, rec.error = "failed", result.error
    else:
        rec.status, rec.outputs, rec.cached = "done", result.outputs, result.reused
