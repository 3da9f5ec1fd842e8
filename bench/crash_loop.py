"""Crash loop: SIGKILL `mora` at random moments during a multi-node run, then check the cache.

Each iteration starts a run of a 12-node graph (two branches of slow nodes and a join), kills
the process after a random delay, records which nodes the index says had finished, re-runs the
graph to completion and checks that every node finished before the kill was a cache hit, then
verifies the whole cache (full digests; no bad entries; stale temporary files cleaned up).

    python bench/crash_loop.py --iterations 20
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from entry_points import agent_env  # noqa: E402

from engine import maintenance  # noqa: E402
from engine.store import Store  # noqa: E402


def write_graph(path: Path, seconds: float) -> None:
    nodes: dict = {}
    for branch in ("a", "b"):
        for i in range(5):
            node = {"agent": "p_count", "params": {"tag": f"{branch}{i}", "seconds": seconds, "log": str(path.parent / "count.log")}}
            if i:
                node["in"] = {"after": {"from": f"{branch}{i - 1}.text"}}
            nodes[f"{branch}{i}"] = node
    nodes["join"] = {"agent": "text_template", "in": {"text": {"from": "a4.text"}}, "params": {"template": "{text}!"}}
    nodes["tail"] = {"agent": "p_count", "in": {"after": {"from": "join.text"}}, "params": {"tag": "tail", "log": str(path.parent / "count.log")}}
    outputs = {"a": {"from": "tail.text"}, "b": {"from": "b4.text"}}
    path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": outputs}))


def mora(work: Path, env: dict[str, str], extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from engine.cli import main; main()", f"graph_file={work / 'graph.yaml'}",
         "runtime=local", "runtime.device=cpu", f"hydra.run.dir={work / 'runs' / str(time.time_ns())}", *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished_nodes(cache: Path) -> set[str]:
    store = Store(cache)
    try:
        return {e["node"] for _, e in maintenance.entries(store) if e}
    finally:
        store.close()


def iteration(work: Path, env: dict[str, str], rng: random.Random) -> dict:
    proc = mora(work, env, [])
    time.sleep(rng.uniform(0.5, 4.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
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
    return {"finished_before_kill": len(before), "not_cached_after": not_cached, "bad_entries": report.bad_entries,
            "stale_tmp_removed": len(report.removed_tmp), "tmp_left": len(list((work / "cache" / "tmp").iterdir()))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    failures = 0
    for i in range(args.iterations):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            write_graph(work / "graph.yaml", seconds=0.3)
            env = agent_env(work)
            result = iteration(work, env, rng)
            ok = not result["not_cached_after"] and not result["bad_entries"] and not result["tmp_left"]
            failures += not ok
            print(json.dumps({"iteration": i, "ok": ok, **result}), flush=True)
    print(f"crash loop: {args.iterations - failures} of {args.iterations} iterations passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
