"""Train the offline world's SVD-layout models (issue 16): the image-to-video path that takes no prompt.

    python -m training.world_svd vae --out W/svd_vae                  # AutoencoderKLTemporalDecoder, 64 px -> 16 x 16 x 4
    python -m training.world_svd svd --vae W/svd_vae --out W/svd      # StableVideoDiffusionPipeline from a frame

Stable Video Diffusion hears no caption, so from one frame it can only learn what the world makes
likely: a thing placed without a stated region starts on the side it moves away from, so it keeps
moving away from the near edge, at the speed `motion_bucket_id` asks for (slow 64, normal 127,
fast 191; still things 0). That is what extend_video needs from the last frame of a clip. Training is
SVD's own: EDM noise levels, v-prediction, the conditioning frame noised by `noise_aug_strength`,
encoded by the VAE (unscaled, `mode()`) and by the CLIP image encoder exactly as
`StableVideoDiffusionPipeline` encodes it (tests/test_world_video_training.py checks that), and
`fps - 1`, motion bucket and noise strength as the added time ids.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mora.engine.frontends.guard import guarded
from mora.nodes.world import scene as world
from training.world import (
    SIZE,
    Averages,
    Recipe,
    Run,
    autocast,
    loader,
    parse_args,
    reconstruction_loss,
    sample_training_scene,
    setup,
)
from training.world_video import clip_params, draw_clips

FRAMES = 8
"""Frames of a training clip (SVD has no temporal compression; the agent may ask for fewer or more)."""
FPS = 7
"""The frame rate the world's clips are labelled with (the agent's default)."""
MOTION_BUCKETS = {"slow": 64, "normal": 127, "fast": 191}
"""`motion_bucket_id` for a thing's speed: SVD's 'amount of motion', here the world's speed (0: nothing moves)."""
CLIP_SIZE = 224
"""SVD's pipeline resizes the conditioning frame to 224 x 224 for its CLIP image encoder, whatever the encoder."""


class SvdStream(IterableDataset):
    """Endless seeded clips, with the motion bucket their speed asks for."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind, self.seed = kind, seed

    def __iter__(self) -> Any:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            scene = world.sample_scene(rng, two=0.3, moving=0.8) if self.kind == "vae" else sample_training_scene(rng)
            # unstated regions only: the start then says the direction, which is all one frame can say
            scene = dataclasses.replace(scene, things=tuple(dataclasses.replace(t, region=None) for t in scene.things))
            moving = [t for t in scene.things if t.motion]
            bucket = MOTION_BUCKETS[moving[0].speed] if moving else 0
            yield clip_params(scene, world.place(scene, rng), FRAMES), torch.tensor(float(bucket))


def frames_of(clips: torch.Tensor) -> torch.Tensor:
    """B x 3 x F x H x W clips as the (B F) x 3 x H x W frames SVD's VAE encodes one by one."""
    return clips.transpose(1, 2).flatten(0, 1)


# VAE --------------------------------------------------------------------------------------------------------

def vae_model() -> Any:
    from diffusers import AutoencoderKLTemporalDecoder

    return AutoencoderKLTemporalDecoder(block_out_channels=(32, 64, 64), layers_per_block=1, latent_channels=4,
                                        down_block_types=("DownEncoderBlock2D",) * 3, sample_size=SIZE)


def train_vae(args: argparse.Namespace) -> None:
    device = setup(args)
    vae = vae_model().to(device).train()
    data = loader("vae", args.seed, args.batch, args.workers, SvdStream)
    run = Run(args, list(vae.parameters()), args.lr or 1e-3)
    for step in run.steps():
        x = frames_of(draw_clips(run.next(data)[0].to(device, non_blocking=True)))
        with autocast(device):
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample(), num_frames=FRAMES).sample
        rec = rec.float()
        loss = reconstruction_loss(rec, x) + 1e-6 * post.kl().mean()
        run.update(step, loss)
    vae.eval()
    with torch.no_grad():
        x = frames_of(draw_clips(next(data)[0].to(device)))
        z = vae.encode(x).latent_dist.mode()
        std, err = float(z.std()), float((vae.decode(z, num_frames=FRAMES).sample - x).abs().mean())
    vae.register_to_config(scaling_factor=1.0 / std)
    out = Path(args.out)
    vae.to(torch.float16).save_pretrained(out)
    run.save_log(out, latent_std=std, reconstruction_l1=err)
    print(f"svd vae: latent std {std:.3f}, reconstruction L1 {err:.4f} -> {out}")


# Image-to-video -------------------------------------------------------------------------------------------

def components() -> dict[str, Any]:
    from diffusers import UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    # 4.0 M parameters (8 MB in fp16), so the SVD pipeline and both Wan pipelines fit the video side's 40 MB; the
    # first run's (64, 128, 128) was 10.4 M, most of it in the 128-channel blocks at 8 x 8 and 4 x 4 latents
    unet = UNetSpatioTemporalConditionModel(
        sample_size=SIZE // 4, in_channels=8, out_channels=4, block_out_channels=(64, 64, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 2 + ("DownBlockSpatioTemporal",),
        up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 2,
        cross_attention_dim=128, num_attention_heads=(2, 2, 2), addition_time_embed_dim=64,
        projection_class_embeddings_input_dim=3 * 64)
    image = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=128, projection_dim=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
        image_size=CLIP_SIZE, patch_size=32))
    return {"unet": unet, "image_encoder": image}


