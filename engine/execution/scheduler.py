"""The scheduler: the ready/done loop that runs a Plan through an executor, cache first.

`run_plan` makes a `Scheduler` for the run, whose loop has three steps: admit (ready nodes are
skipped, hit or made pending), dispatch (pending nodes to the executor) and collect (finished
nodes are retried, repaired or done).

Policy. The plan's DAG drives a `graphlib.TopologicalSorter`. Before anything runs, every node's
model is resolved and every literal input is read (a bad file or model path fails the whole run
here, before any model load or cache write), and every hub model is placed at once (on disk,
downloadable, or missing: one error lists all that are missing) and pinned to a commit. Then,
for each node that becomes ready: if an upstream node failed or was skipped, it is skipped;
otherwise its cache key is computed from its inputs' content digests and looked up, and a
verified hit completes it without running it (its model is never loaded); a miss joins the
pending list. Pending nodes are handed to the
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

A node whose input fails digest verification when it is read (the object is quarantined by
the reader) waits while the input's producer is recomputed (or a literal input stored again),
then runs again; this repair is tried `MAX_REPAIRS` times per node before the node fails.
The whole run holds a lease on what it references (see leases.py), so `gc` keeps it.

The driver owns the index. Workers (this process for the in-process executor, pool processes,
Ray actors) only compute and store artifacts; this loop looks every key up before dispatch and
records each result's entry (its outputs' digests, seconds, batch) when it comes back, naming
its artifacts in the run's lease first. A cacheable miss is dispatched only once this driver
holds the key's lease in the index (key_leases.py), and looked up once more then (another driver
may have recorded it just before releasing). A node whose key another driver holds, or another
node of this run with the same key (the same work twice in one graph), waits, without
holding up the rest of the run: each turn of the loop looks it up again (a hit completes it, as
cached) and tries the lease again (taken: it is computed here); after `lock_timeout` seconds of
waiting it is computed anyway. The lease is released when the node's entry is recorded or the
node has failed for good.
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
from enum import StrEnum
from typing import Any

from mora.engine.cache.ingest import Ingest
from mora.engine.cache.key_leases import KeyLeases
from mora.engine.cache.store import Store
from mora.engine.errors import GraphError, InputError, MoraError, Problem
from mora.engine.execution import models
from mora.engine.execution.executors import Executor
from mora.engine.execution.progress import Reporter
from mora.engine.execution.settings import ExecutionSettings
from mora.engine.execution.task import Ahead, BatchTask, NodeResult, NodeTask, Unit
from mora.engine.graph.keys import digest_of, node_key
from mora.engine.graph.plan import Plan, PlanNode, Source
from mora.engine.graph.registry import default_registry
from mora.engine.graph.validate import UNKNOWN

log = logging.getLogger("mora.scheduler")
MAX_REPAIRS = 2
POLL = 0.5
"""Longest pause, in seconds, between two looks at the index for a node another driver is computing."""
AHEAD_DEPTH = 3
"""How many steps downstream a task looks for models to load ahead (further ones are hinted later)."""


class Status(StrEnum):
    """Where a node stands: pending, then running, then done, cached (a hit), failed or skipped (a failed input)."""

    PENDING = "pending"
    RUNNING = "running"
    CACHED = "cached"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


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
    status: Status = Status.PENDING
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
    shared_from: str | None = None
    """In a merged sweep: `jobN:node` when another job ran this node and this job reuses its result."""


@dataclass
class RunReport:
    records: dict[str, NodeRecord]
    outputs: dict[str, Any]
    seconds: float
    findings: list[str] = field(default_factory=list)
    started: float = 0.0
    """When the run began (seconds since the epoch)."""

    @property
    def failed(self) -> list[str]:
        return [r.id for r in self.records.values() if r.status == Status.FAILED]

    @property
    def skipped(self) -> list[str]:
        return [r.id for r in self.records.values() if r.status == Status.SKIPPED]

    @property
    def model_loads(self) -> int:
        return sum(len(r.model_loads) for r in self.records.values())


def prepare(plan: Plan, store: Store, preset: Mapping[str, Any]) -> tuple[dict[str, NodeRecord], dict[Source, Any],
                                                                          dict[str, Source]]:
    """Resolve models and seeds, and read and store every literal input; raise with every problem found.

    Returns the records, each literal's artifact JSON, and the literals by digest (to read and store
    again should a stored copy be found corrupt).
    """
    refs, problems = resolve_models(plan, preset)
    records: dict[str, NodeRecord] = {}
    ingest = Ingest(store)
    for node in plan.nodes.values():
        seed = node.params.get("seed") if node.agent.random else None
        cacheable = not (node.agent.random and seed is None)
        if not cacheable:
            seed = secrets.randbits(31)
        records[node.id] = NodeRecord(node.id, node.agent.type, node.file, dict(node.params), seed, refs[node.id],
                                      cacheable=cacheable)
    try:
        blobs, bad = read_literals(plan, ingest)
        problems.extend(bad)
        if problems:
            raise GraphError(problems)
        hub = models.require(r.model for r in records.values() if r.model)
        for rec in records.values():  # pin each hub model to the commit its revision names now, for keys and loads
            if rec.model:
                rec.model = models.pinned(rec.model, hub)
        meta = {s: ingest.keep(b).to_json() for s, b in blobs.items()}
        return records, meta, {m["digest"]: s for s, m in meta.items()}
    finally:
        ingest.discard()


def resolve_models(plan: Plan, preset: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any] | None], list[Problem]]:
    """Each node's model reference in `preset`, and a problem for each node whose model cannot be used: what a run
    checks at planning, and `mora-admin validate` too. Hub models are not looked up here (`models.require` is)."""
    refs: dict[str, dict[str, Any] | None] = {}
    problems = []
    for node in plan.nodes.values():
        refs[node.id], problem = models.resolve(node.agent, node.params, preset)
        if problem:
            problems.append(Problem(node.file, problem, node.id, "params.model"))
    return refs, problems


def store_literal_again(store: Store, src: Source) -> None:
    """Read a literal input from its source again and store it (its stored copy was found corrupt)."""
    ingest = Ingest(store)
    try:
        ingest.keep(ingest.read(src.type, src.value))
    finally:
        ingest.discard()


def read_literals(plan: Plan, ingest: Ingest) -> tuple[dict[Source, Any], list[Problem]]:
    """Every literal input of the plan read through `ingest` (user files decoded), and a problem for each bad one.

    An input used by several nodes is read once; if it is bad, one problem names its first user and lists the rest.
    A value not known yet (a required input of a file validated on its own) is not read. The caller keeps or discards
    what `ingest` staged (a run stores it, `mora-admin validate` only checks it).
    """
    blobs: dict[Source, Any] = {}
    bad: dict[str, list[tuple[str, str | None, str]]] = {}  # message -> (file, node, field) of each user
    for node in plan.nodes.values():
        for port, src in node.inputs.items():
            for s in src if isinstance(src, list) else [src]:
                if s.is_literal:
                    _read_literal(ingest, s, blobs, bad, (node.file, node.id, f"in.{port}"))
    for name, src in plan.outputs.items():
        if src.is_literal:
            _read_literal(ingest, src, blobs, bad, (plan.file, None, f"outputs.{name}"))
    problems = []
    for message, [(file, node_id, field_), *others] in bad.items():
        also = f" (also the input of {', '.join(sorted({o[1] or o[2] for o in others}))})" if others else ""
        problems.append(Problem(file, message + also, node_id, field_))
    return blobs, problems


def _read_literal(ingest: Ingest, src: Source, blobs: dict[Source, Any],
                  bad: dict[str, list[tuple[str, str | None, str]]], where: tuple[str, str | None, str]) -> None:
    if src in blobs or src.value is UNKNOWN:
        return
    try:
        blobs[src] = ingest.read(src.type, src.value)
    except InputError as e:
        bad.setdefault(f"{e} ({src.origin})" if src.origin else str(e), []).append(where)


def run_plan(plan: Plan, store: Store, executor: Executor, preset: Mapping[str, Any],
             reporter: Reporter | None = None, retries: int = 0, batch_size: int = 1,
             agent_retries: Mapping[str, int] | None = None, settings: ExecutionSettings | None = None) -> RunReport:
    """Run every node of the plan (cache first) and report how each went.

    A failed node is retried `agent_retries[its agent type]` times if its agent is named there
    (a flaky model can get more tries than the rest), else `retries` times. `settings` travel with
    every task (default: the store's, with the default model settings).
    """
    settings = settings or ExecutionSettings.for_store(store)
    if settings.cache_dir != str(store.root):
        raise MoraError(f"the execution settings name the cache {settings.cache_dir}, but the run's store is "
                        f"{store.root}")
    keys = KeyLeases(store.index, settings.lock_timeout)
    try:
        with store.leased():
            return Scheduler(plan, store, executor, preset, reporter, retries, batch_size, agent_retries, settings,
                             keys).run()
    finally:
        keys.close()


class Scheduler:
    """One run of a plan through an executor, in three steps repeated until every node is done.

    `admit` takes the nodes the sorter has made ready: each is skipped (a failed or skipped
    upstream), completed by a cache hit, made pending, or set waiting (another driver holds its
    key's lease). `poll` looks the waiting nodes up again. `dispatch` hands pending nodes to the
    executor (batched where allowed) while it has free slots. `collect` waits for finished nodes:
    each is retried, repaired (its input was found corrupt) or finished.
    """

    def __init__(self, plan: Plan, store: Store, executor: Executor, preset: Mapping[str, Any],
                 reporter: Reporter | None, retries: int, batch_size: int, agent_retries: Mapping[str, int] | None,
                 settings: ExecutionSettings, keys: KeyLeases):
        self.t0, self.started = time.perf_counter(), time.time()
        self.plan, self.store, self.executor, self.settings, self.keys = plan, store, executor, settings, keys
        self.retries, self.batch_size = retries, batch_size
        self.agent_retries = dict(agent_retries or {})
        known = {n.agent.type for n in plan.nodes.values()} | set(default_registry().names())
        unknown = sorted(set(self.agent_retries) - known)
        if unknown:
            raise MoraError(f"runtime.agent_retries names unknown agent type(s) {unknown}")
        self.records, self.literal_meta, self.literal_sources = prepare(plan, store, preset)
        self.reporter = reporter or Reporter(len(self.records))
        self.identities: dict[str, Any] = {}
        self.sorter = graphlib.TopologicalSorter({n: node.upstream() for n, node in plan.nodes.items()})
        self.sorter.prepare()
        self.order = {n: i for i, n in enumerate(plan.nodes)}
        self.pending: list[NodeTask] = []
        self.waiting: dict[str, tuple[NodeTask, float]] = {}
        """Nodes whose key another driver or node holds -> (task, when this run began waiting)."""
        self.claimed: dict[str, str] = {}
        """Key -> the node of this run that holds its lease (until its entry is recorded or it fails for good)."""
        self.poll_every = min(POLL, max(0.01, settings.lock_timeout / 10))
        self.in_flight: dict[str, Unit] = {}
        self.unfinished: dict[int, int] = {}
        self.redo: dict[str, set[str]] = {}
        """Finished nodes being recomputed because a reader found their output corrupt -> those readers."""
        self.repairs: dict[str, int] = {}
        self.preloading = any(n.agent.preload is not None for n in plan.nodes.values())

    def run(self) -> RunReport:
        while self.sorter.is_active():
            self.admit()
            self.poll()
            self.dispatch()
            if self.in_flight:
                self.collect()
            elif self.waiting:
                time.sleep(self.poll_every)
        outputs = {name: self.source_meta(src) if (src.is_literal or self.records[src.node].outputs) else None
                   for name, src in self.plan.outputs.items()}
        findings = [f"missing: {m}" for m in self.store.findings.missing] + \
            [f"corrupt: {c}" for c in self.store.findings.corrupt]
        return RunReport(self.records, outputs, time.perf_counter() - self.t0, findings, self.started)

    def admit(self) -> None:
        """Skip, complete from the cache, or make pending each node the sorter has made ready."""
        for node_id in sorted(self.sorter.get_ready(), key=self.order.__getitem__):
            node = self.plan.nodes[node_id]
            rec = self.records[node_id]
            if any(self.records[d].status in (Status.FAILED, Status.SKIPPED) for d in node.upstream()):
                rec.status = Status.SKIPPED
                self.reporter.event(rec)
                self.sorter.done(node_id)
                continue
            if self.enqueue(node_id):
                self.sorter.done(node_id)

    def dispatch(self) -> None:
        """Hand pending nodes to the executor, in the order they became ready, while it has free slots."""
        while self.pending and len(self.unfinished) < self.executor.slots:
            first = self.pending.pop(0)
            group = [first]
            kind = self.compatible(first)
            if kind is not None:
                for other in [t for t in self.pending if self.compatible(t) == kind][: self.batch_size - 1]:
                    self.pending.remove(other)
                    group.append(other)
            self.submit(first if len(group) == 1 else BatchTask(tuple(group)))

    def poll(self) -> None:
        """Look each waiting node up again: served from the cache, taken over, or (after `lock_timeout`) computed."""
        for node_id, (task, since) in list(self.waiting.items()):
            hit = self.claim(task)
            if hit is False:
                if time.monotonic() - since < self.settings.lock_timeout:
                    continue
                log.warning("node %s: another run has held its key for over %.0f s; computing anyway", node_id,
                            self.settings.lock_timeout)
                hit = None
            del self.waiting[node_id]
            if hit is None:
                self.pending.append(replace(task, ahead=self.ahead(node_id)))
            else:
                self.served(node_id, hit)
                self.complete(node_id)

    def collect(self) -> None:
        """Wait for finished nodes (a while, when nodes wait on another driver); retry, repair or finish each."""
        for result in self.executor.wait(self.poll_every) if self.waiting else self.executor.wait():
            unit = self.in_flight.pop(result.node_id)
            self.unfinished[id(unit)] -= 1
            if not self.unfinished[id(unit)]:
                del self.unfinished[id(unit)]
            rec = self.records[result.node_id]
            task = next(t for t in unit.tasks if t.node_id == rec.id)
            allowed = self.agent_retries.get(self.plan.nodes[rec.id].agent.type, self.retries)
            if result.corrupt and self.repairs.get(rec.id, 0) < MAX_REPAIRS:
                self.repairs[rec.id] = self.repairs.get(rec.id, 0) + 1
                self.repair(rec.id, result)
                continue
            if result.error and rec.attempts <= allowed:
                log.warning("node %s failed (%s); retrying (%d/%d)", rec.id, result.error, rec.attempts, allowed)
                self.pending.insert(0, task)
                continue
            if not result.error:
                result = self.keep(task, result)
            self.unclaim(task.key)
            _finish(rec, result)
            self.reporter.event(rec)
            if result.error and result.traceback:
                log.debug("node %s traceback:\n%s", rec.id, result.traceback)
            self.complete(rec.id)

    def keep(self, task: NodeTask, result: NodeResult) -> NodeResult:
        """Name a worker's outputs in the run's lease and record its entry (the driver alone writes the index)."""
        try:
            self.store.name_in_lease(_digests(result.outputs))
            if task.cacheable:
                self.store.record(task.key, {"node": task.node_id, "agent": task.agent, "outputs": result.outputs,
                                             "seconds": result.seconds, "batch": result.batch})
        except MoraError as e:
            return replace(result, error=str(e))
        return result

    def complete(self, node_id: str) -> None:
        """The node is finished: tell the sorter, or, for a node recomputed in a repair, its waiting readers."""
        if node_id in self.redo:
            self.released(node_id)  # a repair: the sorter has had this node done already
        else:
            self.sorter.done(node_id)

    def source_meta(self, src: Source) -> Any:
        if src.is_literal:
            return self.literal_meta[src]
        return self.records[src.node].outputs[src.port]  # type: ignore[index]

    def ahead(self, node_id: str) -> tuple[Ahead, ...]:
        if not self.preloading:
            return ()
        import networkx as nx  # only for a run that computes (a fifth of a second to import)

        depth = nx.single_source_shortest_path_length(self.plan.dag, node_id, cutoff=AHEAD_DEPTH)
        found: dict[str, Ahead] = {}
        for d in sorted(depth, key=lambda n: (depth[n], self.order[n])):
            agent, model = self.plan.nodes[d].agent, self.records[d].model
            if d != node_id and agent.preload is not None and model is not None:
                found.setdefault(digest_of([agent.type, model]), Ahead(agent.type, agent.run.__module__,
                                                                        dict(self.plan.nodes[d].params), model))
        return tuple(found.values())

    def compatible(self, task: NodeTask) -> str | None:
        agent = self.plan.nodes[task.node_id].agent
        if self.batch_size <= 1 or agent.run_batch is None:
            return None
        return digest_of([agent.type, agent.version, task.model, agent.batch_params(task.params)])

    def submit(self, unit: Unit) -> None:
        for t in unit.tasks:
            rec = self.records[t.node_id]
            rec.status = Status.RUNNING
            rec.attempts += 1
            self.in_flight[t.node_id] = unit
            self.reporter.event(rec)
        self.unfinished[id(unit)] = len(unit.tasks)
        self.executor.submit(unit)

    def enqueue(self, node_id: str) -> bool:
        """Key the node and look it up: True on a hit (the node is complete), else it joins `pending` or `waiting`."""
        node, rec = self.plan.nodes[node_id], self.records[node_id]
        inputs = {p: [self.source_meta(s) for s in v] if isinstance(v, list) else self.source_meta(v)
                  for p, v in node.inputs.items()}
        task = _task(node, rec, inputs, self.store, self.identities, self.settings)
        hit = self.claim(task) if rec.cacheable else None
        if hit is False:
            log.info("node %s: another run (or node) is computing it; waiting for its result (at most %.0f s)",
                     node_id, self.settings.lock_timeout)
            self.waiting[node_id] = (task, time.monotonic())
            return False
        if hit is None:
            self.pending.append(replace(task, ahead=self.ahead(node_id)))
            return False
        self.served(node_id, hit)
        return True

    def claim(self, task: NodeTask) -> dict[str, Any] | None | bool:
        """The key's entry (a hit); None once this node holds the key's lease; False: another driver or node holds it."""
        ports = {p.name: p.type for p in self.plan.nodes[task.node_id].agent.outputs}
        hit = self.store.lookup(task.key, ports=ports)
        if hit is not None:
            return hit
        if self.claimed.get(task.key, task.node_id) != task.node_id or not self.keys.take(task.key):
            return False
        self.claimed[task.key] = task.node_id
        hit = self.store.lookup(task.key, ports=ports)  # recorded by a driver that released the lease just now
        if hit is not None:
            self.unclaim(task.key)
        return hit

    def unclaim(self, key: str) -> None:
        self.claimed.pop(key, None)
        self.keys.release(key)

    def served(self, node_id: str, hit: dict[str, Any]) -> None:
        rec = self.records[node_id]
        rec.status, rec.cached, rec.outputs = Status.CACHED, True, hit["outputs"]
        self.reporter.event(rec)

    def repair(self, reader: str, result: NodeResult) -> None:
        """Recompute what produced the reader's corrupt inputs (store literals again), then the reader."""
        why = (result.error or "").removeprefix("input ")
        for digest in result.corrupt:
            self.store.findings.add(digest, f"{why} (read by node {reader})")
            if digest in self.literal_sources:
                store_literal_again(self.store, self.literal_sources[digest])
        self.records[reader].status = Status.PENDING
        producers = [n for n, r in self.records.items() if n != reader and r.status in (Status.CACHED, Status.DONE)
                     and set(result.corrupt) & set(_digests(r.outputs))]
        for producer in producers:
            self.redo.setdefault(producer, set()).add(reader)
            if producer not in self.in_flight and producer not in self.waiting and \
                    not any(t.node_id == producer for t in self.pending):
                self.records[producer].status = Status.PENDING
                if self.enqueue(producer):
                    self.released(producer)
        if not producers and self.enqueue(reader):
            self.complete(reader)

    def released(self, producer: str) -> None:
        """The producer is complete again: its waiting readers run (or fail with it)."""
        for reader in sorted(self.redo.pop(producer, ()), key=self.order.__getitem__):
            if any(reader in waiting for waiting in self.redo.values()):
                continue
            if self.records[producer].status == Status.FAILED:
                rec = self.records[reader]
                rec.status, rec.error = Status.FAILED, f"its input from '{producer}' could not be recomputed"
                self.reporter.event(rec)
                self.sorter.done(reader)
            elif self.enqueue(reader):
                self.complete(reader)


def _digests(outputs: dict[str, Any]) -> list[str]:
    return [m["digest"] for v in outputs.values() for m in (v if isinstance(v, list) else [v])]


def _task(node: PlanNode, rec: NodeRecord, inputs: dict[str, Any], store: Store, identities: dict[str, Any],
          settings: ExecutionSettings) -> NodeTask:
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
                    inputs, rec.key, rec.cacheable, settings)


def _finish(rec: NodeRecord, result: NodeResult) -> None:
    rec.seconds = result.seconds
    rec.started = result.started
    rec.device = result.device
    rec.worker = result.worker
    rec.model_loads = list(result.model_loads)
    rec.batch = result.batch
    if result.error:
        rec.status, rec.error = Status.FAILED, result.error
    else:
        rec.status, rec.outputs, rec.cached = Status.DONE, result.outputs, False
