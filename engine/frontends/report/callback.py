"""The sweep's index, written when a multirun ends, whatever its launcher, its sweeper and its jobs' outcomes.

`SweepIndex` is the Hydra callback registered in conf/config.yaml under `hydra.callbacks`: Hydra
calls its `on_multirun_end` when a sweep returns. A sweep whose job failed does not return: the
sweeper raises the job's error, and Hydra skips `on_multirun_end`. So Mora's sweeper runs its
sweep inside `index_on_error`, which writes the index of the jobs that finished before the error
goes on (the exit status and message stay the failure's). Ctrl-C is such an error too: the jobs
that finished are indexed, and a second Ctrl-C skips the index, never printing a traceback.
Only a sweep whose config registers `SweepIndex` gets an index either way.

Job reports are written by each job itself (the CLI and the Mora launcher), so this only adds
`index.html` (and `contact_sheet.png`) in the sweep directory; failing to write them is a warning.
This module imports nothing heavy until a sweep ends.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

log = logging.getLogger("mora.report")
TARGET = f"{__name__}.SweepIndex"


def write_index(sweep_dir: Path, note: str | None = None) -> None:
    """Write the index where the sweep directory holds jobs (saying `note` first), and print its path.

    Failing to write it is a warning.
    """
    try:
        from mora.engine.frontends.report.sweep import job_dirs, write_sweep_index

        if sweep_dir.is_dir() and job_dirs(sweep_dir):
            if note:
                print(note, file=sys.stderr, flush=True)
            index = write_sweep_index(sweep_dir)[0]
            print(f"mora: sweep index: {index}", flush=True)
    except Exception as e:  # noqa: BLE001 (the jobs' results stand; only the index is missing)
        log.warning("could not write the sweep index in %s: %s: %s", sweep_dir, type(e).__name__, e)


class SweepIndex(Callback):
    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        write_index(Path(str(config.hydra.sweep.dir)))


def _registered(config: Any) -> bool:
    callbacks = OmegaConf.select(config, "hydra.callbacks", default=None) or {}
    return any(OmegaConf.select(c, "_target_", default=None) == TARGET for c in callbacks.values())


@contextlib.contextmanager
def index_on_error(config: Any) -> Iterator[None]:
    """Around a sweeper's sweep: if it raises (a failed job, Ctrl-C), index the finished jobs, then re-raise."""
    try:
        yield
    except BaseException as e:
        if not _registered(config):
            raise
        note = "\nmora: indexing the jobs that finished (Ctrl-C again skips it)" if isinstance(e, KeyboardInterrupt) else None
        try:
            write_index(Path(str(config.hydra.sweep.dir)), note)
        except KeyboardInterrupt:
            print("mora: sweep index skipped", file=sys.stderr, flush=True)
        raise
