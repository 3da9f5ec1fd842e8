"""What a report shows, read from a run directory: frozen views over manifest.json and the output files.

Every manifest field is read by key with a default, so older manifests and reordered or added
fields never break a report. A node's status is one of computed, cached, shared (computed for
another job of the same sweep), failed, skipped, or whatever other word the manifest holds.
An output's kind comes from its file: PNG an image, MP4 or a frame store a video, `.txt` a text,
`.json` a number; anything else is listed as data. Every file is opened through `report.files`: an
output that is not a regular file, or too large for what it is, is listed as unreadable, with why;
such a manifest is an error naming it. A view is kept for the process per manifest file (inode,
size, modification time), so a sweep's index does not read again what each job's report has just
read; a rewritten manifest (a new file renamed over it) is read anew.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mora.engine.errors import InputError, MoraError
from mora.engine.frontends.report.files import MANIFEST_BYTES, NUMBER_BYTES, check, read_head, read_text, reason

log = logging.getLogger("mora.report")
STATUSES = ("computed", "cached", "shared", "failed", "skipped")
TEXT_LIMIT = 4000
TEXT_HEAD_BYTES = 4 * TEXT_LIMIT + 4
"""Enough UTF-8 for `TEXT_LIMIT` characters and one more, which says that the text goes on."""
SAFETENSORS_HEADER_BYTES = 100_000_000
"""The format's own bound on its JSON header."""
RUNS_KEPT = 4096
"""Run views kept in memory, the most recently read: a sweep of up to this many jobs reads each manifest once."""


@dataclass(frozen=True)
class NodeView:
    id: str
    agent: str
    status: str
    seconds: float | None
    started: float | None
    device: str
    worker: str
    model: str
    seed: int | None
    params: dict[str, Any]
    loads: tuple[str, ...]
    error: str
    batch: str
    shared_from: str


@dataclass(frozen=True)
class OutputView:
    name: str
    file: str
    """Path relative to the run directory."""
    kind: str
    """image, video, text, number, data, or outside (placed outside the run folder: not linked)."""
    value: str | float | None = None
    """The text or number itself."""


@dataclass(frozen=True)
class RunView:
    dir: Path
    ok: bool | None
    graph: str
    seconds: float | None
    nodes: tuple[NodeView, ...]
    edges: tuple[tuple[str, str], ...]
    outputs: tuple[OutputView, ...]
    model_loads: int | None
    inputs: dict[str, Any]

    def output(self, name: str) -> OutputView | None:
        return next((o for o in self.outputs if o.name == name), None)

    def numbers(self) -> dict[str, float]:
        return {o.name: float(o.value) for o in self.outputs if o.kind == "number" and isinstance(o.value, float)}

    def main_video(self) -> OutputView | None:
        """The output named `video`, else the first video."""
        videos = [o for o in self.outputs if o.kind == "video"]
        return next((o for o in videos if o.name == "video"), videos[0] if videos else None)

    def keyframe(self) -> OutputView | None:
        """The output named `keyframe`, else the first image."""
        images = [o for o in self.outputs if o.kind == "image"]
        return next((o for o in images if o.name == "keyframe"), images[0] if images else None)


