"""The run report: `report.html` in a run directory, from its manifest and output files.

It shows the run's outcome, every output inline (images, playable videos with an animated preview
for browsers that cannot play them, texts, numbers), the graph coloured by node status, the
timeline of nodes per device and worker, and a sortable table of nodes with agent, status,
seconds, device, model, seed, model loads, parameters and errors. A sweep job's report links to
the sweep's index: in the nearest folder above the run that holds Hydra's `multirun.yaml`, however
deep the job's folder is (a subdir pattern such as `${hydra.job.num}/run` nests it).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mora.engine.frontends.report.drawing import graph_svg, timeline_svg
from mora.engine.frontends.report.page import render
from mora.engine.frontends.report.previews import video_previews
from mora.engine.frontends.report.views import STATUSES, OutputView, RunView, read_run
from mora.engine.rundir import write_atomic

log = logging.getLogger("mora.report")
PLAYABLE = (".mp4", ".webm", ".mov", ".mkv")
KIND_ORDER = ("video", "image", "text", "number", "data", "outside")
"""Pictures first, then texts, then the numbers side by side."""


@dataclass(frozen=True)
class ShownOutput:
    name: str
    file: str
    kind: str
    value: str | float | None
    playable: bool


def video_preview(run: RunView, output: OutputView) -> tuple[str | None, str | None]:
    """The animated preview and the poster (middle frame) of a video output; Nones when it cannot be read."""
    try:
        return video_previews(run.dir / output.file)
    except Exception as e:  # noqa: BLE001 (a damaged or vanished file leaves the report without that preview)
        log.warning("%s: no preview of %s: %s", run.dir, output.file, e)
        return None, None


def sweep_index_href(run_dir: Path) -> str | None:
    """The relative link from a job's folder to its sweep's index.html; None outside a sweep."""
    for up, folder in enumerate(run_dir.absolute().parents, start=1):
        if (folder / "multirun.yaml").is_file():  # Hydra writes it in every sweep directory before the jobs run
            return "../" * up + "index.html"
    return None


def write_run_report(run_dir: Path) -> Path:
    run = read_run(run_dir)
    shown = [ShownOutput(o.name, o.file, o.kind, o.value, Path(o.file).suffix.lower() in PLAYABLE)
             for o in sorted(run.outputs, key=lambda o: KIND_ORDER.index(o.kind))]
    previews = {o.name: video_preview(run, o) for o in run.outputs if o.kind == "video"}
    counts = Counter(n.status for n in run.nodes)
    ordered = {s: counts[s] for s in (*STATUSES, *sorted(set(counts) - set(STATUSES))) if counts[s]}
    html = render("run.html.j2", name=run_dir.name, run=run, outputs=shown, previews=previews, counts=ordered,
                  index_href=sweep_index_href(run_dir),
                  graph_svg=graph_svg(run.nodes, run.edges), timeline_svg=timeline_svg(run.nodes))
    return write_atomic(run_dir / "report.html", html)
