"""The Hydra callback that writes a sweep's index when a multirun ends, whatever its launcher and sweeper.

Registered in conf/config.yaml under `hydra.callbacks`; it imports nothing heavy until a sweep
ends. Job reports are written by each job itself (the CLI and the Mora launcher), so this only
adds `index.html` (and `contact_sheet.png`) in the sweep directory; a failure is a warning.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger("mora.report")


class SweepIndex(Callback):
    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            from mora.engine.frontends.report.sweep import job_dirs, write_sweep_index

            if sweep_dir.is_dir() and job_dirs(sweep_dir):
                index = write_sweep_index(sweep_dir)[0]
                print(f"mora: sweep index: {index}")
        except Exception as e:  # noqa: BLE001 (the jobs' results stand; only the index is missing)
            log.warning("could not write the sweep index in %s: %s: %s", sweep_dir, type(e).__name__, e)
