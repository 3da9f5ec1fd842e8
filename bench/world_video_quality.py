"""How well the offline world's video models learned it (issue 16): held-out scenes in, the world's detectors on what
comes out.

    python bench/world_video_quality.py --weights W --n 100 --device cuda --json OUT.json --strips DIR
    python bench/world_video_quality.py --weights W --n 100 --device cuda --only extend --json OUT-extend.json

W holds any of `wan_i2v`, `wan_flf` and `svd` (training/world_video.py, training/world_svd.py); what is absent is
skipped. Every video is made by the agents' own code: `mora.nodes.image_to_video.generate` (which image_to_video and
connect_videos both call) with the agent's declared defaults for every parameter not set here, then
`mora.nodes.decode_video.decode`, one video a call as the agents make them: diffusers' Wan I2V pipeline (0.42)
repeats its image embeddings by the prompt batch (`image_embeds.repeat(batch_size, 1, 1)`), so different first
frames cannot share a call, and the agents never batch videos either. Only the text_to_video keyframes go in batches,
as the text_to_image agent batches them. Prompts are the scenes' canonical captions, what the prompt agent writes for
them. Scenes are one thing on a plain or striped background in the plain style, from the held-out split only:

- image_to_video (text_to_video animates its keyframe the same way): a held-out moving scene drawn by the world's
  renderer is the first frame, its caption the prompt, `--frames` (default 17, what training used). "direction": the
  thing, followed by its colour and shape (`detect.follow`), moves the caption's way; "kept": it has its colour and
  shape in every frame where the renderer would show it whole (a thing may leave the frame as the caption says).
- text_to_video (when `--keyframes` names a text_to_image pipeline, default the shipped world `sd`): the keyframe is
  drawn from the caption as the text_to_image agent draws it, then animated as above.
- connect_videos: the first clip is a held-out scene moving as its caption says, the second the same thing starting
  elsewhere with another motion; the first-last-frame model bridges the first clip's last frame and the second's first
  frame under the still scene's caption (and, reported apart, under the agent's default prompt). "joins"
  (`detect.join`): the transition starts within 4 px of the thing in the first clip's last frame, ends within 4 px of
  the thing in the second clip's first frame, and in between shows it once a frame, never turning back or jumping.
- extend_video x8: from a held-out scene's first frame, `--extensions` clips, each from the last frame of the one
  before, with Wan I2V (`extend`) and with SVD (`extend_svd`, its default motion bucket), whichever the preset's
  image_to_video role is. Wan's prompt each time is the caption with the motion turned towards the far side of the
  frame along the scene's axis (a bounce: no fixed direction stays in frame for eight clips; SVD learned to move a
  thing away from its near edge), at the scene's speed (slow or normal: a fast thing crosses 80% of the frame in one
  clip). "kept at the end": the last frame shows the thing with its colour and shape, whole inside the frame.
- vae (`--vae FOLDER`, or the `vae` inside W/wan_i2v): the ceiling under image_to_video. The same held-out clips,
  drawn by the renderer, go through the Wan VAE and back (encode, the posterior's mode, decode) and are scored as
  above: no video model can keep a thing the VAE itself loses.
- svd: a held-out moving scene with no stated region starts on the side it moves away from, which is all one frame
  says of a motion; SVD continues it (`--svd-frames`, default 8 as trained) at the motion bucket of its speed, the
  agent's other SVD parameters at their defaults. "direction" and "kept" as for image_to_video.

Before each task the same measures are taken on the renderer's own videos (the truth) and, for connect, on a
cross-fade: what the detectors give when the answer is known (the shape reader misses a small thing at some sub-pixel
positions, so about 1 in 100 true videos fails "kept in every frame"). Cost: one video a call, so the time is the
number of videos (n each for image_to_video, text_to_video and svd, 2n for connect, 8n for each extend) times one
call;
on the 2-core CPU a 17-frame Wan video at 20 steps took about 4 s and an 8-frame SVD video 15 s.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.append(str(Path(__file__).resolve().parents[1]))  # training/ is not installed; last: an installed mora wins

from mora.engine.frontends.guard import guarded
from mora.nodes.connect_videos import AGENT as CONNECT
from mora.nodes.connect_videos import DEFAULT_PROMPT
from mora.nodes.decode_video import AGENT as DECODE
from mora.nodes.decode_video import decode
from mora.nodes.image_to_video import AGENT as I2V
from mora.nodes.image_to_video import generate
from mora.nodes.text_to_image import AGENT as T2I
from mora.nodes.video_latent import family
from mora.nodes.world import captions, detect
from mora.nodes.world import scene as world
from training import world_svd, world_video
from training.cli import bounded, device, folder_problem, like, output_path, writable_file, writable_folder

SIZE = 64
PX = 4.0
"""How near (pixels) a transition's ends must be to the clips they join."""
STRIPS = 4
"""Samples a task draws into its PNG strip."""


