"""The run report: `report.html` in a run directory, from its manifest and output files.

It shows the run's outcome, every output inline (images, playable videos with an animated preview
for browsers that cannot play them, texts, numbers), the graph coloured by node status, the
timeline of nodes per device and worker, and a sortable table of nodes with agent, status,
seconds, device, model, seed, model loads, parameters and errors.
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
KIND_ORDER = ("video", "image", "text", "number", "data")
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


def write_run_report(run_dir: Path) -> Path:
    run = read_run(run_dir)
    shown = [ShownOutput(o.name, o.file, o.kind, o.value, Path(o.file).suffix.lower() in PLAYABLE)
             for o in sorted(run.outputs, key=lambda o: KIND_ORDER.index(o.kind))]
    previews = {o.name: video_preview(run, o) for o in run.outputs if o.kind == "video"}
    counts = Counter(n.status for n in run.nodes)
    ordered = {s: counts[s] for s in (*STATUSES, *sorted(set(counts) - set(STATUSES))) if counts[s]}
    in_sweep = (run_dir.parent / "multirun.yaml").is_file()  # Hydra writes it in every sweep directory
    html = render("run.html.j2", name=run_dir.name, run=run, outputs=shown, previews=previews, counts=ordered,
                  in_sweep=in_sweep,
                  graph_svg=graph_svg(run.nodes, run.edges), timeline_svg=timeline_svg(run.nodes))
    return write_atomic(run_dir / "report.html", html)
