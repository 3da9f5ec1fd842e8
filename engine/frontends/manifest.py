"""A run's deliverables: the graph's outputs as files in the run directory, and manifest.json.

The manifest reads top-down: the status, the graph file and its input values, the versions of
Python and the libraries, when the run started and finished (ISO 8601, UTC) and how long it took,
the output files (relative to the run directory), then the run's details, and last each node in
execution order: its agent, status, whether it was a cache hit, start time and wall time, cache
key, resolved parameters and seed, model, device, and the digests it produced. Output files are
written under the run directory only (output names are checked to be plain file names) and are
never deleted: a file of the same name is replaced atomically. The manifest has the same file
mode as the other outputs.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mora.engine.cache import media
from mora.engine.cache.encoded import export_mp4
from mora.engine.cache.store import Store
from mora.engine.errors import MoraError
from mora.engine.execution.scheduler import RunReport
from mora.engine.graph.plan import Plan
from mora.engine.graph.spec import NAME_RE
from mora.engine.ports import PortType
from mora.engine.rundir import write_atomic

MANIFEST_VERSION = 2
"""2: keys in reading order, `status`, `inputs`, `versions`, ISO 8601 times."""
DISTRIBUTION = "mora-dag"
"""Mora's distribution name on the package index (pyproject.toml's `name`)."""
VERSIONED = ("torch", "diffusers", "transformers", "huggingface-hub", "hydra-core", "numpy")
"""Libraries whose versions the manifest records: those that change numerics, and the config system."""


class PyAVMissing(MoraError):
    """MP4 outputs asked for where PyAV (a declared dependency) is not installed: a broken install, status 1."""

    exit_status = 1


def pyav_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None


def check_exportable(plan: Plan, video_format: str) -> None:
    """Refuse before any node runs a plan whose video outputs could not be written as asked, rather than after all
    of its work (MP4 needs PyAV)."""
    if video_format != "mp4" or pyav_installed():
        return
    videos = [name for name, src in plan.outputs.items() if src.type.item == PortType.VIDEO]
    if videos:
        raise PyAVMissing(f"output(s) {', '.join(sorted(videos))} are videos, written as MP4 through PyAV, which is "
                          "not installed here: `pip install av`, or video_format=frames")


def export_outputs(report: RunReport, store: Store, run_dir: Path, video_format: str = "mp4") -> dict[str, str]:
    """Write every produced graph output into `run_dir`; return name -> relative path."""
    written: dict[str, str] = {}
    if not run_dir.is_dir():  # a stat: the launcher made it already, and a mkdir costs 0.4 ms on a slow disk
        run_dir.mkdir(parents=True, exist_ok=True)
    for name, meta in report.outputs.items():
        if meta is None:
            continue
        if not NAME_RE.match(name):
            raise ValueError(f"output name {name!r} is not a plain file name")
        metas = meta if isinstance(meta, list) else [meta]
        for i, m in enumerate(metas):
            stem = run_dir / (name if len(metas) == 1 else f"{name}_{i}")
            tmp_stem = run_dir / f".tmp-{uuid.uuid4().hex}-{stem.name}"  # a unique name beside it, renamed over it
            try:
                ref = store.ref(m)
                if ref.kind == PortType.VIDEO and video_format == "mp4":
                    tmp = export_mp4(store, ref, tmp_stem.with_suffix(".mp4"))
                else:
                    tmp = media.export(ref, tmp_stem, video_format)
                final = stem.with_suffix(tmp.suffix)
                os.replace(tmp, final)
            except BaseException:
                for leftover in run_dir.glob(f"{tmp_stem.name}.*"):
                    leftover.unlink()
                raise
            written[name if len(metas) == 1 else f"{name}_{i}"] = final.name
    return written


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


@functools.cache
def library_versions() -> dict[str, str | None]:
    """The versions of Python and of the libraries that shape a run's results (read from metadata, not imported)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for label, dist in {"mora": DISTRIBUTION, **{n: n for n in VERSIONED}}.items():
        try:
            versions[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[label] = None
    return versions


def manifest(plan: Plan, report: RunReport, files: dict[str, str], extra: dict[str, Any]) -> dict[str, Any]:
    """The manifest, top-down: status, graph, inputs, versions and times, then the run's details and its nodes.

    Nodes come in execution order (by start time; nodes that never started last, in plan order).
    """
    position = {node_id: i for i, node_id in enumerate(report.records)}
    records = sorted(report.records.values(), key=lambda r: (r.started is None, r.started or 0.0, position[r.id]))
    nodes = {}
    for rec in records:
        nodes[rec.id] = {
            "agent": rec.agent,
            "status": rec.status,
            "cached": rec.cached,
            "started": _iso(rec.started),
            "seconds": round(rec.seconds, 6),
            "key": rec.key,
            "params": rec.params,
            "seed": rec.seed,
            "model": rec.model,
            "device": rec.device,
            "worker": rec.worker,
            "model_loads": rec.model_loads,
            "outputs": rec.outputs,
            "error": rec.error,
            "batch": rec.batch,
            "shared_from": rec.shared_from,
            "file": rec.file,
        }
    return {
        "mora_manifest": MANIFEST_VERSION,
        "status": "failed" if report.failed else "ok",
        "ok": not report.failed,
        "graph": plan.file,
        "inputs": plan.inputs,
        "versions": dict(library_versions()),
        "started": _iso(report.started),
        "finished": _iso(time.time()),  # outputs written: the job is done (in a sweep, after the merged run)
        "seconds": round(report.seconds, 6),
        "outputs": files,
        "edges": sorted([u, v] for u, v in plan.edges),
        "failed": report.failed,
        "skipped": report.skipped,
        "model_loads": report.model_loads,
        "cache_findings": report.findings,
        **extra,
        "output_digests": report.outputs,
        "nodes": nodes,
    }


def deliver(plan: Plan, report: RunReport, store: Store, run_dir: Path, video_format: str,
            extra: dict[str, Any]) -> dict[str, Any]:
    """Export the outputs into `run_dir` and write its manifest.json; return the manifest."""
    try:
        files = export_outputs(report, store, run_dir, video_format)
    except OSError as e:
        raise export_error(run_dir, e) from None
    return record(plan, report, files, run_dir, extra)


def record(plan: Plan, report: RunReport, files: dict[str, str], run_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Write the manifest of outputs already exported as `files`; return it."""
    data = manifest(plan, report, files, extra)
    try:
        write_json(run_dir / "manifest.json", data)
    except OSError as e:
        raise export_error(run_dir, e) from None
    return data


def export_error(run_dir: Path, e: OSError) -> MoraError:
    """Disk full, read-only: every result is safe in the cache, only the export failed."""
    return MoraError(f"cannot write the outputs into the run directory {run_dir}: {e.strerror or e}. Every "
                     "node's result is in the cache: free space and run the same command again (all cache hits)")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically, in key order, with the umask's file mode (mora.engine.rundir.write_atomic)."""
    write_atomic(path, json.dumps(data, indent=2, default=str, ensure_ascii=False))  # one write, not thousands
