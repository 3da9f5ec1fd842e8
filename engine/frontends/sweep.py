"""A sweep of Mora graphs as one unit of work: every job's graph merged into one DAG, run once, split per job.

The Mora launcher keeps Hydra's launcher contract (the basic launcher's, which it follows step by
step): it logs `Launching N jobs locally` and one `#i : overrides` line per job, gives each job
its config with `hydra.job.id`/`num` set (composed once per sweep, graph inputs applied as data:
mora.engine.frontends.jobconfig), and its directory, job name, working directory, .hydra files, logging and
return value as Hydra's `run_job` does (mora.engine.frontends.hydra_job, without run_job's per-job copies of
the config), so sweep dir and subdir patterns, `hydra.job.chdir` and `get_original_cwd` behave as
with any launcher. What differs is
when nodes run: every job is planned first in the original working directory (an invalid job
stops the sweep before anything runs), jobs that share a cache directory, model preset and
runtime are merged into one plan (engine.merge: identical nodes appear once) and run on one
executor (so models load once per worker for the whole sweep), and each job's `run_job` then
exports its outputs and manifest and returns its `objective` output (for sweepers such as Optuna).
In a job's manifest, `seconds` is what the nodes it ran itself took, `sweep_seconds` the merged
run, and a node that another job of the sweep ran is marked `shared_from`.
What the jobs of one template share (its validated settings and graph file, its `.hydra` file
texts) is made once per Hydra run, not once per launch: Optuna and other sweepers that launch a
batch at a time reuse it.
The executor for the sweep's own runtime (the config without the swept values) is started before
the jobs are composed and planned, so pool workers warm up meanwhile; a group whose jobs sweep
the runtime itself gets its own executor.
"""
from __future__ import annotations

import copy
import gc
import json
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf

from mora.engine.errors import NodesFailed
from mora.engine.execution.scheduler import RunReport
from mora.engine.frontends.api import Job, summarize
from mora.engine.frontends.hydra_job import JobFiles, JobLogs, JobValues, run_bound_job
from mora.engine.frontends.job import Configured, configured, objective_value
from mora.engine.frontends.jobconfig import Composer, Template, composer
from mora.engine.frontends.manifest import deliver
from mora.engine.frontends.preflight import refuse_taken_jobs
from mora.engine.frontends.report import report_quietly
from mora.engine.graph.merge import Merged, merge_plans
from mora.engine.rundir import refuse_used

log = logging.getLogger(__name__)
_FROZEN: list[bool] = []


def _group_key(job: Job) -> str:
    return json.dumps([job.settings.to_json(), job.preset, job.runtime], sort_keys=True, default=str)


def job_report(merged: Merged, report: RunReport, job: int, plan: Any) -> RunReport:
    """The view of the merged run that one job sees, under the job's own node ids.

    Its `seconds` are the wall time of the nodes this job ran itself (not those it shares with
    an earlier job of the sweep, nor cache hits): what the job cost within the sweep.
    """
    records = {}
    for node_id, merged_id in merged.ids[job].items():
        rec = copy.copy(report.records[merged_id])
        rec.id = node_id
        owner = merged.users[merged_id][0]
        if owner != job:
            rec.cached = True
            rec.model_loads = []
            rec.shared_from = f"job{owner}:{merged_id}"
        records[node_id] = rec
    outputs = {name: report.outputs.get(f"job{job}/{name}") for name in plan.outputs}
    seconds = sum(r.seconds for r in records.values() if not r.cached)
    return RunReport(records, outputs, seconds, report.findings, report.started)