@dataclass
class Context:
    """The RunContext the agents' `generate` sees: a model reference, a seed, a device, no progress bar."""

    model: dict[str, Any]
    seed: int
    device: str
    node_id: str = "bench"
    seeds: list[int | None] = field(default_factory=list)

    def progress(self, total: int, description: str) -> Callable[[int], None]:
        return lambda n=1: None

    def note_model_load(self, identity: str) -> None:
        pass


@dataclass
class Model:
    """A loaded video pipeline and the agent parameters the bench runs it with."""

    folder: Path
    pipe: Any
    fam: str
    params: dict[str, Any]

    def video(self, image: np.ndarray, prompt: str, seed: int, last: np.ndarray | None = None,
              **given: Any) -> np.ndarray:
        """uint8 frames (F x H x W x 3), as image_to_video (or connect_videos, with `last`) + decode_video make them."""
        return self.video_and_latents(image, prompt, seed, last, **given)[0]

    def video_and_latents(self, image: np.ndarray, prompt: str, seed: int, last: np.ndarray | None = None,
                          **given: Any) -> tuple[np.ndarray, torch.Tensor]:
        """The video and the denoised latents it was decoded from (float32, on the CPU)."""
        ctx = Context({"source": "path", "name": str(self.folder), "dtype": "float32"}, seed, str(self.pipe.device))
        params = {**self.params, **given}
        first, end = Image.fromarray(image), None if last is None else Image.fromarray(last)
        with torch.no_grad():
            latents = generate(ctx, self.pipe, self.fam, first, end, prompt, params, (SIZE, SIZE))
        frames = decode(self.pipe, self.fam, latents, params["frames"], DECODE.param("decode_chunk_size").default)[0]
        return frames, latents.float().cpu()


def load(folder: Path, agent: Any, device: str, dtype: torch.dtype = torch.float32, **given: Any) -> Model:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    fam = family(pipe, {"source": "path", "name": str(folder)})
    return Model(folder, pipe, fam, agent.resolve_params({"width": SIZE, "height": SIZE, **given}))


# Scenes -----------------------------------------------------------------------------------------------------

def held_out(n: int, seed: int, keep: Callable[[world.Scene], world.Scene | None] = lambda s: s) -> list[world.Scene]:
    """`n` distinct one-thing moving scenes in the plain style whose captions (after `keep`) training never saw."""
    rng = np.random.default_rng(seed)
    out: list[world.Scene] = []
    seen: set[str] = set()
    while len(out) < n:
        s = keep(world.sample_scene(rng, two=0.0, moving=1.0, digital=0.0))
        text = captions.caption(s) if s is not None else ""
        if s is not None and captions.held_out(text) and text not in seen:
            seen.add(text)
            out.append(s)
    return out


def whole(scene: world.Scene, layout: world.Layout, frame: int) -> bool:
    """Whether the renderer shows the (one) thing whole at this frame: a detector can read its shape."""
    (x, y), = world.positions(scene, layout, frame)
    e = layout.halves[0] * world.EXTENT[scene.things[0].shape] + 1 / SIZE
    return e <= x <= 1 - e and e <= y <= 1 - e


def with_thing(scene: world.Scene, **change: Any) -> world.Scene:
    return dataclasses.replace(scene, things=(dataclasses.replace(scene.things[0], **change),))


def rate(values: Sequence[bool]) -> float:
    return round(float(np.mean(values)), 4) if len(values) else float("nan")


# Strips -----------------------------------------------------------------------------------------------------

def strip(rows: Sequence[Sequence[np.ndarray]], path: Path, texts: Sequence[str]) -> None:
    """One row of frames per sample, a 2-pixel gap between frames; the prompts beside it in a .txt file (none: no
    samples, nothing drawn)."""
    if not rows:
        return
    width = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (SIZE + 2), width * (SIZE + 2), 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            sheet[i * (SIZE + 2):i * (SIZE + 2) + SIZE, j * (SIZE + 2):j * (SIZE + 2) + SIZE] = frame
    Image.fromarray(sheet).save(path)
    path.with_suffix(".txt").write_text("\n".join(texts) + "\n")


