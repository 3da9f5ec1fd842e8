"""The sweep index: `index.html` and `contact_sheet.png` in a sweep directory, from its jobs' folders.

A job is a folder with a `manifest.json` (a regular file) at any depth under the sweep directory (a
subdir pattern may nest them: `${hydra.job.num}/run`, or an override value with a `/` in it);
the search does not go into a job's folder nor follow a symbolic link, so it never leaves the sweep
directory. A job is named by its path relative to the sweep directory, and every link to it is
URL-encoded segment by segment (a folder named from overrides may hold `#`, `?` or `%`). A folder
that cannot be listed, or a job whose manifest cannot be read, is named in the index and the
log, never silently left out. Its swept values come from Hydra's record of its
overrides (`.hydra/overrides.yaml`), its objective from its config (`objective`) and the
sweeper's direction from the sweep's `multirun.yaml` (Optuna's default, minimise, when unsaid).
These records are read through `report.files`: one that is there but is not a regular file, or is
too large, is named in the index and the log as not read, and the job is shown without it.
The overrides that differ between jobs are the axes: the first gives the rows, the second the
columns, any further ones split the grid into facets, one grid per combination. A sweep whose
values do not form a grid (Optuna samples every trial anew) is shown as cards instead. Every
cell holds the job's keyframe, its video and its numbers, and links to its run report. Below
the grid a table lists every job, sortable by any override or numeric output, sorted by the
objective where there is one, whose column and best job are highlighted. `contact_sheet.png`
has one row per job: its overrides, then the first, middle and last frames of its video; a sweep
in which no job made a video (texts, numbers) gets no sheet, which would be a list of labels.
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mora.engine.errors import InputError, MoraError
from mora.engine.frontends.report.files import RECORD_BYTES, read_text, reason
from mora.engine.frontends.report.page import href, render
from mora.engine.frontends.report.previews import (
    image_uri,
    key_frames,
    poster_uri,
    preview_uri,
    read_video,
    write_contact_sheet,
)
from mora.engine.frontends.report.views import RunView, read_run
from mora.engine.rundir import write_atomic

log = logging.getLogger("mora.report")
MAX_GRID_CELLS_PER_JOB = 2
"""A grid with more empty cells than this many per job becomes cards (random samples are not a grid)."""


@dataclass(frozen=True)
class Job:
    name: str
    """The job folder's path relative to the sweep directory, `/`-separated."""
    run: RunView
    overrides: dict[str, str]
    objective: str | None
    objective_value: float | None
    video: str | None
    """Relative to the sweep directory; None when the browser cannot play it (a frame store) or there is none."""
    preview: str | None
    poster: str | None
    keyframe: str | None
    """A relative path or a data URI."""
    frames: Any
    """First, middle and last frames of the main video, for the contact sheet."""
    unread: tuple[Unreadable, ...] = ()
    """The job's records of Hydra that are there but could not be read: the job is shown without them."""


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: a sweep of thousands of jobs reads three files a job."""
OVERRIDES, CONFIG, MULTIRUN = ".hydra/overrides.yaml", ".hydra/config.yaml", "multirun.yaml"
"""Hydra's records: a job's overrides and config, and the sweep's own config."""


@dataclass(frozen=True)
class Unreadable:
    """A folder or file under the sweep directory that could not be read, and why."""

    name: str
    why: str


@dataclass(frozen=True)
class Found:
    jobs: tuple[Path, ...]
    unreadable: tuple[Unreadable, ...]


def find_jobs(sweep_dir: Path) -> Found:
    """Job folders at any depth (not inside another job, no symbolic link followed) and folders that cannot be listed."""
    jobs: list[Path] = []
    unreadable: list[Unreadable] = []
    pending = [sweep_dir]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                subfolders = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError as e:
            unreadable.append(Unreadable(_relative(folder, sweep_dir), f"cannot be listed: {e.strerror or e}"))
            continue
        for sub in subfolders:
            (jobs if _holds_manifest(sub) else pending).append(sub)
    jobs.sort(key=lambda p: [(0, int(part), "") if part.isdigit() else (1, 0, part)
                             for part in p.relative_to(sweep_dir).parts])
    return Found(tuple(jobs), tuple(sorted(unreadable, key=lambda u: u.name)))


