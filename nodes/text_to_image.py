"""Text to image with any diffusers text-to-image pipeline (SD 1.5, SDXL, SD3, Flux, or any AutoPipeline loads).

When the preset gives the role a refiner (`refiner: {source, name, ...}`), the base denoises the
first `refine_from` of the schedule and hands its latents to the refiner for the rest, as the
recipe ran SDXL base + refiner (80/20). The refiner is part of the model identity.

Supports batches: several nodes that differ only in prompt and seed run as one pipeline call
with one generator per item, so each image depends on its own seed only.
"""
from __future__ import annotations

import inspect
from typing import Any

from mora.engine.cache.media import image_blob, read_text
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import DIFFUSION_PARAMS
from mora.nodes.diffusion import TaskPipeline, check_size, generators, load, load_refiner
from mora.nodes.speed import speedup


def run_batch(ctx: RunContext, inputs_list: list[dict[str, Any]], params_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # 1. check inputs
    params = params_list[0]
    check_size(params["width"], params["height"])
    prompts = [read_text(i["prompt"]) for i in inputs_list]
    negatives = [read_text(i["negative_prompt"]) if "negative_prompt" in i else "" for i in inputs_list]
    if not all(p.strip() for p in prompts):
        raise ValueError("`prompt` is empty")
    # 2. get the pipeline (and the preset's refiner)
    pipe = load(ctx, params, "text_to_image", TaskPipeline("text2image"), share=("image_to_image",))
    refiner = load_refiner(ctx, params, pipe) if ctx.model.get("refiner") else None
    if refiner is not None:
        for stage, needed in ((pipe, "denoising_end"), (refiner, "denoising_start")):
            if needed not in inspect.signature(stage.__call__).parameters:
                raise ValueError(f"a refiner needs a base that stops at `denoising_end` and a refiner that starts at "
                                 f"`denoising_start` (SDXL), but {type(stage).__name__} takes no `{needed}`")
    # 3. run: with a refiner, the base denoises up to `refine_from` and hands its latents over
    step = ctx.progress(params["steps"], "denoising")
    common = {"prompt": prompts, "negative_prompt": negatives, "num_inference_steps": params["steps"],
                  "guidance_scale": params["guidance"], "generator": generators(ctx, list(range(len(prompts)))),
                  "callback_on_step_end": lambda p, i, t, kw: (step(1), kw)[1]}
    if refiner is None:
        with speedup(ctx, pipe, params):
            images = pipe(width=params["width"], height=params["height"], **common).images
    else:
        with speedup(ctx, pipe, params):
            latents = pipe(width=params["width"], height=params["height"], denoising_end=params["refine_from"],
                           output_type="latent", **common).images
        with speedup(ctx, refiner, params):
            images = refiner(image=latents, denoising_start=params["refine_from"], **common).images
    # 4. return artifacts
    return [{"image": image_blob(img)} for img in images]


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return run_batch(ctx, [inputs], [params])[0]


def preload(ctx: RunContext, params: dict[str, Any]) -> None:
    load(ctx, params, "text_to_image", TaskPipeline("text2image"), share=("image_to_image",), prefetch=True)


AGENT = Agent(
    type="text_to_image",
    version=1,
    description="Draw an image from a prompt with a diffusers text-to-image pipeline.",
    run=run,
    run_batch=run_batch,
    preload=preload,
    inputs=(
        Port("prompt", PortType.TEXT, "what to draw"),
        Port("negative_prompt", PortType.TEXT, "what to avoid", required=False),
    ),
    outputs=(Port("image", PortType.IMAGE, "the image"),),
    params=(
        Param("width", int, 64, "image width in pixels", min=8, max=4096, multiple_of=8),
        Param("height", int, 64, "image height in pixels", min=8, max=4096, multiple_of=8),
        Param("steps", int, 25, "denoising steps", min=1, max=1000),
        Param("guidance", float, 7.5, "classifier-free guidance scale", min=0.0, max=50.0),
        Param("refine_from", float, 0.8, "with a refiner in the preset: the fraction of the schedule the base "
              "denoises before the refiner takes its latents (SDXL's ensemble of experts)", min=0.05, max=0.95),
        *DIFFUSION_PARAMS,
    ),
    model_role="text_to_image",
    random=True,
    libraries=("torch", "diffusers", "transformers"),
)
