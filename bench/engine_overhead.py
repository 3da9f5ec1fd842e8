"""Scheduling and cache overhead per node: a graph of N trivial nodes, cold and fully cached.

Each node is a `text_template` (microseconds of work), arranged as a binary tree so nodes have
real dependencies. "Cold" is a fresh cache directory (every node keyed, run, stored and
indexed); "cached" is the same graph again (every node keyed, looked up, verified, skipped).
Planning (YAML parsing, expansion, validation) is timed separately; exporting outputs into a
run directory is not part of either figure (it is per output, not per node).

    python bench/engine_overhead.py --nodes 1000 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from mora.engine.cache.store import Store
from mora.engine.execution.executors.inprocess import InProcessExecutor
from mora.engine.execution.progress import Reporter
from mora.engine.execution.scheduler import run_plan
from mora.engine.frontends.api import load_plan


def write_graph(path: Path, n: int) -> None:
    nodes = {"n0": {"agent": "text_template", "in": {"text": {"input": "prompt"}}, "params": {"step": 0}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"agent": "text_template", "in": {"text": {"from": f"n{(i - 1) // 2}.text"}},
                          "params": {"template": "{text}.{step}", "step": i}}
    graph = {"inputs": {"prompt": {"type": "text", "default": "x"}}, "nodes": nodes,
             "outputs": {f"leaf{i}": {"from": f"n{i}.text"} for i in range(n // 2, n)}}
    path.write_text(yaml.safe_dump(graph, sort_keys=False))


def one(n: int, work: Path) -> dict[str, float]:
    graph = work / "graph.yaml"
    write_graph(graph, n)
    t0 = time.perf_counter()
    plan = load_plan(graph, {})
    plan_s = time.perf_counter() - t0
    store = Store(work / "cache")
    timings = {"plan_ms_per_node": plan_s / n * 1e3}
    for phase in ("cold", "cached"):
        t0 = time.perf_counter()
        report = run_plan(plan, store, InProcessExecutor("cpu"), {}, Reporter(n, quiet=True))
        timings[f"{phase}_ms_per_node"] = (time.perf_counter() - t0) / n * 1e3
        cached = sum(r.cached for r in report.records.values())
        assert cached == (n if phase == "cached" else 0), f"{phase}: {cached} cached of {n}"
    store.close()
    return timings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one(args.nodes, Path(tmp)))
    result = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    result.update(nodes=args.nodes, repeats=args.repeats, machine=platform.node(), python=platform.python_version())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
