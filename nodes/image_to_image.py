"""SDEdit-style image to image: noise the image to `strength`, then denoise it toward a prompt.

Uses the text-to-image role's model through its image-to-image twin (AutoPipeline's mapping), so it works with the
same checkpoints as text_to_image; when text_to_image already holds that model, this agent's
pipeline is a view on the same modules (`from_pipe`), not a second copy. Nodes that differ only
in image, prompt and seed can run as one batch, one generator per item.
"""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import image_blob, read_image, read_text
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import DIFFUSION_PARAMS
from mora.nodes.diffusion import TaskPipeline, check_size, fit, generators, load, per_size
from mora.nodes.speed import speedup


def run_batch(ctx: RunContext, inputs_list: list[dict[str, Any]], params_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # 1. check inputs
    params = params_list[0]
    prompts = [read_text(i["prompt"]).strip() for i in inputs_list]
    if not all(prompts):
        raise ValueError("`prompt` is empty")
    check_size(params["width"], params["height"])
    images = [fit(read_image(i["image"]), params["width"], params["height"]) for i in inputs_list]
    if int(params["steps"] * params["strength"]) < 1:
        raise ValueError(f"`steps` x `strength` must be at least 1 but is {params['steps']} x {params['strength']}")
    # 2. get the pipeline
    pipe = load(ctx, params, "image_to_image", TaskPipeline("image2image"), share=("text_to_image",))
    # 3. run: one call per image size, one generator per item
    def draw(group: list[int]) -> list[Any]:
        step = ctx.progress(int(params["steps"] * params["strength"]), "redrawing")
        with speedup(ctx, pipe, params):
            return pipe(
                prompt=[prompts[i] for i in group], image=[images[i] for i in group], strength=params["strength"],
                num_inference_steps=params["steps"], guidance_scale=params["guidance"], generator=generators(ctx, group),
                callback_on_step_end=lambda p, i, t, kw: (step(1), kw)[1],
            ).images

    # 4. return artifacts
    return [{"image": image_blob(image)} for image in per_size(images, draw)]


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return run_batch(ctx, [inputs], [params])[0]


def preload(ctx: RunContext, params: dict[str, Any]) -> None:
    load(ctx, params, "image_to_image", TaskPipeline("image2image"), share=("text_to_image",), prefetch=True)


AGENT = Agent(
    type="image_to_image",
    version=1,
    description="Redraw an image toward a prompt, keeping its layout (SDEdit img2img with a strength).",
    run=run,
    run_batch=run_batch,
    preload=preload,
    inputs=(Port("image", PortType.IMAGE, "the starting image"), Port("prompt", PortType.TEXT, "the target")),
    outputs=(Port("image", PortType.IMAGE, "the redrawn image"),),
    params=(
        Param("strength", float, 0.6, "how much to change (0: nothing, 1: everything)", min=0.01, max=1.0),
        Param("width", int, 0, "output width (0: the input's, rounded down to a multiple of 8)", min=0, max=4096,
              multiple_of=8),
        Param("height", int, 0, "output height (0: the input's, rounded down to a multiple of 8)", min=0, max=4096,
              multiple_of=8),
        Param("steps", int, 25, "denoising steps (times strength are run)", min=1, max=1000),
        Param("guidance", float, 7.5, "classifier-free guidance scale", min=0.0, max=50.0),
        *DIFFUSION_PARAMS,
    ),
    model_role="text_to_image",
    random=True,
    libraries=("torch", "diffusers", "transformers"),
)
