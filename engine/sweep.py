"""A sweep as one unit of work: every job's graph merged into one DAG, run once, split per job.

The Mora launcher composes each job's config, plans it (validation errors of any job stop the
sweep before anything runs), groups jobs that share a cache directory, model preset and
runtime, merges each group's plans (engine.merge: identical nodes appear once), runs the merged
plan on one executor (so models load once per worker for the whole sweep), and then gives each
job its own run directory through Hydra's `run_job`, with the job's outputs, a manifest of its
nodes, and its return value (the `objective` output, for sweepers such as Optuna).
In a job's manifest a node that another job of the sweep ran is marked `shared_from`.
The executor for the sweep's own runtime (the config without the swept values) is started before
the jobs are composed and planned, so pool workers warm up meanwhile; a group whose jobs sweep
the runtime itself gets its own executor.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mora.engine.cli import Job, job_from_config, objective_value, summarize
from mora.engine.manifest import export_outputs, manifest, write_json
from mora.engine.merge import Merged, merge_plans
from mora.engine.scheduler import RunReport


def _group_key(job: Job) -> str:
    return json.dumps([str(job.store.root), job.store.salt, job.preset, job.runtime], sort_keys=True, default=str)


def job_report(merged: Merged, report: RunReport, job: int, plan: Any) -> RunReport:
    """The view of the merged run that one job sees, under the job's own node ids."""
    records = {}
    for node_id, merged_id in merged.ids[job].items():
        rec = copy.copy(report.records[merged_id])
        rec.id = node_id
        owner = merged.users[merged_id][0]
        if owner != job:
            rec.cached = True
            rec.model_loads = []
            setattr(rec, "shared_from", f"job{owner}:{merged_id}")
        records[node_id] = rec
    outputs = {name: report.outputs.get(f"job{job}/{name}") for name in plan.outputs}
    return RunReport(records, outputs, report.seconds, report.findings)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
    from hydra.core.utils import setup_globals

    setup_globals()
    config = launcher.config
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    early = _EarlyExecutor(config)
    try:
        return _launch(launcher, job_overrides, initial_job_idx, early)
    finally:
        early.shutdown()


class _EarlyExecutor:
    """The executor for the sweep config's runtime, started at once; handed to the first group that runs on it."""

    def __init__(self, config: DictConfig):
        from mora.engine import api
        from mora.engine.store import default_cache_dir

        self.runtime = OmegaConf.to_container(config.runtime, resolve=True)
        # as job_from_config would, before the workers inherit the environment
        cache_dir = Path(config.cache.dir).expanduser() if config.cache.dir else default_cache_dir()
        os.environ.setdefault("MORA_MODELS_DIR", str(cache_dir.resolve() / "models"))
        self.executor: Any = api.make_executor(self.runtime)  # type: ignore[arg-type]

    def take(self, runtime: dict[str, Any]) -> Any:
        """This executor if it was made for `runtime` and is still unclaimed, else a new one."""
        from mora.engine import api

        if self.executor is not None and runtime == self.runtime:
            executor, self.executor = self.executor, None
            return executor
        return api.make_executor(runtime)

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()


def _launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
            early: _EarlyExecutor) -> list[Any]:
    from hydra.core.utils import run_job

    from mora.engine.progress import Reporter
    from mora.engine.scheduler import run_plan

    config = launcher.config
    configs: list[DictConfig] = []
    for i, overrides in enumerate(job_overrides):
        cfg = launcher.hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{initial_job_idx + i}"
            cfg.hydra.job.num = initial_job_idx + i
        configs.append(cfg)
    jobs = [job_from_config(cfg) for cfg in configs]
    groups: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(_group_key(job), []).append(i)
    results: dict[int, tuple[RunReport, Merged, int, dict[str, Any]]] = {}
    for members in groups.values():
        first = jobs[members[0]]
        merged = merge_plans([jobs[i].plan for i in members])
        executor = early.take(first.runtime)
        reporter = Reporter(len(merged.plan.dag), quiet=first.quiet)
        try:
            report = run_plan(merged.plan, first.store, executor, first.preset, reporter,
                              int(first.runtime.get("retries", 0)), int(first.runtime.get("batch_size", 1)),
                              first.runtime.get("agent_retries"))
        finally:
            reporter.close()
            executor.shutdown()
        loads = getattr(executor, "loads", None)
        timeline = getattr(executor, "timeline", None)
        sweep_info = {"sweep_nodes": len(merged.plan.nodes), "sweep_jobs": len(members),
                      "sweep_model_loads": report.model_loads,
                      "model_loads_by_worker": dict(loads) if loads is not None else None,
                      "workers": timeline() if timeline is not None else None}
        for pos, i in enumerate(members):
            results[i] = (report, merged, pos, sweep_info)

    returns = []
    for i, cfg in enumerate(configs):
        report, merged, pos, info = results[i]
        job = jobs[i]

        def task(job_cfg: DictConfig, job: Job = job, report: RunReport = report, merged: Merged = merged,
                 pos: int = pos, info: dict[str, Any] = info) -> float | None:
            from hydra.core.hydra_config import HydraConfig

            run_dir = Path(HydraConfig.get().runtime.output_dir)
            view = job_report(merged, report, pos, job.plan)
            files = export_outputs(view, job.store, run_dir, job.video_format)
            data = manifest(job.plan, view, files, {"cache_dir": str(job.store.root), "runtime": job.runtime,
                                                    "preset": job.preset.get("name"), "launcher": "mora", **info})
            for node_id, rec in view.records.items():
                if hasattr(rec, "shared_from"):
                    data["nodes"][node_id]["shared_from"] = rec.shared_from
            data["model_loads"] = sum(len(r.model_loads) for r in view.records.values())
            write_json(run_dir / "manifest.json", data)
            summarize(view, run_dir)
            if view.failed:
                raise RuntimeError(f"{len(view.failed)} node(s) failed: {', '.join(view.failed)}")
            return objective_value(job, view.outputs)

        returns.append(run_job(hydra_context=launcher.hydra_context, task_function=task, config=cfg,
                               job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
    return returns


__all__ = ["launch", "job_report"]
