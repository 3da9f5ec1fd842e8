"""`hydra/launcher=mora`: run a sweep of Mora graphs as one merged graph (see mora.engine.frontends.sweep).

`hydra/sweeper=mora` (Mora's default sweeper) is Hydra's basic sweeper whose check of each
batch composes a Mora job's config the cheap way (mora.engine.frontends.jobconfig: once per sweep, graph
inputs applied as data) and keeps it for the launcher, instead of composing every job in full
before the launcher composes it again. A sweep that raises (a failed job, Ctrl-C, a later batch
refused for its directories) still gets its index of the jobs that finished
(mora.engine.frontends.report.callback.index_on_error): Hydra calls the index's callback only when
a sweep returns. Any other sweeper (Optuna, ...) works unchanged: it hands batches to the launcher.

A sweep of any other Hydra app (a task function that is not Mora's) runs exactly as Hydra's
basic launcher runs it: the launcher hands it to that launcher, so Hydra's whole launcher
contract holds for it. Hydra imports every plugin at every start-up, so this module imports
nothing heavy: the engine is imported when a Mora sweep is launched. Hydra executes this module
without registering it in sys.modules, so it must not use `from __future__ import annotations`
(dataclasses would look its string annotations up there).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class MoraLauncherConf:
    _target_: str = "hydra_plugins.mora_launcher.mora_launcher.MoraLauncher"


@dataclass
class MoraSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.mora_launcher.mora_launcher.MoraSweeper"


ConfigStore.instance().store(group="hydra/launcher", name="mora", node=MoraLauncherConf, provider="mora")
ConfigStore.instance().store(group="hydra/sweeper", name="mora", node=MoraSweeperConf, provider="mora")

MORA_TASK_MODULE = "mora.engine.frontends.cli"
"""Task functions defined in this module run Mora graphs; any other is a plain Hydra job."""


class MoraLauncher(Launcher):
    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        if getattr(self.task_function, "__module__", None) != MORA_TASK_MODULE:
            return self._basic().launch(job_overrides, initial_job_idx)
        from mora.engine.frontends.sweep import launch

        return launch(self.hydra_context, self.config, job_overrides, initial_job_idx)

    def _basic(self) -> Launcher:
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        basic = BasicLauncher()
        basic.setup(hydra_context=self.hydra_context, task_function=self.task_function, config=self.config)
        return basic


class MoraSweeper(Sweeper):
    """Hydra's basic sweeper; a Mora job's config is checked through the sweep's one composition.

    It wraps a BasicSweeper rather than subclassing it: Hydra's plugin scan executes the basic
    sweeper's module again, so a subclass made at import time may derive from a stale class.
    """

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.params = params
        self.basic: Sweeper | None = None
        self.config: DictConfig | None = None
        self.loader: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        self.config = config
        self.loader = hydra_context.config_loader
        self.basic = BasicSweeper(self.max_batch_size, self.params)
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if getattr(task_function, "__module__", None) == MORA_TASK_MODULE:
            from mora.engine.frontends.jobconfig import composer
            from mora.engine.frontends.preflight import checking_batches

            compose = composer(hydra_context.config_loader, config)
            self.basic.validate_batch_is_legal = checking_batches(compose, config)  # type: ignore

    def sweep(self, arguments: list[str]) -> Any:
        assert self.basic is not None and self.config is not None
        from mora.engine.frontends.preflight import JobDirTaken, refuse_sweep_size
        from mora.engine.frontends.report.callback import index_on_error

        refuse_sweep_size(self.loader, [*self.basic._parse_config(), *arguments])  # type: ignore[attr-defined]
        with index_on_error(self.config):
            try:
                return self.basic.sweep(arguments)
            except JobDirTaken as e:
                if e.earlier_jobs:  # earlier batches' jobs finished: the index shows them as the refusal goes on
                    raise
                refused = e
        raise refused  # the first batch: nothing of this sweep ran, and the sweep directory stays as it was


__all__ = ["MoraLauncher", "MoraLauncherConf", "MoraSweeper", "MoraSweeperConf"]
