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
  failed before writing its manifest may be reused, so "run the same command again" works.
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path

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


__all__ = ["MANIFEST", "RESERVED", "output_name_problems", "refuse_used", "write_atomic"]
