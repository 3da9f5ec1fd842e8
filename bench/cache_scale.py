"""The cache at a million entries: lookup latency, `mora-admin cache stats`, gc of 10%, index bytes per entry.

    python bench/cache_scale.py [--entries 1000000] [--objects 1000] [--dir /tmp/mora-cache-scale]

What is built. An index of `--entries` node-result entries is filled through the real code
path (`Store.record` -> diskcache `set`, batched in diskcache transactions of 10,000 so the fill
takes seconds per 100k, not an fsync per row), in the shape the runner writes (node, agent,
one text output, seconds, batch). A million real artifacts would take a million files, so the
entries share `--objects` real, tiny artifacts stored through `Store.put`: the first 10% of the
entries are dated 60 days back and are the only ones that reference the first 10% of the
objects, so `gc --max-age 30d` removes 10% of the entries and those objects (their files are
dated back too, past gc's grace period).

What is timed (each on the filled index, the driver's view):
- lookup: `Store.lookup` of random present keys (index row, JSON decode, a size check of the
  artifact) and of absent keys, p50/p99 over 20,000 of each;
- stats: the `mora-admin cache stats --dir DIR` command as a user runs it (a new process);
- gc: `mora-admin cache gc --max-age 30d --dir DIR`, also a new process;
- size: bytes of the index database (and its WAL) divided by the number of entries.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mora.engine.cache.artifacts import Blob
from mora.engine.cache.store import Store
from mora.engine.ports import PortType

AGENTS = ("text_template", "style_cue", "image_gen", "video_gen")
DAY = 86400.0


def key_of(i: int) -> str:
    return f"{i:064x}"


def fill(root: Path, n: int, n_objects: int) -> tuple[float, Store]:
    store = Store(root)
    refs = [store.put(Blob(PortType.TEXT, "txt", f"artifact {j}".encode())).to_json() for j in range(n_objects)]
    old_objects = n_objects // 10
    past = time.time() - 60 * DAY
    for ref in refs[:old_objects]:
        os.utime(store.object_path(ref["digest"], ref["fmt"]), (past, past))
    old = n // 10
    t0 = time.perf_counter()
    batch = 10_000
    for start in range(0, n, batch):
        with store.index.transact():
            for i in range(start, min(start + batch, n)):
                ref = refs[i % old_objects] if i < old else refs[old_objects + i % (n_objects - old_objects)]
                dated = {"created": past} if i < old else {}  # gc reads an entry's age from `created`
                store.record(key_of(i), {"node": f"job{i // 3}.n{i % 3}", "agent": AGENTS[i % len(AGENTS)],
                                         "outputs": {"text": ref}, "seconds": 0.01, "batch": None, **dated})
    return time.perf_counter() - t0, store


def percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {"p50_ms": round(1000 * statistics.median(samples), 4),
            "p99_ms": round(1000 * samples[int(0.99 * (len(samples) - 1))], 4),
            "max_ms": round(1000 * samples[-1], 4)}


def lookups(store: Store, n: int, count: int) -> dict[str, dict[str, float]]:
    """Wall time per lookup, and the lookup's own CPU time (the wall time less waits for a core on a busy machine)."""
    rng = random.Random(0)
    times: dict[str, list[float]] = {"hit": [], "hit_cpu": [], "miss": [], "miss_cpu": []}
    with store.leased():  # as in a run: each hit names its artifacts in the run's lease
        for _ in range(count):
            for kind, key in (("hit", key_of(rng.randrange(n // 10, n))), ("miss", key_of(n + rng.randrange(1 << 60)))):
                c0, t0 = time.thread_time(), time.perf_counter()
                entry = store.lookup(key)
                times[kind].append(time.perf_counter() - t0)
                times[f"{kind}_cpu"].append(time.thread_time() - c0)
                assert (entry is not None) == (kind == "hit"), key
    return {kind: percentiles(samples) for kind, samples in times.items()}


def admin(*args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([str(Path(sys.executable).parent / "mora-admin"), "cache", *args], check=True,
                         capture_output=True, text=True).stdout
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mora-cache-scale"))
    ap.add_argument("--lookups", type=int, default=20_000)
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    fill_s, store = fill(args.dir, args.entries, args.objects)
    db = args.dir / "index" / "cache.db"
    index_bytes = sum(p.stat().st_size for p in db.parent.glob("cache.db*"))
    result: dict[str, object] = {"entries": args.entries, "objects": args.objects, "fill_s": round(fill_s, 1),
                                 "index_bytes": index_bytes, "index_bytes_per_entry": round(index_bytes / args.entries)}
    result["lookup"] = lookups(store, args.entries, args.lookups)
    store.close()
    stats_s, out = admin("stats", "--dir", str(args.dir))
    result["stats_s"] = round(stats_s, 2)
    result["stats_entries"] = json.loads(out)["entries"]
    gc_s, out = admin("gc", "--max-age", "30d", "--dir", str(args.dir))
    result["gc_s"] = round(gc_s, 2)
    result["gc"] = json.loads(out)
    result["entries_after_gc"] = json.loads(admin("stats", "--dir", str(args.dir))[1])["entries"]
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
