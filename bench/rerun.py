"""The README's main command twice on a fresh cache: how much faster is the fully cached rerun?

Runs `mora quiet=true` (text_to_video on the tiny preset, as a user would, from one working
folder: each run makes its own `outputs/DATE/TIME-PID`, named on its last line) in a fresh
process with an empty cache, then the same command again, `--repeats` times, and reports wall-clock seconds of
each, its CPU seconds (user + system of the process, which a busy machine inflates far less than
wall time), the 1-minute load average when it ended, how many nodes each run found in the cache,
and how many models each loaded. The tiny models are built before the first timed run, so "cold"
is computing, not building. `--again N` runs the same command N times after each cold run (each
a fully cached run of its own). The last line has the medians and ranges of the fully cached runs.

    python bench/rerun.py --repeats 5
    python bench/rerun.py --repeats 2 --again 6     # 12 fully cached runs for 2 cold ones
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


def mora(work: Path, env: dict[str, str]) -> tuple[float, float, dict]:
    """Run `mora quiet=true` in `work`; return its wall-clock and CPU seconds and its manifest."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "quiet=true"],
                          env=env, cwd=work, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    run_dir = Path(done.stdout.splitlines()[-1].removeprefix("mora: run directory: "))
    return seconds, cpu, json.loads((run_dir / "manifest.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--again", type=int, default=1, help="fully cached runs after each cold run")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "MORA_MODELS_DIR": str(work / "models")}
        mora(work, {**env, "MORA_CACHE_DIR": str(work / "build-cache")})  # builds the tiny models
        for rep in range(args.repeats):
            env["MORA_CACHE_DIR"] = str(work / f"cache{rep}")
            row: dict = {"cached": []}
            for phase in ["cold"] + ["cached"] * args.again:
                seconds, cpu, manifest = mora(work, env)
                nodes = manifest["nodes"].values()
                run = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "load": os.getloadavg()[0],
                       "cached": sum(n["cached"] for n in nodes), "nodes": len(nodes),
                       "model_loads": manifest["model_loads"]}
                if phase == "cold":
                    row["cold"] = run
                else:
                    row["cached"].append(run)
            row["ratio"] = round(row["cold"]["seconds"] / statistics.median(c["seconds"] for c in row["cached"]), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    cached = [c for r in rows for c in r["cached"]]
    wall, cpu = [c["seconds"] for c in cached], [c["cpu_seconds"] for c in cached]
    print(json.dumps({"median_ratio": statistics.median(r["ratio"] for r in rows), "cached_runs": len(cached),
                      "cached_median_seconds": statistics.median(wall), "cached_range_seconds": [min(wall), max(wall)],
                      "cached_median_cpu_seconds": statistics.median(cpu), "cached_range_cpu_seconds": [min(cpu), max(cpu)],
                      "all_hits": all(c["cached"] == c["nodes"] and c["model_loads"] == 0 for c in cached),
                      "machine": platform.node(), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
