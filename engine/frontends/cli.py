"""`mora`: the Hydra app. A thin `@hydra.main` that turns the composed config into a run.

Every failure goes through `mora.engine.frontends.guard` (one line, no traceback): invalid input or
configuration exits with status 2, a failed node with 1 after the other branches finished,
Ctrl-C with 130. Graph-input values on the command line are data (`mora.engine.frontends.overrides`), read
from the config unresolved. The configuration is validated (`mora.engine.frontends.config.validate`) before
the cache is opened. When the run ends, each output's path
(the main output first) and the run directory are printed on stdout; everything else is logged. With `objective=NAME` the
job returns that numeric graph output (for sweepers such as Optuna). A single run composes its
config once (`mora.engine.frontends.compose`).
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, open_dict

from mora.engine.errors import MoraError, NodesFailed
from mora.engine.frontends.compose import composed_once
from mora.engine.frontends.config import register, register_launcher
from mora.engine.frontends.guard import guarded, hydra_errors_raise
from mora.engine.frontends.help import complete_inputs
from mora.engine.frontends.help import register as register_help
from mora.engine.frontends.overrides import as_data
from mora.engine.frontends.preflight import Refused

register()
register_launcher()
register_help()


def run_from_config(cfg: DictConfig, run_dir: Path) -> float | None:
    """Run the configured graph; return the objective value (raises NodesFailed if a node failed)."""
    from mora.engine.frontends import api
    from mora.engine.frontends.job import job_from_config, objective_value
    from mora.engine.frontends.report import report_quietly

    job = job_from_config(cfg)
    outcome = api.run_job(job, run_dir)
    report_quietly(run_dir)  # before anything is printed: a reader that went away (`mora | head`) loses no file
    failed = outcome.report.failed
    try:
        api.summarize(outcome.report, run_dir, outcome.manifest["outputs"])
    except BrokenPipeError:  # the guard's quiet exit for a closed stdout, unless a failed node has more to say
        if not failed:
            raise
    if failed:
        raise NodesFailed(f"{len(failed)} node(s) failed: {', '.join(failed)}")
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

    from mora.engine.execution.progress import quiet_libraries, verbose

    quiet_libraries(verbose())
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with in_original_cwd():
        return run_from_config(cfg, run_dir)


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """A failed job's error reaches Mora's guard, which prints it as one line; Hydra's own line before it ("Error
    executing job with overrides: [...]", which repeats every override, a long prompt in full) is left out, and a
    sweep's job is named in the guard's line instead (`mora_job` on the error)."""
    from hydra.core.utils import JobReturn, JobStatus

    shown = JobReturn.return_value

    def value(self: JobReturn) -> Any:
        if self.status == JobStatus.FAILED:
            error = self._return_value
            job = _sweep_job(self)
            if job is not None:  # the guard's line says which job of a sweep failed, as Hydra's line did
                error.mora_job = job
            raise error
        return shown.fget(self)  # type: ignore[union-attr]

    JobReturn.return_value = property(value, shown.fset)  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        JobReturn.return_value = shown  # type: ignore[method-assign]


def _sweep_job(ret: Any) -> str | None:
    """`#N (overrides)` for a sweep's job (the overrides cut short), None for a single run."""
    from hydra.types import RunMode

    hydra_cfg = ret.hydra_cfg
    if hydra_cfg is None or hydra_cfg.hydra.mode != RunMode.MULTIRUN:
        return None
    overrides = " ".join(ret.overrides or ())
    return f"#{hydra_cfg.hydra.job.num} ({overrides if len(overrides) <= 200 else overrides[:200] + '...'})"


@contextlib.contextmanager
def _showing_cfg() -> Iterator[None]:
    """`--cfg` shows what the run uses: graph inputs unresolved (they are data), an unknown `--package` refused."""
    from hydra._internal.hydra import Hydra

    shown = Hydra.show_cfg
    Hydra.show_cfg = _show_cfg  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.show_cfg = shown  # type: ignore[method-assign]


def _show_cfg(self: Any, config_name: str | None, overrides: list[str], cfg_type: str, package: str | None,
              resolve: bool = False) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import Container, OmegaConf

    from mora.engine.frontends.job import INPUT_KEYS

    cfg = self.compose_config(config_name=config_name, overrides=overrides, run_mode=RunMode.RUN,
                              with_log_configuration=False)
    HydraConfig.instance().set_config(cfg)
    OmegaConf.set_readonly(cfg.hydra, None)
    cfg = self.get_sanitized_cfg(cfg, cfg_type)
    package = None if package == "_global_" else package
    if resolve:  # as the run reads it: every value resolved but the graph inputs, which are never lookups (and
        # stay in place: other values, such as the help's, may read them)
        with open_dict(cfg):
            for key in [k for k in cfg if k not in INPUT_KEYS]:
                node = cfg._get_node(key)
                if isinstance(node, Container):
                    OmegaConf.resolve(node)
                else:
                    cfg[key] = cfg[key]
    shown = cfg if package is None else OmegaConf.select(cfg, package, default=None)
    if shown is None:
        raise MoraError(f"package '{package}' not found in the {cfg_type} config (--package names a key, "
                        "such as runtime or inputs)")
    if not isinstance(shown, Container):
        print(shown)
        return
    if package is not None:
        print(f"# @package {package}")
    sys.stdout.write(OmegaConf.to_yaml(shown))


def main() -> None:
    """Console-script entry point: graph inputs made literal, then Hydra, all under Mora's one error guard."""
    hydra_errors_raise()
    sys.exit(guarded("mora", lambda: _command(sys.argv[1:])))


def _command(argv: list[str]) -> int | None:
    completion = complete_inputs(argv, os.environ.get("COMP_LINE"))
    if completion is not None:
        print(completion)
        return 0
    sys.argv[1:] = as_data(argv)
    try:
        with composed_once(sys.argv[1:]), _showing_cfg(), _one_line_errors():
            return _main()
    except Refused as refused:  # a check before Hydra writes anything (mora.engine.frontends.preflight)
        raise refused.error from None