def _holds_manifest(folder: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(folder / "manifest.json").st_mode)
    except OSError:
        return False


def _relative(path: Path, sweep_dir: Path) -> str:
    return path.relative_to(sweep_dir).as_posix()


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders at any depth under the sweep directory, numbered ones in numeric order (see find_jobs)."""
    return list(find_jobs(sweep_dir).jobs)


def _record(folder: Path, file: str, name: str, unread: list[Unreadable]) -> str | None:
    """Hydra's record `file` in `folder`, or None: where there is none (a blank, as for any missing key), or where it
    cannot be read (a blank too, named in `unread` as `name`, so the job is still shown)."""
    path = folder / file
    if not path.exists():
        return None
    try:
        return read_text(path, Path(file).stem, RECORD_BYTES)
    except InputError as e:
        unread.append(Unreadable(name, reason(e, path)))
        return None


def _overrides(text: str | None) -> dict[str, str]:
    """The job's swept values, from its overrides.yaml."""
    try:
        items = yaml.load(text or "", Loader=_LOADER) or []
    except yaml.YAMLError:
        return {}
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        key, sep, value = str(item).partition("=")
        if sep:
            out[key.lstrip("+~")] = value
    return out


OBJECTIVE_LINE = re.compile(r"^objective:[^\n]*$(?!\n[ \t])", re.MULTILINE)
"""The top-level `objective` key of a job's config.yaml on one line (block style, as Hydra and Mora write it)."""


def _objective(text: str | None) -> str | None:
    """The job's `objective`: its line of config.yaml read alone (a whole config is about 1 ms of YAML), else all of it."""
    if text is None:
        return None
    try:
        line = OBJECTIVE_LINE.search(text)
        cfg = _line_yaml(line[0]) if line else None
        if not isinstance(cfg, dict):
            cfg = yaml.load(text, Loader=_LOADER) or {}
    except yaml.YAMLError:
        return None
    value = cfg.get("objective") if isinstance(cfg, dict) else None
    return str(value) if value else None


@functools.lru_cache(maxsize=64)
def _line_yaml(line: str) -> Any:
    """A one-line YAML mapping, or None where it is not one (a value that continues on the next lines).

    Kept: the jobs of a sweep mostly share their `objective` line, read once.
    """
    try:
        return yaml.load(line, Loader=_LOADER)
    except yaml.YAMLError:
        return None


def _direction(text: str | None) -> str:
    """The sweeper's direction, from the sweep's multirun.yaml; Optuna's default, minimise, where unsaid."""
    try:
        cfg = yaml.load(text or "", Loader=_LOADER) or {}
        direction = cfg["hydra"]["sweeper"].get("direction", "minimize")
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        return "minimize"
    if isinstance(direction, list):
        direction = direction[0] if direction else "minimize"
    return "maximize" if str(direction).lower().startswith("max") else "minimize"


def _job(job_dir: Path, name: str) -> Job:
    run = read_run(job_dir)
    unread: list[Unreadable] = []
    overrides = _overrides(_record(job_dir, OVERRIDES, f"{name}/{OVERRIDES}", unread))
    objective = _objective(_record(job_dir, CONFIG, f"{name}/{CONFIG}", unread))
    numbers = run.numbers()
    video = run.main_video()
    frames = preview = poster = None
    if video is not None:
        try:
            decoded = read_video(job_dir / video.file)
            frames, preview = key_frames(decoded), preview_uri(decoded, count=16, side=192)
            poster = poster_uri(decoded, 192)
        except Exception as e:  # noqa: BLE001 (a damaged video leaves its cell without pictures)
            log.warning("%s: cannot read %s: %s", job_dir, video.file, e)
    key = run.keyframe()
    if key is not None:
        keyframe: str | None = href(f"{name}/{key.file}")
    elif frames:
        from PIL import Image

        keyframe = image_uri(Image.fromarray(frames[1]), 192)
    else:
        keyframe = None
    playable = video is not None and not video.file.endswith(".safetensors")
    return Job(name, run, overrides, objective, numbers.get(objective) if objective else None,
               href(f"{name}/{video.file}") if playable and video else None, preview, poster, keyframe, frames,
               tuple(unread))


