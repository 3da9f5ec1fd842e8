"""What the image diffusion agents share: loading a pipeline class, per-call VAE options, checks.

A pipeline object is shared by every node that uses the same model on the same device, so
options that differ between nodes (attention, VAE slicing and tiling) are set on every call
rather than once at load (mora.nodes.speed.speedup wraps each call); the offload mode is part of which pipeline is shared. Two tasks on
one checkpoint (text-to-image and image-to-image) share its modules: the second is built with
diffusers' `from_pipe` from the resident first, not loaded again.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mora.engine.graph.agent import RunContext
from mora.nodes.common import generator, offload_mode, place, quantization_config
from mora.nodes.models import get_pipeline, resident, torch_dtype
from mora.nodes.speed import quantize_fp8

IMG2IMG = {
    "StableDiffusionPipeline": "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusion3Pipeline": "StableDiffusion3Img2ImgPipeline",
    "FluxPipeline": "FluxImg2ImgPipeline",
}
"""Text-to-image pipelines and their image-to-image twins, as diffusers' AutoPipeline maps them."""
HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token")


class TaskPipeline:
    """A loader for a task ("text2image" or "image2image") that imports only the pipeline class the model names.

    diffusers' `AutoPipelineFor*` import every pipeline family first: most of a GPU worker's start-up
    (9.4 s of 23.5 s on an H100 machine, bench/README.md) and of a cold CPU run. The model's own
    `model_index.json` names its class; a family outside `IMG2IMG` goes through AutoPipeline as before.
    """

    def __init__(self, task: str):
        self.task = task

    def from_pretrained(self, location: str, **kwargs: Any) -> Any:
        return self._class(self._class_name(location, kwargs)).from_pretrained(location, **kwargs)

    def from_pipe(self, base: Any, **kwargs: Any) -> Any:
        return self._class(type(base).__name__).from_pipe(base, **kwargs)

    def _class(self, name: str) -> Any:
        import diffusers

        twin = {v: k for k, v in IMG2IMG.items()} if self.task == "text2image" else IMG2IMG
        if name in twin:
            return getattr(diffusers, twin[name])
        if name in IMG2IMG or name in IMG2IMG.values():
            return getattr(diffusers, name)
        return getattr(diffusers, "AutoPipelineForText2Image" if self.task == "text2image" else
                       "AutoPipelineForImage2Image")

    @staticmethod
    def _class_name(location: str, kwargs: dict[str, Any]) -> str:
        index = Path(location) / "model_index.json"
        if index.is_file():
            return str(json.loads(index.read_text()).get("_class_name", ""))
        from diffusers import DiffusionPipeline

        return str(DiffusionPipeline.load_config(location, **{k: kwargs[k] for k in HUB_KWARGS if k in kwargs})
                   .get("_class_name", ""))


def load(ctx: RunContext, params: dict[str, Any], kind: str, pipeline_class: Any, share: tuple[str, ...] = (),
         prefetch: bool = False) -> Any:
    """The resident `pipeline_class` pipeline for the node's model, loaded once per process.

    If a pipeline of one of the `share` kinds is resident for the same model, the new one is a
    view on its modules (no second copy of the weights, and not counted as a model load).
    `prefetch`: load ahead of the node (mora.nodes.models.get_pipeline); None when there is no room.
    """

    def from_pretrained(location: str, kwargs: dict[str, Any]) -> Any:
        pipe = pipeline_class.from_pretrained(location, dtype=torch_dtype(ctx.model["dtype"]),
                                              **quantization_config(ctx.model), **kwargs)
        return quantize_fp8(place(ctx, pipe, {**params, "vae_tiling": False, "vae_slicing": False}, offload),
                            ctx.model)

    def from_pipe(location: str, kwargs: dict[str, Any]) -> Any:
        # dtype: DiffusionPipeline.from_pipe would otherwise cast the shared modules to float32
        pipe = pipeline_class.from_pipe(base, dtype=torch_dtype(ctx.model["dtype"]))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    offload = offload_mode(params, ctx.model)
    base = resident(ctx, share, offload=offload)
    if base is None:
        pipe = get_pipeline(ctx, kind, from_pretrained, offload=offload, prefetch=prefetch)
    else:
        pipe = get_pipeline(ctx, kind, from_pipe, shares_weights=True, offload=offload, prefetch=prefetch)
    if prefetch:
        return pipe
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        (vae.enable_tiling if params.get("vae_tiling") else vae.disable_tiling)()
        (vae.enable_slicing if params.get("vae_slicing") else vae.disable_slicing)()
    return pipe


def load_refiner(ctx: RunContext, params: dict[str, Any], base: Any) -> Any:
    """The resident refiner of the node's model (`ctx.model['refiner']`), sharing the base's VAE and second encoder.

    SDXL's base and refiner were trained with the same VAE and OpenCLIP encoder, so the refiner
    takes those modules from the base (diffusers' documented hand-off) instead of a second copy.
    """
    from diffusers import DiffusionPipeline

    ref = ctx.model["refiner"]
    offload = offload_mode(params, ref)

    def from_pretrained(location: str, kwargs: dict[str, Any]) -> Any:
        shared = {name: getattr(base, name) for name in ("text_encoder_2", "vae") if getattr(base, name, None)}
        pipe = DiffusionPipeline.from_pretrained(location, dtype=torch_dtype(ref["dtype"]), **shared,
                                                 **quantization_config(ref), **kwargs)
        return quantize_fp8(place(ctx, pipe, {**params, "vae_tiling": False, "vae_slicing": False}, offload), ref)

    return get_pipeline(ctx, "refiner", from_pretrained, ref, offload=offload)


def check_size(width: int, height: int) -> None:
    if width % 8 or height % 8:
        raise ValueError(f"`height` and `width` have to be divisible by 8 but are {height} and {width}.")


def fit(image: Any, width: int, height: int) -> Any:
    """The image at width x height (0 keeps the image's size, rounded down to a multiple of 8)."""
    w = width or max(8, image.width // 8 * 8)
    h = height or max(8, image.height // 8 * 8)
    return image if image.size == (w, h) else image.resize((w, h))


def per_size(images: list[Any], draw: Callable[[list[int]], list[Any]]) -> list[Any]:
    """Call `draw(indices)` once per group of same-size images (one pipeline call takes one size).

    Returns what the calls drew, in the order of `images`.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.size, []).append(i)
    out: list[Any] = [None] * len(images)
    for group in groups.values():
        for i, drawn in zip(group, draw(group)):
            out[i] = drawn
    return out


def generators(ctx: RunContext, indices: list[int]) -> Any:
    """One CPU generator per batch item, seeded with that item's seed (a lone item gets a plain one)."""
    seeds = ctx.seeds or [ctx.seed]
    made = [generator(ctx, seeds[i]) for i in indices]
    return made if len(made) > 1 else made[0]
