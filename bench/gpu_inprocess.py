"""Steady-state GPU figures, measured inside one process after imports and a warm-up.

Process-level timings (bench/gpu_bench.py) include Python imports and CUDA start-up that the
raw script pays before its clock starts; here both sides run in one process with torch,
diffusers and transformers imported and one discarded warm-up run each, so the comparison is
of what happens per run: model loading from disk, generation, artifact storage, output files.

  t2v    text_to_video through the engine (api.run, in-process executor, fresh cache, models
         evicted first so they load as in the raw script) against bench/raw_text_to_video.py's
         generate(), alternating, `--reps` times
  batch  16 seeds of SD 1.5 text-to-image at 512x512, 25 steps: the merged sweep run with
         batch_size 16 against batch_size 1, models resident, fresh caches
  profile  one engine text_to_video run under cProfile (top functions to $OUT/profile.txt)

    OUT=... python bench/gpu_inprocess.py --reps 3
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import diffusers  # noqa: F401 - imported before timing, as the raw script does
import torch
import transformers  # noqa: F401
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_text_to_video import generate

from mora.engine.cache.store import Store
from mora.engine.execution.executors.inprocess import InProcessExecutor
from mora.engine.execution.progress import Reporter
from mora.engine.execution.scheduler import run_plan
from mora.engine.frontends.api import graph_path, load_plan, run
from mora.engine.graph.merge import merge_plans
from mora.nodes.models import clear_resident, models_dir
from mora.nodes.zoo import build

ROOT = Path(__file__).resolve().parent.parent
WORK = Path("/tmp/mora-inproc")
OUT = Path(os.environ.get("OUT", "/tmp/bench-out"))
OUTPUTS = ["video", "keyframe"]
"""What the raw script makes; the graph's metrics (the `evaluate` block) have no counterpart there, so they are pruned."""
PRESET = yaml.safe_load((ROOT / "conf/model/random.yaml").read_text())


def sync_time(fn):  # type: ignore[no-untyped-def]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def engine_t2v(tag: str, seed: int) -> tuple[float, dict]:
    clear_resident()
    plan = load_plan(graph_path("text_to_video", None), {"seed": seed}, OUTPUTS, defaults=PRESET["inputs"])
    fresh = f"{tag}-{time.time_ns()}"  # a new cache and run directory every time: nothing is a hit
    store = Store(WORK / f"cache-{fresh}")
    outcome, seconds = sync_time(lambda: run(plan, store=store, preset=PRESET, run_dir=WORK / f"run-{fresh}",
                                             runtime={}, quiet=True, executor=InProcessExecutor("cuda")))
    assert not any(n["cached"] for n in outcome.manifest["nodes"].values()), "a fresh cache had a hit"
    return seconds, {k: round(v["seconds"], 3) for k, v in outcome.manifest["nodes"].items()}


def raw_t2v(tag: str, seed: int) -> tuple[float, dict]:
    t2i, i2v = (build("random", name, models_dir()) for name in ("sd15", "svd_xt"))
    timings, seconds = sync_time(lambda: generate(str(t2i), str(i2v), WORK / f"raw-{tag}-{time.time_ns()}", seed))
    return seconds, {k: round(v, 3) for k, v in timings.items()}


def stage_t2v(reps: int) -> dict:
    engine_t2v("warm", 99)
    raw_t2v("warm", 99)
    rows = []
    for rep in range(reps):
        raw_s, raw_detail = raw_t2v(f"r{rep}", rep)
        eng_s, eng_detail = engine_t2v(f"e{rep}", rep)
        rows.append({"raw_s": round(raw_s, 3), "engine_s": round(eng_s, 3), "ratio": round(eng_s / raw_s, 4),
                     "raw": raw_detail, "engine_nodes": eng_detail})
        print(json.dumps(rows[-1]), flush=True)
    return {"runs": rows, "median_ratio": round(statistics.median(r["ratio"] for r in rows), 4)}


def stage_batch() -> dict:
    graph = ROOT / "bench/graphs/text_to_image.yaml"
    plans = [load_plan(graph, {"seed": s}) for s in range(16)]
    merged = merge_plans(plans).plan
    warm = load_plan(graph, {"seed": 1000})
    run_plan(warm, Store(WORK / "cache-bwarm"), InProcessExecutor("cuda"), PRESET, Reporter(1, quiet=True))
    rows = {}
    for batch in (1, 16, 1, 16):
        store = Store(WORK / f"cache-b{batch}-{time.time_ns()}")
        report, seconds = sync_time(lambda store=store, batch=batch: run_plan(
            merged, store, InProcessExecutor("cuda"), PRESET, Reporter(16, quiet=True), batch_size=batch))
        assert not report.failed, report.failed
        rows.setdefault(batch, []).append(round(seconds, 3))
        print(json.dumps({"batch": batch, "seconds": round(seconds, 3)}), flush=True)
    best = {b: min(v) for b, v in rows.items()}
    return {"seconds": rows, "images_per_s": {b: round(16 / s, 2) for b, s in best.items()},
            "throughput_ratio": round(best[1] / best[16], 2)}


def stage_profile() -> dict:
    engine_t2v("pwarm", 98)
    profiler = cProfile.Profile()
    profiler.enable()
    seconds, nodes = engine_t2v("prof", 97)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(40)
    (OUT / "profile.txt").write_text(text.getvalue())
    return {"seconds": round(seconds, 3), "engine_nodes": nodes}


STAGES = {"t2v": lambda args: stage_t2v(args.reps), "batch": lambda args: stage_batch(),
          "profile": lambda args: stage_profile()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--stages", default="batch,t2v")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for stage in args.stages.split(","):
        results[stage] = STAGES[stage](args)
        (OUT / "gpu_inprocess.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
