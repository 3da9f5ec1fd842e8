"""The run directory belongs to one run: its file names never collide, and no run overwrites another.

Mora writes the graph's outputs into the run directory next to files of its own (`manifest.json`,
Hydra's `.hydra/` and `<job>.log`, the reports). Policy:

- A graph output may not be named like a file Mora writes (`RESERVED`, compared without case,
  since macOS and Windows file systems ignore it), and no two outputs may map to the same file:
  names are compared without case, and a list-typed output `x` also writes `x_0`, `x_1`, ...
- Files Mora writes there whole (the manifest, reports) are written atomically: a new file beside
  it, then renamed over it, with the umask's file mode like every output.
- The default run directory (conf/config.yaml) adds the process id to the time of day, so two runs
  started in the same second never share one; a run directory that already holds another run's
  manifest is refused before anything runs (pick another `hydra.run.dir`). A directory whose run
  failed before writing its manifest may be reused by the same job (its `.hydra/overrides.yaml` lists
  the same overrides), so "run the same command again" works. Any other non-empty directory (another
  job's records, a user's own files) is refused before Hydra writes into it, its files untouched
  (`refuse_taken`); a sweep directory likewise holds one sweep only (`refuse_taken_sweep`).
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mora.engine.errors import MoraError
from mora.engine.ports import PortType

MANIFEST = "manifest.json"
RESERVED = frozenset({"manifest", "mora", "report", "index", "contact_sheet"})
"""File stems Mora and Hydra write into a run or sweep directory (manifest.json, mora.log, report.html, ...)."""

_LIST_ITEM = re.compile(r"^(?P<stem>.+)_(?P<i>\d+)$")


def output_name_problems(outputs: Mapping[str, PortType]) -> dict[str, str]:
    """Output name -> why it cannot be a file of the run directory (reserved, or colliding with another)."""
    found: dict[str, str] = {}
    folded = {name.casefold(): name for name in outputs}
    for name in outputs:
        key = name.casefold()
        if key in RESERVED:
            found[name] = (f"output name '{name}' is reserved: Mora writes a file of that name into the run "
                           f"directory (reserved: {', '.join(sorted(RESERVED))})")
            continue
        same = [n for n in outputs if n != name and n.casefold() == key]
        if same:
            found[name] = f"outputs '{name}' and '{same[0]}' would be the same file on a case-insensitive disk"
            continue
        item = _LIST_ITEM.match(key)
        owner = folded.get(item["stem"]) if item else None
        if owner is not None and outputs[owner].is_list:
            found[name] = (f"output '{name}' collides with item {item['i']} of list output '{owner}' "  # type: ignore[index]
                           f"(written as {owner}_0, {owner}_1, ...)")
    return found


def refuse_used(run_dir: Path) -> None:
    """Raise if `run_dir` cannot hold this run: it is not a directory, or another run finished there."""
    if run_dir.exists() and not run_dir.is_dir():
        raise MoraError(f"the run directory {run_dir} is a file, not a directory; choose another hydra.run.dir")
    if os.path.lexists(run_dir / MANIFEST):
        raise MoraError(f"the run directory {run_dir} already holds another run ({MANIFEST}); its outputs are kept. "
                        "Choose another run directory (hydra.run.dir, or hydra.sweep.dir for a sweep; the defaults "
                        "add the time and process id)")


RECORD_BYTES = 64 << 20
"""The largest `.hydra/overrides.yaml` or `multirun.yaml` read to tell whose a directory is (a bigger one is not ours)."""
CHOOSE = "Choose a new or empty directory (hydra.run.dir, or hydra.sweep.dir for a sweep)"


def _recorded(path: Path) -> Any:
    """The YAML data of a record Mora or Hydra wrote (a regular file, bounded), or None where there is none."""
    import yaml

    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > RECORD_BYTES:
            return None
        return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None


def _is_empty(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is None


def refuse_taken(run_dir: Path, overrides: Sequence[str], hydra_subdir: str | None = ".hydra") -> None:
    """Raise unless `run_dir` is new, empty, this same job's own run that stopped before its manifest, or holds only
    the records of a run that made nothing (a refused input: the corrected command may use the folder)."""
    refuse_used(run_dir)
    if not run_dir.exists() or _is_empty(run_dir) or _only_records(run_dir, hydra_subdir):
        return
    recorded = None if hydra_subdir is None else _recorded(run_dir / hydra_subdir / "overrides.yaml")
    if recorded is None:
        raise MoraError(f"the run directory {run_dir} is not empty and is not a Mora run's (no "
                        f"{hydra_subdir or '.hydra'}/overrides.yaml); its files are kept. {CHOOSE}")
    if recorded != list(overrides):
        raise MoraError(f"the run directory {run_dir} holds another job's run (its {hydra_subdir}/overrides.yaml "
                        f"differs); its files are kept. {CHOOSE}")


def _only_records(run_dir: Path, hydra_subdir: str | None) -> bool:
    """Whether `run_dir` holds nothing but a refused or failed run's records (Hydra's folder and the log), which a
    corrected command may take over: no output of any run is in it."""
    return {p.name for p in run_dir.iterdir()} <= {hydra_subdir or ".hydra", "mora.log"}


def refuse_taken_sweep(sweep_dir: Path, overrides: Sequence[str]) -> None:
    """Raise unless `sweep_dir` is new, empty, or holds this same sweep (its `multirun.yaml` has these overrides)."""
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise MoraError(f"the sweep directory {sweep_dir} is a file, not a directory; choose another hydra.sweep.dir")
    if not sweep_dir.exists() or _is_empty(sweep_dir):
        return
    recorded = _recorded(sweep_dir / "multirun.yaml")
    task = recorded
    for key in ("hydra", "overrides", "task"):
        task = task.get(key) if isinstance(task, dict) else None
    if task is None:
        raise MoraError(f"the sweep directory {sweep_dir} is not empty and is not a Mora sweep's (no "
                        f"multirun.yaml); its files are kept. Choose a new or empty hydra.sweep.dir")
    if task != list(overrides):
        raise MoraError(f"the sweep directory {sweep_dir} holds another sweep (its multirun.yaml has other "
                        "overrides); its files are kept. Choose a new or empty hydra.sweep.dir")


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` into `path` atomically (a new file beside it, then rename); return `path`.

    The new file is made with `open(..., "x")`, not mkstemp, so it has the umask's mode as every other
    output has, not mkstemp's owner-only 0600 (and needs no chmod).
    """
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}{path.suffix}")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


__all__ = ["MANIFEST", "RESERVED", "output_name_problems", "refuse_taken", "refuse_taken_sweep", "refuse_used",
           "write_atomic"]
