"""Reports you can look at: `report.html` per run, `index.html` and `contact_sheet.png` per sweep.

Policy. Reports are built only from what a run leaves on disk (`manifest.json` and the output
files beside it), never from the cache or the live process, so `mora-admin report DIR` rebuilds
them at any time and a report says exactly what its manifest says. Manifests are read by key,
defensively: a key that is missing (an older manifest) or reordered leaves a blank, never an
error. Pages are self-contained HTML: no network, no CDN, no external script, style or font.
Derived media (animated previews, thumbnails) are embedded as data URIs; the run's own images
and videos are referenced by relative path, so a run or sweep folder is moved or copied whole.
Files are written atomically. Writing a report never changes a run's outcome: the hooks at the
end of a run or a sweep log a warning if it fails. A sweep's job whose manifest cannot be read
is named in the index and the log; the other jobs are shown. Every file is read through
`report.files`: a FIFO, a device or a huge file in a run's folder never hangs a report nor exhausts
memory; it is shown as unreadable, or is the error that names it (a manifest, exit status 2).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from mora.engine.errors import MoraError
from mora.engine.frontends.report.run import write_run_report
from mora.engine.frontends.report.sweep import job_dirs, write_sweep_index

log = logging.getLogger("mora.report")


def rebuild(path: Path) -> list[Path]:
    """Rebuild the report of a run directory, or every job report and the index of a sweep directory."""
    if not path.is_dir():
        raise MoraError(f"{path}: not a directory; give a run directory (with manifest.json) or a sweep directory")
    if os.path.lexists(path / "manifest.json"):  # a run's, even if not a regular file: its reader names what it is
        return [write_run_report(path)]
    jobs = job_dirs(path)
    if not jobs:
        raise MoraError(f"{path}: neither a run directory (no manifest.json) nor a sweep directory (no job "
                        "folders with a manifest.json)")
    written = []
    for job in jobs:
        try:
            written.append(write_run_report(job))
        except MoraError as e:  # its manifest is unreadable: the index names it, the other jobs are rebuilt
            log.warning("%s", e)
    return [*written, *write_sweep_index(path)]


def report_quietly(run_dir: Path) -> Path | None:
    """The end-of-run hook: write report.html, and only warn if that fails (the run's results stand)."""
    try:
        return write_run_report(run_dir)
    except Exception as e:  # noqa: BLE001 (a report must never fail a run whose results are already safe)
        log.warning("could not write %s: %s: %s", run_dir / "report.html", type(e).__name__, e)
        return None


__all__ = ["rebuild", "report_quietly", "write_run_report", "write_sweep_index"]
