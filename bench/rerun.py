"""The README's main command twice on a fresh cache: how much faster is the fully cached rerun?

Runs `mora` (text_to_video on the tiny preset, as a user would) in a fresh process with an
empty cache, then the same command again, `--repeats` times, and reports wall-clock seconds of
each, its CPU seconds (user + system of the process, which a busy machine inflates far less than
wall time), the 1-minute load average when it ended, how many nodes each run found in the cache,
and how many models each loaded. The tiny models are built before the first timed run, so "cold"
is computing, not building. The last line has the medians of the fully cached runs.

    python bench/rerun.py --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def mora(run_dir: Path, env: dict[str, str]) -> tuple[float, float, dict]:
    """Run `mora` into `run_dir`; return its wall-clock and CPU seconds and its manifest."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "quiet=true",
                    f"hydra.run.dir={run_dir}"], env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu, json.loads((run_dir / "manifest.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "MORA_MODELS_DIR": str(work / "models")}
        mora(work / "build", {**env, "MORA_CACHE_DIR": str(work / "build-cache")})  # builds the tiny models
        for rep in range(args.repeats):
            env["MORA_CACHE_DIR"] = str(work / f"cache{rep}")
            row = {}
            for phase in ("cold", "cached"):
                seconds, cpu, manifest = mora(work / f"{phase}{rep}", env)
                nodes = manifest["nodes"].values()
                row[phase] = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                              "load": os.getloadavg()[0], "cached": sum(n["cached"] for n in nodes),
                              "nodes": len(nodes), "model_loads": manifest["model_loads"]}
            row["ratio"] = round(row["cold"]["seconds"] / row["cached"]["seconds"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    cached = [r["cached"] for r in rows]
    print(json.dumps({"median_ratio": statistics.median(r["ratio"] for r in rows),
                      "cached_median_seconds": statistics.median(c["seconds"] for c in cached),
                      "cached_median_cpu_seconds": statistics.median(c["cpu_seconds"] for c in cached),
                      "machine": platform.node(), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
