"""One composition of the config for a single run, where Hydra 1.3's `@hydra.main` makes two.

Hydra composes the whole config once to read `hydra.mode` (`Hydra.get_mode`, in multirun mode
with sweep overrides unchecked) and then again to run it: about a quarter of a fully cached run.
Policy: for a command line of overrides only (no flag: not `-m`, `--cfg`, `-cd`, ...), the mode
is read from the run's own composition (run mode, sweep overrides checked, as `Hydra.run` makes
it), and `Hydra.run` is handed that same config instead of composing again. Where Hydra's run
would add `hydra.mode=RUN` to the overrides (the config names no mode), the override is applied
to the kept config as Hydra's loader applies it (the value set, the line recorded among the
hydra overrides), so the run's config and `.hydra` files are the same as Hydra's own. Anything
else (a flag, a composition that fails, a config whose mode is MULTIRUN) goes Hydra's own way.
The run's composition is kept by content (`mora.engine.frontends.config_cache`): a run whose
config files and overrides did not change reads it back instead of composing.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from hydra._internal.hydra import Hydra
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from mora.engine.frontends.config_cache import composed

RUN_MODE_OVERRIDE = "hydra.mode=RUN"
"""What Hydra's `_run_app` appends to the overrides of a run whose config names no mode."""


class _Kept:
    """The config composed to read the mode, handed to the next matching composition, once."""

    def __init__(self, loader: Any, config_name: str | None, overrides: list[str], cfg: DictConfig):
        self.loader, self.config_name, self.overrides, self.cfg = loader, config_name, list(overrides), cfg
        self.compose = loader.load_configuration

    def load_configuration(self, config_name: str | None, overrides: list[str], run_mode: RunMode,
                           from_shell: bool = True, validate_sweep_overrides: bool = True) -> DictConfig:
        del self.loader.load_configuration  # one use: later compositions are Hydra's own
        n = len(self.overrides)
        extra = overrides[n:]
        if (config_name, overrides[:n], run_mode, from_shell, validate_sweep_overrides) != \
                (self.config_name, self.overrides, RunMode.RUN, True, True) or extra not in ([], [RUN_MODE_OVERRIDE]):
            return self.compose(config_name=config_name, overrides=overrides, run_mode=run_mode,
                                from_shell=from_shell, validate_sweep_overrides=validate_sweep_overrides)
        if extra:
            with open_dict(self.cfg.hydra):
                self.cfg.hydra.mode = RunMode.RUN
                self.cfg.hydra.overrides.hydra.append(RUN_MODE_OVERRIDE)
        return self.cfg


def _get_mode_composing_once(self: Hydra, config_name: str | None, overrides: list[str]) -> Any:
    loader = self.config_loader
    try:
        cfg = composed(loader, config_name, overrides)
    except Exception:  # noqa: BLE001 (a sweep override, a missing choice: Hydra's own path reports it)
        return _HYDRA_GET_MODE(self, config_name, overrides)
    loader.load_configuration = _Kept(loader, config_name, overrides, cfg).load_configuration
    return cfg.hydra.mode


_HYDRA_GET_MODE = Hydra.get_mode


@contextlib.contextmanager
def composed_once(argv: list[str]) -> Iterator[None]:
    """Within this block, a `@hydra.main` app given only overrides (`argv`) composes its config once."""
    if any(arg.startswith("-") for arg in argv):
        yield
        return
    Hydra.get_mode = _get_mode_composing_once  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode = _HYDRA_GET_MODE  # type: ignore[method-assign]


__all__ = ["composed_once"]