def _sort_values(values: list[str]) -> list[str]:
    def key(v: str) -> tuple[int, float, str]:
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)

    return sorted(set(values), key=key)


def layout(jobs: list[Job]) -> dict[str, Any]:
    """Axes, facets and cells: {'axes', 'rows', 'cols', 'facets': [(title, {(row, col): [job, ...]})]} or cards."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
    axes = [k for k in keys if len({j.overrides.get(k, "") for j in jobs}) > 1]
    row_axis = axes[0] if axes else None
    col_axis = axes[1] if len(axes) > 1 else None
    rows = _sort_values([j.overrides.get(row_axis, "") for j in jobs]) if row_axis else [""]
    cols = _sort_values([j.overrides.get(col_axis, "") for j in jobs]) if col_axis else [""]
    facet_axes = axes[2:]
    facet_values = list(itertools.product(*[_sort_values([j.overrides.get(k, "") for j in jobs]) for k in facet_axes]))
    cells_total = len(rows) * len(cols) * max(1, len(facet_values))
    grid = bool(axes) and cells_total <= max(4, MAX_GRID_CELLS_PER_JOB * len(jobs))
    facets = []
    for values in facet_values:
        members = [j for j in jobs if all(j.overrides.get(k, "") == v for k, v in zip(facet_axes, values))]
        if not members:
            continue
        cells: dict[tuple[str, str], list[Job]] = {}
        for j in members:
            cell = (j.overrides.get(row_axis, "") if row_axis else "",
                    j.overrides.get(col_axis, "") if col_axis else "")
            cells.setdefault(cell, []).append(j)
        title = ", ".join(f"{k}={v}" for k, v in zip(facet_axes, values))
        facets.append((title, cells))
    return {"axes": axes, "row_axis": row_axis, "col_axis": col_axis, "rows": rows, "cols": cols, "facets": facets,
            "grid": grid}


def write_sweep_index(sweep_dir: Path) -> list[Path]:
    """Write index.html, and contact_sheet.png where a job made a video; return the files written."""
    found = find_jobs(sweep_dir)
    jobs: list[Job] = []
    unreadable = list(found.unreadable)
    for job_dir in found.jobs:
        name = _relative(job_dir, sweep_dir)
        try:
            jobs.append(_job(job_dir, name))
        except Exception as e:  # noqa: BLE001 (one damaged job is named in the index; the others are still shown)
            unreadable.append(Unreadable(name, f"{type(e).__name__}: {e}" if not isinstance(e, MoraError) else str(e)))
    for u in unreadable:
        log.warning("%s: not in the sweep index: %s", sweep_dir / u.name, u.why)
    unread: list[Unreadable] = []
    direction = _direction(_record(sweep_dir, MULTIRUN, MULTIRUN, unread))
    unread += [u for j in jobs for u in j.unread]
    for u in unread:
        log.warning("%s: not read: %s", sweep_dir / u.name, u.why)
    objective = next((j.objective for j in jobs if j.objective), None)
    scored = [j for j in jobs if j.objective_value is not None]
    best = None
    if scored:
        pick = max if direction == "maximize" else min
        best = pick(scored, key=lambda j: j.objective_value).name  # type: ignore[arg-type,return-value]
    numbers = list(dict.fromkeys(k for j in jobs for k in j.run.numbers()))
    grid = layout(jobs)
    sheet = any(j.frames for j in jobs)
    html = render("index.html.j2", name=sweep_dir.name, jobs=jobs, grid=grid, numbers=numbers, objective=objective,
                  direction=direction, best=best, axes=grid["axes"], sheet=sheet, unreadable=unreadable, unread=unread)
    written = [write_atomic(sweep_dir / "index.html", html)]
    if sheet:
        rows = [(f"#{j.name} " + " ".join(f"{k}={j.overrides.get(k, '')}" for k in grid["axes"]), j.frames)
                for j in jobs]
        written.append(write_contact_sheet(rows, sweep_dir / "contact_sheet.png"))
    return written

