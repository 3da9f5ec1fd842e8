"""A sweep job's Hydra side (directory, .hydra files, logging, callbacks, return value) at a few ms per job.

Hydra's `run_job` copies the whole config three times and writes it with OmegaConf's YAML writer
(about 0.1 s a job here). This follows `run_job` step by step for a config bound in place
(mora.engine.frontends.jobconfig): the job's directory is `hydra.sweep.dir/hydra.sweep.subdir`;
`hydra.runtime.output_dir` is set; `hydra.job.chdir` is honoured; `.hydra/config.yaml`,
`hydra.yaml` and `overrides.yaml` are written (YAML text made once per template, each job's
own values filled in: the same content as Hydra's files when read back); the job's log file moves
into its directory; `hydra.job.env_set` applies while the task runs; callbacks get
`on_job_start`/`on_job_end`; a task's exception becomes a FAILED JobReturn. What differs: the
JobReturn's `cfg` and `hydra_cfg` are left None (no per-job copy of the tree is kept; its
overrides, return value, status, working directory and task name are set).
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, env_override
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from mora.engine.frontends.job import INPUT_KEYS


class JobFiles:
    """What the jobs of one template share: their `.hydra` file texts and the settings `run_job` reads per job.

    The template's config is dumped once with a marker in place of each value that differs between
    its jobs (inputs, job id/num/override_dirname, task overrides, output_dir); a job's file is that
    text with each marker replaced by the value as JSON, which is a YAML flow scalar or sequence.
    `hydra.job.chdir`, `hydra.output_subdir` and `hydra.job.env_set` are read here once when they
    interpolate nothing (they are then the same for every job of the template), else per job.
    """

    def __init__(self, config: DictConfig):
        data = OmegaConf.to_container(config, resolve=False, enum_to_str=True)
        assert isinstance(data, dict)
        hydra = data.pop("hydra")
        task = {k: _marker(k) if k in INPUT_KEYS else v for k, v in data.items()}
        raw = {"chdir": hydra["job"]["chdir"], "output_subdir": hydra["output_subdir"], "env": hydra["job"]["env_set"]}
        self.fixed = {k: _settings(config)[k] for k, v in raw.items() if "${" not in repr(v)}
        self.task_name = JobRuntime.instance().get("name")
        """The JobReturn's `task_name`: Hydra sets it once per run (the app's name), as it sets up."""
        self.subdir_is_num = hydra["sweep"]["subdir"] == "${hydra.job.num}"
        """Hydra's default sub-directory, the job's number: read from the number, not resolved (0.4 ms a job)."""
        hydra["job"] = {**hydra["job"], **{k: _marker(k) for k in JOB_KEYS}}
        hydra["runtime"] = {**hydra["runtime"], "output_dir": _marker("output_dir")}
        hydra["overrides"] = {**hydra["overrides"], "task": _marker("task")}
        self.config = _Text(_yaml(task))
        self.hydra = _Text(_yaml({"hydra": hydra}))
        self.items: dict[str, str] = {}
        """`overrides.yaml`'s item per override line (`- LINE` as YAML writes it), shared lines dumped once."""

    def settings(self, config: DictConfig) -> dict[str, Any]:
        """chdir, output_subdir and env of the job whose values `config` holds now."""
        return self.fixed if len(self.fixed) == 3 else {**_settings(config), **self.fixed}

    def write(self, config: DictConfig, job: JobValues, output_dir: str, out: Path) -> None:
        values = {**job.inputs, "id": job.num, "num": job.num, "override_dirname": job.override_dirname,
                  "output_dir": output_dir, "task": list(job.overrides)}
        out.mkdir(parents=True, exist_ok=True)
        try:
            task = self.config.fill(values)
        except (KeyError, ValueError):  # a job that deleted an input key, or a value JSON cannot spell (nan)
            data = OmegaConf.to_container(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]),
                                          resolve=False, enum_to_str=True)
            task = _yaml(data)
        _write(out / "config.yaml", task)
        _write(out / "hydra.yaml", self.hydra.fill(values))
        _write(out / "overrides.yaml", yaml_list(job.overrides, self.items))


@dataclass(frozen=True)
class JobValues:
    """The values that make one job of a template its own (bound into the config too): overrides and input keys."""

    num: int
    """The job's number, its `hydra.job.num` and `hydra.job.id`."""
    overrides: tuple[str, ...]
    override_dirname: str
    inputs: dict[str, Any]
    """The input keys (`inputs`, `prompt`, `seed`) the job's config holds, as plain data, unresolved."""


def _settings(config: DictConfig) -> dict[str, Any]:
    env = OmegaConf.to_container(config.hydra.job.env_set, resolve=True)
    assert isinstance(env, dict)
    return {"chdir": bool(config.hydra.job.chdir), "output_subdir": config.hydra.output_subdir, "env": env}


