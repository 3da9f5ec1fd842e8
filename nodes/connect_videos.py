"""Generate the transition between two videos with a first-last-frame video model (not a cross-fade).

The recipe's video connection (SEINE, not in diffusers) generates new frames that start at the
first video's last frame and end at the second video's first frame. Here a Wan first-last-frame
pipeline does that: `image` is the first video's last frame and `last_image` the second's first,
and the model denoises the frames between under the prompt ("smooth transition" by default).
The result is a latent; a graph decodes it with decode_video and joins first + transition +
second with video_concat. The transition begins and ends on (the model's rendering of) the two
boundary frames, so the joined video holds each boundary twice: once from the source clip, once
from the transition.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mora.engine.cache.media import read_artifact_frames, read_text
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import DIFFUSION_PARAMS
from mora.nodes.image_to_video import SIZE_PARAMS, generate, resolve_size, size_multiple
from mora.nodes.speed import STEP_CACHE_PARAMS
from mora.nodes.video_latent import family, latent_blob, load_pipeline

DEFAULT_PROMPT = "smooth transition"


def run(ctx: RunContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    from PIL import Image

    # 1. check inputs
    first, second = read_artifact_frames(inputs["first"]), read_artifact_frames(inputs["second"])
    start, end = Image.fromarray(first.array[-1]), Image.fromarray(second.array[0])
    prompt = read_text(inputs["prompt"]) if inputs.get("prompt") is not None else DEFAULT_PROMPT
    # 2. get the pipeline
    pipe = load_pipeline(ctx, params)
    fam = family(pipe, ctx.model)
    if fam != "wan":
        raise ValueError(f"connect_videos needs a Wan first-last-frame model, but {ctx.model['name']} is {fam}")
    size = resolve_size(params, start.size, size_multiple(pipe, fam), f"{ctx.model['name']} ({fam})")
    # 3. run
    latents = generate(ctx, pipe, fam, start, end, prompt, params, size)
    # 4. return artifacts
    return {"transition": latent_blob(latents, ctx.model, fam, params["frames"], first.fps, size[1], size[0])}


def preload(ctx: RunContext, params: Mapping[str, Any]) -> None:
    load_pipeline(ctx, params, prefetch=True)


AGENT = Agent(
    type="connect_videos",
    version=1,
    description="Generate a transition from one video's last frame to another's first (Wan FLF2V latent).",
    run=run,
    preload=preload,
    inputs=(
        Port("first", PortType.VIDEO, "the video the transition starts from (its last frame)"),
        Port("second", PortType.VIDEO, "the video the transition leads to (its first frame)"),
        Port("prompt", PortType.TEXT, f"what the transition shows (default {DEFAULT_PROMPT!r})", required=False),
    ),
    outputs=(Port("transition", PortType.LATENT, "the transition latent, for decode_video"),),
    params=(
        Param("frames", int, 17, "transition length in frames, both boundary frames included (4k+1)",
              min=2, max=256),
        Param("steps", int, 25, "denoising steps", min=1, max=1000),
        Param("guidance", float, 5.0, "classifier-free guidance scale", min=0.0, max=30.0),
        Param("negative_prompt", str, "", "what to avoid", batchable=True),
        *SIZE_PARAMS,
        *STEP_CACHE_PARAMS,
        *DIFFUSION_PARAMS,
    ),
    model_role="connect",
    random=True,
    libraries=("torch", "diffusers", "transformers"),
)
