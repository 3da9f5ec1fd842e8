"""Train the offline world's video models (issue 16): one command per model, seeded, saved in fp16.

    python -m training.world_video vae --out W/wan_vae                    # AutoencoderKLWan, 17 x 64 x 64 -> 5 x 16 x 16 x 8
    python -m training.world_video i2v --vae W/wan_vae --out W/wan_i2v    # WanImageToVideoPipeline from a first frame
    python -m training.world_video flf --vae W/wan_vae --out W/wan_flf    # the same from first and last frames

The world's clips come from `mora.nodes.world` as in `training.world` (scene numbers drawn on the CPU,
frames rendered in batches on the GPU); held-out captions are never trained on. `i2v` learns to animate
a first frame as its caption says (direction, speed); `flf` learns transitions that carry each thing
from where the first frame has it to where the last frame has it (for connect_videos). Both are
diffusers' `WanTransformer3DModel` with a UMT5 text encoder over the world's word tokenizer and a CLIP
image encoder, trained with Wan's flow-matching objective on conditioning built exactly as
`WanImageToVideoPipeline.prepare_latents` builds it (tests/test_world_video_training.py checks that),
so the pipeline loads and runs them like any Wan 2.1 I2V/FLF2V checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mora.engine.frontends.guard import guarded
from mora.nodes.world import scene as world
from training.cli import bounded, folder_problem
from training.world import (
    PARAMS,
    SIZE,
    Averages,
    Recipe,
    Run,
    autocast,
    draw,
    loader,
    parse_args,
    reconstruction_loss,
    sample_training_scene,
    scene_params,
    setup,
    text_tokenizer,
    thing_weight,
    train_caption,
)

FRAMES = 17
"""Frames of a training clip: Wan's 4k + 1, five latent frames; a normal-speed thing crosses half the frame."""
Z = 8
"""Latent channels of the world's video VAE."""
SHIFT = 3.0
"""Flow-matching shift, as Wan 2.1 I2V 480P uses at inference."""
MOVING = 0.8
"""Share of one-thing I2V scenes that move: motion as the caption says is what I2V must learn (the world's default
0.4, with two-thing scenes still, left 68% of the clips still; the shipped model learned those and not the motion)."""


def clip_params(scene: world.Scene, layout: world.Layout, frames: int = FRAMES,
                end: world.Layout | None = None) -> torch.Tensor:
    """`scene_params` for each frame: things move as their motion says, or glide from `layout` to `end`."""
    rows = []
    for f in range(frames):
        if end is None:
            centres = world.positions(scene, layout, f)
        else:
            a = f / (frames - 1)
            centres = tuple((x0 + a * (x1 - x0), y0 + a * (y1 - y0))
                            for (x0, y0), (x1, y1) in zip(layout.centres, end.centres))
        rows.append(scene_params(scene, dataclasses.replace(layout, centres=centres)))
    return torch.stack(rows)


def draw_clips(p: torch.Tensor) -> torch.Tensor:
    """Clips (B x F x PARAMS) drawn on their device as Wan's VAE takes them: B x 3 x F x H x W in [-1, 1]."""
    b, f, _ = p.shape
    return draw(p.reshape(b * f, PARAMS)).reshape(b, f, 3, SIZE, SIZE).transpose(1, 2)


