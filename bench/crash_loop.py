"""Crash loop: SIGKILL `mora` at random moments during a multi-node run, then check the cache.

Each iteration starts a run of a 12-node graph (two branches of slow nodes and a join), kills
the process, records which nodes the index says had finished, re-runs the graph to completion
and checks that every node finished before the kill was a cache hit, then verifies the whole
cache (full digests; no bad entries, no orphaned objects; stale temporary files cleaned up).

Where the kill lands matters: a kill before the first node finishes or after the run ends tests
little, so most kills are timed from the moment the first node starts, uniformly over the slow
nodes' total duration, and land mid-run (some but not all nodes finished); one in five falls in
the first second after process start, to also cover start-up, config composition and opening
the cache.
Each iteration records whether its kill landed mid-run, and the summary counts them.

    python bench/crash_loop.py --iterations 20
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from entry_points import agent_env

from mora.engine.cache import maintenance
from mora.engine.cache.store import Store

BRANCH_LENGTH = 5
NODE_SECONDS = 0.3
SLOW_NODES = 2 * BRANCH_LENGTH
ALL_NODES = SLOW_NODES + 2
STARTUP_KILLS = 0.2
"""Share of kills timed from process start rather than from the first node."""


def write_graph(path: Path, seconds: float) -> None:
    nodes: dict = {}
    log = str(path.parent / "count.log")
    for branch in ("a", "b"):
        for i in range(BRANCH_LENGTH):
            node = {"agent": "p_count", "params": {"tag": f"{branch}{i}", "seconds": seconds, "log": log}}
            if i:
                node["in"] = {"after": {"from": f"{branch}{i - 1}.text"}}
            nodes[f"{branch}{i}"] = node
    nodes["join"] = {"agent": "text_template", "in": {"text": {"from": f"a{BRANCH_LENGTH - 1}.text"}},
                     "params": {"template": "{text}!"}}
    nodes["tail"] = {"agent": "p_count", "in": {"after": {"from": "join.text"}}, "params": {"tag": "tail", "log": log}}
    outputs = {"a": {"from": "tail.text"}, "b": {"from": f"b{BRANCH_LENGTH - 1}.text"}}
    path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": outputs}))


def mora(work: Path, env: dict[str, str], extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", f"graph_file={work / 'graph.yaml'}",
         "runtime=local", "runtime.device=cpu", f"hydra.run.dir={work / 'runs' / str(time.time_ns())}", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished_nodes(cache: Path) -> set[str]:
    if not cache.exists():
        return set()
    store = Store(cache)
    try:
        return {e["node"] for _, e in maintenance.entries(store) if e}
    finally:
        store.close()


def wait_for_first_node(proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    """Block until the run has started its first node (it logs to `log`), or has exited."""
    deadline = time.monotonic() + timeout
    while not log.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


def kill_at_random(proc: subprocess.Popen, work: Path, rng: random.Random) -> dict[str, Any]:
    """SIGKILL the run at a random moment; say how the moment was chosen and whether the run had already ended."""
    if rng.random() < STARTUP_KILLS:
        timed_from, delay = "process start", rng.uniform(0.0, 1.0)
    else:
        timed_from, delay = "first node", rng.uniform(0.0, SLOW_NODES * NODE_SECONDS)
        wait_for_first_node(proc, work / "count.log")
    time.sleep(delay)
    exited = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return {"kill_timed_from": timed_from, "kill_delay": round(delay, 3), "exited_before_kill": exited}


def iteration(work: Path, env: dict[str, str], rng: random.Random) -> dict[str, Any]:
    kill = kill_at_random(mora(work, env, []), work, rng)
    before = finished_nodes(work / "cache")
    done = mora(work, env, [])
    _, err = done.communicate(timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"re-run failed ({done.returncode}): {err}")
    runs = sorted((work / "runs").iterdir())
    manifest = json.loads((runs[-1] / "manifest.json").read_text())
    not_cached = sorted(n for n in before if not manifest["nodes"][n]["cached"])
    store = Store(work / "cache")
    report = maintenance.verify(store)
    store.close()
    result = {**kill, "finished_before_kill": len(before), "mid_run": 0 < len(before) < ALL_NODES,
              "not_cached_after": not_cached, "bad_entries": report.bad_entries, "orphans": report.orphans,
              "stale_tmp_removed": len(report.removed_tmp), "tmp_left": len(list((work / "cache" / "tmp").iterdir()))}
    ok = not (result["not_cached_after"] or result["bad_entries"] or result["orphans"] or result["tmp_left"])
    return {"ok": ok, **result}


def crash_iterations(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """Run `count` kill-and-recover iterations, each in a fresh directory and cache."""
    rng = random.Random(seed)
    for i in range(count):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            write_graph(work / "graph.yaml", seconds=NODE_SECONDS)
            yield {"iteration": i, **iteration(work, agent_env(work), rng)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    results = []
    for result in crash_iterations(args.iterations, args.seed):
        results.append(result)
        print(json.dumps(result), flush=True)
    passed = sum(r["ok"] for r in results)
    mid_run = sum(r["mid_run"] for r in results)
    print(f"crash loop: {passed} of {len(results)} iterations passed; {mid_run} of {len(results)} kills landed "
          f"mid-run (some but not all of {ALL_NODES} nodes finished)")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
