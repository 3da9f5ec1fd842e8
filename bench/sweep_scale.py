"""Sweep overhead per job: a sweep of a trivial 3-node text graph (bench/graphs/three_text.yaml).

`sweep` runs `mora -m ... inputs.n=range(0,N)` in a real process, cold (a fresh cache) then
fully cached (the same sweep again into a new sweep directory), and prints the wall time and the
time per job. The graph's nodes take microseconds, so what is measured is the sweep machinery:
composing job configs, planning, merging, scheduling, and each job's directory, .hydra files,
outputs, manifest, report and the sweep index.

`optuna` runs an Optuna study of N trials (`hydra/sweeper=optuna`, TPE, seed 0) of
bench/graphs/score.yaml, whose one node (bench/agents/bench_score.py, found through a real entry
point) scores two swept numbers in microseconds, and prints what the study cost beyond that work.

`plan` composes N job configs (mora.engine.frontends.jobconfig, as the Mora launcher does), plans and merges
them in this process, and prints the time and the peak RSS.

    python bench/sweep_scale.py sweep --jobs 1000 --launcher mora
    python bench/sweep_scale.py sweep --jobs 100 --launcher basic --sweeper basic   # Hydra's own path
    python bench/sweep_scale.py plan --jobs 10000
    python bench/sweep_scale.py optuna --jobs 200                                  # trials
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


def run_mora(args: list[str], cwd: Path) -> tuple[float, float]:
    """Run `mora ARGS` as a fresh process; its wall and CPU seconds (user + system, the process and its children)."""
    argv = [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"mora {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def sweep(jobs: int, launcher: str, sweeper: str, work: Path) -> dict[str, float]:
    """N jobs cold then cached, and one job cold then cached: the difference over N-1 is the cost of a job."""
    def once(n: int, tag: str) -> tuple[float, float]:
        return run_mora(["-m", f"graph_file={GRAPH}", "prompt=fox", f"inputs.n=range(0,{n})",
                         f"hydra/launcher={launcher}", f"hydra/sweeper={sweeper}", f"cache.dir={work / f'cache{n}'}",
                         f"hydra.sweep.dir={work / f'{tag}{n}'}", "quiet=true", "runtime=local", "runtime.device=cpu"],
                        work)

    (cold, cold_cpu), (cached, cached_cpu) = once(jobs, "cold"), once(jobs, "cached")
    (one, one_cpu), (one_cached, one_cached_cpu) = once(1, "cold"), once(1, "cached")
    per_job = {f"{what}_wall_ms_per_extra_job": round(1000 * (big - small) / max(1, jobs - 1), 2)
               for what, big, small in (("cold", cold, one), ("cached", cached, one_cached))}
    per_job.update({f"{what}_cpu_ms_per_extra_job": round(1000 * (big - small) / max(1, jobs - 1), 2)
                    for what, big, small in (("cold", cold_cpu, one_cpu), ("cached", cached_cpu, one_cached_cpu))})
    return {"jobs": jobs, "cold_s": round(cold, 2), "cached_s": round(cached, 2),
            "cold_cpu_s": round(cold_cpu, 2), "cached_cpu_s": round(cached_cpu, 2),
            "one_job_cold_s": round(one, 2), "one_job_cached_s": round(one_cached, 2),
            "cold_ms_per_job": round(1000 * cold / jobs, 2), "cached_ms_per_job": round(1000 * cached / jobs, 2),
            **per_job}


SCORE = Path(__file__).parent / "graphs" / "score.yaml"
AGENTS = Path(__file__).parent / "agents"


def agent_path(work: Path) -> str:
    """A PYTHONPATH on which `mora` finds bench/agents/bench_score.py through a real `mora.agents` entry point."""
    dist = work / "site" / "mora_bench_agents-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mora-bench-agents\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mora.agents]\nbench_score = bench_score:AGENT\n")
    return os.pathsep.join([str(work / "site"), str(AGENTS), os.environ.get("PYTHONPATH", "")])


def bare_study(trials: int) -> float:
    """Optuna alone: the same sampler, seed and search space on the same function, in this process (seconds)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="minimize")
    study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 2) ** 2 + (t.suggest_float("y", -5, 5) + 1) ** 2,
                   n_trials=trials)
    return time.perf_counter() - start


def study(trials: int, work: Path) -> dict[str, float]:
    """An Optuna study through `mora -m hydra/sweeper=optuna hydra/launcher=mora`, against its work.

    The work is what the nodes themselves took (every trial's manifest: the seconds of the nodes it
    computed). What Optuna costs by itself, Mora or not, is measured apart: importing its Hydra
    sweeper (Optuna, SQLAlchemy, ...) in a fresh interpreter, and the same study run in this process
    on the same function; what remains is Mora's (start-up, composing, planning, running, exporting).
    """
    os.environ["PYTHONPATH"] = agent_path(work)
    common = [f"graph_file={SCORE}", "hydra/sweeper=optuna", "hydra/launcher=mora", "objective=score",
              "inputs.x=interval(-5,5)", "inputs.y=interval(-5,5)", "hydra.sweeper.sampler.seed=0",
              f"cache.dir={work / 'cache'}", "quiet=true", "runtime=local", "runtime.device=cpu"]
    wall, cpu = run_mora(["-m", *common, f"hydra.sweeper.n_trials={trials}", f"hydra.sweep.dir={work / 'study'}"],
                         work)
    one, _ = run_mora(["-m", *common, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={work / 'one'}"], work)
    manifests = [json.loads(p.read_text()) for p in (work / "study").glob("*/manifest.json")]
    node_seconds = sum(n["seconds"] for m in manifests for n in m["nodes"].values() if not n["cached"])
    alone = bare_study(trials)
    imports = import_seconds("import hydra_plugins.hydra_optuna_sweeper._impl") - import_seconds("pass")
    mora = wall - node_seconds - alone - imports
    return {"trials": trials, "jobs": len(manifests), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "node_seconds": round(node_seconds, 3), "beyond_work_s": round(wall - node_seconds, 2),
            "optuna_import_s": round(imports, 2), "optuna_alone_s": round(alone, 2),
            "beyond_work_and_optuna_s": round(mora, 2), "one_trial_wall_s": round(one, 2),
            "per_trial_beyond_one_ms": round(1000 * (wall - one - alone) / max(1, trials - 1), 2)}


def import_seconds(statement: str) -> float:
    """A fresh interpreter's wall time to run `statement` (the best of three)."""
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        runs.append(time.perf_counter() - start)
    return min(runs)


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
    parser.add_argument("mode", choices=["sweep", "plan", "optuna"])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--launcher", default="mora", help="hydra/launcher: mora or basic")
    parser.add_argument("--sweeper", default="mora", help="hydra/sweeper: mora (Mora's default) or basic")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if args.mode == "sweep":
            result = sweep(args.jobs, args.launcher, args.sweeper, Path(tmp))
        elif args.mode == "optuna":
            result = study(args.jobs, Path(tmp))
        else:
            result = plan(args.jobs)
    print(json.dumps({"mode": args.mode, "launcher": args.launcher, "sweeper": args.sweeper, **result,
                      "load_before": [round(x, 2) for x in load], "cpus": os.cpu_count(),
                      "python": platform.python_version()}))


if __name__ == "__main__":
    main()