class ClipStream(IterableDataset):
    """Endless seeded clips; each worker draws from its own seed."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind, self.seed = kind, seed
        self.memo: dict[str, torch.Tensor] = {}

    def __iter__(self) -> Any:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            yield getattr(self, f"_{self.kind}")(rng)

    def _ids(self, text: str) -> torch.Tensor:
        """Token ids and attention mask (2 x positions), as the pipeline's `encode_prompt` tokenizes."""
        if text not in self.memo:
            tok = text_tokenizer()
            enc = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_attention_mask=True, return_tensors="pt")
            self.memo[text] = torch.stack([enc.input_ids[0], enc.attention_mask[0]])
        return self.memo[text]

    def _vae(self, rng: np.random.Generator) -> torch.Tensor:
        scene = world.sample_scene(rng, two=0.3, moving=0.8)
        return clip_params(scene, world.place(scene, rng))

    def _frame(self, rng: np.random.Generator) -> torch.Tensor:
        """One frame (1 x PARAMS) of a scene of its own, at a random time of its motion."""
        scene = world.sample_scene(rng, two=0.3, moving=0.8)
        layout = world.place(scene, rng)
        moved = dataclasses.replace(layout, centres=world.positions(scene, layout, int(rng.integers(FRAMES))))
        return scene_params(scene, moved)[None]

    def _i2v(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        scene = sample_training_scene(rng, moving=MOVING)
        text = "" if rng.random() < 0.1 else train_caption(scene, rng)
        return clip_params(scene, world.place(scene, rng)), self._ids(text)

    def _flf(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        scene = sample_training_scene(rng)
        still = world.Scene(tuple(dataclasses.replace(t, motion=None, region=None) for t in scene.things),
                            scene.background, scene.texture, scene.style, scene.relation)
        text = "" if rng.random() < 0.1 else train_caption(still, rng)
        return clip_params(still, world.place(still, rng), end=world.place(still, rng)), self._ids(text)


# VAE --------------------------------------------------------------------------------------------------------

def vae_model(temporal: int = 4, decoder_width: int | None = None) -> Any:
    """The world's Wan VAE: 4x smaller frames, and `temporal` (4, 2 or 1) frames to a latent frame after the first.
    A temporal-1 VAE starts by coding each frame alone (`frame_alone`). `decoder_width`: the decoder's base channels
    (the encoder's 32 if None)."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan(base_dim=32, decoder_base_dim=decoder_width, z_dim=Z, dim_mult=[1, 2, 2], num_res_blocks=1,
                           temperal_downsample=[temporal == 4, temporal > 1], latents_mean=[0.0] * Z,
                           latents_std=[1.0] * Z, scale_factor_temporal=temporal, scale_factor_spatial=4)
    if temporal == 1:
        frame_alone(vae)
    return vae


def time_taps(vae: Any) -> list[torch.Tensor]:
    """The weights by which the VAE's causal convolutions look at earlier frames."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return [m.weight[:, :, :-1] for m in vae.modules() if isinstance(m, WanCausalConv3d) and m.kernel_size[0] > 1]


def frame_alone(vae: Any) -> None:
    """Zero every time tap, so each frame is coded alone. Trained on single frames (`--image-share 1`) the taps
    only ever see the causal zero padding, get no gradient and stay zero: a per-frame code, which at this size
    keeps things far better than packing frames (2026-11-26: 41% of clips kept by the best packing VAE after 21.5
    minutes; bench/README.md); coherence over time is then the video model's job, as it is for motion anyway."""
    with torch.no_grad():
        for taps in time_taps(vae):
            taps.zero_()


def codes_frames_alone(vae: Any) -> bool:
    """Whether the VAE codes each frame alone (so a clip may be encoded as a batch of single frames)."""
    return vae.config.scale_factor_temporal == 1 and all(not taps.any() for taps in time_taps(vae))


def frame_convs(vae: Any) -> None:
    """Compute each causal convolution of a VAE that codes frames alone as the 2-D convolution it equals (its last
    tap, frame by frame): a third of the multiply-adds of a 3-tap convolution over mostly zero padding, so a training
    step of the world's video models spends far less on coding frames. The earlier taps stay zero: unused, they get no
    gradient."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    if not codes_frames_alone(vae):
        raise ValueError("frame_convs needs a VAE that codes each frame alone (codes_frames_alone)")
    for m in vae.modules():
        if isinstance(m, WanCausalConv3d) and m.kernel_size[0] > 1:
            if m.stride[0] != 1 or m.kernel_size[0] != m._padding[4] + 1:  # its last tap must be the frame itself
                raise ValueError(f"frame_convs: a causal convolution of kernel {m.kernel_size}, stride {m.stride} "
                                 "does not see each frame through its last tap")
            m.forward = types.MethodType(_frame_conv, m)


def _frame_conv(conv: Any, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
    """A `WanCausalConv3d` forward whose earlier-frame taps are zero: what came before (`cache_x`) adds nothing."""
    b, f = x.shape[0], x.shape[2]
    pad_w, _, pad_h = conv._padding[:3]
    y = torch.nn.functional.conv2d(x.transpose(1, 2).flatten(0, 1), conv.weight[:, :, -1], conv.bias,
                                   conv.stride[1:], (pad_h, pad_w))
    return y.unflatten(0, (b, f)).transpose(1, 2)


def vae_loss(vae: Any, x: torch.Tensor, precision: Any, latent_noise: float = 0.0) -> torch.Tensor:
    """The VAE's training loss on clips `x`: thing-weighted reconstruction of a posterior sample, a touch of KL; the
    encode and decode under `precision` (an autocast context; bench/wan_vae_step.py times the same loss).
    `latent_noise`: the decoded latent also carries Gaussian noise of a standard deviation drawn per clip up to this,
    in the video models' normalised units (`latents_std`), so the decoder learns to draw a clean thing from the
    slightly-off latents a video model makes, not only from the encoder's own (whose posterior spread is ~0.03)."""
    with precision:
        post = vae.encode(x).latent_dist
        z = post.sample()
        if latent_noise:
            std = latent_stat(vae, "latents_std", z)
            level = latent_noise * torch.rand(z.shape[0], 1, 1, 1, 1, device=z.device, dtype=z.dtype)
            z = z + level * std * torch.randn_like(z)
        rec = vae.decode(z).sample
    return reconstruction_loss(rec.float(), x) + 1e-6 * post.kl().mean()


def train_vae(args: argparse.Namespace) -> None:
    from diffusers import AutoencoderKLWan

    device = setup(args)
    vae = AutoencoderKLWan.from_pretrained(args.init, dtype=torch.float32) if args.init else \
        vae_model(args.temporal or 4, args.decoder_width)
    vae = vae.to(device).train()
    if args.decoder_only:  # the latent space stays as it is: video models trained on it stay valid
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    if (args.image_share >= 1 or args.independent_frames) and codes_frames_alone(vae):  # taps never used
        frame_convs(vae)
    data = loader("frame" if args.independent_frames else "vae", args.seed, args.batch, args.workers, ClipStream)
    run = Run(args, [p for p in vae.parameters() if p.requires_grad], args.lr or 1e-3)
    for step in run.steps():
        p = run.next(data).to(device, non_blocking=True)
        if run.progress(step) < args.image_share:  # each frame alone: the spatial code at 17x the frames of a step
            p = p.reshape(-1, 1, PARAMS)
        run.update(step, vae_loss(vae, draw_clips(p), autocast(device), args.latent_noise))
    vae.eval()
    with torch.no_grad():  # per-channel latent statistics, the normalisation Wan's pipelines apply
        x = torch.cat([draw_clips(next(data).to(device)) for _ in range(4)])
        z = vae.encode(x).latent_dist.mode()
        mean, std = z.mean(dim=(0, 2, 3, 4)), z.std(dim=(0, 2, 3, 4))
        err = float((vae.decode(z).sample - x).abs().mean())
    if not args.decoder_only:  # a kept encoder keeps the statistics its video models were trained with
        vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    out = Path(args.out)
    vae.to(torch.float16).save_pretrained(out)
    run.save_log(out, reconstruction_l1=err, per_frame=codes_frames_alone(vae))
    print(f"wan vae: reconstruction L1 {err:.4f} -> {out}")


# Image-to-video -------------------------------------------------------------------------------------------

IMAGE_TOKENS = (SIZE // 8) ** 2 + 1
"""The CLIP image encoder's tokens: 8-pixel patches of a 64-pixel frame, and its class token."""


def components(first_last: bool, temporal: int = 4, width: int = 128, layers: int = 6,
               head_dim: int = 32) -> dict[str, Any]:
    """The trainable parts of a world Wan pipeline: text encoder, image encoder and transformer (which reads the noisy
    latent, the given frames' mask, one channel per frame of the VAE's temporal stride, and their latent; `width`
    channels in heads of `head_dim`, `layers` blocks). Wan's rotary embedding gives each spatial axis a third of a
    head's channels: heads of 32 give an axis 5 frequencies, of which only the two highest (1 and 0.16 radians a
    token) vary across the world's 8 tokens, too few to tell a thing 4 tokens away from one 6 away; heads of 64 give
    10 (1, 0.40, 0.16, 0.06 ...)."""
    from diffusers import WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    text = UMT5EncoderModel(UMT5Config(vocab_size=len(text_tokenizer()), d_model=128, d_kv=32, d_ff=512,
                                       num_layers=3, num_heads=4, relative_attention_num_buckets=16,
                                       relative_attention_max_distance=32))
    image = CLIPVisionModel(CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                                             num_attention_heads=4, image_size=SIZE, patch_size=8))
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=width // head_dim, attention_head_dim=head_dim,
        in_channels=2 * Z + temporal,
        out_channels=Z, text_dim=128, freq_dim=256, ffn_dim=4 * width, num_layers=layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=64, image_dim=128, pos_embed_seq_len=2 * IMAGE_TOKENS if first_last else None)
    return {"text_encoder": text, "image_encoder": image, "transformer": transformer}


def image_processor() -> Any:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})


