"""Instruction editing of an image (InstructPix2Pix, the recipe's image-to-image agent).

Loaded with `DiffusionPipeline.from_pretrained`, which picks the class named in the model's
`model_index.json`, so any instruction-edit pipeline diffusers ships with the same call (image,
instruction, `image_guidance_scale`) can be the preset: StableDiffusionInstructPix2PixPipeline,
its SDXL variant. Any other pipeline class is refused with its name. Nodes that differ only in
image, instruction and seed can run as one batch, one generator per item.
"""
from __future__ import annotations

import inspect
from typing import Any

from mora.engine.cache.media import image_blob, read_image, read_text
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import DIFFUSION_PARAMS
from mora.nodes.diffusion import check_size, fit, generators, load, per_size
from mora.nodes.speed import speedup


def run_batch(ctx: RunContext, inputs_list: list[dict[str, Any]], params_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from diffusers import DiffusionPipeline

    # 1. check inputs
    params = params_list[0]
    instructions = [read_text(i["instruction"]).strip() for i in inputs_list]
    if not all(instructions):
        raise ValueError("`instruction` is empty: say what to change")
    check_size(params["width"], params["height"])
    images = [fit(read_image(i["image"]), params["width"], params["height"]) for i in inputs_list]
    # 2. get the pipeline
    pipe = load(ctx, params, "image_edit", DiffusionPipeline)
    if "image_guidance_scale" not in inspect.signature(pipe.__call__).parameters:
        raise ValueError(f"the `image_edit` model must be an instruction-edit pipeline (e.g. InstructPix2Pix) but "
                         f"{ctx.model['name']!r} is a {type(pipe).__name__}")
    # 3. run: one call per image size, one generator per item
    def draw(group: list[int]) -> list[Any]:
        step = ctx.progress(params["steps"], "editing")
        with speedup(ctx, pipe, params):
            return pipe(
                prompt=[instructions[i] for i in group], image=[images[i] for i in group],
                num_inference_steps=params["steps"], guidance_scale=params["guidance"],
                image_guidance_scale=params["image_guidance"], generator=generators(ctx, group),
                callback_on_step_end=lambda p, i, t, kw: (step(1), kw)[1],
            ).images

    # 4. return artifacts
    return [{"image": image_blob(image)} for image in per_size(images, draw)]


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return run_batch(ctx, [inputs], [params])[0]


def preload(ctx: RunContext, params: dict[str, Any]) -> None:
    from diffusers import DiffusionPipeline

    load(ctx, params, "image_edit", DiffusionPipeline, prefetch=True)


AGENT = Agent(
    type="image_edit",
    version=1,
    description="Edit an image by an instruction (InstructPix2Pix).",
    run=run,
    run_batch=run_batch,
    preload=preload,
    inputs=(
        Port("image", PortType.IMAGE, "the image to edit"),
        Port("instruction", PortType.TEXT, "what to change, e.g. 'make it winter'"),
    ),
    outputs=(Port("image", PortType.IMAGE, "the edited image"),),
    params=(
        Param("width", int, 0, "output width (0: the input's, rounded down to a multiple of 8)", min=0, max=4096,
              multiple_of=8),
        Param("height", int, 0, "output height (0: the input's, rounded down to a multiple of 8)", min=0, max=4096,
              multiple_of=8),
        Param("steps", int, 20, "denoising steps", min=1, max=1000),
        Param("guidance", float, 7.5, "text guidance scale", min=0.0, max=50.0),
        Param("image_guidance", float, 1.5, "how closely to keep the input image", min=0.0, max=50.0),
        *DIFFUSION_PARAMS,
    ),
    model_role="image_edit",
    random=True,
    libraries=("torch", "diffusers", "transformers"),
)
