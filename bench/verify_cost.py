"""What verifying every artifact read costs: hash speed, verified reads, and the fully cached `mora`.

    python bench/verify_cost.py --hash --size-mib 256 --repeats 5
    python bench/verify_cost.py --cached 10

`--hash`: hashlib SHA-256 and the `blake3` package over the same bytes in memory, then
`ArtifactRef.read_bytes` (one pass: read and hash each chunk) against a plain read of the same
file (page cache warm), in ms per GB (1e9 bytes); the difference is what verification adds.
`--cached N`: `mora` as the README runs it (text_to_video, tiny preset), once to fill a fresh
cache, then N more times fully cached, each in a fresh process; prints the median, minimum and
maximum wall time. Run it with another checkout's interpreter to time that checkout's code.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
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

    from mora.engine.artifacts import ArtifactRef
    from mora.engine.media import text_blob
    from mora.engine.ports import PortType
    from mora.engine.store import Store

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


def mora(run_dir: Path, env: dict[str, str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from mora.engine.cli import main; main()", "quiet=true",
                    f"hydra.run.dir={run_dir}"], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0, json.loads((run_dir / "manifest.json").read_text())


def cached_runs(repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "MORA_MODELS_DIR": str(work / "models"), "MORA_CACHE_DIR": str(work / "cache")}
        mora(work / "cold", env)  # builds the tiny models and fills the cache
        seconds = []
        for rep in range(repeats):
            s, manifest = mora(work / f"again{rep}", env)
            assert all(n["cached"] for n in manifest["nodes"].values()), manifest["nodes"]
            seconds.append(s)
    return {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
            "max_s": round(max(seconds), 3), "runs": repeats}


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