def image_tokens(encoder: Any, frames: torch.Tensor) -> torch.Tensor:
    """What `WanImageToVideoPipeline.encode_image` gives for frames in [-1, 1] already at the encoder's size:
    the processor's rescale and CLIP normalisation, then the encoder's second-to-last hidden states."""
    proc = image_processor()
    mean = torch.tensor(proc.image_mean, device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std, device=frames.device).view(1, 3, 1, 1)
    pixels = torch.floor((frames + 1) * 127.5 + 0.5) / 255  # the uint8 frame the processor would be handed
    return encoder(pixel_values=(pixels - mean) / std, output_hidden_states=True).hidden_states[-2]


def text_states(encoder: Any, ids: torch.Tensor) -> torch.Tensor:
    """Caption states as `encode_prompt` makes them: padding masked, and its states zero (the pipeline trims and pads
    with zeros). `ids` is B x 2 x L: token ids, then the attention mask."""
    mask = ids[:, 1]
    return encoder(ids[:, 0], attention_mask=mask).last_hidden_state * mask[..., None]


def given_frame_tokens(encoder: Any, clips: torch.Tensor, first_last: bool) -> torch.Tensor:
    """Image tokens of the frames the pipeline is given (the first, and the last for FLF2V), clip by clip."""
    frames = [clips[:, :, 0], clips[:, :, -1]] if first_last else [clips[:, :, 0]]
    return torch.stack([image_tokens(encoder, f) for f in frames], 1).flatten(0, 1)