def feature_extractor() -> Any:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE})


def image_embeddings(encoder: Any, frames: torch.Tensor) -> torch.Tensor:
    """What `StableVideoDiffusionPipeline._encode_image` gives for frames in [-1, 1] (B x 1 x projection)."""
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    proc = feature_extractor()
    mean = torch.tensor(proc.image_mean, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std, device=frames.device).view(1, 3, 1, 1)
    pixels = (_resize_with_antialiasing(frames, (CLIP_SIZE, CLIP_SIZE)) + 1) / 2
    return encoder((pixels - mean) / std).image_embeds[:, None]


def edm_sigmas(n: int, device: torch.device) -> torch.Tensor:
    """Noise levels: log-normal as in SVD's training (P_mean 0.7, P_std 1.6)."""
    return torch.exp(0.7 + 1.6 * torch.randn(n, device=device))


def train_svd(args: argparse.Namespace) -> None:
    from diffusers import AutoencoderKLTemporalDecoder

    device = setup(args)
    vae = AutoencoderKLTemporalDecoder.from_pretrained(args.vae, dtype=torch.float32).to(device).eval()
    vae.requires_grad_(False)
    parts = components() if not args.init else load_parts(args.init)
    parts = {k: m.to(device).train() for k, m in parts.items()}
    params = [p for m in parts.values() for p in m.parameters()]
    averages = Averages(parts, device)
    data = loader("svd", args.seed, args.batch, args.workers, SvdStream)
    run = Run(args, params, args.lr or 3e-4)
    for step in run.steps():
        p, bucket = (t.to(device, non_blocking=True) for t in run.next(data))
        b = p.shape[0]
        with torch.no_grad(), autocast(device):
            clips = draw_clips(p)
            x0 = vae.encode(frames_of(clips)).latent_dist.sample().float() * vae.config.scaling_factor
            x0 = x0.unflatten(0, (b, FRAMES))
            aug = torch.rand(b, device=device) * 0.1
            first = clips[:, :, 0] + aug.view(-1, 1, 1, 1) * torch.randn_like(clips[:, :, 0])
            cond = vae.encode(first).latent_dist.mode().float()
        keep = (torch.rand(b, device=device) >= 0.1).float()  # the pipeline's unconditional branch: zeros
        sigma = edm_sigmas(b, device).view(-1, 1, 1, 1, 1)
        noisy = x0 + sigma * torch.randn_like(x0)
        c_in = 1 / (sigma ** 2 + 1).sqrt()
        cond = (cond * keep.view(-1, 1, 1, 1))[:, None].expand(-1, FRAMES, -1, -1, -1)
        ids = torch.stack([torch.full_like(aug, FPS - 1), bucket, aug], 1)
        with autocast(device):
            emb = image_embeddings(parts["image_encoder"], clips[:, :, 0]) * keep.view(-1, 1, 1)
            out = parts["unet"](torch.cat([c_in * noisy, cond], 2), 0.25 * sigma.log().flatten(),
                                encoder_hidden_states=emb, added_time_ids=ids).sample.float()
        denoised = out * (-sigma * c_in) + noisy * c_in ** 2  # v-prediction, as EulerDiscreteScheduler reads it
        loss = (((denoised - x0) ** 2) * ((sigma ** 2 + 1) / sigma ** 2)).mean()
        run.update(step, loss)
        averages.step()
    averages.copy_to_parts()
    save_svd(Path(args.out), parts, vae)
    run.save_log(Path(args.out))


def load_parts(folder: str) -> dict[str, Any]:
    from diffusers import UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionModelWithProjection

    return {"unet": UNetSpatioTemporalConditionModel.from_pretrained(folder, subfolder="unet", dtype=torch.float32),
            "image_encoder": CLIPVisionModelWithProjection.from_pretrained(folder, subfolder="image_encoder",
                                                                           dtype=torch.float32)}


def save_svd(out: Path, parts: dict[str, Any], vae: Any) -> None:
    from diffusers import StableVideoDiffusionPipeline

    from mora.nodes.zoo.video_models import _svd_scheduler

    pipe = StableVideoDiffusionPipeline(vae=vae, scheduler=_svd_scheduler(), feature_extractor=feature_extractor(),
                                        **{k: m.eval() for k, m in parts.items()})
    pipe.to(dtype=torch.float16)
    pipe.save_pretrained(out)
    print(f"StableVideoDiffusionPipeline -> {out}")


RECIPES = {"vae": Recipe(3000, 32),
           "svd": Recipe(6000, 64, vae="AutoencoderKLTemporalDecoder", init="StableVideoDiffusionPipeline")}


def main(argv: list[str] | None = None) -> None:
    args = parse_args("python -m training.world_svd", __doc__, RECIPES, argv)
    {"vae": train_vae, "svd": train_svd}[args.model](args)


if __name__ == "__main__":
    sys.exit(guarded("python -m training.world_svd", main))  # Ctrl-C: 130 and one line, as mora
