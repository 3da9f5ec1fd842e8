"""Running a graph file as a plain function: what the CLI, the sweep launcher and tests call.

`load_plan` reads and validates (no side effects); `check_input_files` reads the user files a plan names as a
run would, storing nothing, and resolves its models as a run's planning does. A `Job` is one configured run:
its plan and where and how it runs. `execute(job, plan)` is the one way a plan runs (a job's own plan for
`run`, a sweep's merged plan for the Mora launcher): on the job's runtime, cache and preset,
returning the report and the run's details that every manifest records. `run` executes a job's
plan, exports its outputs into the run directory and writes manifest.json.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from mora.engine.cache.artifacts import CorruptArtifact
from mora.engine.cache.ingest import Ingest
from mora.engine.cache.store import Store
from mora.engine.errors import GraphError, MoraError
from mora.engine.execution.executors import Executor
from mora.engine.execution.progress import Reporter
from mora.engine.execution.scheduler import RunReport, read_literals, resolve_models, run_plan
from mora.engine.execution.settings import ExecutionSettings
from mora.engine.frontends.manifest import check_exportable, export_error, export_outputs, record
from mora.engine.graph.expand import build_plan
from mora.engine.graph.plan import Plan
from mora.engine.graph.registry import Registry, default_registry
from mora.engine.graph.spec import GraphSpec, read_graph_file
from mora.engine.graph.templates import TemplateLoader
from mora.engine.rundir import refuse_used
from mora.engine.userfiles import expand_user

log = logging.getLogger("mora")
MAX_EXPORT_REPAIRS = 2
"""Times an output found corrupt while exported is recomputed (by running the plan again, all hits but it)."""
GRAPHS_DIR = Path(str(files("mora.graphs")))
"""The built-in graphs, wherever the package is installed (a source checkout or a wheel)."""


@dataclass(frozen=True)
class Job:
    """One configured run: its plan and where and how it runs."""

    plan: Plan
    store: Store
    preset: dict[str, Any]
    runtime: dict[str, Any]
    video_format: str = "mp4"
    quiet: bool = False
    objective: str | None = None
    settings: ExecutionSettings | None = None
    """How the run executes (the CLI builds them once from the config); None: the store's, with `runtime`'s limits."""


@dataclass(frozen=True)
class Execution:
    """A plan's run: its report, and the details of where it ran that its manifest records."""

    report: RunReport
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunOutcome:
    report: RunReport
    manifest: dict[str, Any]
    run_dir: Path


def graph_path(name: str | None, file: str | None) -> Path:
    """The graph file for `graph_file=PATH`, else `graphs/NAME.yaml`."""
    if file is not None:
        if not file.strip():  # an unset shell variable must not mean the default graph
            raise MoraError("graph_file is empty: give the path of a graph file, or leave graph_file out")
        return Path(os.path.realpath(expand_user(file, "graph file")))  # a symlink loop is reported on reading
    if not name:
        raise MoraError("no graph given: set graph=NAME (a file in graphs/) or graph_file=PATH")
    path = GRAPHS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in GRAPHS_DIR.glob("*.yaml"))
        raise MoraError(f"no graph named '{name}' in {GRAPHS_DIR}; known: {', '.join(known)}")
    return path


def load_plan(path: Path, inputs: Mapping[str, Any], outputs: list[str] | None = None,
              registry: Registry | None = None, standalone: bool = False,
              defaults: Mapping[str, Any] | None = None) -> Plan:
    """Read, validate and expand a graph file (raises GraphError listing every problem).

    `defaults` (a model preset's `inputs`) fill graph inputs the file declares and the user
    did not set, so a preset can bring its own sizes, steps and frame counts.
    """
    return plan_graph(read_graph_file(path), inputs, outputs, registry, standalone, defaults)


def plan_graph(spec: GraphSpec, inputs: Mapping[str, Any], outputs: list[str] | None = None,
               registry: Registry | None = None, standalone: bool = False,
               defaults: Mapping[str, Any] | None = None, loader: TemplateLoader | None = None) -> Plan:
    """`load_plan` for a graph file already read: a sweep reads its file (and templates, through `loader`) once."""
    values = {k: v for k, v in (defaults or {}).items() if k in spec.inputs}
    values.update(inputs)
    return build_plan(spec, values, registry or default_registry(), loader or TemplateLoader([GRAPHS_DIR]), outputs,
                      standalone)


def check_input_files(plan: Plan, preset: Mapping[str, Any] | None = None) -> None:
    """Read every input file as a run would (a missing, empty or undecodable image or video is the same error), in a
    throwaway cache: checking a graph stores nothing. Given the model `preset`, also resolve each node's model as a
    run's planning does (an unknown model, a missing folder)."""
    problems = resolve_models(plan, preset)[1] if preset is not None else []
    with tempfile.TemporaryDirectory(prefix="mora-validate-") as tmp:
        store = Store(Path(tmp))
        ingest = Ingest(store)
        try:
            problems += read_literals(plan, ingest)[1]
        finally:
            ingest.discard()
            store.close()
    if problems:
        raise GraphError(problems)


