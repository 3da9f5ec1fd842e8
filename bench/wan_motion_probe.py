"""Did a world Wan I2V/FLF2V model learn motion, and does the pipeline give it what training gave it? (issue 16)

    python bench/wan_motion_probe.py --weights W/wan_i2v [--json OUT.json]
    python bench/wan_motion_probe.py --weights W/wan_flf

Training clips (training/world_video.py's stream: held-in, so a failure here is not generalisation) go through two
measurements, on the CPU in about a minute:

- inputs: one clip through `WanImageToVideoPipeline.__call__` (transformer.forward wrapped to record its inputs)
  against training's own inputs for it: the largest difference in the mask + first(/last)-frame latent, the text
  states and the image tokens, and the timesteps the scheduler feeds (sigma x 1000).
- motion: `--n` moving clips (I2V: one thing moving as its caption says; FLF2V: a thing gliding between two places)
  noised to each sigma; the transformer's denoised estimate (x0 = x_t - sigma v) against the clip's latent, on the
  latent frames after the first (the first is given). Beside it, the error of guessing "nothing moves" (the first
  frame held), and for I2V the error with the caption's direction flipped: a model that reads the caption's
  direction does worse with it flipped. Above sigma ~0.8 the noisy latent no longer shows the motion, so there the
  caption and the given frames are all the model has, and the sampler's first steps decide the clip there.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # training/ is not installed; last: an installed mora wins

from mora.nodes.world import scene as world
from training import world_video as wv
from training.world import train_caption

SIGMAS = (0.999, 0.95, 0.9, 0.8, 0.6, 0.4)
FLIP = {"left": "right", "right": "left", "up": "down", "down": "up"}


def clips(n: int, first_last: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Params of moving clips (and of the same clips held still), their captions and the direction-flipped ones."""
    rng = np.random.default_rng(seed)
    moving, still, texts, flipped = [], [], [], []
    while len(moving) < n:
        scene = world.sample_scene(rng, two=0, moving=0 if first_last else 1)
        text = train_caption(scene, rng)
        motion = scene.things[0].motion
        if not first_last and f"moving {motion}" not in text:
            continue
        start = world.place(scene, rng)
        end = world.place(scene, rng) if first_last else None
        held = dataclasses.replace(scene, things=(dataclasses.replace(scene.things[0], motion=None),))
        moving.append(wv.clip_params(scene, start, end=end))
        still.append(wv.clip_params(held, start))
        texts.append(text)
        flipped.append(text if first_last else text.replace(f"moving {motion}", f"moving {FLIP[motion]}"))
    return torch.stack(moving), torch.stack(still), texts, flipped


def text_states(pipe: Any, stream: wv.ClipStream, texts: list[str]) -> torch.Tensor:
    return wv.text_states(pipe.text_encoder, torch.stack([stream._ids(t) for t in texts]))


def image_tokens(pipe: Any, video: torch.Tensor, first_last: bool) -> torch.Tensor:
    return wv.given_frame_tokens(pipe.image_encoder, video, first_last)


def inputs(pipe: Any, first_last: bool, stream: wv.ClipStream) -> dict[str, Any]:
    """Largest differences between training's transformer inputs and the pipeline's for one clip."""
    from PIL import Image

    p, _, texts, _ = clips(1, first_last, 7)
    video = wv.draw_clips(p)
    as_image = lambda f: Image.fromarray(((f[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    seen: list[dict[str, Any]] = []
    forward = pipe.transformer.forward

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append({k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})
        return forward(*args, **kwargs)

    pipe.transformer.forward = spy
    try:
        pipe(as_image(video[:, :, 0]), prompt=texts[0], last_image=as_image(video[:, :, -1]) if first_last else None,
             height=wv.SIZE, width=wv.SIZE, num_frames=wv.FRAMES, num_inference_steps=20, guidance_scale=5.0,
             max_sequence_length=min(512, pipe.tokenizer.model_max_length), output_type="latent",
             generator=torch.Generator().manual_seed(0))
    finally:
        pipe.transformer.forward = forward
    first = seen[0]
    ours = {"condition": wv.encode_clips(pipe.vae, video, first_last)[1], "text": text_states(pipe, stream, texts),
            "image": image_tokens(pipe, video, first_last)}
    theirs = {"condition": first["hidden_states"][:, wv.Z:], "text": first["encoder_hidden_states"],
              "image": first["encoder_hidden_states_image"]}
    pipe.scheduler.set_timesteps(20)
    return {**{f"max_abs_diff_{k}": float((ours[k] - theirs[k]).abs().max()) for k in ours},
            "timesteps_minus_1000_sigmas": float(max(abs(float(s["timestep"][0]) - 1000 * float(g))
                                                     for s, g in zip(seen[::2], pipe.scheduler.sigmas)))}


def motion(pipe: Any, first_last: bool, stream: wv.ClipStream, n: int) -> dict[str, Any]:
    """x0 error on the latent frames after the first, per sigma: the model's, with the flipped caption, and 'still'."""
    moving, still, texts, flipped = clips(n, first_last, 5)
    normalised = lambda p: wv.normalise(pipe.vae, pipe.vae.encode(wv.draw_clips(p)).latent_dist.mode().float())
    video = wv.draw_clips(moving)
    (x0, cond), held = wv.encode_clips(pipe.vae, video, first_last), normalised(still)
    image = image_tokens(pipe, video, first_last)
    text, text_flipped = text_states(pipe, stream, texts), text_states(pipe, stream, flipped)
    later = slice(1, -1) if first_last else slice(1, None)  # frames the model has to make
    err = lambda guess: round(float(((guess - x0)[:, :, later] ** 2).mean()), 4)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))

    def x0_hat(sigma: float, states: torch.Tensor) -> torch.Tensor:
        noisy = (1 - sigma) * x0 + sigma * noise
        v = pipe.transformer(hidden_states=torch.cat([noisy, cond], 1), timestep=torch.full((n,), 1000 * sigma),
                             encoder_hidden_states=states, encoder_hidden_states_image=image).sample
        return noisy - sigma * v

    rows = []
    for sigma in SIGMAS:
        row = {"sigma": sigma, "model": err(x0_hat(sigma, text)), "nothing_moves": err(held)}
        if not first_last:
            row["model_direction_flipped"] = err(x0_hat(sigma, text_flipped))
        rows.append(row)
    return {"clips": n, "rows": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from diffusers import WanImageToVideoPipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="a world Wan I2V or FLF2V pipeline folder")
    parser.add_argument("--n", type=int, default=12, help="moving clips in the motion measurement")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    pipe = WanImageToVideoPipeline.from_pretrained(args.weights, dtype=torch.float32)
    first_last = pipe.transformer.config.pos_embed_seq_len is not None
    stream = wv.ClipStream("flf" if first_last else "i2v", 0)
    with torch.no_grad():
        result = {"weights": str(args.weights), "first_last": first_last,
                  "inputs": inputs(pipe, first_last, stream), "motion": motion(pipe, first_last, stream, args.n)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
