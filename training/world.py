"""Train the offline world's models: one command per model, seeded, saved with `save_pretrained` in fp16.

    python -m training.world vae      --out W/vae                 # AutoencoderKL, 64 px -> 16 x 16 x 4
    python -m training.world sd       --vae W/vae --out W/sd      # text_to_image (and image_to_image)
    python -m training.world pix2pix  --vae W/vae --out W/pix2pix # image_edit (InstructPix2Pix layout)
    python -m training.world lm       --out W/prompt_lm           # prompt agent: loose prompt -> caption

Data come from `mora.nodes.world` on the fly (DataLoader workers, one seed per worker), never from
files; captions of the held-out split (`captions.held_out`) are never trained on. The diffusion
models are diffusers' own classes with Stable Diffusion's noise schedule and objective (epsilon),
the text encoder a transformers CLIPTextModel over a CLIPTokenizer whose merges make each of the
world's words one token (`clip_words`), the
prompt model a transformers Qwen2ForCausalLM over the project's ChatML tokenizer and the prompt
agent's own system prompt, so the agents load and run them as they do any preset. Weights are
an EMA of training. The learning rate follows the run's progress: by `--steps`, or by
`--max-minutes` when time runs out first (the shipped runs were time-bound on an H100; each
model folder's training_log.json records the steps done; `--max-minutes 0` makes a run
step-bound, so with a given `--steps` and `--seed` it repeats).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mora.engine.frontends.guard import guarded
from mora.nodes.world import captions
from mora.nodes.world import scene as world
from training.cli import bounded, folder_problem, output_path, writable_folder

SIZE = 64
TEXT_POSITIONS = 32
"""Positions of the text encoder and tokenizer: a word a token, the longest caption with a style cue is 30."""
STYLE_CUES = (captions.DIGITAL, "in digital world style, Minecraft")


def sample_training_scene(rng: np.random.Generator, **mix: float) -> world.Scene:
    """A scene whose caption is not held out; `mix` overrides `world.sample_scene`'s shares (two things, moving...)."""
    while True:
        scene = world.sample_scene(rng, **mix)
        if not captions.held_out(captions.caption(scene)):
            return scene


def train_caption(scene: world.Scene, rng: np.random.Generator) -> str:
    """The caption, sometimes with its defaults stated, and the style cue in either of its forms."""
    text = captions.caption(world.Scene(scene.things, scene.background, scene.texture, "plain", scene.relation),
                            explicit=rng.random() < 0.25)
    return f"{text}, {STYLE_CUES[rng.integers(2)]}" if scene.style == "digital" else text


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1


PARAMS = 23
"""Numbers that draw a still scene: background, stripe shade, striped, digital, count, then 7 per thing."""


def scene_params(scene: world.Scene, layout: world.Layout) -> torch.Tensor:
    """A scene as numbers for `draw` (the CPU workers' share of the work: drawing is done in batches on the GPU)."""
    bg = world.COLOURS[scene.background]
    p = [*bg, *world.shade(scene.background), scene.texture == "striped", scene.style == "digital", len(scene.things)]
    for i in range(2):
        if i < len(scene.things):
            thing, (cx, cy), half = scene.things[i], layout.centres[i], layout.halves[i]
            p += [world.SHAPES.index(thing.shape), *world.COLOURS[thing.colour], cx, cy, half * world.EXTENT[thing.shape]]
        else:
            p += [0, *bg, 0.5, 0.5, 0.0]
    return torch.tensor(p, dtype=torch.float32)