def load_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest: a regular file of JSON within `MANIFEST_BYTES`, else an `InputError` naming it."""
    path = run_dir / "manifest.json"
    text = read_text(path, "manifest", MANIFEST_BYTES)
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise MoraError(f"{path}: not a readable manifest ({e})") from None
    if not isinstance(data, dict):
        raise MoraError(f"{path}: not a manifest (a JSON object was expected)")
    return data


def read_run(run_dir: Path) -> RunView:
    """The run's view, kept for the process per manifest file (its inode, size and time): a sweep's index reads
    the runs whose reports were just written from them (the views are read-only)."""
    try:
        found = (run_dir / "manifest.json").stat()
    except OSError:
        return _read_run(run_dir)  # its error, as load_manifest says it
    return _read_kept(run_dir, found.st_ino, found.st_size, found.st_mtime_ns)


@functools.lru_cache(maxsize=RUNS_KEPT)
def _read_kept(run_dir: Path, inode: int, size: int, mtime_ns: int) -> RunView:
    return _read_run(run_dir)


def _read_run(run_dir: Path) -> RunView:
    data = load_manifest(run_dir)
    raw_nodes = data.get("nodes") if isinstance(data.get("nodes"), dict) else {}
    nodes = tuple(_node(node_id, rec if isinstance(rec, dict) else {}) for node_id, rec in raw_nodes.items())
    edges = tuple((str(e[0]), str(e[1])) for e in data.get("edges") or ()
                  if isinstance(e, (list, tuple)) and len(e) == 2)
    files = data.get("outputs") if isinstance(data.get("outputs"), dict) else {}
    outputs = tuple(_output(run_dir, str(name), str(file)) for name, file in files.items() if isinstance(file, str))
    inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
    loads = data.get("model_loads")
    return RunView(run_dir, data.get("ok") if isinstance(data.get("ok"), bool) else None, str(data.get("graph") or ""),
                   _float(data.get("seconds")), nodes, edges, outputs, loads if isinstance(loads, int) else None,
                   inputs)


def _node(node_id: str, rec: dict[str, Any]) -> NodeView:
    raw = str(rec.get("status") or "")
    if raw in ("failed", "skipped"):
        status = raw
    elif rec.get("shared_from"):
        status = "shared"
    elif rec.get("cached"):
        status = "cached"
    elif raw == "done":
        status = "computed"
    else:
        status = raw or "unknown"
    model = rec.get("model") if isinstance(rec.get("model"), dict) else None
    model_text = ""
    if model:
        model_text = f"{model.get('source', '?')}:{model.get('name', '?')}"
        model_text += f"@{model['revision']}" if model.get("revision") else ""
        model_text += f" ({model['dtype']})" if model.get("dtype") else ""
    loads = rec.get("model_loads") if isinstance(rec.get("model_loads"), list) else []
    seed = rec.get("seed")
    return NodeView(str(node_id), str(rec.get("agent") or "?"), status, _float(rec.get("seconds")),
                    _time(rec.get("started")), str(rec.get("device") or ""), str(rec.get("worker") or ""), model_text,
                    seed if isinstance(seed, int) else None,
                    rec.get("params") if isinstance(rec.get("params"), dict) else {}, tuple(str(x) for x in loads),
                    str(rec.get("error") or ""), str(rec.get("batch") or ""), str(rec.get("shared_from") or ""))


def _output(run_dir: Path, name: str, file: str) -> OutputView:
    """An output's view; a file that is not a regular file, or too large for what it is, is shown as unreadable, and
    one the manifest places outside the run folder (`/etc/passwd`, `../x.txt`: a run writes its outputs inside it) is
    neither read nor linked."""
    path = run_dir / file
    if not _inside(run_dir, path):
        log.warning("%s: output %r lies outside the run folder (the manifest's path, or a link on it); not shown",
                    run_dir, file)
        return OutputView(name, file, "outside", "unreadable: outside the run folder")
    try:
        return _read_output(path, name, file)
    except InputError as e:
        log.warning("%s", e)
        return OutputView(name, file, "data", f"unreadable: {reason(e, path)}")
    except (ValueError, RecursionError):  # not JSON, or nested past what the parser follows
        return OutputView(name, file, "data", "unreadable")


def _inside(run_dir: Path, path: Path) -> bool:
    """Whether `path`, every link on it followed, lies inside `run_dir` (Mora writes outputs there as plain files)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(run_dir))


def _read_output(path: Path, name: str, file: str) -> OutputView:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        text = read_head(path, "output", TEXT_HEAD_BYTES).decode("utf-8", errors="replace")
        return OutputView(name, file, "text", text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…")
    if suffix == ".json":
        value = json.loads(read_text(path, "output", NUMBER_BYTES))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return OutputView(name, file, "number", float(value))
        return OutputView(name, file, "text", json.dumps(value)[:TEXT_LIMIT])
    if suffix == ".safetensors":
        return OutputView(name, file, "video" if _is_frame_store(path) else "data")
    check(path, "output")
    if suffix == ".png":
        return OutputView(name, file, "image")
    if suffix in (".mp4", ".webm", ".mov", ".mkv"):
        return OutputView(name, file, "video")
    return OutputView(name, file, "data")


def _is_frame_store(path: Path) -> bool:
    """Whether a safetensors file holds a tensor named `frames`: its header alone is read."""
    head = read_head(path, "output", 8)
    size = int.from_bytes(head, "little") if len(head) == 8 else 0
    if not 2 <= size <= SAFETENSORS_HEADER_BYTES:
        return False
    try:
        header = json.loads(read_head(path, "output", 8 + size)[8:])
    except ValueError:
        return False
    return isinstance(header, dict) and "frames" in header


def _time(value: Any) -> float | None:
    """Seconds since the epoch, from a number or an ISO 8601 string (either may be in a manifest)."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return _float(value)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
