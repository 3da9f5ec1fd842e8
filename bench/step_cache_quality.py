"""What a denoising step cache skips on a trained Wan model, and what it costs (issue 14): held-out world scenes
animated with and without the cache, same seed, through the image_to_video agent's own code.

    python bench/step_cache_quality.py --weights W/wan_i2v --n 20 --json OUT.json

W is a world Wan I2V pipeline (training/world_video.py). For each setting (`step_cache` none, then each cache asked
for with its threshold or interval) every held-out scene of bench/world_video_quality.py's image_to_video task is
animated at the same seed; each cached video is compared with the uncached one frame by frame (PSNR and SSIM over
the uint8 frames, scikit-image's `structural_similarity`), the world's detectors score both (direction and "kept"
as in world_video_quality), and "skipped" is the share of the transformer's forwards whose last block's attention
did not run (counted at its query projection: FirstBlockCache skips every block after the first, TaylorSeer
predicts the attention layers' outputs, and either way that layer is not called).
Thresholds mean something only on trained weights: this is the bench for them, not for the random-weight presets.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parent))
import world_video_quality as q  # the held-out scenes, the agents' Model, the scoring

from mora.engine.frontends.guard import guarded
from mora.nodes.image_to_video import AGENT as I2V
from mora.nodes.world import captions
from mora.nodes.world import scene as world
from training.cli import bounded, device, folder_problem, like, writable_file

SETTINGS = (("first_block", 0.05), ("first_block", 0.1), ("first_block", 0.2), ("taylorseer", 5), ("taylorseer", 3))
"""(cache, threshold or interval) measured by default: the agent's defaults and a step either side."""


def given(cache: str, value: float) -> dict[str, Any]:
    if cache == "none":
        return {"step_cache": "none"}
    key = "step_cache_threshold" if cache == "first_block" else "step_cache_interval"
    return {"step_cache": cache, key: value}


class Counter:
    """Forwards of the transformer, and how many of them ran its last block's attention (its query projection)."""

    def __init__(self, transformer: Any) -> None:
        self.forwards = self.computed = 0
        transformer.register_forward_pre_hook(lambda *_: self._add("forwards"))
        transformer.blocks[-1].attn1.to_q.register_forward_pre_hook(lambda *_: self._add("computed"))

    def _add(self, name: str) -> None:
        setattr(self, name, getattr(self, name) + 1)

    def take(self) -> float:
        """The share of forwards since the last call whose last block was skipped."""
        skipped = 1 - self.computed / self.forwards if self.forwards else 0.0
        self.forwards = self.computed = 0
        return skipped


def similarity(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean PSNR (dB; identical frames count as 100) and SSIM of two videos' frames."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = [100.0 if np.array_equal(x, y) else peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b)]
    ssim = [structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in zip(a, b)]
    return float(np.mean(psnr)), float(np.mean(ssim))


def measure(model: q.Model, n: int, frames: int, settings: Sequence[tuple[str, float]]) -> dict[str, Any]:
    counter = Counter(model.pipe.transformer)
    rng = np.random.default_rng(10)
    cases = [(s, world.place(s, rng)) for s in q.held_out(n, 10)]  # image_to_video's cases, in its order
    rows: dict[str, dict[str, list[Any]]] = {}
    reference: list[list[np.ndarray]] = []
    for cache, value in (("none", 0), *settings):
        name = "none" if cache == "none" else f"{cache}:{value:g}"
        row: dict[str, list[Any]] = {k: [] for k in ("seconds", "skipped", "direction", "kept", "psnr", "ssim")}
        for i, (scene, layout) in enumerate(cases):
            start = time.perf_counter()
            video = list(model.video(world.render(scene, layout), captions.caption(scene), 10_000 + i, frames=frames,
                                     **given(cache, value)))
            row["seconds"].append(time.perf_counter() - start)
            row["skipped"].append(counter.take())
            scores = q.motion_scores(scene, layout, video)
            row["direction"].append(scores["direction"])
            row["kept"].append(scores["kept"])
            if cache == "none":
                reference.append(video)
            else:
                psnr, ssim = similarity(reference[i], video)
                row["psnr"].append(psnr)
                row["ssim"].append(ssim)
        rows[name] = row
        print(name, json.dumps(summary(row)), flush=True)
    return {name: summary(row) for name, row in rows.items()}


def summary(row: dict[str, list[Any]]) -> dict[str, Any]:
    out = {"seconds_per_video": round(float(np.mean(row["seconds"])), 3),
           "skipped": round(float(np.mean(row["skipped"])), 4),
           "direction": q.rate(row["direction"]), "kept": q.rate(row["kept"])}
    return out | closeness(row)


def closeness(row: dict[str, list[Any]]) -> dict[str, float]:
    """Mean and worst PSNR and SSIM of the videos compared with their references (none for the references)."""
    if not row["psnr"]:
        return {}
    return {"psnr_db": round(float(np.mean(row["psnr"])), 2), "psnr_min_db": round(float(np.min(row["psnr"])), 2),
            "ssim": round(float(np.mean(row["ssim"])), 4), "ssim_min": round(float(np.min(row["ssim"])), 4)}


def setting(text: str) -> tuple[str, float]:
    """`first_block:0.1` or `taylorseer:5`, checked against the agent's own bounds."""
    cache, _, value = text.partition(":")
    if cache not in ("first_block", "taylorseer") or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected first_block:THRESHOLD or taylorseer:INTERVAL")
    param = I2V.param("step_cache_threshold" if cache == "first_block" else "step_cache_interval")
    return cache, like(param)(value)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="a world Wan I2V pipeline folder")
    parser.add_argument("--n", type=bounded(int, 1), default=20, help="held-out scenes")
    parser.add_argument("--frames", type=like(I2V.param("frames")), default=q.world_video.FRAMES)
    parser.add_argument("--steps", type=like(I2V.param("steps")), default=20, help="denoising steps")
    parser.add_argument("--setting", type=setting, action="append",
                        help="a cache to measure, e.g. first_block:0.1 or taylorseer:5 (default: SETTINGS)")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--json", type=writable_file, help="write the results here")
    args = parser.parse_args(argv)
    if problem := folder_problem(args.weights, "WanImageToVideoPipeline"):
        parser.error(f"--weights {args.weights}: {problem}")
    model = q.load(args.weights, I2V, args.device, steps=args.steps)
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
               "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
               "settings": measure(model, args.n, args.frames, args.setting or SETTINGS)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(guarded("bench/step_cache_quality.py", lambda: main() and 0))
