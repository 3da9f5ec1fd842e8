"""Running a graph file as a plain function: what the CLI, the sweep launcher and tests call.

`load_plan` reads and validates (no side effects); `run` prepares the cache, runs the plan on
the chosen runtime, exports outputs into the run directory and writes manifest.json.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from mora.engine.artifacts import CorruptArtifact
from mora.engine.errors import MoraError
from mora.engine.executors import Executor
from mora.engine.manifest import export_error, export_outputs, record
from mora.engine.plan import Plan, TemplateLoader, build_plan
from mora.engine.progress import Reporter
from mora.engine.registry import Registry, default_registry
from mora.engine.rundir import refuse_used
from mora.engine.scheduler import RunReport, run_plan
from mora.engine.settings import ExecutionSettings
from mora.engine.spec import read_graph_file
from mora.engine.store import Store

MAX_EXPORT_REPAIRS = 2
"""Times an output found corrupt while exported is recomputed (by running the plan again, all hits but it)."""
GRAPHS_DIR = Path(str(files("mora.graphs")))
"""The built-in graphs, wherever the package is installed (a source checkout or a wheel)."""


@dataclass
class RunOutcome:
    report: RunReport
    manifest: dict[str, Any]
    run_dir: Path


def graph_path(name: str | None, file: str | None) -> Path:
    """The graph file for `graph_file=PATH`, else `graphs/NAME.yaml`."""
    if file:
        return Path(os.path.realpath(Path(file).expanduser()))  # never raises: a symlink loop is reported on reading
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
    loader = TemplateLoader([GRAPHS_DIR])
    spec = read_graph_file(path)
    values = {k: v for k, v in (defaults or {}).items() if k in spec.inputs}
    values.update(inputs)
    return build_plan(spec, values, registry or default_registry(), loader, outputs, standalone)


def make_executor(runtime: Mapping[str, Any]) -> Executor:
    """The executor for a runtime config (`name`: local; the pool and Ray come as runtimes)."""
    name = runtime.get("name", "local")
    device = str(runtime.get("device", "auto"))
    if name == "auto":
        from mora.engine.executors.pool import count_gpus

        name = "pool" if device != "cpu" and count_gpus() > 1 else "local"
    if name == "local":
        from mora.engine.executors.inprocess import InProcessExecutor

        return InProcessExecutor(device)
    if name == "pool":
        from mora.engine.executors.pool import PoolExecutor

        return PoolExecutor(runtime.get("devices", "all"), "cpu" if device == "cpu" else "cuda")
    if name == "ray":
        from mora.engine.executors.ray import RayExecutor

        return RayExecutor(runtime)
    raise MoraError(f"unknown runtime '{name}' (local, pool, ray or auto)")


def run(plan: Plan, *, store: Store, preset: Mapping[str, Any], run_dir: Path, runtime: Mapping[str, Any],
        video_format: str = "mp4", quiet: bool = False, executor: Executor | None = None,
        settings: ExecutionSettings | None = None) -> RunOutcome:
    """Run a plan and write its outputs and manifest into `run_dir` (refused if another run finished there).

    `settings` (the CLI builds them from the config) default to the store's with `runtime`'s residency limits.
    """
    refuse_used(run_dir)
    settings = settings or ExecutionSettings.for_store(store, runtime)
    own = executor is None
    executor = executor or make_executor(runtime)
    reporter = Reporter(len(plan.dag), quiet=quiet)
    try:
        with store.leased():  # what the run reads and exports stays in the cache until it is exported
            for attempt in range(1 + MAX_EXPORT_REPAIRS):
                report = run_plan(plan, store, executor, preset, reporter, int(runtime.get("retries", 0)),
                                  int(runtime.get("batch_size", 1)), runtime.get("agent_retries"), settings)
                try:
                    files = export_outputs(report, store, run_dir, video_format)
                    break
                except CorruptArtifact as e:  # quarantined: running again recomputes just its producer
                    if attempt == MAX_EXPORT_REPAIRS:
                        raise
                    store.quarantine(e.ref, e.why, e.inode, node="(export)")
                except OSError as e:
                    raise export_error(run_dir, e) from None
    finally:
        reporter.close()
        if own:
            executor.shutdown()
    loads = getattr(executor, "loads", None)
    timeline = getattr(executor, "timeline", None)
    data = record(plan, report, files, run_dir,
                  {"preset": preset.get("name"), "cache_dir": str(store.root), "runtime": dict(runtime),
                   "model_loads_by_worker": dict(loads) if loads is not None else None,
                   "workers": timeline() if timeline is not None else None})
    return RunOutcome(report, data, run_dir)

