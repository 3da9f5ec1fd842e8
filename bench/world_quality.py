"""How well the offline world's models learned it: held-out captions in, the world's detectors on what comes out.

    python bench/world_quality.py --n 200 --json bench/results-world-quality-DATE.json --grids /tmp/world

- text_to_image: one-thing captions of the held-out split (plain style), drawn with the same
  call the text_to_image agent makes; the detectors read colour, shape and the 3 x 3 region.
  Two-thing and digital-world captions are reported beside them (colour and shape of each
  thing; blockiness).
- image_edit: a held-out scene drawn by the world's renderer, an instruction from its grammar
  (colour, background or shape), the edit agent's call; "made" is the instructed change read
  back, "kept" is the output's object mask against the mask of the scene the instruction asks
  for (IoU >= 0.7) with the other attributes unchanged.
- prompt: loose prompts of held-out scenes ("red ball, going right"), rewritten by the prompt
  model through the prompt agent's chat template and system prompt; "parses back" is the
  rewrite parsed by the caption grammar naming the intended scene. Greedy and the agent's
  default sampling (temperature 0.7, top_p 0.9) are both measured.
The detectors' own accuracy on the renderer's frames for the same scenes is printed first.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mora.engine.frontends.guard import guarded
from mora.nodes.image_edit import AGENT as EDIT
from mora.nodes.text_to_image import AGENT as T2I
from mora.nodes.world import captions, detect
from mora.nodes.world import scene as world
from training.cli import bounded, device, folder_problem, like, writable_file, writable_folder

DEVICE = "cpu"
"""Where the pipelines run (`--device`); seeds are drawn on the CPU either way."""


def held_out_scenes(n: int, seed: int, **kw: float) -> list[world.Scene]:
    rng = np.random.default_rng(seed)
    out: list[world.Scene] = []
    seen: set[str] = set()
    while len(out) < n:
        s = world.sample_scene(rng, **kw)
        text = captions.caption(s)
        if captions.held_out(text) and text not in seen:
            seen.add(text)
            out.append(s)
    return out


def grid(images: list[Image.Image], cols: int, path: Path) -> None:
    rows = (len(images) + cols - 1) // cols
    w, h = images[0].size
    sheet = Image.new("RGB", (cols * w, rows * h))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * w, (i // cols) * h))
    sheet.save(path)


def in_batches(fn, items: list, size: int) -> list:
    return [y for i in range(0, len(items), size) for y in fn(items[i:i + size], i)]


def text_to_image(folder: Path, n: int, steps: int, guidance: float, grids: Path | None) -> dict:
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(folder, dtype=torch.float32).to(DEVICE)
    pipe.set_progress_bar_config(disable=True)

    def draw(texts: list[str], start: int) -> list[Image.Image]:
        gens = [torch.Generator("cpu").manual_seed(start + i) for i in range(len(texts))]
        return pipe(texts, width=64, height=64, num_inference_steps=steps, guidance_scale=guidance,
                     generator=gens).images

    result: dict = {}
    singles = held_out_scenes(n, 1, two=0.0, digital=0.0)
    texts = [captions.caption(s) for s in singles]
    images = in_batches(draw, texts, 50)
    score = {"colour": 0, "shape": 0, "region": 0, "background": 0, "one_thing": 0}
    truth = {"colour": 0, "shape": 0, "region": 0}
    for s, im in zip(singles, images):
        thing = s.things[0]
        ref = detect.read(world.render(s, world.place(s, np.random.default_rng(0)))).things
        truth["colour"] += bool(ref) and ref[0].colour == thing.colour
        truth["shape"] += bool(ref) and ref[0].shape == thing.shape
        truth["region"] += bool(ref) and ref[0].region == thing.start_region
        r = detect.read(im)
        score["background"] += r.background == s.background
        score["one_thing"] += len(r.things) == 1
        if r.things:
            f = r.things[0]
            score["colour"] += f.colour == thing.colour
            score["shape"] += f.shape == thing.shape
            score["region"] += f.region == thing.start_region
    result["single"] = {"n": n, **{k: v / n for k, v in score.items()}}
    result["detector_on_renders"] = {k: v / n for k, v in truth.items()}
    result["shape_by_size"] = shape_by_size(pipe.vae, singles, images)
    if grids:
        grid(images[:64], 16, grids / "t2i_single.png")
        (grids / "t2i_single.txt").write_text("\n".join(texts[:64]) + "\n")
    pairs = held_out_scenes(n // 2, 2, two=1.0, digital=0.0)
    images = in_batches(draw, [captions.caption(s) for s in pairs], 50)
    hits = {"colour": 0, "shape": 0}
    for s, im in zip(pairs, images):
        found = detect.read(im).things
        for thing in s.things:
            hits["colour"] += any(f.colour == thing.colour for f in found)
            hits["shape"] += any((f.colour, f.shape) == (thing.colour, thing.shape) for f in found)
    result["two_things"] = {"n": len(pairs), **{k: v / (2 * len(pairs)) for k, v in hits.items()}}
    digital = [s for s in held_out_scenes(n, 3, two=0.0, digital=1.0)][: n // 2]
    images = in_batches(draw, [captions.caption(s) for s in digital], 50)
    blocky = [detect.blockiness(im) for im in images]
    plain_blocky = [detect.blockiness(world.render(s, world.place(s, np.random.default_rng(0)))) for s in singles]
    result["digital"] = {"n": len(digital), "blocky": float(np.mean([b >= detect.BLOCKY for b in blocky])),
                         "colour": float(np.mean([any(f.colour == s.things[0].colour for f in detect.read(im).things)
                                                  for s, im in zip(digital, images)])),
                         "median_blockiness": float(np.median(blocky)),
                         "plain_renders_blocky": float(np.mean([b >= detect.BLOCKY for b in plain_blocky]))}
    if grids:
        grid(images[:32], 16, grids / "t2i_digital.png")
    return result


def shape_by_size(vae: object, scenes: list[world.Scene], images: list[Image.Image]) -> dict:
    """Shape read right per thing size, for the generated images and for the renders after a round trip through
    the pipeline's own VAE: the round trip is the ceiling the diffusion model can reach."""
    renders = np.stack([world.render(s, world.place(s, np.random.default_rng(0))) for s in scenes])
    x = torch.tensor(renders, device=DEVICE).permute(0, 3, 1, 2).to(vae.dtype) / 127.5 - 1
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(b).latent_dist.mode()).sample for b in x.split(50)]).clamp(-1, 1)
    rec = ((rec.float() + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    def right(frames: list, picked: list[int]) -> float:
        reads = [detect.read(frames[i]).things for i in picked]
        return sum(bool(r) and r[0].shape == scenes[i].things[0].shape for i, r in zip(picked, reads)) / len(picked)

    out: dict = {}
    for size in world.SIZES:
        picked = [i for i, s in enumerate(scenes) if s.things[0].size == size]
        if picked:
            out[size] = {"n": len(picked), "generated": right(images, picked), "vae_round_trip": right(list(rec), picked)}
    return out


def image_edit(folder: Path, n: int, steps: int, guidance: float, image_guidance: float, grids: Path | None) -> dict:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32).to(DEVICE)
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(4)
    cases = []
    for s in held_out_scenes(n, 4, two=0.0, digital=0.0):
        layout = world.place(s, rng)
        kind = captions.EDIT_KINDS[len(cases) % 3]
        instruction, target = captions.edit(s, rng, kind)
        cases.append((s, layout, kind, instruction, target))
    sources = [Image.fromarray(world.render(s, lay)) for s, lay, *_ in cases]

    def edit(items: list, start: int) -> list[Image.Image]:
        gens = [torch.Generator("cpu").manual_seed(start + i) for i in range(len(items))]
        return pipe([c[3] for c in items], image=[sources[start + i] for i in range(len(items))],
                    num_inference_steps=steps, guidance_scale=guidance, image_guidance_scale=image_guidance,
                    generator=gens).images

    outputs = in_batches(edit, cases, 50)
    per_kind: dict[str, dict[str, int]] = {k: {"n": 0, "made": 0, "kept": 0, "both": 0} for k in captions.EDIT_KINDS}
    ious = []
    for (s, layout, kind, instruction, target), out in zip(cases, outputs):
        r = detect.read(out)
        want = detect.read(world.render(target, layout))
        iou = detect.mask_iou(r.mask, want.mask)
        ious.append(iou)
        thing, got = target.things[0], (r.things[0] if r.things else None)
        if kind == "background":
            made = r.background == target.background
            rest = got is not None and got.colour == thing.colour and got.shape == thing.shape
        elif kind == "colour":
            made = got is not None and got.colour == thing.colour
            rest = r.background == target.background and got is not None and got.shape == thing.shape
        else:
            made = got is not None and got.shape == thing.shape
            rest = r.background == target.background and got is not None and got.colour == thing.colour
        kept = rest and iou >= 0.7
        stats = per_kind[kind]
        stats["n"] += 1
        stats["made"] += made
        stats["kept"] += kept
        stats["both"] += made and kept
    total = {k: sum(v[k] for v in per_kind.values()) for k in ("n", "made", "kept", "both")}
    if grids:
        grid([im for pair in zip(sources[:32], outputs[:32]) for im in pair], 16, grids / "edit.png")
        (grids / "edit.txt").write_text("\n".join(c[3] for c in cases[:32]) + "\n")
    return {"n": total["n"], "made": total["made"] / total["n"], "kept": total["kept"] / total["n"],
            "both": total["both"] / total["n"], "mean_mask_iou": float(np.mean(ious)),
            "per_kind": {k: {m: v[m] / max(1, v["n"]) for m in ("made", "kept", "both")} for k, v in per_kind.items()}}


def prompt(folder: Path, n: int) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mora.nodes.prompt_select import SYSTEM

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rng = np.random.default_rng(5)
    scenes = held_out_scenes(n, 5, two=0.0, digital=0.0)
    result, examples = {}, []
    for mode in ("greedy", "sampled"):
        good = 0
        for i, s in enumerate(scenes):
            loose = captions.loose(s, rng)
            msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": loose}]
            enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            torch.manual_seed(i)
            sample = mode == "sampled"
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=96, do_sample=sample, temperature=0.7 if sample else None,
                                     top_p=0.9 if sample else None, pad_token_id=tok.pad_token_id)
            text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
            try:
                ok = captions.same(captions.parse(text), s)
            except captions.CaptionError:
                ok = False
            good += ok
            if mode == "greedy" and len(examples) < 8:
                examples.append({"loose": loose, "rewrite": text, "parses_back": ok})
        result[mode] = good / n
    return {"n": n, **result, "examples": examples}