def launch(hydra_context: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> list[JobReturn]:
    """Launch a sweep of Mora jobs as Hydra's basic launcher would, but run their nodes as one merged graph."""

    if not _FROZEN:  # once per process: what start-up made (modules, Hydra's configs) lives as long as the process
        gc.freeze()  # so a full collection, which the sweep's many small objects trigger, does not walk it again
        _FROZEN.append(True)
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info(f"Launching {len(job_overrides)} jobs locally")
    early = _EarlyExecutor(config)
    try:
        return _launch(hydra_context, config, job_overrides, initial_job_idx, early)
    finally:
        early.shutdown()


class _EarlyExecutor:
    """The executor for the sweep config's runtime, started at once; handed to the first group that runs on it."""

    def __init__(self, config: DictConfig):
        from mora.engine.frontends import api

        self.runtime = OmegaConf.to_container(config.runtime, resolve=True, enum_to_str=True)
        self.executor: Any = api.make_executor(self.runtime)  # type: ignore[arg-type]

    def take(self, runtime: dict[str, Any]) -> Any:
        """This executor if it was made for `runtime` and is still unclaimed, else a new one."""
        from mora.engine.frontends import api

        if self.executor is not None and runtime == self.runtime:
            executor, self.executor = self.executor, None
            return executor
        if self.executor is not None and (runtime.get("attach") or self.runtime.get("attach")):
            self.shutdown()  # it holds the standing workers, which the new one is to attach to
        return api.make_executor(runtime)

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
            self.executor = None


@dataclass
class _Prepared:
    """What the jobs of one template share, made when its first job needs it (mutable: filled in as the launch goes)."""

    template: Template
    """Kept here so that the template outlives its id, the key this is found by."""
    configured: Configured | None = None
    files: JobFiles | None = None


_KEPT: weakref.WeakKeyDictionary[Composer, dict[int, _Prepared]] = weakref.WeakKeyDictionary()
"""Per Hydra run, the shared templates' preparations: a sweeper such as Optuna launches a batch at a time."""


def _launch(hydra_context: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]],
            initial_job_idx: int, early: _EarlyExecutor) -> list[JobReturn]:
    from mora.engine.execution.progress import quiet_libraries, verbose
    from mora.engine.frontends import api

    compose = composer(hydra_context.config_loader, config)
    configs = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        configs.append(compose.job(list(overrides)))
    refuse_taken_jobs(compose, configs, initial_job_idx)  # before any job of the batch runs or writes a file
    hydra_before = HydraConfig.instance().cfg
    try:
        kept = _KEPT.setdefault(compose, {})
        here: dict[int, _Prepared] = {}
        prepared = [(kept if c.template.shared else here).setdefault(id(c.template), _Prepared(c.template))
                    for c in configs]
        jobs = []
        for idx, job_config, prep in zip(range(initial_job_idx, initial_job_idx + len(configs)), configs, prepared):
            if prep.configured is None:  # once per template: every job of a shared one is configured alike
                cfg = compose.bind(job_config, idx)
                HydraConfig.instance().cfg = cfg  # so ${hydra:...} in a job's config resolves as it will in the job
                prep.configured = configured(cfg)
            jobs.append(prep.configured.job(job_config.graph_inputs()))
        quiet_libraries(verbose())
        groups: dict[str, list[int]] = {}
        keys: dict[int, str] = {}  # per template's settings: its jobs differ only in their graph inputs
        for i, (job, prep) in enumerate(zip(jobs, prepared)):
            key = keys.get(id(prep.configured)) or keys.setdefault(id(prep.configured), _group_key(job))
            groups.setdefault(key, []).append(i)
        results: dict[int, tuple[RunReport, Merged, int, dict[str, Any]]] = {}
        for members in groups.values():
            first = jobs[members[0]]
            merged = merge_plans([jobs[i].plan for i in members])
            executor = early.take(first.runtime)
            try:
                done = api.execute(first, merged.plan, executor)
            finally:
                executor.shutdown()
            report = done.report
            sweep_info = {**done.details, "launcher": "mora", "sweep_nodes": len(merged.plan.nodes),
                          "sweep_jobs": len(members), "sweep_seconds": round(report.seconds, 6),
                          "sweep_model_loads": report.model_loads}
            for pos, i in enumerate(members):
                results[i] = (report, merged, pos, sweep_info)

        returns = []
        logs = JobLogs()
        for i, (idx, job_config) in enumerate(zip(range(initial_job_idx, initial_job_idx + len(configs)), configs)):
            report, merged, pos, info = results[i]
            cfg = compose.bind(job_config, idx)
            HydraConfig.instance().cfg = cfg
            prep = prepared[i]
            if prep.files is None:
                prep.files = JobFiles(cfg)
            task = partial(_deliver_job, jobs[i], job_report(merged, report, pos, jobs[i].plan), info)
            values = JobValues(idx, job_config.overrides, job_config.override_dirname, job_config.input_keys)
            returns.append(run_bound_job(hydra_context, cfg, task, prep.files, logs, values))
        return returns
    finally:
        HydraConfig.instance().cfg = hydra_before
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)


def _deliver_job(job: Job, view: RunReport, info: dict[str, Any], run_dir: Path) -> float | None:
    """A job's task: its outputs and manifest into its own directory; its return value."""
    refuse_used(run_dir)
    data = deliver(job.plan, view, job.store, run_dir, job.video_format, info)
    summarize(view, run_dir, data["outputs"])
    report_quietly(run_dir)
    if view.failed:
        raise NodesFailed(f"{len(view.failed)} node(s) failed: {', '.join(view.failed)}")
    return objective_value(job, view.outputs)


__all__ = ["job_report", "launch"]
