"""What a run or sweep is refused for before Hydra writes anything: a sweep too large or empty, a taken directory.

Policy (the promises: nothing hangs, nothing is lost, bad input is one line and status 2 before anything runs):

- A sweep's size is the product of its sweep overrides' lengths, counted from the parsed overrides (a
  `range` by exact arithmetic, never expanded). More than `MAX_JOBS` jobs, none (`seed=range(0,-5)`), or a range
  without end (`range(0,inf)`, `nan`) is refused naming the override, before the sweeper expands anything
  (`hydra/sweeper=mora`, the default).
- A run directory (`hydra.run.dir`, or a sweep job's `hydra.sweep.dir/hydra.sweep.subdir`) may be used
  when it is new, empty, or this same job's own run that stopped before writing its manifest (its
  `.hydra/overrides.yaml` lists the same overrides, so "run the same command again" works); anything
  else (another run's or job's files, or files that are not a Mora run's) is refused, untouched
  (mora.engine.rundir.refuse_taken). `Preflight`, a Hydra callback (conf/config.yaml), checks a single run's
  directory in `on_run_start`, before Hydra's `run_job` writes `.hydra/`, and a sweep directory in
  `on_multirun_start`, before the sweeper writes `multirun.yaml`: one that holds another sweep's
  `multirun.yaml` or files that are not a sweep's is refused. A sweep's job directories are checked a batch
  at a time before any job of the batch runs (`refuse_taken_jobs`): two jobs sharing one directory
  (`hydra.sweep.subdir=same`) or a taken one stop the sweep; the jobs of earlier batches, which
  finished, are indexed on the way out (`JobDirTaken.earlier_jobs`, hydra_plugins/mora_launcher).
- `hydra.output_subdir`, where Hydra writes its records (`config.yaml`, `hydra.yaml`, `overrides.yaml`), must be a
  folder inside the run directory: an absolute path or one that climbs out (`..`) would overwrite files that no
  check above looked at, so it is refused, for a run and for every job of a sweep (`_subdir`).
- Any failure while checking refuses the run (`_refusing`): Hydra's callback runner would turn it into a warning
  and go on into an unchecked folder. Bad input (an unresolvable `${...}` in `hydra.run.dir`) is then reported
  as the one line any other bad input gets.
- With Optuna's sweeper, a missing `objective`, fewer than one trial or process, or a direction other than
  minimize/maximize is refused in `on_multirun_start` (`refuse_optuna_settings`), before any trial runs.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.types import ChoiceSweep, Override, RangeSweep
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mora.engine.errors import MoraError
from mora.engine.rundir import refuse_taken, refuse_taken_sweep

MAX_JOBS = 100_000
"""The most jobs one sweep may have (a merged 10,000-job sweep takes about 20 s and 170 MiB: bench/README.md)."""


def _length(override: Override) -> int:
    """The number of values a sweep override has, exactly: a range's by rational arithmetic on its bounds as written
    (a float's exact value, as Hydra's Decimal range takes it), however large, never by `len(range)` (which stops at
    `sys.maxsize`) or expanding it. A range that never ends (`inf`) or has no order (`nan`) is refused."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    if isinstance(value, RangeSweep):
        assert value.start is not None and value.stop is not None
        bounds = (value.start, value.stop, value.step)
        if not all(isinstance(v, int) or math.isfinite(v) for v in bounds):
            raise MoraError(f"the sweep override '{_short(_line(override))}' has a bound or step that is not a finite "
                            "number (inf, nan): such a range has no end to count to; give finite numbers")
        start, stop, step = (Fraction(v) for v in bounds)
        return max(0, math.ceil((stop - start) / step)) if step else 0
    return sum(1 for _ in override.sweep_string_iterator())  # a glob over a group's options: a few names


def _line(override: Override) -> str:
    return override.input_line or override.key_or_group


