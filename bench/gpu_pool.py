"""Two-GPU benchmark (issue 18): sweeps on 1 and 2 pool workers, with a per-worker timeline and GPU utilisation.

Each run is the `mora` command as a user types it, a fresh process and an empty cache (models
built once beforehand, page cache warm), with `nvidia-smi` sampled every 100 ms meanwhile:

  sweep4   mora -m seed=0,1,2,3 model=random runtime=pool runtime.device=cuda runtime.devices=N hydra/launcher=mora
  connect  bench/graphs/connect_generated.yaml: two clips generated in one graph, then a transition and the join
  sweep8   the same sweep over seeds 0..7

for N = 1 and 2. Per run it writes the wall clock and, from the manifests, a timeline: when each
worker started and was ready (relative to the process start), each model load (prefetched or
not), each node, each worker's busy time and idle gaps, and the mean utilisation of each GPU
between the first node's start and the last node's end. A stage is skipped when the time left
under `--budget` is not enough for both its runs (the 8-seed runs come last for that reason).

    python bench/gpu_pool.py [--stages models,sweep4,connect,sweep8] [--budget 520]

Mora must be installed as a wheel (as on the GPU machine: `pip install --target DIR` of this
repository's wheel, DIR on PYTHONPATH): the runs start in a scratch directory, so that no source
tree shadows the installed `mora`, and an editable install's Hydra plugin is found only from the
source root.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("OUT", "/tmp/bench-out"))
WORK = Path(tempfile.gettempdir()) / "mora-bench"
MODELS = WORK / "models"
SWEEP = ["model=random", "runtime=pool", "runtime.device=cuda", "hydra/launcher=mora"]
CONNECT = ["model=random", "runtime=pool", "runtime.device=cuda",
           f"graph_file={HERE / 'graphs/connect_generated.yaml'}", "model.roles.connect.source=tiny", "model.roles.connect.name=wan_flf", "inputs.transition_width=512",
           "inputs.transition_height=288"]
RESULTS: dict[str, Any] = {}
START = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - START:5.0f}s] {msg}", flush=True)


class Sampler:
    """nvidia-smi utilisation and memory of every GPU, every 100 ms, while a run lasts."""

    def __init__(self, path: Path):
        self.path = path
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=timestamp,index,utilization.gpu,memory.used", "--format=csv,noheader,nounits",
             "-lms", "100"], stdout=open(path, "w"), stderr=subprocess.DEVNULL)  # noqa: SIM115 (open while sampling)

    def stop(self) -> list[tuple[float, int, int, int]]:
        self.proc.terminate()
        self.proc.wait()
        rows = []
        for line in self.path.read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 4 or not parts[1].isdigit():
                continue
            t = time.mktime(time.strptime(parts[0].split(".")[0], "%Y/%m/%d %H:%M:%S"))
            t += float("0." + parts[0].split(".")[1]) if "." in parts[0] else 0.0
            rows.append((t, int(parts[1]), int(parts[2]), int(parts[3])))
        return rows


def mora(args: list[str], name: str, cache: str) -> tuple[float, float, str]:
    env = {**os.environ, "MORA_CACHE_DIR": str(WORK / cache), "MORA_MODELS_DIR": str(MODELS), "PYTHONUNBUFFERED": "1"}
    flags = [a for a in args if a.startswith("-")]
    cmd = [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", *flags, "quiet=true",
           *[a for a in args if not a.startswith("-")]]
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=WORK)  # no source tree shadows `mora`
    seconds = time.perf_counter() - t0
    with open(OUT / "commands.log", "a") as f:
        f.write(f"\n### {name} ({seconds:.2f}s, rc={proc.returncode})\n$ {' '.join(cmd)}\n{proc.stdout[-2000:]}\n"
                f"{proc.stderr[-4000:]}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return started, seconds, proc.stdout


def manifests(path: Path) -> list[dict]:
    if (path / "manifest.json").exists():
        return [json.loads((path / "manifest.json").read_text())]
    return [json.loads((d / "manifest.json").read_text()) for d in sorted(path.iterdir())
            if d.is_dir() and d.name.isdigit()]


def epoch(value: float | str) -> float:
    """A manifest time as seconds since the epoch (manifest v2 writes ISO 8601, the worker log numbers)."""
    return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else value


def timeline(ms: list[dict], started: float, seconds: float, gpu: list[tuple[float, int, int, int]]) -> dict:
    """Everything relative to the process start: workers, loads, nodes, busy time, idle gaps, utilisation."""
    nodes = []
    for job, m in enumerate(ms):
        for node_id, n in m["nodes"].items():
            if n.get("shared_from") or n["started"] is None or n["status"] != "done" or n["cached"]:
                continue
            nodes.append({"job": job, "node": node_id, "worker": n["worker"], "seconds": round(n["seconds"], 2),
                          "start": round(epoch(n["started"]) - started, 2), "loads": n["model_loads"]})
    nodes.sort(key=lambda r: r["start"])
    workers = {}
    for w in ms[0].get("workers") or []:
        mine = [r for r in nodes if r["worker"] == w["worker"]]
        gaps, t = [], None
        for r in mine:
            if t is not None and r["start"] - t > 0.05:
                gaps.append([round(t, 2), round(r["start"] - t, 2)])
            t = r["start"] + r["seconds"]
        workers[w["worker"]] = {
            "device": w["device"], "started": round(epoch(w["started"]) - started, 2),
            "ready": round(epoch(w["ready"]) - started, 2) if w["ready"] else None,
            "loads": [{"model": x["model"], "kind": x["kind"], "start": round(epoch(x["started"]) - started, 2),
                       "seconds": x["seconds"], "prefetch": x["prefetch"]} for x in w["loads"]],
            "nodes": len(mine), "busy_s": round(sum(r["seconds"] for r in mine), 2),
            "first_node": mine[0]["start"] if mine else None, "last_end": round(t, 2) if t is not None else None,
            "idle_gaps": gaps,
        }
    first = min(r["start"] for r in nodes)
    last = max(r["start"] + r["seconds"] for r in nodes)
    util = {}
    for index in sorted({g[1] for g in gpu}):
        inside = [g[2] for g in gpu if g[1] == index and first <= g[0] - started <= last]
        util[f"gpu{index}"] = {"mean_util_pct": round(sum(inside) / len(inside), 1) if inside else None,
                               "samples": len(inside),
                               "max_mem_mib": max((g[3] for g in gpu if g[1] == index), default=None)}
    return {"process_s": round(seconds, 2), "first_node_s": round(first, 2), "last_node_end_s": round(last, 2),
            "after_last_node_s": round(seconds - last, 2), "run_s": ms[0]["seconds"],
            "model_loads": ms[0].get("sweep_model_loads", ms[0]["model_loads"]),
            "model_loads_by_worker": ms[0].get("model_loads_by_worker"), "workers": workers, "gpu": util,
            "nodes": nodes}


def measure(kind: str, devices: int, args: list[str]) -> dict:
    name = f"{kind}-n{devices}"
    where = WORK / name
    place = ["-m", f"hydra.sweep.dir={where}"] if "-m" in args else [f"hydra.run.dir={where}"]
    sampler = Sampler(OUT / f"smi-{name}.csv")
    try:
        started, seconds, _ = mora([*[a for a in args if a != "-m"], *place, f"runtime.devices={devices}"], name,
                                   f"cache-{name}")
    finally:
        gpu = sampler.stop()
    row = timeline(manifests(where), started, seconds, gpu)
    log(f"{name}: {seconds:.2f}s (first node at {row['first_node_s']}s, last ends {row['last_node_end_s']}s), "
        f"loads {row['model_loads_by_worker']}, util {row['gpu']}")
    return row


def stage_models() -> None:
    from mora.nodes.zoo import build

    t0 = time.perf_counter()
    jobs = [("random", "sd15"), ("random", "svd_xt"), ("tiny", "prompt_lm"), ("tiny", "wan_flf")]
    code = "import sys; from pathlib import Path; from mora.nodes.zoo import build; build(*sys.argv[1:3], Path(sys.argv[3]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, s, n, str(MODELS)], cwd=WORK) for s, n in jobs]
    if any(p.wait() for p in procs):
        raise RuntimeError("a model build failed")
    for source, name in jobs:
        subprocess.run(f"cat {build(source, name, MODELS)}/*/* > /dev/null 2>&1", shell=True)  # warm the page cache
    RESULTS["build_s"] = round(time.perf_counter() - t0, 1)
    log(f"models built in {RESULTS['build_s']}s (in parallel)")


def stage_pair(kind: str, args: list[str], need_s: float, budget: float) -> None:
    rows = RESULTS.setdefault(kind, {})
    left = budget - (time.monotonic() - START)
    if left < need_s:
        rows["skipped"] = f"{left:.0f}s left under the budget, about {need_s:.0f}s needed for 1 and 2 GPUs"
        log(f"{kind} skipped ({left:.0f}s left)")
        return
    for devices in (2, 1):
        rows[f"n{devices}"] = measure(kind, devices, args)
        (OUT / "gpu_pool.json").write_text(json.dumps(RESULTS, indent=1))
    if isinstance(rows.get("n1"), dict) and isinstance(rows.get("n2"), dict):
        rows["speedup_process"] = round(rows["n1"]["process_s"] / rows["n2"]["process_s"], 3)
        rows["speedup_run"] = round(rows["n1"]["run_s"] / rows["n2"]["run_s"], 3)


def twice(kind: str, default: float) -> float:
    """Twice what the 1- and 2-GPU runs of `kind` took: about what the same runs with twice the seeds need."""
    rows = RESULTS.get(kind, {})
    if isinstance(rows.get("n1"), dict) and isinstance(rows.get("n2"), dict):
        return 2 * (rows["n1"]["process_s"] + rows["n2"]["process_s"])
    return default


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", default="models,sweep4,connect,sweep8")
    ap.add_argument("--budget", type=float, default=520.0, help="seconds this script may take in all")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ["MORA_MODELS_DIR"] = str(MODELS)
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)
    RESULTS.update(gpus=smi.stdout.strip().splitlines(), cpus=os.cpu_count(),
                   date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    seeds4, seeds8 = "seed=0,1,2,3", "seed=0,1,2,3,4,5,6,7"
    stages = {
        "models": stage_models,
        "sweep4": lambda: stage_pair("sweep4", ["-m", seeds4, *SWEEP], 110, args.budget),
        "connect": lambda: stage_pair("connect", CONNECT, 80, args.budget),
        "sweep8": lambda: stage_pair("sweep8", ["-m", seeds8, *SWEEP], twice("sweep4", 200), args.budget),
    }
    for name in args.stages.split(","):
        log(f"stage {name}")
        try:
            stages[name]()
        except Exception as e:  # noqa: BLE001 (record it and go on: one failed stage must not cost the others' figures)
            RESULTS.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"[-3000:]
            log(f"stage {name} failed: {e}")
        (OUT / "gpu_pool.json").write_text(json.dumps(RESULTS, indent=1))
    for kind in ("sweep4", "connect", "sweep8"):
        rows = RESULTS.get(kind, {})
        cells = [f"n{d}: {rows[f'n{d}']['process_s']}s (run {rows[f'n{d}']['run_s']:.1f}s)"
                 if isinstance(rows.get(f"n{d}"), dict) else f"n{d}: {rows.get(f'n{d}')}" for d in (1, 2)]
        print(f"{kind}: {' | '.join(cells)} | speedup process {rows.get('speedup_process')} "
              f"run {rows.get('speedup_run')}")
    print("errors:", RESULTS.get("errors", {}))


if __name__ == "__main__":
    main()
