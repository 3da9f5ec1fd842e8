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

from engine.media import Frames, write_mp4


def timed(fn):  # type: ignore[no-untyped-def]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t2i", required=True)
    ap.add_argument("--i2v", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt", default="a red fox running through fresh snow at sunrise")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=576)
    ap.add_argument("--image-steps", type=int, default=25)
    ap.add_argument("--video-steps", type=int, default=25)
    ap.add_argument("--frames", type=int, default=14)
    ap.add_argument("--decode-chunk-size", type=int, default=8)
    args = ap.parse_args()
    t_all = time.perf_counter()
    dtype = torch.bfloat16
    t2i, load_t2i = timed(lambda: AutoPipelineForText2Image.from_pretrained(args.t2i, torch_dtype=dtype).to("cuda"))
    i2v, load_i2v = timed(lambda: StableVideoDiffusionPipeline.from_pretrained(args.i2v, torch_dtype=dtype).to("cuda"))
    for p in (t2i, i2v):
        p.set_progress_bar_config(disable=True)
    prompt = f"{args.prompt}, highly detailed, cinematic lighting"
    image, t_image = timed(lambda: t2i(prompt, width=args.width, height=args.height,
                                       num_inference_steps=args.image_steps, guidance_scale=7.5,
                                       generator=torch.Generator("cpu").manual_seed(args.seed)).images[0])
    frames, t_video = timed(lambda: i2v(image, width=args.width, height=args.height, num_frames=args.frames,
                                        num_inference_steps=args.video_steps, fps=7, motion_bucket_id=127,
                                        noise_aug_strength=0.02, decode_chunk_size=args.decode_chunk_size,
                                        generator=torch.Generator("cpu").manual_seed(args.seed),
                                        output_type="np").frames[0])
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image.save(out / "keyframe.png")
    array = (frames * 255).round().clip(0, 255).astype("uint8")
    write_mp4(Frames(array, 7.0), out / "video.mp4")
    t_write = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    print(json.dumps({"raw_total_s": round(total, 3), "load_t2i_s": round(load_t2i, 3), "load_i2v_s": round(load_i2v, 3),
                      "image_s": round(t_image, 3), "video_s": round(t_video, 3), "write_s": round(t_write, 3),
                      "generate_s": round(t_image + t_video, 3)}))


if __name__ == "__main__":
    main()