def refuse_sweep_size(loader: Any, lines: Sequence[str]) -> int:
    """The number of jobs the basic sweeper would make of these override lines (its params first); refused if
    it is over `MAX_JOBS` or zero."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return refuse_size(OverridesParser.create(config_loader=loader).parse_overrides(list(lines)))


def refuse_size(overrides: Sequence[Override], limit: int = MAX_JOBS) -> int:
    """The number of jobs these sweep overrides make (a later override of a key replaces an earlier one)."""
    lengths: dict[str, tuple[int, str]] = {}
    for override in overrides:
        if override.is_sweep_override() and override.is_discrete_sweep():
            lengths[override.get_key_element()] = (_length(override), _line(override))
        else:
            lengths.pop(override.get_key_element(), None)
    size = 1
    for count, line in lengths.values():
        if count == 0:
            raise MoraError(f"the sweep override '{_short(line)}' has no values: the sweep would run no job")
        size *= count
        if size > limit:
            most, largest = max(lengths.values())
            raise MoraError(f"the sweep has more than {limit:,} jobs (the limit; '{_short(largest)}' alone has "
                            f"{_count(most)} values): split it into smaller sweeps")
    return size


def _count(number: int) -> str:
    """`number` with thousands separators, or as a power of ten when that would run past a line (`range(0,1,1e-300)`
    has a 301-digit count; Python would refuse to print one of over 4,300 digits at all)."""
    if number < 10**15:
        return f"{number:,}"
    power = int(math.log10(number))  # a float's estimate, corrected exactly below
    while 10**power > number:
        power -= 1
    while 10 ** (power + 1) <= number:
        power += 1
    return f"10**{power}" if number == 10**power else f"more than 10**{power}"


def _short(line: str) -> str:
    return line if len(line) <= 80 else f"{line[:60]}...({len(line):,} characters)"


class Refused(BaseException):
    """An error raised in a callback, carried past Hydra's callback runner (which turns an Exception into a
    warning and goes on) to `mora`'s entry point, which raises the error itself."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