FOLDERS = {"t2i": ("sd", "StableDiffusionPipeline"), "edit": ("pix2pix", "StableDiffusionInstructPix2PixPipeline"),
           "prompt": ("prompt_lm", "Qwen2ForCausalLM")}
"""The folder under `--weights` each task loads, and the class it must hold."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path(world.__file__).parent / "weights")
    parser.add_argument("--n", type=bounded(int, 2), default=200, help="held-out scenes per task (at least 2)")
    parser.add_argument("--steps", type=like(T2I.param("steps")), default=20)
    parser.add_argument("--guidance", type=like(T2I.param("guidance")), default=7.5)
    parser.add_argument("--image-guidance", type=like(EDIT.param("image_guidance")), default=1.5)
    parser.add_argument("--only", choices=("t2i", "edit", "prompt"), action="append")
    parser.add_argument("--device", type=device, default="cpu",
                        help="torch device for the image pipelines (e.g. cuda)")
    parser.add_argument("--json", type=writable_file)
    parser.add_argument("--grids", type=Path, help="folder for PNG sheets of what was generated (look at them)")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if args.grids and (problem := writable_folder(args.grids)):
        parser.error(f"--grids {args.grids}: {problem}")
    only = set(args.only or ("t2i", "edit", "prompt"))
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__}
    tasks = {"t2i": ("text_to_image", lambda: text_to_image(args.weights / "sd", args.n, args.steps, args.guidance,
                                                            args.grids)),
             "edit": ("image_edit", lambda: image_edit(args.weights / "pix2pix", args.n, args.steps, args.guidance,
                                                       args.image_guidance, args.grids)),
             "prompt": ("prompt", lambda: prompt(args.weights / "prompt_lm", args.n))}
    for key in [k for k in FOLDERS if k in only]:  # every folder asked for, checked before the first task runs
        sub, cls = FOLDERS[key]
        if problem := folder_problem(args.weights / sub, cls):
            parser.error(f"--weights {args.weights}: {sub}: {problem} (--only picks the tasks)")
    for key, (name, fn) in tasks.items():
        if key not in only:
            continue
        start = time.time()
        results[name] = fn()
        results[name]["seconds"] = round(time.time() - start, 1)
        print(name, json.dumps(results[name], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(guarded("bench/world_quality.py", main))