# Tasks ------------------------------------------------------------------------------------------------------

def motion_scores(scene: world.Scene, layout: world.Layout, frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """Direction and kept-in-every-frame for one video of a moving scene (see the module's policy), and "frames": kept
    or not in each frame where the renderer shows the thing whole."""
    thing = scene.things[0]
    found = detect.kept(frames, thing.colour, thing.shape)
    where_whole = [k for f, k in enumerate(found) if whole(scene, layout, f)]
    direction = detect.follow(frames, thing.colour, thing.shape).direction == thing.motion
    return {"direction": direction, "kept": all(where_whole), "both": direction and all(where_whole),
            "frames": where_whole}


def animate(model: Model, cases: list[tuple[world.Scene, world.Layout, np.ndarray]], frames: int,
            strips: Path | None, name: str, seed: int, **given: Any) -> dict[str, Any]:
    """Animate each case's first frame under its caption; score every video; the renderer's videos as the truth."""
    scores: list[dict[str, bool]] = []
    truth: list[dict[str, bool]] = []
    per_direction: dict[str, list[bool]] = {d: [] for d in world.DIRECTIONS}
    rows, texts = [], []
    for i, (scene, layout, first) in enumerate(cases):
        text = captions.caption(scene)
        video = model.video(first, text, seed + i, frames=frames, **given)
        scores.append(motion_scores(scene, layout, video))
        per_direction[scene.things[0].motion].append(scores[-1]["direction"])
        truth.append(motion_scores(scene, layout, [world.render(scene, layout, frame=f) for f in range(frames)]))
        if i < STRIPS:
            rows.append(list(video))
            texts.append(text)
    if strips:
        strip(rows, strips / f"{name}.png", texts)
    return {"n": len(cases), **{k: rate([s[k] for s in scores]) for k in ("direction", "kept", "both")},
            "direction_per_motion": {d: rate(v) for d, v in per_direction.items()},
            "detector_on_renders": {k: rate([s[k] for s in truth]) for k in ("direction", "kept")}}


def image_to_video(model: Model, n: int, frames: int, strips: Path | None) -> dict[str, Any]:
    rng = np.random.default_rng(10)
    cases = []
    for s in held_out(n, 10):
        layout = world.place(s, rng)
        cases.append((s, layout, world.render(s, layout)))
    return animate(model, cases, frames, strips, "image_to_video", 10_000)


def vae_ceiling(folder: Path, n: int, frames: int, device: str, strips: Path | None) -> dict[str, Any]:
    """image_to_video's clips as the renderer draws them, through the Wan VAE and back, scored as image_to_video."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    rng = np.random.default_rng(10)
    scores, frames_kept, rows, texts = [], [], [], []
    for i, scene in enumerate(held_out(n, 10)):
        layout = world.place(scene, rng)
        clip = np.stack([world.render(scene, layout, frame=f) for f in range(frames)])
        x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float().to(device) / 127.5 - 1
        with torch.no_grad():
            back = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        video = list(((back[0].permute(1, 2, 3, 0).cpu().numpy() + 1) * 127.5).round().astype(np.uint8))
        scores.append(motion_scores(scene, layout, video))
        frames_kept += scores[-1]["frames"]
        if i < STRIPS:
            rows.append(video)
            texts.append(captions.caption(scene))
    if strips:
        strip(rows, strips / "vae_round_trip.png", texts)
    return {"n": n, **{k: rate([s[k] for s in scores]) for k in ("direction", "kept", "both")},
            "frames_kept": rate(frames_kept)}  # "kept" needs every one of a clip's frames: about this to the 17th


def text_to_video(model: Model, keyframes: Path, n: int, frames: int, steps: int, guidance: float, device: str,
                  strips: Path | None) -> dict[str, Any]:
    """The keyframe drawn from the caption as the text_to_image agent draws it (a batch, one generator a seed)."""
    from diffusers import AutoPipelineForText2Image

    sd = AutoPipelineForText2Image.from_pretrained(keyframes, dtype=torch.float32).to(device)
    sd.set_progress_bar_config(disable=True)
    scenes = held_out(n, 11)
    texts = [captions.caption(s) for s in scenes]
    images: list[np.ndarray] = []
    for start in range(0, n, 50):
        gens = [torch.Generator("cpu").manual_seed(20_000 + i) for i in range(start, min(n, start + 50))]
        images += [np.asarray(im) for im in sd(texts[start:start + 50], width=SIZE, height=SIZE,
                                               num_inference_steps=steps, guidance_scale=guidance,
                                               generator=gens).images]
    cases, right = [], []
    for s, image in zip(scenes, images):
        found = detect.read(image).things
        right.append(bool(found) and (found[0].colour, found[0].shape) == (s.things[0].colour, s.things[0].shape))
        # the layout the scores use for "whole": where the keyframe put the thing, moving as the caption says
        centre = found[0].centre if found else world.place(s, np.random.default_rng(0)).centres[0]
        cases.append((s, world.Layout((centre,), (world.SIZES[s.things[0].size],)), image))
    result = animate(model, cases, frames, strips, "text_to_video", 30_000)
    result["keyframe_right"] = rate(right)
    return result


def svd(model: Model, n: int, frames: int, strips: Path | None) -> dict[str, Any]:
    rng = np.random.default_rng(12)
    cases = []
    for s in held_out(n, 12, keep=lambda s: with_thing(s, region=None)):
        layout = world.place(s, rng)
        cases.append((s, layout, world.render(s, layout)))
    by_speed: dict[str, list[tuple[world.Scene, world.Layout, np.ndarray]]] = {}
    for case in cases:
        by_speed.setdefault(case[0].things[0].speed, []).append(case)
    parts = {speed: animate(model, group, frames, strips, f"svd_{speed}", 40_000 + 1000 * k,
                            motion_bucket_id=world_svd.MOTION_BUCKETS[speed], fps=world_svd.FPS)
             for k, (speed, group) in enumerate(sorted(by_speed.items()))}
    total = sum(p["n"] for p in parts.values())
    out: dict[str, Any] = {"n": total}
    for key in ("direction", "kept", "both"):
        out[key] = round(sum(p[key] * p["n"] for p in parts.values()) / total, 4)
    out["detector_on_renders"] = {k: round(sum(p["detector_on_renders"][k] * p["n"] for p in parts.values()) / total, 4)
                                  for k in ("direction", "kept")}
    out["per_speed"] = parts
    return out


def connect_cases(n: int, frames: int) -> list[tuple[world.Scene, np.ndarray, np.ndarray, Any, Any]]:
    """`n` held-out scenes to bridge: the first clip's last frame and the second's first, and where each has the
    thing."""
    rng = np.random.default_rng(13)
    cases: list[tuple[world.Scene, np.ndarray, np.ndarray, Any, Any]] = []
    for s in held_out(4 * n + 20, 13):  # scenes whose thing leaves the frame within a clip are passed over
        for _ in range(20):  # the first clip ends with the thing whole in frame; the second starts >= 8 px away
            a = world.place(s, rng)
            other = with_thing(s, motion=list(world.DIRECTIONS)[rng.integers(4)],
                               region=list(world.REGIONS)[rng.integers(len(world.REGIONS))])
            b = world.place(other, rng)
            end, start = world.positions(s, a, frames - 1)[0], b.centres[0]
            if whole(s, a, frames - 1) and np.hypot(end[0] - start[0], end[1] - start[1]) * SIZE >= 8:
                cases.append((s, world.render(s, a, frame=frames - 1), world.render(other, b), end, start))
                break
        if len(cases) == n:
            break
    return cases


def connect(model: Model, n: int, frames: int, strips: Path | None) -> dict[str, Any]:
    cases = connect_cases(n, frames)
    result: dict[str, Any] = {"n": len(cases)}
    glides, fades = [], []
    for s, before, after, end, start in cases:
        thing = s.things[0]
        way = [world.render(with_thing(s, motion=None, region=None),
                            world.Layout(((end[0] + t * (start[0] - end[0]), end[1] + t * (start[1] - end[1])),),
                                         (world.SIZES[thing.size],))) for t in np.linspace(0, 1, frames)]
        glides.append(detect.join(before, way, after, thing.colour, thing.shape).joins(PX))
        fade = [np.round((1 - t) * before.astype(np.float32) + t * after).astype(np.uint8)
                for t in np.linspace(0, 1, frames)]
        fades.append(detect.join(before, fade, after, thing.colour, thing.shape).joins(PX))
    result["detector_on_renders"] = {"glide_joins": rate(glides), "cross_fade_joins": rate(fades)}
    for label, prompt_of in (("caption", lambda s: captions.caption(with_thing(s, motion=None, region=None))),
                             ("default_prompt", lambda s: DEFAULT_PROMPT)):
        joins, starts, ends, monotone, kept = [], [], [], [], []
        rows, texts = [], []
        for i, (s, before, after, _, _) in enumerate(cases):
            thing = s.things[0]
            video = model.video(before, prompt_of(s), 50_000 + i, last=after, frames=frames)
            j = detect.join(before, list(video), after, thing.colour, thing.shape)
            joins.append(j.joins(PX))
            starts.append(j.start_gap)
            ends.append(j.end_gap)
            monotone.append(j.monotone)
            kept.append(all(detect.kept(video, thing.colour, thing.shape)))
            if i < STRIPS:
                rows.append([before, *video, after])
                texts.append(prompt_of(s))
        if strips:
            strip(rows, strips / f"connect_{label}.png", texts)
        result[label] = {"joins": rate(joins), "start_within_4px": rate([g <= PX for g in starts]),
                         "end_within_4px": rate([g <= PX for g in ends]), "monotone": rate(monotone),
                         "median_start_gap_px": round(float(np.median(starts)), 2),
                         "median_end_gap_px": round(float(np.median(ends)), 2), "kept": rate(kept)}
    return result


def toward_far_side(motion: str, centre: tuple[float, float]) -> str:
    """The direction along `motion`'s axis towards the farther side of the frame."""
    if motion in ("left", "right"):
        return "right" if centre[0] < 0.5 else "left"
    return "down" if centre[1] < 0.5 else "up"


def in_frame(found: detect.Found) -> bool:
    e = found.half * world.EXTENT[found.shape]
    return all(e + 0.5 / SIZE <= c <= 1 - e - 0.5 / SIZE for c in found.centre)


def extend(model: Model, n: int, frames: int, times: int, strips: Path | None, name: str) -> dict[str, Any]:
    rng = np.random.default_rng(14)
    scenes = held_out(n, 14, keep=lambda s: s if s.things[0].speed != "fast" else None)
    kept_end, steps_kept, directions, survived = [], [], [], []
    rows, texts = [], []
    for i, s in enumerate(scenes):
        thing = s.things[0]
        image = world.render(s, world.place(s, rng))
        ends, done = [image], 0
        for k in range(times):
            here = detect.follow([image], thing.colour, thing.shape).centres[0]
            if here is None:
                break
            motion = toward_far_side(thing.motion, here)
            video = model.video(image, captions.caption(with_thing(s, motion=motion, region=None)),
                                60_000 + times * i + k, frames=frames)
            directions.append(detect.follow(video, thing.colour, thing.shape).direction == motion)
            steps_kept.append(all(detect.kept(video, thing.colour, thing.shape)))
            image = video[-1]
            ends.append(image)
            done += 1
        last = [t for t in detect.read(image).things if (t.colour, t.shape) == (thing.colour, thing.shape)]
        kept_end.append(done == times and any(in_frame(t) for t in last))
        survived.append(done)
        if i < STRIPS:
            rows.append(ends)
            texts.append(captions.caption(s))
    if strips:
        strip(rows, strips / f"{name}_x{times}.png", texts)
    return {"n": len(scenes), "kept_at_end": rate(kept_end), "clip_direction": rate(directions),
            "clip_kept_every_frame": rate(steps_kept), "mean_extensions_with_the_thing_found": float(np.mean(survived))}


# Main -------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path(world.__file__).parent / "weights",
                        help="folder with wan_i2v, wan_flf and/or svd")
    parser.add_argument("--n", type=bounded(int, 1), default=100, help="held-out scenes per task")
    parser.add_argument("--steps", type=like(I2V.param("steps")), default=20,
                        help="denoising steps (the world preset's video_steps is 14; runs before the ninth used 20)")
    parser.add_argument("--frames", type=like(I2V.param("frames")), default=world_video.FRAMES,
                        help="frames of a Wan clip (4k+1)")
    parser.add_argument("--svd-frames", type=like(I2V.param("frames")), default=world_svd.FRAMES,
                        help="frames of an SVD clip")
    parser.add_argument("--extensions", type=bounded(int, 1), default=8, help="clips in an extend_video chain")
    parser.add_argument("--guidance", type=like(I2V.param("guidance")), default=I2V.param("guidance").default,
                        help="Wan guidance")
    parser.add_argument("--compile", default=I2V.param("compile").default, choices=I2V.param("compile").choices,
                        help="the agents' own `compile` parameter (auto: on for CUDA), for the video pipelines")
    parser.add_argument("--keyframes", type=Path, default=Path(world.__file__).parent / "weights" / "sd",
                        help="text_to_image pipeline for text_to_video's keyframes (skipped if absent)")
    parser.add_argument("--keyframe-steps", type=like(T2I.param("steps")), default=20)
    parser.add_argument("--keyframe-guidance", type=like(T2I.param("guidance")),
                        default=7.5)
    parser.add_argument("--only", action="append",
                        choices=("image_to_video", "text_to_video", "connect", "extend", "svd", "extend_svd", "vae"))
    parser.add_argument("--device", type=device, default="cpu", help="torch device (e.g. cuda)")
    parser.add_argument("--vae", type=Path, help="the Wan VAE for `--only vae` (default: W/wan_i2v/vae)")
    parser.add_argument("--json", type=writable_file, help="write the results here")
    parser.add_argument("--strips", type=output_path,
                        help="folder for PNG frame strips of the first samples (look at them)")
    args = parser.parse_args(argv)
    if (args.frames - 1) % 4:
        parser.error(f"argument --frames: {args.frames} is not 4k+1 (Wan: 5, 9, 13, 17, ...)")
    if args.vae and (problem := folder_problem(args.vae, "AutoencoderKLWan")):
        parser.error(f"--vae {args.vae}: {problem}")
    args.strips = Path(args.strips) if args.strips else None
    if args.strips and (problem := writable_folder(args.strips)):
        parser.error(f"--strips {args.strips}: {problem}")
    only = set(args.only or ("image_to_video", "text_to_video", "connect", "extend", "svd", "extend_svd", "vae"))
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
                               "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"}
    wan = {"steps": args.steps, "guidance": args.guidance, "compile": args.compile}
    i2v = args.weights / "wan_i2v"
    tasks: dict[str, tuple[Path, Callable[[], Model], Callable[[Model], dict[str, Any]]]] = {
        "image_to_video": (i2v, lambda: load(i2v, I2V, args.device, **wan),
                           lambda m: image_to_video(m, args.n, args.frames, args.strips)),
        "text_to_video": (i2v, lambda: load(i2v, I2V, args.device, **wan),
                          lambda m: text_to_video(m, args.keyframes, args.n, args.frames, args.keyframe_steps,
                                                  args.keyframe_guidance, args.device, args.strips)),
        "connect": (args.weights / "wan_flf", lambda: load(args.weights / "wan_flf", CONNECT, args.device, **wan),
                    lambda m: connect(m, args.n, args.frames, args.strips)),
        "extend": (i2v, lambda: load(i2v, I2V, args.device, **wan),
                   lambda m: extend(m, args.n, args.frames, args.extensions, args.strips, "extend")),
        "svd": (args.weights / "svd", lambda: load(args.weights / "svd", I2V, args.device, steps=args.steps,
                                                   compile=args.compile),
                lambda m: svd(m, args.n, args.svd_frames, args.strips)),
        "extend_svd": (args.weights / "svd", lambda: load(args.weights / "svd", I2V, args.device, steps=args.steps,
                                                          compile=args.compile),
                       lambda m: extend(m, args.n, args.svd_frames, args.extensions, args.strips, "extend_svd")),
    }
    vae = args.vae or i2v / "vae"
    if "vae" in only and (vae / "config.json").exists():
        start = time.time()
        results["vae"] = {**vae_ceiling(vae, args.n, args.frames, args.device, args.strips),
                          "vae": str(vae), "seconds": round(time.time() - start, 1)}
        print("vae", json.dumps(results["vae"], indent=1), flush=True)
    loaded: dict[Path, Model] = {}
    for name, (folder, make, run) in tasks.items():
        if name not in only:
            continue
        needs = [folder, *([args.keyframes] if name == "text_to_video" else [])]
        if absent := [str(f) for f in needs if not (f / "model_index.json").exists()]:
            print(f"{name}: skipped (no pipeline in {', '.join(absent)})", flush=True)
            continue
        if folder not in loaded:
            loaded[folder] = make()
        start = time.time()
        results[name] = run(loaded[folder])
        results[name]["seconds"] = round(time.time() - start, 1)
        print(name, json.dumps(results[name], indent=1), flush=True)
    if not loaded and "vae" not in results:
        parser.error(f"`--weights` {args.weights} holds no pipeline for the tasks asked for (wan_i2v, wan_flf, svd)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(guarded("bench/world_video_quality.py", lambda: main() and 0))  # results are printed; status 0
