"""`mora`: the Hydra app. A thin `@hydra.main` that turns the composed config into a run.

Errors Mora can explain (bad graph, bad input file, missing model, and Hydra's own refusal of
a bad override or config) are printed with no traceback and exit with status 2; a failed node
exits with status 1 after the other branches finished. The run directory is printed when the
run ends. With `objective=NAME` the job returns that numeric graph output (for sweepers such as
Optuna).
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mora.engine.config import register
from mora.engine.errors import GraphError, MoraError

log = logging.getLogger("mora")
register()


@dataclass
class Job:
    """One configured run: its plan and where and how it runs."""

    plan: Any
    store: Any
    preset: dict[str, Any]
    runtime: dict[str, Any]
    video_format: str
    quiet: bool
    objective: str | None


def graph_inputs(cfg: DictConfig) -> dict[str, Any]:
    """`inputs.*` plus the `prompt`/`seed` aliases."""
    values = OmegaConf.to_container(cfg.inputs, resolve=True) or {}
    assert isinstance(values, dict)
    for alias in ("prompt", "seed"):
        if cfg.get(alias) is not None:
            values[alias] = cfg[alias]
    return values


def job_from_config(cfg: DictConfig) -> Job:
    """Validate the configured graph and open the cache (raises MoraError/GraphError)."""
    from mora.engine import api
    from mora.engine.store import Store, default_cache_dir

    path = api.graph_path(cfg.graph.name, cfg.graph_file)
    outputs = list(cfg.outputs) if cfg.outputs is not None else None
    defaults = OmegaConf.to_container(cfg.model.inputs, resolve=True)
    preset = OmegaConf.to_container(cfg.model, resolve=True)
    runtime = OmegaConf.to_container(cfg.runtime, resolve=True)
    assert isinstance(defaults, dict) and isinstance(preset, dict) and isinstance(runtime, dict)
    plan = api.load_plan(path, graph_inputs(cfg), outputs, defaults=defaults)
    cache_dir = Path(cfg.cache.dir).expanduser() if cfg.cache.dir else default_cache_dir()
    store = Store(cache_dir, salt=cfg.cache.salt, lock_timeout=cfg.cache.lock_timeout)
    os.environ.setdefault("MORA_MODELS_DIR", str(store.root / "models"))
    os.environ["MORA_MAX_RESIDENT_MODELS"] = str(cfg.runtime.max_resident_models)
    os.environ["MORA_MAX_RESIDENT_GIB"] = str(cfg.runtime.max_resident_gib)
    if cfg.objective is not None and cfg.objective not in plan.outputs:
        raise MoraError(f"objective '{cfg.objective}' is not an output of {path}; outputs: {sorted(plan.outputs)}")
    return Job(plan, store, preset, runtime, cfg.video_format, cfg.quiet, cfg.objective)


def summarize(report: Any, run_dir: Path) -> None:
    for finding in report.findings:
        print(f"mora: cache: {finding} (treated as a miss and recomputed)", file=sys.stderr)
    cached = sum(r.cached for r in report.records.values())
    print(f"mora: {len(report.records)} nodes, {cached} cached, {len(report.failed)} failed, "
          f"{len(report.skipped)} skipped, {report.model_loads} model loads, {report.seconds:.2f}s", file=sys.stderr)
    for node in report.failed:
        print(f"mora: node '{node}' failed: {report.records[node].error}", file=sys.stderr)
    print(f"mora: run directory: {run_dir}")


def objective_value(job: Job, outputs: dict[str, Any]) -> float | None:
    """The numeric output named by `objective`, read from the store."""
    if job.objective is None:
        return None
    meta = outputs.get(job.objective)
    if meta is None:
        raise MoraError(f"objective output '{job.objective}' was not produced")
    return job.store.ref(meta).number()


def run_from_config(cfg: DictConfig, run_dir: Path) -> tuple[int, float | None]:
    """Run the configured graph; return the exit status and the objective value."""
    from mora.engine import api
    from mora.engine.report import report_quietly

    job = job_from_config(cfg)
    outcome = api.run(job.plan, store=job.store, preset=job.preset, run_dir=run_dir, runtime=job.runtime,
                      video_format=job.video_format, quiet=job.quiet)
    summarize(outcome.report, run_dir)
    report_quietly(run_dir)
    value = objective_value(job, outcome.report.outputs) if not outcome.report.failed else None
    return (1 if outcome.report.failed else 0), value


def guarded(fn: Any) -> Any:
    """Print Mora's own errors without a traceback and exit 2."""
    try:
        return fn()
    except GraphError as e:
        print(f"mora: invalid graph or inputs: {e}", file=sys.stderr)
        sys.exit(2)
    except MoraError as e:
        print(f"mora: error: {e}", file=sys.stderr)
        sys.exit(2)


_jobs_started = 0
"""Jobs that reached `_main`: before the first, an exit status of 1 is Hydra refusing the config."""


@hydra.main(version_base="1.3", config_path="pkg://mora.conf", config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    global _jobs_started
    _jobs_started += 1
    logging.getLogger("mora").setLevel(logging.INFO)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    status, value = guarded(lambda: run_from_config(cfg, run_dir))
    if status:
        sys.exit(status)
    return value


def open_input_overrides(argv: list[str]) -> list[str]:
    """`inputs.NAME=V` becomes `++inputs.NAME=V`: graph inputs are not keys of the config until set.

    Hydra's struct mode refuses new keys, and `inputs` starts empty; the add-or-override form
    keeps the documented `inputs.NAME=VALUE` syntax working for runs and sweeps alike.
    """
    return [f"++{a}" if a.startswith("inputs.") and "=" in a else a for a in argv]


def main() -> None:
    """Console-script entry point.

    Hydra reports a bad override or config (unknown key, wrong type, missing group option) and
    exits with 1 before any job starts; Mora keeps 1 for failed nodes, so that becomes 2.
    """
    sys.argv[1:] = open_input_overrides(sys.argv[1:])
    try:
        _main()
    except SystemExit as e:
        if e.code == 1 and not _jobs_started:
            raise SystemExit(2) from None
        raise
