"""What the image diffusion agents share: loading a pipeline class, per-call VAE options, checks.

A pipeline object is shared by every node that uses the same model on the same device, so
options that differ between nodes (VAE slicing and tiling) are set on every call rather than
once at load.
"""
from __future__ import annotations

from typing import Any

from nodes.common import place
from nodes.models import get_pipeline, torch_dtype


def load(ctx: Any, params: dict[str, Any], kind: str, pipeline_class: Any) -> Any:
    """The resident pipeline of `pipeline_class` for the node's model (loaded once per process)."""

    def from_pretrained(location: str, kwargs: dict[str, Any]) -> Any:
        pipe = pipeline_class.from_pretrained(location, dtype=torch_dtype(ctx.model["dtype"]), **kwargs)
        return place(ctx, pipe, {**params, "vae_tiling": False, "vae_slicing": False})

    pipe = get_pipeline(ctx, kind, from_pretrained)
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        (vae.enable_tiling if params.get("vae_tiling") else vae.disable_tiling)()
        (vae.enable_slicing if params.get("vae_slicing") else vae.disable_slicing)()
    return pipe


def check_size(width: int, height: int) -> None:
    if width % 8 or height % 8:
        raise ValueError(f"`height` and `width` have to be divisible by 8 but are {height} and {width}.")


def fit(image: Any, width: int, height: int) -> Any:
    """The image at width x height (0 keeps the image's size, rounded down to a multiple of 8)."""
    w = width or max(8, image.width // 8 * 8)
    h = height or max(8, image.height // 8 * 8)
    return image if image.size == (w, h) else image.resize((w, h))
