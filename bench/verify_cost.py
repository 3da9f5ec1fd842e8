"""What verifying every artifact read costs: hash speed, verified reads, and the fully cached `mora`.

    python bench/verify_cost.py --hash --size-mib 256 --repeats 5
    python bench/verify_cost.py --cached 10

`--hash`: hashlib SHA-256 and the `blake3` package over the same bytes in memory, then
`ArtifactRef.read_bytes` (one pass: read and hash each chunk) against a plain read of the same
file (page cache warm), in ms per GB (1e9 bytes); the difference is what verification adds.
`--cached N`: `mora` as the README runs it (text_to_video, tiny preset), once to fill a fresh
cache, then N more times fully cached, each in a fresh process; prints the median, minimum and
maximum wall time, and the CPU time (user + system) of each run, which a busy machine inflates
far less than wall time. Run it with another checkout's interpreter to time that checkout's code.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _best_ms_per_gb(fn, size: int, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    per_gb = sorted(t * 1e3 * 1e9 / size for t in times)
    return {"median": round(statistics.median(per_gb), 1), "min": round(per_gb[0], 1), "max": round(per_gb[-1], 1)}


def hash_costs(size_mib: int, repeats: int) -> dict[str, dict[str, float]]:
    from blake3 import blake3

    from mora.engine.cache.artifacts import ArtifactRef
    from mora.engine.cache.media import text_blob
    from mora.engine.cache.store import Store
    from mora.engine.ports import PortType

    data = os.urandom(size_mib << 20)
    out = {"sha256": _best_ms_per_gb(lambda: hashlib.sha256(data).digest(), len(data), repeats),
           "blake3": _best_ms_per_gb(lambda: blake3(data).digest(), len(data), repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "cache")
        blob = text_blob("")
        ref = store.put(type(blob)(PortType.TEXT, "txt", data))
        assert isinstance(ref, ArtifactRef)
        ref.path.read_bytes()  # warm the page cache
        out["plain read"] = _best_ms_per_gb(ref.path.read_bytes, len(data), repeats)
        out["verified read"] = _best_ms_per_gb(ref.read_bytes, len(data), repeats)
        store.close()
    return out


def mora(run_dir: Path, env: dict[str, str]) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one `mora` process, and its manifest."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "quiet=true",
                    f"hydra.run.dir={run_dir}"], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, json.loads((run_dir / "manifest.json").read_text())


def cached_runs(repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "MORA_MODELS_DIR": str(work / "models"), "MORA_CACHE_DIR": str(work / "cache")}
        mora(work / "cold", env)  # builds the tiny models and fills the cache
        walls, cpus = [], []
        for rep in range(repeats):
            wall, cpu, manifest = mora(work / f"again{rep}", env)
            assert all(n["cached"] for n in manifest["nodes"].values()), manifest["nodes"]
            walls.append(wall)
            cpus.append(cpu)
    return {"wall_median_s": round(statistics.median(walls), 3), "wall_min_s": round(min(walls), 3),
            "wall_max_s": round(max(walls), 3), "cpu_median_s": round(statistics.median(cpus), 3),
            "cpu_min_s": round(min(cpus), 3), "cpu_max_s": round(max(cpus), 3), "runs": repeats}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hash", action="store_true")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cached", type=int, default=0, help="fully cached `mora` runs to time")
    args = ap.parse_args()
    result: dict[str, object] = {"cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    if args.hash:
        result["ms_per_gb"] = hash_costs(args.size_mib, args.repeats)
    if args.cached:
        result["fully_cached_mora"] = cached_runs(args.cached)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