def encode_clips(vae: Any, clips: torch.Tensor, first_last: bool,
                 alone: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """For a batch of clips (B x 3 x F x H x W): their normalised latents (the denoising target) and their conditioning
    as `prepare_latents` builds it one video at a time (mask channels, then the latent of the video the pipeline
    encodes: the first, and for FLF2V the last, frame kept, the others black), in one VAE call (half the kernel
    launches of two; the same latents, per clip). The posterior's mode, as the pipeline encodes its conditioning.
    `alone`: the VAE codes frames alone (`codes_frames_alone`), so every frame goes in one batch, not chunk by chunk,
    and the given video's latents are the clip's own and that of one zero frame: half the coding."""
    f = clips.shape[2]
    keep = torch.zeros(f, dtype=torch.bool, device=clips.device)
    keep[0] = True
    if first_last:
        keep[-1] = True
    if alone:  # each frame's latent is its own: the given video's are the clip's, or that of the pipeline's zeros
        frames = torch.cat([clips.transpose(1, 2).flatten(0, 1), clips.new_zeros(1, clips.shape[1], *clips.shape[3:])])
        z = vae.encode(frames[:, :, None].to(vae.dtype)).latent_dist.mode().float()
        latents, zeros = z[:-1].unflatten(0, (-1, f)).squeeze(3).transpose(1, 2), z[-1:]
        both = torch.cat([latents, torch.where(keep.view(1, 1, f, 1, 1), latents, zeros)])
    else:
        video = clips * keep.view(1, 1, f, 1, 1)
        both = vae.encode(torch.cat([clips, video]).to(vae.dtype)).latent_dist.mode().float()
    x0, given = normalise(vae, both).chunk(2)
    return x0, with_mask(given, keep, vae)


def with_mask(latent: torch.Tensor, keep: torch.Tensor, vae: Any) -> torch.Tensor:
    """The mask channels in front of the given frames' latent, in the pipeline's layout (the first frame's mask
    repeated over the VAE's temporal stride)."""
    b, f = latent.shape[0], keep.shape[0]
    t = vae.config.scale_factor_temporal
    lh, lw = latent.shape[-2:]
    mask = keep.float().view(1, 1, f, 1, 1).expand(b, 1, f, lh, lw)
    mask = torch.cat([mask[:, :, :1].repeat_interleave(t, dim=2), mask[:, :, 1:]], dim=2)
    mask = mask.reshape(b, -1, t, lh, lw).transpose(1, 2)
    return torch.cat([mask, latent], dim=1)


def latent_stat(vae: Any, key: str, like: torch.Tensor) -> torch.Tensor:
    """The VAE's per-channel `latents_mean` or `latents_std` (Wan's normalisation), shaped to broadcast over latents
    like `like` (B x C x F x H x W), on its device and in its dtype."""
    return torch.tensor(vae.config[key], device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)


def normalise(vae: Any, latent: torch.Tensor) -> torch.Tensor:
    return (latent - latent_stat(vae, "latents_mean", latent)) / latent_stat(vae, "latents_std", latent)


def flow_sigmas(n: int, device: torch.device) -> torch.Tensor:
    """Noise levels for training, spread as the inference schedule spreads its steps (and as Wan trains): uniform,
    then shifted as the scheduler shifts them. The high-noise steps are where a clip's motion is decided (below
    sigma ~0.8 the noisy latent shows it; above, only the caption and the given frames do), and 20 UniPC steps take
    6 of their steps at 0.9 or above; the logit-normal draw used before gave that range 14% of its samples, and the
    shipped models' estimates there were barely better than "nothing moves" (2026-11-26, bench/wan_motion_probe.py)."""
    s = torch.rand(n, device=device)
    return SHIFT * s / (1 + (SHIFT - 1) * s)


def train_wan(args: argparse.Namespace, first_last: bool) -> None:
    from diffusers import AutoencoderKLWan

    device = setup(args)
    vae = AutoencoderKLWan.from_pretrained(args.vae, dtype=torch.float32).to(device).eval().requires_grad_(False)
    parts = load_parts(args.init) if args.init else \
        components(first_last, vae.config.scale_factor_temporal, args.width or 128, args.layers or 6,
                   args.head_dim or 32)
    frozen = load_encoders(args.frozen_encoders) if args.frozen_encoders else {}
    parts.update(frozen)
    parts = {k: m.to(device).train(k not in frozen).requires_grad_(k not in frozen) for k, m in parts.items()}
    trained = {k: m for k, m in parts.items() if k not in frozen}
    alone = codes_frames_alone(vae)
    if alone:
        frame_convs(vae)
    params = [p for m in trained.values() for p in m.parameters()]
    averages = Averages(trained, device)
    data = loader("flf" if first_last else "i2v", args.seed, args.batch, args.workers, ClipStream)
    run = Run(args, params, args.lr or 3e-4)
    # compiled on its first step, inside the run's clock (--max-minutes); the saved weights are the module's own
    transformer = torch.compile(parts["transformer"]) if args.compile else parts["transformer"]
    for step in run.steps():
        p, ids = (t.to(device, non_blocking=True) for t in run.next(data))
        with torch.no_grad(), autocast(device):
            clips = draw_clips(p)
            # the posterior's mode, as the pipeline encodes its conditioning frames: a small world VAE keeps a wide
            # posterior (std 0.35 against latents of std ~1.2 after a 3-minute run), and sampled targets taught the
            # transformer that noise (2026-11-26: its loss on the given first frame stayed at the others' level)
            x0, cond = encode_clips(vae, clips, first_last, alone)
        sigma = flow_sigmas(x0.shape[0], device).view(-1, 1, 1, 1, 1)
        noise = torch.randn_like(x0)
        noisy = (1 - sigma) * x0 + sigma * noise
        with autocast(device), torch.set_grad_enabled(not frozen):
            text = text_states(parts["text_encoder"], ids)
            image = given_frame_tokens(parts["image_encoder"], clips, first_last)
        with autocast(device):
            pred = transformer(hidden_states=torch.cat([noisy, cond], 1), timestep=sigma.flatten() * 1000,
                                        encoder_hidden_states=text, encoder_hidden_states_image=image).sample
        error = (pred.float() - (noise - x0)) ** 2
        loss = error.mean() if not args.weigh_things else weighted_mean(error, latent_thing_weight(clips, x0.shape[-1]))
        run.update(step, loss)
        averages.step()
    averages.copy_to_parts()
    save_wan(Path(args.out), parts, vae)
    run.save_log(Path(args.out))


def latent_thing_weight(clips: torch.Tensor, side: int) -> torch.Tensor:
    """`thing_weight` of clips (B x 3 x F x H x W) at the latents' `side`: a latent cell counts as the thing's if any
    of its pixels do, so a small thing's few cells weigh as much in the flow-matching loss as in the VAE's."""
    w = thing_weight(clips.float())
    return torch.nn.functional.adaptive_max_pool3d(w, (w.shape[2], side, side))


def weighted_mean(error: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean of `error` weighted by `weight`, divided by the mean weight so the loss keeps the plain mean's scale
    (and the learning rates tuned for it)."""
    return (weight * error).mean() / weight.mean()


def load_parts(folder: str) -> dict[str, Any]:
    from diffusers import WanTransformer3DModel
    from transformers import CLIPVisionModel, UMT5EncoderModel

    return {"text_encoder": UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder", dtype=torch.float32),
            "image_encoder": CLIPVisionModel.from_pretrained(folder, subfolder="image_encoder", dtype=torch.float32),
            "transformer": WanTransformer3DModel.from_pretrained(folder, subfolder="transformer",
                                                                 dtype=torch.float32)}


def load_encoders(folder: str) -> dict[str, Any]:
    """The text and image encoders of another world Wan pipeline (`--frozen-encoders`), to be kept as they are: the
    FLF2V can share the I2V's, as Wan 2.1's FLF2V shares Wan's UMT5 and CLIP, and spend its size on its transformer."""
    parts = load_parts(folder)
    return {k: parts[k] for k in ("text_encoder", "image_encoder")}


def save_wan(out: Path, parts: dict[str, Any], vae: Any) -> None:
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline

    # Wan 2.1 I2V's published scheduler: UniPC on flow-matching sigmas, shifted as training shifted them
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=SHIFT)
    pipe = WanImageToVideoPipeline(tokenizer=text_tokenizer(), image_processor=image_processor(), vae=vae,
                                   scheduler=scheduler, **{k: m.eval() for k, m in parts.items()})
    pipe.to(dtype=torch.float16)
    pipe.save_pretrained(out, max_shard_size="6MB")  # the repository keeps no file over 10 MB; diffusers indexes shards
    print(f"WanImageToVideoPipeline -> {out}")


RECIPES = {"vae": Recipe(3000, 32, init="AutoencoderKLWan",
                         reads=("temporal", "image_share", "decoder_only", "latent_noise", "independent_frames",
                                "decoder_width")),
           "i2v": Recipe(6000, 64, vae="AutoencoderKLWan", init="WanImageToVideoPipeline",
                          reads=("width", "layers", "head_dim", "weigh_things", "compile", "frozen_encoders")),
           "flf": Recipe(6000, 64, vae="AutoencoderKLWan", init="WanImageToVideoPipeline",
                          reads=("width", "layers", "head_dim", "weigh_things", "compile", "frozen_encoders"))}


def main(argv: list[str] | None = None) -> None:
    def vae_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
        return [parser.add_argument("--temporal", type=int, choices=(1, 2, 4),
                                    help="vae: frames to a latent frame (Wan's 4, the default; fewer keep moving "
                                         "shapes sharper); an --init VAE keeps its own"),
                parser.add_argument("--image-share", type=bounded(float, 0, 1), default=0.0,
                                    help="vae: share of the run that trains on single frames before clips"),
                parser.add_argument("--decoder-only", action="store_true",
                                    help="vae: train the decoder of an --init VAE alone (its latents, and the video "
                                         "models trained on them, stay valid)"),
                parser.add_argument("--latent-noise", type=bounded(float, 0, 2), default=0.0,
                                    help="vae, with --decoder-only: decode latents with Gaussian noise of up to this "
                                         "standard deviation (normalised units), for video models' slightly-off "
                                         "latents"),
                parser.add_argument("--independent-frames", action="store_true",
                                    help="vae, coding frames alone: each step's frames come from as many scenes, not "
                                         "from a few clips' correlated frames"),
                parser.add_argument("--decoder-width", type=bounded(int, 8), default=None,
                                    help="vae, afresh: the decoder's base channels (default the encoder's 32)"),
                parser.add_argument("--width", type=bounded(int, 32), default=None,
                                    help="i2v/flf, afresh: the transformer's channels (default 128)"),
                parser.add_argument("--head-dim", type=int, choices=(32, 64, 96), default=None,
                                    help="i2v/flf, afresh: channels of an attention head (default 32); wider heads "
                                         "give the rotary embedding finer positions (see `components`)"),
                parser.add_argument("--layers", type=bounded(int, 1), default=None,
                                    help="i2v/flf, afresh: the transformer's blocks (default 6)"),
                parser.add_argument("--weigh-things", action="store_true",
                                    help="i2v/flf: weigh the loss on the latent cells a thing covers as the VAE's "
                                         "reconstruction does (a small thing is ~2%% of a frame)"),
                parser.add_argument("--frozen-encoders", default=None,
                                    help="i2v/flf: take the text and image encoders of this saved world Wan pipeline "
                                         "(e.g. the I2V's) and keep them as they are; only the transformer trains"),
                parser.add_argument("--compile", action="store_true",
                                    help="i2v/flf: torch.compile the transformer (its compile time counts towards "
                                         "--max-minutes)")]

    def agrees(args: argparse.Namespace) -> str | None:
        """The saved layers fix an --init VAE's stride: never train another one than the command asks for; a
        decoder trained alone needs the encoder it keeps, and only such a decoder may train on noisy latents."""
        if args.model == "vae" and args.decoder_only and not args.init:
            return "--decoder-only needs --init (the VAE whose encoder it keeps)"
        if args.model == "vae" and args.independent_frames:
            stride = args.temporal if not args.init else \
                json.loads((Path(args.init) / "config.json").read_text()).get("scale_factor_temporal")
            if stride != 1:
                return "--independent-frames needs a VAE that codes each frame alone (--temporal 1)"
        if args.frozen_encoders and (problem := folder_problem(Path(args.frozen_encoders), "WanImageToVideoPipeline")):
            return f"--frozen-encoders {args.frozen_encoders}: {problem}"
        if args.init and (args.decoder_width, args.width, args.layers, args.head_dim) != (None, None, None, None):
            return "--init keeps its model's layers: drop --decoder-width, --width, --layers and --head-dim"
        if (args.width or 128) % (args.head_dim or 32):
            return f"--width {args.width or 128}: must be a multiple of the heads' {args.head_dim or 32} channels"
        if args.weigh_things and \
                json.loads((Path(args.vae) / "config.json").read_text()).get("scale_factor_temporal") != 1:
            return ("--weigh-things needs a --vae that codes each frame alone (a latent frame a frame, so a thing's "
                    "cells are where its pixels are)")
        if args.model == "vae" and args.latent_noise and not args.decoder_only:
            return ("--latent-noise needs --decoder-only (an encoder trained against the noise would outgrow it; the "
                    "latent statistics it is measured in are the kept encoder's)")
        if args.model != "vae" or not args.init or args.temporal is None:
            return None
        kept = json.loads((Path(args.init) / "config.json").read_text()).get("scale_factor_temporal")
        return None if kept == args.temporal else (f"--temporal {args.temporal}: the --init VAE packs {kept} frames to "
                                                   "a latent frame; drop --temporal or start afresh")

    args = parse_args("python -m training.world_video", __doc__, RECIPES, argv, vae_options, agrees)
    {"vae": train_vae, "i2v": lambda a: train_wan(a, False), "flf": lambda a: train_wan(a, True)}[args.model](args)


if __name__ == "__main__":
    sys.exit(guarded("python -m training.world_video", main))  # Ctrl-C: 130 and one line, as mora
