"""The video-latent format the video diffusion agents share, and the pipeline they load for it.

Video diffusion agents (image_to_video, connect_videos) stop at the latent; decode_video turns it
into frames with the VAE of the very pipeline that made it. A latent artifact is a safetensors
file holding `latents` (as the pipeline returns them with output_type="latent") and one sorted-JSON
metadata entry naming the model (source, name, revision, dtype, variant), the pipeline family
("svd" or "wan"), the frame count, fps and size. Every one of these agents loads its pipeline
through the same resident-cache kind and model reference, so in one process the decoder reuses
the denoiser's pipeline.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mora.engine.cache.artifacts import ArtifactRef, Blob
from mora.engine.graph.agent import RunContext
from mora.engine.ports import PortType

PIPELINE_KIND = "video_diffusion"
"""The resident-cache kind shared by every agent that loads a video pipeline for its latents."""
FAMILIES = {"StableVideoDiffusionPipeline": "svd", "WanImageToVideoPipeline": "wan"}
LATENT_FORMAT = "mora-video-latent/1"
REF_FIELDS = ("source", "name", "revision", "dtype", "variant")


def load_pipeline(ctx: RunContext, params: Mapping[str, Any], ref: Mapping[str, Any] | None = None,
                  prefetch: bool = False) -> Any:
    """The resident video pipeline of `ref` (default ctx.model); diffusers picks its class from model_index.json.

    `prefetch`: load ahead of the node (mora.nodes.models.get_pipeline); None when there is no room.
    """
    from mora.nodes.common import offload_mode, place, quantization_config, use_attention
    from mora.nodes.models import get_pipeline, resident_offload, torch_dtype
    from mora.nodes.speed import quantize_fp8

    model = ctx.model if ref is None else ref
    # a decoder has no preset role: without its own mode it shares the denoiser's pipeline, however placed
    offload = params["offload"] or resident_offload(ctx, PIPELINE_KIND, model) or offload_mode(params, model)

    def load(location: str, kwargs: dict[str, Any]) -> Any:
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(
            location, dtype=torch_dtype(model.get("dtype") or "float32"), **quantization_config(model), **kwargs
        )
        # VAE tiling is set per call (set_vae_tiling): the pipeline is shared by nodes that differ in it.
        return quantize_fp8(place(ctx, pipe, {**params, "vae_tiling": False}, offload), model)

    pipe = get_pipeline(ctx, PIPELINE_KIND, load, ref=ref, offload=offload, prefetch=prefetch)
    if pipe is not None and not prefetch:
        use_attention(ctx, pipe, "xformers" if params.get("attention") == "xformers" else "sdpa")
    return pipe


def family(pipe: Any, ref: Mapping[str, Any]) -> str:
    """'svd' or 'wan', from the loaded pipeline's class."""
    from mora.engine.execution.models import label

    name = type(pipe).__name__
    if name not in FAMILIES:
        raise ValueError(
            f"model {label(ref)} loads as {name}, not an image-to-video pipeline "
            f"(expected one of {', '.join(FAMILIES)})"
        )
    return FAMILIES[name]


def set_vae_tiling(pipe: Any, on: bool) -> None:
    """Switch VAE tiling for this call only; SVD's temporal VAE has none."""
    vae = pipe.vae
    if not hasattr(vae, "use_tiling"):
        if on:
            raise ValueError(f"`vae_tiling` is True but {type(vae).__name__} cannot decode in tiles")
        return
    vae.enable_tiling() if on else vae.disable_tiling()


def latent_blob(latents: Any, ref: Mapping[str, Any], fam: str, num_frames: int, fps: float,
                height: int, width: int) -> Blob:
    """A latent artifact: the tensor plus everything decode_video needs to find the model and shape."""
    from safetensors.torch import save

    meta = {f: str(ref.get(f) or "") for f in REF_FIELDS}
    if ref.get("quantization", "none") != "none":  # absent when unquantized, so older latents keep their bytes
        meta["quantization"] = ref["quantization"]
    meta.update(format=LATENT_FORMAT, family=fam, num_frames=str(num_frames), fps=repr(float(fps)),
                height=str(height), width=str(width))
    # One sorted-JSON metadata entry: safetensors writes several entries in hash order, which varies
    # between calls and would give identical latents different bytes (and so different digests).
    tensors = {"latents": latents.detach().cpu().contiguous()}
    return Blob(PortType.LATENT, "safetensors", save(tensors, metadata={"mora": json.dumps(meta, sort_keys=True)}))


def read_latent(artifact: ArtifactRef) -> tuple[Any, dict[str, str]]:
    """The latents tensor and metadata of a latent artifact, checked to be a video latent."""
    from safetensors.torch import load

    from mora.engine.cache.media import safetensors_header

    data = artifact.read_bytes()  # verified against its digest as it is read
    header, _ = safetensors_header(data)
    meta = json.loads((header.get("__metadata__") or {}).get("mora", "{}"))
    if meta.get("format") != LATENT_FORMAT or "latents" not in header:
        raise ValueError(
            f"latent {artifact.digest[:12]} is not a video latent (format {meta.get('format')!r}); "
            "decode_video takes the output of image_to_video or connect_videos"
        )
    return load(bytes(data))["latents"], meta
