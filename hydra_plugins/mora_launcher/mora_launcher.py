"""`hydra/launcher=mora`: run a whole sweep as one merged graph (see mora.engine.sweep).

Hydra imports every plugin at every start-up, so this module imports nothing heavy: the
engine is imported when a sweep is launched.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class MoraLauncherConf:
    _target_: str = "hydra_plugins.mora_launcher.mora_launcher.MoraLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="mora", node=MoraLauncherConf, provider="mora")


class MoraLauncher(Launcher):
    def __init__(self) -> None:
        self.config: Any = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        from mora.engine.sweep import launch

        return launch(self, job_overrides, initial_job_idx)