class Preflight(Callback):
    """Refuses a taken run or sweep directory, and Optuna settings that cannot work, before Hydra writes anything."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with _refusing():
            run_dir = Path(str(config.hydra.run.dir)).absolute()
            with _refusing(run_dir):
                refuse_taken(run_dir, _task(config), _subdir(config))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with _refusing():
            sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
            with _refusing(sweep_dir):
                refuse_optuna_settings(config)
                _subdir(config)  # the jobs' own values are checked with their directories (refuse_taken_jobs)
                refuse_taken_sweep(sweep_dir, _task(config))


@contextlib.contextmanager
def _refusing(folder: Path | None = None) -> Iterator[None]:
    """Carry any failure past Hydra's callback runner, which would turn an Exception into a warning and go on into
    an unchecked folder: a folder that cannot be read (too long a name, no permission) is refused naming it, and
    anything else (a `${...}` that does not resolve) is reported as the error it is."""
    try:
        yield
    except Refused:
        raise
    except OSError as e:
        if folder is None:
            raise Refused(e) from None
        raise Refused(MoraError(f"cannot use {folder} as a run or sweep directory: {e.strerror or e}; choose another "
                                "(hydra.run.dir, hydra.sweep.dir)")) from None
    except Exception as e:  # noqa: BLE001 (every failure refuses: the checks must not be skipped)
        raise Refused(e) from None


OPTUNA_DIRECTIONS = ("minimize", "maximize")


def refuse_optuna_settings(config: DictConfig) -> None:
    """With Optuna's sweeper: an `objective` to optimise, at least one trial and one process, and a direction
    Optuna knows, or it would run every job and then fail (no objective, no trial) or stop with its own error."""
    sweeper = config.hydra.sweeper
    if "optuna" not in str(sweeper.get("_target_", "")).lower():
        return
    if config.get("objective") is None:
        raise MoraError("hydra/sweeper=optuna needs objective=OUTPUT: the graph's numeric output it optimises")
    for key in ("n_trials", "n_jobs"):
        value = sweeper.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MoraError(f"hydra.sweeper.{key} must be a whole number of at least 1, got {value!r}")
    direction = sweeper.get("direction")
    directions = list(direction) if OmegaConf.is_list(direction) else [direction]
    names = [str(getattr(d, "name", d)).lower() for d in directions]
    if len(names) != 1 or names[0] not in OPTUNA_DIRECTIONS:
        raise MoraError(f"hydra.sweeper.direction must be one of {list(OPTUNA_DIRECTIONS)} (Mora's objective is one "
                        f"number), got {direction!r}")


def _task(config: DictConfig) -> list[str]:
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    assert isinstance(task, list)
    return [str(line) for line in task]


def _subdir(config: DictConfig) -> str | None:
    """`hydra.output_subdir`, refused unless it names a folder inside the run directory (Hydra joins it to the run
    directory, so an absolute path or `..` would write Hydra's records over files no check has looked at)."""
    subdir = config.hydra.output_subdir
    if subdir is None:
        return None
    subdir = str(subdir)
    normal = os.path.normpath(subdir)
    if os.path.isabs(subdir) or normal == os.pardir or normal.startswith(os.pardir + os.sep):
        raise MoraError(f"hydra.output_subdir must be a folder inside the run directory (a relative path that does "
                        f"not climb out with '..'; the default is .hydra), got '{subdir}': Hydra would write its config files there, "
                        "over whatever is there; use a relative path or null (no records)")
    return subdir


MORA_LAUNCHER = "hydra_plugins.mora_launcher.mora_launcher.MoraLauncher"


class JobDirTaken(MoraError):
    """A batch of sweep jobs refused for its directories before any of them ran.

    `earlier_jobs` is how many jobs of the sweep's earlier batches ran before it: none means the sweep
    directory holds nothing of this sweep, and more means finished jobs that its index must show.
    """

    def __init__(self, message: str, earlier_jobs: int):
        super().__init__(message)
        self.earlier_jobs = earlier_jobs


def checking_batches(compose: Any, config: DictConfig) -> Callable[[Sequence[Sequence[str]]], None]:
    """The Mora sweeper's check of a batch: its jobs composed (kept for the launcher) and, where the launcher is
    not Mora's (which checks its batch itself, in mora.engine.frontends.sweep), their directories checked."""
    checks_itself = OmegaConf.select(config, "hydra.launcher._target_") == MORA_LAUNCHER
    launched = [0]

    def check(batch: Sequence[Sequence[str]]) -> None:
        compose.check(batch)
        if not checks_itself:
            refuse_taken_jobs(compose, [compose.checked[tuple(o)] for o in batch], launched[0])
        launched[0] += len(batch)

    return check


def refuse_taken_jobs(compose: Any, batch: Sequence[Any], initial_job_idx: int) -> None:
    """Refuse a batch of sweep jobs (`JobConfig`s of `compose`) if two share a directory or one's is taken."""
    hydra_before = HydraConfig.instance().cfg
    seen: dict[str, int] = {}
    try:
        for idx, job in enumerate(batch, start=initial_job_idx):
            cfg = compose.bind(job, idx)
            HydraConfig.instance().cfg = cfg  # so ${hydra:...} in the subdir resolves as it will in the job
            sweep = cfg.hydra.sweep
            subdir = str(idx) if OmegaConf.to_container(sweep, resolve=False)["subdir"] == "${hydra.job.num}" \
                else str(sweep.subdir)
            run_dir = os.path.abspath(os.path.join(str(sweep.dir), subdir))
            other = seen.setdefault(run_dir, idx)
            if other != idx:
                raise JobDirTaken(f"sweep jobs #{other} and #{idx} would share the run directory {run_dir}; "
                                  "make hydra.sweep.subdir tell jobs apart (the default is ${hydra.job.num})",
                                  initial_job_idx)
            try:
                refuse_taken(Path(run_dir), list(job.overrides), _subdir(cfg))
            except MoraError as e:
                raise JobDirTaken(str(e), initial_job_idx) from None
    finally:
        HydraConfig.instance().cfg = hydra_before


__all__ = ["MAX_JOBS", "JobDirTaken", "Preflight", "Refused", "checking_batches", "refuse_size", "refuse_sweep_size",
           "refuse_taken_jobs"]
