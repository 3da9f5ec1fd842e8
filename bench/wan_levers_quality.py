"""What the speed levers cost in quality on a trained Wan (issue 14): the offline world's Wan I2V run in bfloat16
eagerly, then with each lever, on the same held-out scenes and seeds, through the image_to_video agent's own code.

    python bench/wan_levers_quality.py --weights W/wan_i2v --n 100 --device cuda --json OUT.json

Variants (each on a freshly loaded pipeline, since compiling and quantizing change a model in place): `float32`
(for scale: how far bfloat16 itself is from full precision), `compile` (Mora's regional compile), `fa4`
(`attention=sdpa_fa4`), `fp8` (torchao rowwise FP8 of the transformer's bfloat16 linear layers, Mora's
`quantization=fp8`, eager), `fp8_compile`, and with FA4 `compile_fa4` (what `speed=fast` runs on Wan) and
`fp8_compile_fa4`, and `fp8_attention_compile` (`quantization=fp8_attention`, compiled: attention in FP8 too, forced
at every length here, since the world Wan's 1,088 tokens are below `fp8_attention.MIN_KEYS`). Each video is compared frame by frame with the bfloat16 eager one (PSNR and
SSIM over the uint8 frames) and its latents by relative L2 error; the world's detectors score every video (direction
and "kept" as in bench/world_video_quality.py). A lever that cannot run here (FA4 or FP8 off Hopper) is reported
with its reason and skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parent))
import world_video_quality as q  # the held-out scenes, the agents' Model, the scoring
from step_cache_quality import closeness, similarity

from mora.engine.frontends.guard import guarded
from mora.nodes import flash_attention_4, fp8_attention, speed
from mora.nodes.image_to_video import AGENT as I2V
from mora.nodes.world import captions
from mora.nodes.world import scene as world
from training.cli import bounded, device, folder_problem, writable_file

VARIANTS: dict[str, dict[str, Any]] = {
    "float32": {"dtype": torch.float32},
    "compile": {"compile": "on"},
    "fa4": {"attention": "sdpa_fa4"},
    "fp8": {"fp8": True},
    "fp8_compile": {"fp8": True, "compile": "on"},
    "compile_fa4": {"compile": "on", "attention": "sdpa_fa4"},
    "fp8_compile_fa4": {"fp8": True, "compile": "on", "attention": "sdpa_fa4"},
    "fp8_attention_compile": {"fp8": True, "compile": "on", "fp8_attention": True},
}
"""Run one compiled variant a process: torch compiles per class, so a second one would reuse the first's graph."""


def loaded(folder: Path, where: str, steps: int, dtype: torch.dtype, fp8: bool) -> q.Model:
    """The whole pipeline in `dtype` (as the agents load it for `dtype=...`), optionally with an FP8 transformer."""
    model = q.load(folder, I2V, where, dtype=dtype, steps=steps)
    if fp8:
        speed.quantize_fp8(model.pipe, {"quantization": "fp8"})
    return model


def why_not(variant: dict[str, Any], where: str) -> str | None:
    if variant.get("attention") == "sdpa_fa4":
        return flash_attention_4.problem(where)
    if variant.get("fp8_attention") and (reason := fp8_attention.problem(where)):
        return reason
    if variant.get("fp8"):
        try:
            speed.check_fp8()
        except RuntimeError as e:
            return str(e)
    if variant.get("compile") == "on" and not where.startswith("cuda"):
        return "compiled on CUDA only here (the bench measures the GPU path)"
    return None


@contextlib.contextmanager
def fp8_everywhere(where: str) -> Iterator[None]:
    """cuDNN's FP8 attention for every attention call in the block, however short."""
    min_keys, fp8_attention.MIN_KEYS = fp8_attention.MIN_KEYS, 0
    try:
        with fp8_attention.active(where):
            yield
    finally:
        fp8_attention.MIN_KEYS = min_keys


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(10)
    cases = [(s, world.place(s, rng)) for s in q.held_out(args.n, 10)]  # image_to_video's cases, in its order
    results: dict[str, Any] = {}
    reference: list[tuple[np.ndarray, torch.Tensor]] = []
    for name, variant in (("bf16", {}), *((v, VARIANTS[v]) for v in args.variant)):
        if problem := why_not(variant, args.device):
            results[name] = {"skipped": problem}
            print(name, json.dumps(results[name]), flush=True)
            continue
        model = loaded(args.weights, args.device, args.steps, variant.get("dtype", torch.bfloat16),
                       variant.get("fp8", False))
        given = {k: variant[k] for k in ("compile", "attention") if k in variant}
        row: dict[str, list[float]] = {k: [] for k in ("direction", "kept", "psnr", "ssim", "latent_rel_error")}
        for i, (scene, layout) in enumerate(cases):
            with fp8_everywhere(args.device) if variant.get("fp8_attention") else contextlib.nullcontext():
                video, latents = model.video_and_latents(world.render(scene, layout), captions.caption(scene),
                                                         10_000 + i, frames=args.frames, **given)
            scores = q.motion_scores(scene, layout, video)
            row["direction"].append(scores["direction"])
            row["kept"].append(scores["kept"])
            if name == "bf16":
                reference.append((video, latents))
                continue
            ref_video, ref_latents = reference[i]
            psnr, ssim = similarity(ref_video, video)
            row["psnr"].append(psnr)
            row["ssim"].append(ssim)
            row["latent_rel_error"].append(float((latents - ref_latents).norm() / ref_latents.norm()))
        results[name] = summary(row)
        print(name, json.dumps(results[name]), flush=True)
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return results


def summary(row: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"direction": q.rate(row["direction"]), "kept": q.rate(row["kept"])}
    if row["psnr"]:
        out |= closeness(row) | {"latent_rel_error": round(float(np.mean(row["latent_rel_error"])), 5),
                                 "latent_rel_error_max": round(float(np.max(row["latent_rel_error"])), 5)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="a world Wan I2V pipeline folder")
    parser.add_argument("--n", type=bounded(int, 1), default=20, help="held-out scenes")
    parser.add_argument("--frames", type=int, default=q.world_video.FRAMES)
    parser.add_argument("--steps", type=bounded(int, 1), default=20, help="denoising steps")
    parser.add_argument("--variant", choices=sorted(VARIANTS), action="append",
                        help="a lever to measure against bfloat16 eager (default: every eager one)")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--json", type=writable_file, help="write the results here")
    args = parser.parse_args(argv)
    args.variant = args.variant or [v for v in VARIANTS if "compile" not in VARIANTS[v]]
    if len(compiled := [v for v in args.variant if "compile" in VARIANTS[v]]) > 1:
        parser.error(f"--variant: one compiled variant a process, not {', '.join(compiled)} (torch compiles per "
                     "class: the second would run the first one's graph)")
    if problem := folder_problem(args.weights, "WanImageToVideoPipeline"):
        parser.error(f"--weights {args.weights}: {problem}")
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
               "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
               "variants": measure(args)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(guarded("bench/wan_levers_quality.py", lambda: main() and 0))
