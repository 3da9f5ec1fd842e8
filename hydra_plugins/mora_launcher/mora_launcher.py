"""`hydra/launcher=mora`: run a sweep of Mora graphs as one merged graph (see mora.engine.sweep).

A sweep of any other Hydra app (a task function that is not Mora's) runs exactly as Hydra's
basic launcher runs it: the launcher hands it to that launcher, so Hydra's whole launcher
contract holds for it. Hydra imports every plugin at every start-up, so this module imports
nothing heavy: the engine is imported when a Mora sweep is launched. Hydra executes this module
without registering it in sys.modules, so it must not use `from __future__ import annotations`
(dataclasses would look its string annotations up there).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class MoraLauncherConf:
    _target_: str = "hydra_plugins.mora_launcher.mora_launcher.MoraLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="mora", node=MoraLauncherConf, provider="mora")

MORA_TASK_MODULE = "mora.engine.cli"
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
        from mora.engine.sweep import launch

        return launch(self.hydra_context, self.config, job_overrides, initial_job_idx)

    def _basic(self) -> Launcher:
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        basic = BasicLauncher()
        basic.setup(hydra_context=self.hydra_context, task_function=self.task_function, config=self.config)
        return basic


__all__ = ["MoraLauncher", "MoraLauncherConf"]