def summarize(report: RunReport, run_dir: Path, files: dict[str, str]) -> None:
    """Log how the run went; print each output file's path (the graph's main output first), then the run directory.

    The paths go to stdout, one `name: path` a line, for scripts; the rest is logged.
    """
    for finding in report.findings:
        log.warning(f"cache: {finding} (treated as a miss and recomputed)")
    cached = sum(r.cached for r in report.records.values())
    log.info(f"{len(report.records)} nodes, {cached} cached, {len(report.failed)} failed, "
             f"{len(report.skipped)} skipped, {report.model_loads} model loads, {report.seconds:.2f}s")
    for node in report.failed:
        log.error(f"node '{node}' failed: {report.records[node].error}")
    for name, file in files.items():
        print(f"{name}: {run_dir / file}")
    print(f"mora: run directory: {run_dir}")


def make_executor(runtime: Mapping[str, Any]) -> Executor:
    """The executor for a runtime config (`name`: local; the pool and Ray come as runtimes)."""
    name = runtime.get("name", "local")
    device = str(runtime.get("device", "auto"))
    if name == "auto":
        from mora.engine.execution.executors.pool import count_gpus

        name = "pool" if runtime.get("attach") is not None or device != "cpu" and count_gpus() > 1 else "local"
    if name == "local":
        from mora.engine.execution.executors.inprocess import InProcessExecutor

        return InProcessExecutor(device)
    if name == "pool":
        from mora.engine.execution.executors.pool import PoolExecutor

        return PoolExecutor(runtime.get("devices", "all"), "cpu" if device == "cpu" else "cuda", runtime.get("attach"))
    if name == "ray":
        from mora.engine.execution.executors.ray import RayExecutor

        return RayExecutor(runtime)
    raise MoraError(f"unknown runtime '{name}' (local, pool, ray or auto)")


def execute(job: Job, plan: Plan, executor: Executor | None = None) -> Execution:
    """Run `plan` (the job's own, or a sweep's merged plan) with the job's cache, preset and runtime.

    An executor passed in stays open (a sweep or a repair loop reuses it); one made here is shut down.
    """
    check_exportable(plan, job.video_format)
    runtime = job.runtime
    settings = job.settings or ExecutionSettings.for_store(job.store, runtime)
    own = executor is None
    executor = executor or make_executor(job.runtime)
    reporter = Reporter(len(plan.nodes), quiet=job.quiet)
    try:
        report = run_plan(plan, job.store, executor, job.preset, reporter, int(runtime.get("retries", 0)),
                          int(runtime.get("batch_size", 1)), runtime.get("agent_retries"), settings)
    finally:
        reporter.close()
        if own:
            executor.shutdown()
    loads = getattr(executor, "loads", None)
    timeline = getattr(executor, "timeline", None)
    return Execution(report, {"preset": job.preset.get("name"), "cache_dir": str(job.store.root),
                              "runtime": dict(runtime),
                              "model_loads_by_worker": dict(loads) if loads is not None else None,
                              "workers": timeline() if timeline is not None else None})


def run_job(job: Job, run_dir: Path, executor: Executor | None = None) -> RunOutcome:
    """Execute a job's plan and write its outputs and manifest into `run_dir` (refused if another run finished there)."""
    refuse_used(run_dir)
    own = executor is None
    executor = executor or make_executor(job.runtime)
    try:
        with job.store.leased():  # what the run reads and exports stays in the cache until it is exported
            for attempt in range(1 + MAX_EXPORT_REPAIRS):
                done = execute(job, job.plan, executor)
                try:
                    files = export_outputs(done.report, job.store, run_dir, job.video_format)
                    break
                except CorruptArtifact as e:  # quarantined: running again recomputes just its producer
                    if attempt == MAX_EXPORT_REPAIRS:
                        raise
                    job.store.quarantine(e.ref, e.why, e.inode, node="(export)")
                except OSError as e:
                    raise export_error(run_dir, e) from None
    finally:
        if own:
            executor.shutdown()
    data = record(job.plan, done.report, files, run_dir, done.details)
    return RunOutcome(done.report, data, run_dir)


def run(plan: Plan, *, store: Store, preset: Mapping[str, Any], run_dir: Path, runtime: Mapping[str, Any],
        video_format: str = "mp4", quiet: bool = False, executor: Executor | None = None,
        settings: ExecutionSettings | None = None) -> RunOutcome:
    """Run a plan and write its outputs and manifest into `run_dir` (`run_job` with the job spelt out)."""
    return run_job(Job(plan, store, dict(preset), dict(runtime), video_format, quiet, settings=settings), run_dir,
                   executor)

