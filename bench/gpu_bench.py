"""GPU benchmarks, all stages in one call on a lent GPU machine; figures go to $OUT/gpu_results.json.

Stages (each independent; a failure is recorded and the next stage runs):
  models   build the full-size random-weight architectures (SD 1.5, SVD-XT) once
  t2v      text_to_video through `mora` against bench/raw_text_to_video.py (same pipelines and
           settings), alternating, fresh caches; plus a fully cached `mora` rerun
  batch    a 16-seed SD 1.5 text-to-image sweep through the Mora launcher, batch_size 16 vs 1
  sweep    a 4-point text_to_video seed sweep: Hydra's basic launcher against the Mora launcher
           (batch_size 1 and 4)
  fast     the same sweep, Hydra's basic launcher against the Mora launcher with `speed=fast` (issue 14), each
           a fresh process and result cache (the compile caches under the models directory's parent persist,
           as they do for a user); `--launchers` picks which and in what order (e.g. one per GPU, in two
           processes): basic, fast, standing (the Mora launcher on standing workers started beforehand with
           `mora-admin workers start --dir /tmp/mora-bench/workers`), standing_basic (the basic launcher on them)

    python bench/gpu_bench.py [--stages models,t2v,batch,sweep] [--reps 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("OUT", "/tmp/bench-out"))
WORK = Path("/tmp/mora-bench")
MODELS = Path(os.environ.get("MORA_MODELS_DIR") or WORK / "models")
RESULTS: dict = {}
DEVICE = os.environ.get("MORA_BENCH_DEVICE", "cuda")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], name: str, env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=ROOT)
    seconds = time.perf_counter() - t0
    with open(OUT / "commands.log", "a") as f:
        f.write(f"\n### {name} ({seconds:.2f}s, rc={proc.returncode})\n$ {' '.join(cmd)}\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-6000:]}\n")
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def mora(args: list[str], name: str, cache: str) -> tuple[float, str]:
    env = {"MORA_CACHE_DIR": str(WORK / cache), "MORA_MODELS_DIR": str(MODELS)}
    flags = [a for a in args if a.startswith("-")]
    return run([sys.executable, "-P", "-c", "from mora.engine.frontends.cli import main; main()", *flags, "quiet=true",
                *[a for a in args if not a.startswith("-")]], name, env)


def manifest_of(stdout: str) -> dict:
    run_dir = next(line.split(": ", 2)[-1] for line in stdout.splitlines() if "run directory:" in line)
    return json.loads((Path(run_dir) / "manifest.json").read_text())


def sweep_manifests(sweep_dir: Path) -> list[dict]:
    return [json.loads((d / "manifest.json").read_text()) for d in sorted(sweep_dir.iterdir())
            if d.is_dir() and d.name.isdigit()]


def stage_models() -> None:
    from mora.nodes.zoo import build

    for source, name in (("random", "sd15"), ("random", "svd_xt"), ("tiny", "prompt_lm")):
        t0 = time.perf_counter()
        path = build(source, name, MODELS)
        RESULTS.setdefault("build_s", {})[name] = round(time.perf_counter() - t0, 1)
        subprocess.run(f"cat {path}/*/* > /dev/null 2>&1", shell=True)  # warm the page cache for both sides
        log(f"built {source}:{name} at {path}")


def stage_t2v(reps: int) -> None:
    from mora.nodes.zoo import build

    t2i, i2v = (build("random", name, MODELS) for name in ("sd15", "svd_xt"))
    rows = []
    for rep in range(reps):
        raw_s, raw_out = run([sys.executable, "bench/raw_text_to_video.py", "--t2i", str(t2i), "--i2v", str(i2v),
                              "--out", str(WORK / f"raw{rep}"), "--seed", str(rep)], f"raw t2v {rep}")
        eng_s, _ = mora(["model=random", "runtime=local", "runtime.device=cuda", f"seed={rep}",
                               f"hydra.run.dir={WORK / f'eng{rep}'}"], f"engine t2v {rep}", f"cache-t2v-{rep}")
        m = json.loads((WORK / f"eng{rep}" / "manifest.json").read_text())
        cached_s, _ = mora(["model=random", "runtime=local", "runtime.device=cuda", f"seed={rep}",
                            f"hydra.run.dir={WORK / f'eng{rep}-again'}"], f"engine t2v cached {rep}",
                           f"cache-t2v-{rep}")
        raw = json.loads(raw_out.strip().splitlines()[-1])
        nodes = {k: round(v["seconds"], 3) for k, v in m["nodes"].items()}
        rows.append({"rep": rep, "raw_process_s": round(raw_s, 2), "engine_process_s": round(eng_s, 2),
                     "engine_cached_process_s": round(cached_s, 2), "raw": raw, "engine_nodes_s": nodes,
                     "engine_run_s": m["seconds"], "engine_model_loads": m["model_loads"]})
        log(f"t2v rep {rep}: raw {raw_s:.2f}s engine {eng_s:.2f}s cached {cached_s:.2f}s")
    RESULTS["t2v"] = rows


def stage_batch() -> None:
    rows = {}
    for batch in (1, 16):
        sweep = WORK / f"batch{batch}"
        wall, _ = mora(["-m", f"graph_file={ROOT / 'bench/graphs/text_to_image.yaml'}", "seed=range(0,16)",
                        "model=random", "runtime=local", "runtime.device=cuda", f"runtime.batch_size={batch}",
                        "hydra/launcher=mora", f"hydra.sweep.dir={sweep}"], f"t2i sweep batch {batch}",
                       f"cache-batch-{batch}")
        ms = sweep_manifests(sweep)
        node_s = {n["key"]: n["seconds"] for m in ms for n in m["nodes"].values()}
        batches = {n["batch"] for m in ms for n in m["nodes"].values()}
        rows[batch] = {"process_s": round(wall, 2), "images": len(ms), "run_s": ms[0]["seconds"],
                       "distinct_batches": len(batches), "node_seconds_max": round(max(node_s.values()), 3),
                       "model_loads": ms[0]["sweep_model_loads"]}
        log(f"t2i batch {batch}: {wall:.2f}s process, run {ms[0]['seconds']:.2f}s")
    rows["throughput_ratio_run"] = round(rows[1]["run_s"] / rows[16]["run_s"], 2)
    RESULTS["batch"] = rows


def stage_sweep() -> None:
    rows = {}
    for name, launcher, batch in (("basic", "basic", 1), ("mora", "mora", 1), ("mora_batch4", "mora", 4)):
        sweep = WORK / f"sweep-{name}"
        wall, _ = mora(["-m", "seed=0,1,2,3", "model=random", "runtime=local", "runtime.device=cuda",
                        f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}", f"runtime.batch_size={batch}"],
                       f"t2v sweep {name}", f"cache-sweep-{name}")
        ms = sweep_manifests(sweep)
        nodes = {k: round(n["seconds"], 2) for m in ms for k, n in m["nodes"].items() if not n.get("shared_from")}
        rows[name] = {"process_s": round(wall, 2), "jobs": len(ms), "run_s": [m["seconds"] for m in ms],
                      "model_loads": ms[0].get("sweep_model_loads", sum(m["model_loads"] for m in ms)),
                      "node_seconds": nodes}
        log(f"t2v sweep {name}: {wall:.2f}s")
    for name in ("mora", "mora_batch4"):
        rows[f"basic_over_{name}"] = round(rows["basic"]["process_s"] / rows[name]["process_s"], 3)
    RESULTS["sweep"] = rows


STANDING = WORK / "workers"
FAST_SWEEP = {
    "basic": ["runtime=local", f"runtime.device={DEVICE}", "hydra/launcher=basic"],
    "fast": ["runtime=local", f"runtime.device={DEVICE}", "hydra/launcher=mora", "speed=fast"],
    # standing workers (`mora-admin workers start --dir $STANDING`, started by the caller): loaded and compiled
    # by earlier commands
    "standing": ["runtime=pool", f"runtime.attach={STANDING}", "hydra/launcher=mora", "speed=fast"],
    "standing_basic": ["runtime=pool", f"runtime.attach={STANDING}", "hydra/launcher=basic", "speed=fast"],
}


def stage_fast(launchers: str, extra: list[str], tag: str, model: str) -> None:
    rows = RESULTS.setdefault("fast_sweep", {})
    names = launchers.split(",")
    for i, name in enumerate(names):
        row = f"{name}{tag}" + (f"-{i}" if names.count(name) > 1 else "")
        fresh = f"{row}-{time.time_ns()}"
        sweep = WORK / f"sweep-{fresh}"
        wall, _ = mora(["-m", "seed=0,1,2,3", f"model={model}", *FAST_SWEEP[name], f"hydra.sweep.dir={sweep}",
                        *extra], f"t2v sweep {fresh}", f"cache-sweep-{fresh}")
        ms = sweep_manifests(sweep)
        nodes = {k: {"seconds": round(n["seconds"], 2), **{p: n["params"][p] for p in ("compile", "attention")
                                                            if p in n.get("params", {})}}
                 for i, m in enumerate(ms) for k, n in ((f"{i}/{k}", n) for k, n in m["nodes"].items())
                 if not n.get("shared_from")}
        rows[row] = {"process_s": round(wall, 2), "jobs": len(ms), "run_s": [m["seconds"] for m in ms],
                     "model_loads": ms[0].get("sweep_model_loads", sum(m["model_loads"] for m in ms)),
                     "nodes": nodes}
        log(f"t2v sweep {row}: {wall:.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", default="models,t2v,batch,sweep")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--launchers", default="basic,fast", help="fast: basic, fast or both, in this order")
    ap.add_argument("--tag", default="", help="fast: added to each row's name and to the JSON file's name")
    ap.add_argument("--model", default="random", help="fast: the model preset (tiny for a dry run on CPU)")
    ap.add_argument("--extra", default="", help="fast: more overrides for both commands, space-separated")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ["MORA_MODELS_DIR"] = str(MODELS)
    import torch

    RESULTS["device"] = torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE
    RESULTS["torch"] = torch.__version__
    RESULTS["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    stages = {"models": stage_models, "t2v": lambda: stage_t2v(args.reps), "batch": stage_batch,
              "sweep": stage_sweep, "fast": lambda: stage_fast(args.launchers, args.extra.split(), args.tag,
                                                                       args.model)}
    for name in args.stages.split(","):
        log(f"stage {name}")
        try:
            stages[name]()
        except Exception:  # noqa: BLE001
            RESULTS.setdefault("errors", {})[name] = traceback.format_exc()[-3000:]
            log(f"stage {name} failed")
        (OUT / f"gpu_results{'-' + args.launchers.replace(',', '-') if 'fast' in args.stages else ''}{args.tag}.json"
         ).write_text(json.dumps(RESULTS, indent=2))
    print(json.dumps({k: v for k, v in RESULTS.items() if k != "errors"}, indent=1))
    print("errors:", list(RESULTS.get("errors", {})))


if __name__ == "__main__":
    main()
