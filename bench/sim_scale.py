"""Scheduling at scale: 8, 16, 32 and 64 worker processes running nodes that sleep, against one index.

    PYTHONPATH=bench python bench/sim_scale.py [--workers 8 16 32 64] [--waves 4] [--seconds 2]

For each worker count N, a graph of `waves` x N independent `sim_sleep` nodes (each sleeps
`--seconds`, then stores a short text) runs through the real stack: `api.run`, the scheduler,
the pool executor with N CPU worker processes, the cache (lookups, artifacts, index entries)
and the export of every output. The workers are started and ready before the clock starts, and
have each run one node of a warm-up graph before the clock starts (a worker's first node
imports the agent's module and opens the store), so what is timed is scheduling, not start-up. Then the same graph runs again, all hits.

Reported per N: wall time against the ideal (`waves` x `seconds`: every worker busy sleeping all
the time), throughput against the ideal (N / `seconds` nodes a second), the scheduling overhead
per node (the worker-time lost per node: (wall - ideal) x N / nodes), the driver's CPU time per
node (scheduler, index, export: what would be the bottleneck), the workers' CPU time per node
(receiving the task, storing the artifact, replying with the entry the driver records), and the fully
cached rerun's wall time per node. On a 2-core machine the sleeps must be long enough that the workers' own CPU
work (an artifact write and a reply per node) stays far below 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import sim_agents
import yaml

from mora.engine.cache.store import Store
from mora.engine.execution.executors.pool import PoolExecutor
from mora.engine.frontends import api
from mora.engine.graph.plan import Plan

PRESET = {"name": "sim", "roles": {}}


def graph(folder: Path, nodes: int, seconds: float, name: str = "sim") -> Path:
    path = folder / f"{name}.yaml"
    spec = {"nodes": {f"n{i}": {"agent": "sim_sleep", "params": {"seconds": seconds, "tag": f"{name}{i}"}}
                      for i in range(nodes)},
            "outputs": {f"o{i}": {"from": f"n{i}.text"} for i in range(nodes)}}
    path.write_text(yaml.safe_dump(spec))
    return path


def ready(executor: PoolExecutor, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while any(w["ready"] is None for w in executor.timeline()):
        if time.time() > deadline:
            raise TimeoutError("workers did not start")
        time.sleep(0.1)


def timed_run(plan: Plan, store: Store, executor: PoolExecutor, run_dir: Path) -> tuple[float, float, str]:
    c0, t0 = time.process_time(), time.perf_counter()
    outcome = api.run(plan, store=store, preset=PRESET, run_dir=run_dir, runtime={"name": "pool"}, quiet=True,
                      executor=executor)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    statuses = {rec["status"] for rec in outcome.manifest["nodes"].values()}
    return wall, cpu, ",".join(sorted(statuses))


def workers_cpu(executor: PoolExecutor) -> float:
    """CPU seconds the worker processes have used so far (user + system, from /proc)."""
    total = 0
    for pid in executor.worker_pids():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def simulate(workers: int, waves: int, seconds: float, folder: Path) -> dict[str, object]:
    nodes = workers * waves
    plan = api.load_plan(graph(folder, nodes, seconds), {}, None, registry=sim_agents.registry())
    store = Store(folder / "cache")
    executor = PoolExecutor(workers, "cpu")
    try:
        ready(executor)
        warm_up = api.load_plan(graph(folder, workers, 0.5, "warm"), {}, None, registry=sim_agents.registry())
        timed_run(warm_up, store, executor, folder / "warm")  # each worker's first node imports the agent module
        before = workers_cpu(executor)
        wall, cpu, cold = timed_run(plan, store, executor, folder / "cold")
        worker_cpu = workers_cpu(executor) - before
        cached_wall, cached_cpu, warm = timed_run(plan, store, executor, folder / "cached")
    finally:
        executor.shutdown()
        store.close()
    ideal = waves * seconds
    return {"workers": workers, "nodes": nodes, "node_seconds": seconds, "wall_s": round(wall, 2),
            "ideal_s": ideal, "throughput_nodes_per_s": round(nodes / wall, 2),
            "ideal_nodes_per_s": round(workers / seconds, 2), "efficiency": round(ideal / wall, 3),
            "overhead_per_node_ms": round(1000 * (wall - ideal) * workers / nodes, 1),
            "driver_cpu_per_node_ms": round(1000 * cpu / nodes, 2),
            "worker_cpu_per_node_ms": round(1000 * worker_cpu / nodes, 2), "statuses": cold,
            "cached_wall_s": round(cached_wall, 2), "cached_per_node_ms": round(1000 * cached_wall / nodes, 2),
            "cached_driver_cpu_per_node_ms": round(1000 * cached_cpu / nodes, 2), "cached_statuses": warm}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--waves", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    print(json.dumps({"machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%F %T %Z"),
                      "load_average_before": os.getloadavg()}))
    for n in args.workers:
        folder = Path(tempfile.mkdtemp(prefix=f"mora-sim{n}-"))
        try:
            print(json.dumps(simulate(n, args.waves, args.seconds, folder)), flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
