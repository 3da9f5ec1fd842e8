"""The baseline for the engine: text_to_video's pipelines called directly, same settings.

Loads the same saved folders the engine loads (random-weight full-size architectures from
nodes/zoo), draws a keyframe, animates it with Stable Video Diffusion and writes the MP4 with
the same encoder settings, timing each stage with CUDA synchronisation. This is what a user
script without Mora would do.

    python bench/raw_text_to_video.py --t2i DIR --i2v DIR --out DIR
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import AutoPipelineForText2Image, StableVideoDiffusionPipeline

from mora.engine.cache.media import Frames, write_mp4

PROMPT = "a red fox running through fresh snow at sunrise"


def timed(fn):  # type: ignore[no-untyped-def]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def generate(t2i_dir: str, i2v_dir: str, out: Path, seed: int = 0, prompt: str = PROMPT, width: int = 1024,
             height: int = 576, image_steps: int = 25, video_steps: int = 25, frames: int = 14,
             decode_chunk_size: int = 8) -> dict[str, float]:
    """Load both pipelines, draw, animate, write; return stage timings in seconds."""
    t_all = time.perf_counter()
    dtype = torch.bfloat16
    t2i, load_t2i = timed(lambda: AutoPipelineForText2Image.from_pretrained(t2i_dir, dtype=dtype).to("cuda"))
    i2v, load_i2v = timed(lambda: StableVideoDiffusionPipeline.from_pretrained(i2v_dir, dtype=dtype).to("cuda"))
    for p in (t2i, i2v):
        p.set_progress_bar_config(disable=True)
    text = f"{prompt}, highly detailed, cinematic lighting"
    image, t_image = timed(lambda: t2i(text, width=width, height=height, num_inference_steps=image_steps,
                                       guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(seed)).images[0])
    video, t_video = timed(lambda: i2v(image, width=width, height=height, num_frames=frames,
                                       num_inference_steps=video_steps, fps=7, motion_bucket_id=127,
                                       noise_aug_strength=0.02, decode_chunk_size=decode_chunk_size,
                                       generator=torch.Generator("cpu").manual_seed(seed), output_type="np").frames[0])
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    image.save(out / "keyframe.png")
    write_mp4(Frames((video * 255).round().clip(0, 255).astype("uint8"), 7.0), out / "video.mp4")
    t_write = time.perf_counter() - t0
    return {"raw_total_s": time.perf_counter() - t_all, "load_t2i_s": load_t2i, "load_i2v_s": load_i2v,
            "image_s": t_image, "video_s": t_video, "write_s": t_write}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t2i", required=True)
    ap.add_argument("--i2v", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    result = generate(args.t2i, args.i2v, Path(args.out), args.seed)
    print(json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    main()
