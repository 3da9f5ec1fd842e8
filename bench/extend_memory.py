"""Peak memory of extend_video for N extensions: does it grow beyond the frames being written?

Runs `mora graph=extend_video inputs.times=N` on the tiny preset in a fresh process per N and
reads the process's peak resident set size (ru_maxrss of the child). The video grows by one
clip per extension, so the frames themselves grow linearly; everything else (models, graph,
cache bookkeeping) should not.

    python bench/extend_memory.py --times 2 8
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mora.engine.cache.media import Frames, load_video_file, write_mp4

WRAPPER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_mb(cmd: list[str], env: dict[str, str]) -> float:
    """Peak RSS of `cmd`, read by a fresh wrapper process that waits for it alone."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--times", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        write_mp4(Frames(rng.integers(0, 255, (4, args.size, args.size, 3), dtype=np.uint8), 7.0), work / "in.mp4")
        env = {**os.environ, "MORA_CACHE_DIR": str(work / "cache")}
        for n in args.times:
            # each N in its own process and cache, so ru_maxrss is that run's own peak
            env["MORA_CACHE_DIR"] = str(work / f"cache{n}")
            cmd = [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "graph=extend_video", "runtime=local",
                   "runtime.device=cpu", "quiet=true", f"inputs.video={work / 'in.mp4'}", f"inputs.times={n}",
                   f"inputs.width={args.size}", f"inputs.height={args.size}", f"hydra.run.dir={work / f'run{n}'}"]
            mb = peak_rss_mb(cmd, env)
            manifest = json.loads((work / f"run{n}" / "manifest.json").read_text())
            video = load_video_file(work / f"run{n}" / manifest["outputs"]["video"])
            raw_mb = video.count * args.size * args.size * 3 / 2**20
            results.append({"times": n, "peak_rss_mb": round(mb, 1), "nodes": len(manifest["nodes"]),
                            "frames": video.count, "frames_mb": round(raw_mb, 2)})
            print(json.dumps(results[-1]), flush=True)


if __name__ == "__main__":
    main()
