"""Peak memory of `frame_pick` (the last frame) on a 4K clip, run as a user runs it: `mora graph_file=...`.

Makes a 3840x2160 clip of `--seconds` at `--fps` with PyAV (a moving gradient, H.264), then runs
a one-node graph (frame_pick, index -1) on it in a fresh `mora` process with a fresh cache, and
reads that process's peak resident set size (ru_maxrss of the child, read by a wrapper that waits
for it alone). The clip decodes to seconds x fps x 24.9 MB; the engine streams it into a frame
store on disk and frame_pick maps only the frame it picks, so the peak should stay far below that.

    python bench/frame_pick_4k.py --seconds 5
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import yaml

WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
GRAPH = {"inputs": {"clip": {"type": "video"}},
         "nodes": {"pick": {"agent": "frame_pick", "in": {"video": {"input": "clip"}}, "params": {"index": -1}}},
         "outputs": {"image": {"from": "pick.image"}}}


def make_clip(path: Path, seconds: float, fps: int, width: int = 3840, height: int = 2160) -> int:
    import av

    ramp = np.linspace(0, 255, width, dtype=np.float32)
    count = round(seconds * fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for i in range(count):
            row = ((ramp + 8 * i) % 256).astype(np.uint8)
            frame = np.broadcast_to(row[None, :, None], (height, width, 3)).copy()
            frame[: 64 + 8 * i, :64] = (255, 0, 0)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--work", type=Path, help="folder for the clip and cache (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        clip = work / "clip4k.mp4"
        t0 = time.perf_counter()
        frames = make_clip(clip, args.seconds, args.fps)
        made = time.perf_counter() - t0
        graph = work / "pick.yaml"
        graph.write_text(yaml.safe_dump(GRAPH))
        env = {**os.environ, "MORA_CACHE_DIR": str(work / "cache")}
        cmd = [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", f"graph_file={graph}",
               f"inputs.clip={clip}", "runtime=local", "runtime.device=cpu", "quiet=true",
               f"hydra.run.dir={work / 'run'}"]
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        status, rss_kb = out.stdout.strip().splitlines()[-1].split()
        picked = (work / "run" / "image.png").is_file()
        print(json.dumps({"clip": f"3840x2160, {frames} frames at {args.fps} fps", "clip_mb": clip.stat().st_size / 1e6,
                          "decoded_mb": frames * 3840 * 2160 * 3 / 1e6, "make_clip_s": round(made, 1),
                          "mora_exit": int(status), "mora_wall_s": round(wall, 1), "picked": picked,
                          "peak_rss_mib": round(int(rss_kb) / 1024)}, indent=1))
        if int(status) != 0:
            print(out.stdout[-2000:], out.stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
