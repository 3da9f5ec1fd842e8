"""`mora`: the Hydra app. A thin `@hydra.main` that turns the composed config into a run.

Every failure goes through `mora.engine.guard` (one line, no traceback): invalid input or
configuration exits with status 2, a failed node with 1 after the other branches finished,
Ctrl-C with 130. Graph-input values on the command line are data (`mora.engine.overrides`), read
from the config unresolved. The configuration is validated (`mora.engine.config.validate`) before
the cache is opened. When the run ends, each output's path
(the main output first) and the run directory are printed on stdout; everything else is logged. With `objective=NAME` the
job returns that numeric graph output (for sweepers such as Optuna).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mora.engine.config import register, register_launcher, validate
from mora.engine.errors import MoraError, NodesFailed
from mora.engine.guard import guarded, hydra_errors_raise
from mora.engine.help import complete_inputs
from mora.engine.help import register as register_help
from mora.engine.overrides import as_data
from mora.engine.ports import PortType

log = logging.getLogger("mora")
register()
register_launcher()
register_help()


@dataclass
class Job:
    """One configured run: its plan and where and how it runs."""

    plan: Any
    store: Any
    settings: Any
    """mora.engine.settings.ExecutionSettings: how the run executes, built once here from the config."""
    preset: dict[str, Any]
    runtime: dict[str, Any]
    video_format: str
    quiet: bool
    objective: str | None


def graph_inputs(cfg: DictConfig) -> dict[str, Any]:
    """`inputs.*` plus the `prompt`/`seed` aliases, unresolved: `${...}` in a value is text, never a lookup."""
    values = OmegaConf.to_container(cfg.inputs, resolve=False) or {}
    aliases = OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["prompt", "seed"]), resolve=False)
    assert isinstance(values, dict) and isinstance(aliases, dict)
    return {**values, **{k: v for k, v in aliases.items() if v is not None}}


def job_from_config(cfg: DictConfig) -> Job:
    """Validate the configured graph and open the cache (raises MoraError/GraphError)."""
    from mora.engine import api
    from mora.engine.settings import ExecutionSettings
    from mora.engine.store import Store, default_cache_dir

    validate(cfg)
    path = api.graph_path(cfg.graph.name, cfg.graph_file)
    outputs = list(cfg.outputs) if cfg.outputs is not None else None
    defaults = OmegaConf.to_container(cfg.model.inputs, resolve=True)
    preset = OmegaConf.to_container(cfg.model, resolve=True)
    runtime = OmegaConf.to_container(cfg.runtime, resolve=True, enum_to_str=True)
    assert isinstance(defaults, dict) and isinstance(preset, dict) and isinstance(runtime, dict)
    plan = api.load_plan(path, graph_inputs(cfg), outputs, defaults=defaults)
    if cfg.objective is not None:
        numbers = sorted(name for name, src in plan.outputs.items() if src.type == PortType.NUMBER)
        if cfg.objective not in plan.outputs:
            raise MoraError(f"objective '{cfg.objective}' is not an output of {path}; numeric outputs: {numbers}")
        if plan.outputs[cfg.objective].type != PortType.NUMBER:
            raise MoraError(f"objective '{cfg.objective}' is a {plan.outputs[cfg.objective].type.value} output of "
                            f"{path}, not a number; numeric outputs: {numbers}")
    cache_dir = Path(cfg.cache.dir).expanduser() if cfg.cache.dir else default_cache_dir()
    store = Store(cache_dir, salt=cfg.cache.salt, lock_timeout=cfg.cache.lock_timeout)
    settings = ExecutionSettings.for_store(store, runtime)
    return Job(plan, store, settings, preset, runtime, cfg.video_format.value, cfg.quiet, cfg.objective)


def summarize(report: Any, run_dir: Path, files: dict[str, str]) -> None:
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


def objective_value(job: Job, outputs: dict[str, Any]) -> float | None:
    """The numeric output named by `objective`, read from the store."""
    if job.objective is None:
        return None
    meta = outputs.get(job.objective)
    if meta is None:
        raise MoraError(f"objective output '{job.objective}' was not produced")
    return job.store.ref(meta).number()


def run_from_config(cfg: DictConfig, run_dir: Path) -> float | None:
    """Run the configured graph; return the objective value (raises NodesFailed if a node failed)."""
    from mora.engine import api
    from mora.engine.report import report_quietly

    job = job_from_config(cfg)
    outcome = api.run(job.plan, store=job.store, preset=job.preset, run_dir=run_dir, runtime=job.runtime,
                      video_format=job.video_format, quiet=job.quiet, settings=job.settings)
    summarize(outcome.report, run_dir, outcome.manifest["outputs"])
    report_quietly(run_dir)
    if outcome.report.failed:
        raise NodesFailed(f"{len(outcome.report.failed)} node(s) failed: {', '.join(outcome.report.failed)}")
    return objective_value(job, outcome.report.outputs)


@contextlib.contextmanager
def in_original_cwd() -> Iterator[None]:
    """Work in the directory `mora` was started from, whatever `hydra.job.chdir` says.

    Relative paths a user gives (graph_file, input files, cache.dir) mean what they meant in
    the shell; outputs go to the run directory by its absolute path either way.
    """
    from hydra.utils import get_original_cwd

    here = os.getcwd()
    os.chdir(get_original_cwd())
    try:
        yield
    finally:
        os.chdir(here)


@hydra.main(version_base="1.3", config_path="pkg://mora.conf", config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from mora.engine.progress import quiet_libraries, verbose

    quiet_libraries(verbose())
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with in_original_cwd():
        return run_from_config(cfg, run_dir)


def main() -> None:
    """Console-script entry point: graph inputs made literal, then Hydra, all under Mora's one error guard."""
    completion = complete_inputs(sys.argv[1:], os.environ.get("COMP_LINE", ""))
    if completion is not None:
        print(completion)
        return
    sys.argv[1:] = as_data(sys.argv[1:])
    hydra_errors_raise()
    sys.exit(guarded("mora", _main))
