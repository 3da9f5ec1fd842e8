"""A run's deliverables: the graph's outputs as files in the run directory, and manifest.json.

The manifest says, for each node: its agent, cache key, whether it was a cache hit, wall time,
resolved parameters and seed, model, device, and the digests it produced; for each graph output
its file path relative to the run directory; and how many models were loaded. Output files are
written under the run directory only (output names are checked to be plain file names) and are
never deleted: a file of the same name is replaced atomically.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mora.engine import media
from mora.engine.plan import Plan
from mora.engine.scheduler import RunReport
from mora.engine.spec import NAME_RE
from mora.engine.store import Store

MANIFEST_VERSION = 1


def export_outputs(report: RunReport, store: Store, run_dir: Path, video_format: str = "mp4") -> dict[str, str]:
    """Write every produced graph output into `run_dir`; return name -> relative path."""
    written: dict[str, str] = {}
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, meta in report.outputs.items():
        if meta is None:
            continue
        if not NAME_RE.match(name):
            raise ValueError(f"output name {name!r} is not a plain file name")
        metas = meta if isinstance(meta, list) else [meta]
        for i, m in enumerate(metas):
            stem = run_dir / (name if len(metas) == 1 else f"{name}_{i}")
            tmp_dir = Path(tempfile.mkdtemp(dir=run_dir, prefix=".tmp-"))
            try:
                tmp = media.export(store.ref(m), tmp_dir / stem.name, video_format)
                final = stem.with_suffix(tmp.suffix)
                os.replace(tmp, final)
            finally:
                for leftover in tmp_dir.iterdir():
                    leftover.unlink()
                tmp_dir.rmdir()
            written[name if len(metas) == 1 else f"{name}_{i}"] = final.name
    return written


def manifest(plan: Plan, report: RunReport, files: dict[str, str], extra: dict[str, Any]) -> dict[str, Any]:
    nodes = {}
    for rec in report.records.values():
        nodes[rec.id] = {
            "agent": rec.agent,
            "status": rec.status,
            "key": rec.key,
            "cached": rec.cached,
            "seconds": round(rec.seconds, 6),
            "started": rec.started,
            "params": rec.params,
            "seed": rec.seed,
            "model": rec.model,
            "device": rec.device,
            "worker": rec.worker,
            "model_loads": rec.model_loads,
            "outputs": rec.outputs,
            "error": rec.error,
            "batch": rec.batch,
            "file": rec.file,
        }
    return {
        "mora_manifest": MANIFEST_VERSION,
        "graph": plan.file,
        "ok": not report.failed,
        "seconds": round(report.seconds, 6),
        "nodes": nodes,
        "outputs": files,
        "output_digests": report.outputs,
        "model_loads": report.model_loads,
        "edges": sorted([u, v] for u, v in plan.dag.edges),
        "failed": report.failed,
        "skipped": report.skipped,
        "cache_findings": report.findings,
        **extra,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file in the same directory, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