def draw(p: torch.Tensor, size: int = SIZE, supersample: int = 2) -> torch.Tensor:
    """Batched `world.render` of `scene_params` rows on their device, in [-1, 1] (B x 3 x size x size)."""
    import torch.nn.functional as F

    n = size * supersample
    grid = (torch.arange(n, device=p.device, dtype=torch.float32) + 0.5) / n
    x, y = grid[None, None, :], grid[None, :, None]
    col = lambda t: t[:, :, None, None]
    img = col(p[:, 0:3]).expand(-1, 3, n, n)
    stripes = (torch.floor((x + y) * size / 4) % 3 == 0) & (p[:, 6, None, None] > 0)
    img = torch.where(stripes[:, None], col(p[:, 3:6]), img)
    for i in range(2):
        q = p[:, 9 + 7 * i: 16 + 7 * i]
        e = q[:, 6, None, None].clamp_min(1e-6)
        u, v = (x - q[:, 4, None, None]) / e, (y - q[:, 5, None, None]) / e
        mask = torch.zeros((p.shape[0], n, n), dtype=torch.bool, device=p.device)
        for k, shape in enumerate(world.SHAPES):
            mask |= world.inside(shape, u, v) & (q[:, 0, None, None] == k)
        mask &= (p[:, 8, None, None] > i)
        img = torch.where(mask[:, None], col(q[:, 1:4]), img)
    img = F.avg_pool2d(img, supersample)
    block = max(1, size * world.BLOCK // 64)
    means = F.avg_pool2d(img, block)
    palette = torch.stack([p[:, 0:3], p[:, 10:13], p[:, 17:20], torch.where(p[:, 6:7] > 0, p[:, 3:6], p[:, 0:3])], 1)
    nearest = ((means[:, None] - palette[:, :, :, None, None]) ** 2).sum(2).argmin(1)
    blocky = torch.gather(palette, 1, nearest.flatten(1)[:, :, None].expand(-1, -1, 3))
    blocky = blocky.transpose(1, 2).reshape(means.shape)
    blocky = F.interpolate(blocky, scale_factor=block, mode="nearest")
    img = torch.where(p[:, 7, None, None, None] > 0, blocky, img)
    return torch.floor(img + 0.5).clamp(0, 255) / 127.5 - 1


class Stream(IterableDataset):
    """Endless seeded samples; each worker draws from its own seed."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind, self.seed = kind, seed
        self.memo: dict[str, torch.Tensor] = {}

    def __iter__(self) -> Any:
        from mora.nodes.zoo.tokenizers import chat

        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        tok = text_tokenizer() if self.kind in ("sd", "pix2pix") else chat()
        while True:
            yield getattr(self, f"_{self.kind}")(rng, tok)

    def _vae(self, rng: np.random.Generator, tok: Any) -> torch.Tensor:
        scene = world.sample_scene(rng, two=0.3)
        return to_tensor(world.render(scene, world.place(scene, rng), SIZE, frame=int(rng.integers(0, 6))))

    def _ids(self, tok: Any, text: str) -> torch.Tensor:
        if text not in self.memo:  # the slow tokenizer is the workers' bottleneck; captions repeat
            self.memo[text] = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True,
                                  return_tensors="pt").input_ids[0]
        return self.memo[text]

    def _sd(self, rng: np.random.Generator, tok: Any) -> tuple[torch.Tensor, torch.Tensor]:
        scene = sample_training_scene(rng)
        text = "" if rng.random() < 0.1 else train_caption(scene, rng)
        return scene_params(scene, world.place(scene, rng)), self._ids(tok, text)

    def _pix2pix(self, rng: np.random.Generator, tok: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        while True:
            source = sample_training_scene(rng)
            instruction, target = captions.edit(source, rng)
            if not captions.held_out(captions.caption(target)):
                break
        layout = world.place(source, rng)
        drop = rng.random()  # InstructPix2Pix's conditioning dropout: text, image or both, 5% each
        text = "" if drop < 0.1 else instruction
        keep_image = torch.tensor(float(not 0.05 <= drop < 0.15))
        return scene_params(source, layout), scene_params(target, layout), keep_image, self._ids(tok, text)

    def _lm(self, rng: np.random.Generator, tok: Any) -> tuple[torch.Tensor, torch.Tensor]:
        from mora.nodes.prompt_select import SYSTEM

        while True:
            scene = world.sample_scene(rng, two=0.0, digital=0.0)
            if not captions.held_out(captions.caption(scene)):
                break
        style = STYLE_CUES[1] if rng.random() < 0.2 else ""
        system = SYSTEM + (f" The result must include the style cue: {style}." if style else "")
        target = captions.caption(scene) + (f", {style}" if style else "")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": captions.loose(scene, rng)}]
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        prompt = list(prompt["input_ids"])
        answer = tok(target, add_special_tokens=False).input_ids + [tok.eos_token_id]
        ids = torch.full((LM_LENGTH,), tok.pad_token_id)
        labels = torch.full((LM_LENGTH,), -100)
        seq = (prompt + answer)[:LM_LENGTH]
        ids[:len(seq)] = torch.tensor(seq)
        labels[len(prompt):len(seq)] = torch.tensor(seq[len(prompt):])
        return ids, labels


LM_LENGTH = 512


def loader(kind: str, seed: int, batch: int, workers: int, stream: type = Stream) -> Any:
    """Endless batches of `stream(kind, seed)` from `workers` processes (the video scripts pass their own stream)."""
    return iter(DataLoader(stream(kind, seed), batch_size=batch, num_workers=workers, pin_memory=True,
                           persistent_workers=workers > 0, prefetch_factor=8 if workers else None))


def lr_at(progress: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up, then a cosine to zero, over the run's progress."""
    if progress < warmup:
        return peak * max(progress, 0.002) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


class Run:
    """Steps, learning-rate schedule, time guard and a log line every `every` steps."""

    def __init__(self, args: argparse.Namespace, params: list[torch.nn.Parameter], peak: float) -> None:
        self.args, self.peak = args, peak
        self.opt = torch.optim.AdamW(params, lr=peak, weight_decay=0.01)
        self.params = params
        self.start = time.time()
        self.log: list[dict[str, Any]] = []
        self.waited = 0.0

    def next(self, data: Any) -> Any:
        """The next batch, counting the time spent waiting for it (a data-bound run shows here)."""
        start = time.time()
        batch = next(data)
        self.waited += time.time() - start
        return batch

    def progress(self, step: int) -> float:
        """How far the run is (0 to 1): by steps, or by time when `--max-minutes` comes first."""
        by_time = (time.time() - self.start) / (self.args.max_minutes * 60) if self.args.max_minutes else 0.0
        return max(step / self.args.steps, by_time)

    def steps(self) -> Any:
        for step in range(self.args.steps):
            if self.progress(step) >= 1:
                print(f"stopped by --max-minutes after {step} of {self.args.steps} steps", flush=True)
                self.log.append({"stopped_at": step})
                return
            for group in self.opt.param_groups:
                group["lr"] = lr_at(self.progress(step), self.peak)
            yield step

    def update(self, step: int, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        if step % 100 == 0 or step == self.args.steps - 1:
            entry = {"step": step, "loss": round(loss.item(), 5), "s": round(time.time() - self.start, 1),
                     "lr": round(self.opt.param_groups[0]["lr"], 7), "data_wait_s": round(self.waited, 1)}
            self.log.append(entry)
            print(json.dumps(entry), flush=True)

    def save_log(self, out: Path, **extra: Any) -> None:
        info = {"args": vars(self.args), "seconds": round(time.time() - self.start, 1), **extra, "log": self.log}
        (out / "training_log.json").write_text(json.dumps(info, indent=1))


class Averages:
    """An exponential moving average of each trained part's weights (diffusers' EMAModel, decay 0.999): what is
    saved at the end, smoother than the last step's weights."""

    def __init__(self, parts: dict[str, torch.nn.Module], device: torch.device) -> None:
        from diffusers.training_utils import EMAModel

        self.parts = parts
        self.emas = {k: EMAModel(m.parameters(), decay=0.999) for k, m in parts.items()}
        for ema in self.emas.values():
            ema.to(device)

    def step(self) -> None:
        for k, m in self.parts.items():
            self.emas[k].step(m.parameters())

    def copy_to_parts(self) -> None:
        for k, m in self.parts.items():
            self.emas[k].copy_to(m.parameters())


def setup(args: argparse.Namespace) -> torch.device:
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest convolutions
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


# VAE --------------------------------------------------------------------------------------------------------

def vae_model() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(32, 64, 64), layers_per_block=1, latent_channels=4, norm_num_groups=16,
                         down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                         sample_size=SIZE)


THING_WEIGHT = 8.0
"""Loss weight of a pixel that differs from its image's background, against 1 for the background."""


def thing_weight(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss weights (B x 1 x H x W) that make a small thing's outline count: on 2026-11-25 a VAE trained on
    the plain mean error kept the shape of only 41% of small things through a round trip (the background is ~96% of
    the pixels), which capped text_to_image shape. The background is each image's median colour."""
    background = x.flatten(2).median(dim=2).values.view(*x.shape[:2], *[1] * (x.dim() - 2))
    differs = ((x - background).abs().amax(dim=1, keepdim=True) > 0.1).float()
    return 1 + (THING_WEIGHT - 1) * differs


def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 plus L2, weighted by `thing_weight` (images B x 3 x H x W or clips B x 3 x F x H x W)."""
    w = thing_weight(x)
    return (w * ((rec - x).abs() + (rec - x) ** 2)).mean() / w.mean()


def train_vae(args: argparse.Namespace) -> None:
    device = setup(args)
    vae = vae_model().to(device).train()
    data = loader("vae", args.seed, args.batch, args.workers)
    run = Run(args, list(vae.parameters()), args.lr or 1e-3)
    for step in run.steps():
        x = next(data).to(device, non_blocking=True)
        with autocast(device):
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample
        rec = rec.float()
        kl = post.kl().mean() / x[0].numel()
        loss = reconstruction_loss(rec, x) + 1e-4 * kl
        run.update(step, loss)
    vae.eval()
    with torch.no_grad():  # scale latents to unit variance, as Stable Diffusion's scaling_factor does
        x = torch.cat([next(data) for _ in range(4)]).to(device)
        std = float(vae.encode(x).latent_dist.mode().std())
        err = float((vae.decode(vae.encode(x).latent_dist.mode()).sample - x).abs().mean())
    vae.register_to_config(scaling_factor=1.0 / std)
    out = Path(args.out)
    vae.to(torch.float16).save_pretrained(out)
    run.save_log(out, latent_std=std, reconstruction_l1=err)
    print(f"vae: latent std {std:.3f}, reconstruction L1 {err:.4f} -> {out}")


# Diffusion --------------------------------------------------------------------------------------------------

@functools.cache
def text_tokenizer() -> Any:
    """CLIP's tokenizer with the world's words as single tokens (the byte-level one gave ~130 positions a caption)."""
    from mora.nodes.zoo.tokenizers import clip_words

    return clip_words(captions.vocabulary(), TEXT_POSITIONS)


def text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    from mora.nodes.zoo.image_models import CLIP_IDS

    return CLIPTextModel(CLIPTextConfig(
        hidden_size=128, intermediate_size=512, num_attention_heads=4, num_hidden_layers=3,
        vocab_size=len(text_tokenizer()), **{**CLIP_IDS, "max_position_embeddings": TEXT_POSITIONS}))


def unet(in_channels: int) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=SIZE // 4, in_channels=in_channels, out_channels=4, block_out_channels=(48, 96, 96),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D",) * 3, up_block_types=("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=128, attention_head_dim=(2, 3, 3), norm_num_groups=16)
    # `attention_head_dim` is diffusers' legacy name for the head count: 2/3/3 heads give 24/32/32-wide heads,
    # widths PyTorch's fused attention kernels take (8 heads of 6 did not)


def noise_schedule() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)


def train_diffusion(args: argparse.Namespace, edit: bool) -> None:
    from diffusers import AutoencoderKL
    device = setup(args)
    vae = AutoencoderKL.from_pretrained(args.vae, torch_dtype=torch.float32).to(device).eval().requires_grad_(False)
    if args.init:  # go on from an earlier run's pipeline folder
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        model = UNet2DConditionModel.from_pretrained(args.init, subfolder="unet", torch_dtype=torch.float32)
        encoder = CLIPTextModel.from_pretrained(args.init, subfolder="text_encoder", dtype=torch.float32)
        model, encoder = model.to(device).train(), encoder.to(device).train()
    else:
        model, encoder = unet(8 if edit else 4).to(device).train(), text_encoder().to(device).train()
    params = [*model.parameters(), *encoder.parameters()]
    averages = Averages({"unet": model, "text_encoder": encoder}, device)
    sched = noise_schedule()
    alphas = sched.alphas_cumprod.to(device)
    data = loader("pix2pix" if edit else "sd", args.seed, args.batch, args.workers)
    run = Run(args, params, args.lr or 5e-4)
    for step in run.steps():
        batch = [t.to(device, non_blocking=True) for t in run.next(data)]
        with torch.no_grad(), autocast(device):
            target = draw(batch[1] if edit else batch[0])
            latents = vae.encode(target).latent_dist.sample().float() * vae.config.scaling_factor
            if edit:  # a dropped image is mid-grey, as InstructPix2Pix trains its unconditional branch
                cond = vae.encode(draw(batch[0]) * batch[2][:, None, None, None]).latent_dist.mode().float()
        noise = torch.randn_like(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), device=device)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        inputs = torch.cat([noisy, cond], dim=1) if edit else noisy
        with autocast(device):
            hidden = encoder(batch[-1])[0]
            pred = model(inputs, t, hidden).sample
        loss = ((pred.float() - noise) ** 2).mean()
        run.update(step, loss)
        averages.step()
    averages.copy_to_parts()
    save_pipeline(Path(args.out), model.eval(), encoder.eval(), vae, edit)
    run.save_log(Path(args.out))


def save_pipeline(out: Path, model: Any, encoder: Any, vae: Any, edit: bool) -> None:
    from diffusers import StableDiffusionInstructPix2PixPipeline, StableDiffusionPipeline

    from mora.nodes.zoo.image_models import _sd_scheduler

    cls = StableDiffusionInstructPix2PixPipeline if edit else StableDiffusionPipeline
    pipe = cls(unet=model, vae=vae, text_encoder=encoder, tokenizer=text_tokenizer(), scheduler=_sd_scheduler(),
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(dtype=torch.float16)
    pipe.save_pretrained(out)
    print(f"{cls.__name__} -> {out}")


# Prompt language model --------------------------------------------------------------------------------------

def lm_config() -> Any:
    from transformers import Qwen2Config

    from mora.nodes.zoo.text_models import SPECIAL_IDS

    return Qwen2Config(vocab_size=259, hidden_size=144, intermediate_size=384, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       tie_word_embeddings=True, **SPECIAL_IDS)


def train_lm(args: argparse.Namespace) -> None:
    from transformers import Qwen2ForCausalLM

    from mora.nodes.zoo.tokenizers import chat

    device = setup(args)
    model = Qwen2ForCausalLM(lm_config()).to(device).train()
    data = loader("lm", args.seed, args.batch, args.workers)
    run = Run(args, list(model.parameters()), args.lr or 2e-3)
    for step in run.steps():
        ids, labels = (t.to(device, non_blocking=True) for t in next(data))
        with autocast(device):
            loss = model(input_ids=ids, labels=labels).loss
        run.update(step, loss)
    model.eval().to(torch.float16)
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 2
    model.generation_config.bos_token_id = None
    out = Path(args.out)
    model.save_pretrained(out)
    chat().save_pretrained(out)
    run.save_log(out)
    print(f"Qwen2ForCausalLM -> {out}")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What one model's command line takes: its default budget, and the diffusers class of each folder it reads."""

    steps: int
    batch: int
    vae: str | None = None
    """Class of the `--vae` folder it needs (None: it takes no --vae)."""
    init: str | None = None
    """Class of a folder `--init` goes on from (None: it always starts afresh, so --init is refused)."""
    reads: tuple[str, ...] = ()
    """The script's own options (`parse_args`'s `extra`) this model reads; another model refuses them, set."""


RECIPES = {"vae": Recipe(3000, 128), "lm": Recipe(3000, 128),
           "sd": Recipe(6000, 256, vae="AutoencoderKL", init="StableDiffusionPipeline"),
           "pix2pix": Recipe(6000, 256, vae="AutoencoderKL", init="StableDiffusionInstructPix2PixPipeline")}


def parse_args(prog: str, doc: str, recipes: dict[str, Recipe], argv: list[str] | None,
               extra: Callable[[argparse.ArgumentParser], list[argparse.Action]] | None = None,
               agrees: Callable[[argparse.Namespace], str | None] | None = None) -> argparse.Namespace:
    """The command line every world training script shares: a model, where to save, and the run's budget (and a
    script's own options, which `extra` adds and returns, and `agrees` checks against the folders given: a problem
    or None). Every value and folder is checked here, before anything is built or `--out` is made; an option the
    chosen model would ignore is refused, not silently dropped."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    own = extra(parser) if extra else []
    parser.add_argument("model", choices=sorted(recipes))
    parser.add_argument("--out", type=output_path, required=True, help="folder to save_pretrained into")
    needs_vae = [m for m, r in recipes.items() if r.vae]
    parser.add_argument("--vae", help=f"the trained VAE folder ({', '.join(needs_vae)})")
    parser.add_argument("--init", help="an earlier run's folder to go on training from")
    parser.add_argument("--steps", type=bounded(int, 1))
    parser.add_argument("--batch", type=bounded(int, 1))
    parser.add_argument("--lr", type=bounded(float, 0, above=True))
    parser.add_argument("--seed", type=bounded(int, 0, 2 ** 63 - 1), default=0)
    parser.add_argument("--workers", type=bounded(int, 0), default=6)
    parser.add_argument("--max-minutes", type=bounded(float, 0), default=0.0, help="time budget (0: none)")
    args = parser.parse_args(argv)
    recipe = recipes[args.model]
    args.steps = recipe.steps if args.steps is None else args.steps
    args.batch = recipe.batch if args.batch is None else args.batch
    if recipe.vae and not args.vae:
        parser.error(f"`{args.model}` needs --vae (the folder `vae` wrote)")
    for action in own:
        if getattr(args, action.dest) != action.default and action.dest not in recipe.reads:
            parser.error(f"`{args.model}` takes no {action.option_strings[0]}")
    for option, cls in (("vae", recipe.vae), ("init", recipe.init)):
        given = getattr(args, option)
        if given and not cls:
            parser.error(f"`{args.model}` takes no --{option}")
        if given and cls and (problem := folder_problem(Path(given), cls)):
            parser.error(f"--{option} {given}: {problem}")
    for option in ("vae", "init"):
        given = getattr(args, option)
        if given and Path(given).resolve() == Path(args.out).resolve():
            parser.error(f"--out {args.out} is the --{option} folder: saving would overwrite what the run reads")
    if agrees and (problem := agrees(args)):
        parser.error(problem)
    if problem := writable_folder(Path(args.out)):
        parser.error(f"--out {args.out}: {problem}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args("python -m training.world", __doc__, RECIPES, argv)
    {"vae": train_vae, "sd": lambda a: train_diffusion(a, False), "pix2pix": lambda a: train_diffusion(a, True),
     "lm": train_lm}[args.model](args)


if __name__ == "__main__":
    sys.exit(guarded("python -m training.world", main))  # Ctrl-C: 130 and one line, as mora
