"""Sweep overhead per job: a sweep of a trivial 3-node text graph (bench/graphs/three_text.yaml).

`sweep` runs `mora -m ... inputs.n=range(0,N)` in a real process, cold (a fresh cache) then
fully cached (the same sweep again into a new sweep directory), and prints the wall time and the
time per job. The graph's nodes take microseconds, so what is measured is the sweep machinery:
composing job configs, planning, merging, scheduling, and each job's directory, .hydra files,
outputs, manifest, report and the sweep index.

`plan` composes N job configs (mora.engine.frontends.jobconfig, as the Mora launcher does), plans and merges
them in this process, and prints the time and the peak RSS.

    python bench/sweep_scale.py sweep --jobs 1000 --launcher mora
    python bench/sweep_scale.py sweep --jobs 100 --launcher basic --sweeper basic   # Hydra's own path
    python bench/sweep_scale.py plan --jobs 10000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRAPH = Path(__file__).parent / "graphs" / "three_text.yaml"


def sweep(jobs: int, launcher: str, sweeper: str, work: Path) -> dict[str, float]:
    def once(tag: str) -> float:
        argv = [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "-m", f"graph_file={GRAPH}",
                "prompt=fox", f"inputs.n=range(0,{jobs})", f"hydra/launcher={launcher}", f"hydra/sweeper={sweeper}",
                f"cache.dir={work / 'cache'}", f"hydra.sweep.dir={work / tag}", "quiet=true", "runtime=local",
                "runtime.device=cpu"]
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=work, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"sweep failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return seconds

    cold = once("cold")
    cached = once("cached")
    return {"jobs": jobs, "cold_s": round(cold, 2), "cached_s": round(cached, 2),
            "cold_ms_per_job": round(1000 * cold / jobs, 2), "cached_ms_per_job": round(1000 * cached / jobs, 2)}


def plan(jobs: int) -> dict[str, float]:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from mora.engine.frontends.config import register, register_launcher
    from mora.engine.frontends.job import configured
    from mora.engine.frontends.jobconfig import Composer
    from mora.engine.graph.merge import merge_plans

    register()
    register_launcher()
    start = time.perf_counter()
    with initialize_config_module("mora.conf", version_base="1.3"):
        master = compose("config", [f"graph_file={GRAPH}", "prompt=fox", "runtime=local"], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        composer = Composer(loader, master)
        base = [f"graph_file={GRAPH}", "prompt=fox", "runtime=local"]
        configs = [composer.job([*base, f"++inputs.n={i}"]) for i in range(jobs)]
        composed = time.perf_counter()
        settings = configured(composer.bind(configs[0], 0))
        plans = [settings.job(c.graph_inputs()).plan for c in configs]
        planned = time.perf_counter()
        merged = merge_plans(plans)
        end = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"jobs": jobs, "compose_s": round(composed - start, 2), "plan_s": round(planned - composed, 2),
            "merge_s": round(end - planned, 2), "total_s": round(end - start, 2),
            "merged_nodes": len(merged.plan.nodes), "peak_rss_mib": round(peak_mib)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["sweep", "plan"])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--launcher", default="mora", help="hydra/launcher: mora or basic")
    parser.add_argument("--sweeper", default="mora", help="hydra/sweeper: mora (Mora's default) or basic")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        result = sweep(args.jobs, args.launcher, args.sweeper, Path(tmp)) if args.mode == "sweep" else plan(args.jobs)
    print(json.dumps({"mode": args.mode, "launcher": args.launcher, "sweeper": args.sweeper, **result,
                      "load_before": [round(x, 2) for x in load], "cpus": os.cpu_count(),
                      "python": platform.python_version()}))


if __name__ == "__main__":
    main()