JOB_KEYS = ("id", "num", "override_dirname")
MARKER = re.compile(r"'?@@mora:(\w+)@@'?")


def _marker(key: str) -> str:
    return f"@@mora:{key}@@"


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


PLAIN_ITEM = re.compile(r"\+{0,2}[A-Za-z_][A-Za-z0-9_.]*=[A-Za-z0-9_.+-]*")
"""An override line that YAML writes as it is (`++inputs.n=3`, `seed=-2.5e-05`): a job's own line, mostly."""
ITEMS_KEPT = 4096
"""Override lines whose `overrides.yaml` item is kept: a sweep's shared lines, and its jobs' own up to this many."""


def yaml_list(lines: Sequence[str], items: dict[str, str]) -> str:
    """The YAML of a list of strings, as `yaml.dump` writes it, each item's text kept in `items` for the next call.

    In a block list every item is written on its own, so the list is its items' texts one after another; the
    lines a sweep's jobs share are dumped once.
    """
    if not lines:
        return _yaml([])
    if len(items) > ITEMS_KEPT:
        items.clear()
    return "".join([items.get(line) or (f"- {line}\n" if PLAIN_ITEM.fullmatch(line) else
                                        items.setdefault(line, _yaml([line]))) for line in lines])


class _Text:
    """A YAML text with markers, split once at its markers: a job's text joins the pieces with its values as JSON."""

    def __init__(self, text: str):
        self.pieces = MARKER.split(text)
        """Literal text at even positions, a marker's key at odd ones."""

    def fill(self, values: dict[str, Any]) -> str:
        pieces = self.pieces[:]
        for i in range(1, len(pieces), 2):
            pieces[i] = json.dumps(values[pieces[i]], ensure_ascii=False, allow_nan=False)
        return "".join(pieces)


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


class JobLogs:
    """The job logging config, applied once per template; its log files then follow each job into its directory."""

    def __init__(self) -> None:
        self.template: DictConfig | None = None
        self.moving: list[tuple[logging.FileHandler, str]] = []

    def to(self, config: DictConfig, output_dir: str) -> None:
        if config is not self.template:
            self.template = config
            configure_log(config.hydra.job_logging, config.hydra.verbose)
            prefix = output_dir + os.sep
            self.moving = [(h, h.baseFilename[len(prefix):]) for h in _file_handlers()
                           if h.baseFilename.startswith(prefix)]
            return
        for handler, name in self.moving:
            path = os.path.join(output_dir, name)
            if handler.baseFilename != path:
                old = handler.setStream(open(path, handler.mode, encoding=handler.encoding))  # noqa: SIM115 (kept)
                if old is not None:
                    old.close()
                handler.baseFilename = path


def _file_handlers() -> list[logging.FileHandler]:
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    return [h for lg in loggers for h in lg.handlers if isinstance(h, logging.FileHandler)]


def run_bound_job(hydra_context: HydraContext, config: DictConfig, task: Callable[[Path], Any], files: JobFiles,
                  logs: JobLogs, job: JobValues) -> JobReturn:
    """Run `task(output_dir)` as Hydra's run_job runs a job, for a config bound to this job in place."""
    hydra = config.hydra
    sweep = hydra.sweep
    subdir = str(job.num) if files.subdir_is_num else str(sweep.subdir)
    output_dir = os.path.abspath(os.path.join(str(sweep.dir), subdir))
    runtime = hydra.runtime
    node = runtime._get_node("output_dir")
    if node is not None:  # set on the node: the same validated value, without opening the flags of the tree
        node._set_value(output_dir)
    else:
        with read_write(runtime), open_dict(runtime):
            runtime.output_dir = output_dir
    settings = files.settings(config)
    old_cwd = os.getcwd()
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    chdir = settings["chdir"]
    ret = JobReturn(overrides=list(job.overrides))
    try:
        if chdir:
            os.chdir(output_dir)
        ret.working_dir = os.getcwd()
        logs.to(config, output_dir)
        if settings["output_subdir"] is not None:
            files.write(config, job, output_dir, Path(output_dir) / str(settings["output_subdir"]))
        with env_override(settings["env"]):
            hydra_context.callbacks.on_job_start(config=config, task_function=task)
            try:
                ret.return_value = task(Path(output_dir))
                ret.status = JobStatus.COMPLETED
            except Exception as e:  # noqa: BLE001 (Hydra's contract: a failed job's exception is its return value)
                ret.return_value = e
                ret.status = JobStatus.FAILED
        ret.task_name = files.task_name
        for handler in _file_handlers():
            handler.flush()
        hydra_context.callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        if chdir:
            os.chdir(old_cwd)


__all__ = ["JobFiles", "JobLogs", "JobValues", "run_bound_job", "yaml_list"]
