"""Decode a video latent into frames, and the latent format the video diffusion agents share.

Video diffusion agents (image_to_video, connect_videos) stop at the latent; this agent turns it
into frames with the VAE of the very pipeline that made it. A latent artifact is a safetensors
file holding `latents` (as the pipeline returns them with output_type="latent") and metadata
naming the model (source, name, revision, dtype, variant), the pipeline family ("svd" or "wan"),
the frame count, fps and size. The decoder loads the pipeline through the same resident cache
with the same kind and model reference, so in one process it reuses the denoiser's pipeline,
and a change of decode settings re-runs only the decode, never the denoising.

- SVD: `pipe.decode_latents(latents, num_frames, decode_chunk_size)`, as at the end of
  StableVideoDiffusionPipeline.__call__ (chunks trade memory for temporal consistency).
- Wan: undo the latents_mean/std normalisation and `vae.decode`, as at the end of
  WanImageToVideoPipeline.__call__; its causal VAE decodes frame by frame, so the chunk size
  has no effect there.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mora.engine.agent import Agent, Param, Port
from mora.engine.artifacts import ArtifactRef, Blob
from mora.engine.ports import PortType
from mora.nodes.common import OFFLOAD_PARAM

PIPELINE_KIND = "video_diffusion"
"""The resident-cache kind shared by every agent that loads a video pipeline for its latents."""
FAMILIES = {"StableVideoDiffusionPipeline": "svd", "WanImageToVideoPipeline": "wan"}
LATENT_FORMAT = "mora-video-latent/1"
REF_FIELDS = ("source", "name", "revision", "dtype", "variant")


def load_pipeline(ctx: Any, params: Mapping[str, Any], ref: Mapping[str, Any] | None = None,
                  prefetch: bool = False) -> Any:
    """The resident video pipeline of `ref` (default ctx.model); diffusers picks its class from model_index.json.

    `prefetch`: load ahead of the node (mora.nodes.models.get_pipeline); None when there is no room.
    """
    from mora.nodes.common import offload_mode, place, quantization_config, use_attention
    from mora.nodes.models import get_pipeline, resident_offload, torch_dtype

    model = ctx.model if ref is None else ref
    # a decoder has no preset role: without its own mode it shares the denoiser's pipeline, however placed
    offload = params["offload"] or resident_offload(ctx, PIPELINE_KIND, model) or offload_mode(params, model)

    def load(location: str, kwargs: dict[str, Any]) -> Any:
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(
            location, dtype=torch_dtype(model.get("dtype") or "float32"), **quantization_config(model), **kwargs
        )
        # VAE tiling is set per call (set_vae_tiling): the pipeline is shared by nodes that differ in it.
        return place(ctx, pipe, {**params, "vae_tiling": False}, offload)

    pipe = get_pipeline(ctx, PIPELINE_KIND, load, ref=ref, offload=offload, prefetch=prefetch)
    if pipe is not None and not prefetch:
        use_attention(ctx, pipe, params.get("attention", "sdpa"))
    return pipe


def family(pipe: Any, ref: Mapping[str, Any]) -> str:
    """'svd' or 'wan', from the loaded pipeline's class."""
    from mora.engine.models import label

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

    from mora.engine.media import safetensors_header

    data = artifact.read_bytes()  # verified against its digest as it is read
    header, _ = safetensors_header(data)
    meta = json.loads((header.get("__metadata__") or {}).get("mora", "{}"))
    if meta.get("format") != LATENT_FORMAT or "latents" not in header:
        raise ValueError(
            f"latent {artifact.digest[:12]} is not a video latent (format {meta.get('format')!r}); "
            "decode_video takes the output of image_to_video or connect_videos"
        )
    return load(bytes(data))["latents"], meta


def _to_uint8(video: Any) -> Any:
    """[0, 1] float frames to uint8 the way diffusers' numpy_to_pil does it."""
    import numpy as np

    return (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)


def run(ctx: Any, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    from mora.engine.media import frames_blob

    # 1. check inputs
    latents, meta = read_latent(inputs["latent"])
    ref = {**{f: meta.get(f) or None for f in REF_FIELDS}, "quantization": meta.get("quantization") or "none"}
    num_frames, fps = int(meta["num_frames"]), params["fps"] or float(meta["fps"])
    # 2. get the pipeline
    pipe = load_pipeline(ctx, params, ref)
    fam = family(pipe, ref)
    if fam != meta["family"]:
        raise ValueError(f"latent was made by a {meta['family']} pipeline but {ref['name']} loads as {fam}")
    set_vae_tiling(pipe, params["vae_tiling"])
    # 3. run
    vae = pipe.vae
    latents = latents.to(device=vae.device, dtype=vae.dtype)
    with torch.no_grad():
        if fam == "svd":
            frames = pipe.decode_latents(latents, num_frames, params["decode_chunk_size"])
        else:
            shape = (1, vae.config.z_dim, 1, 1, 1)
            mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
            std = torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
            frames = vae.decode(latents * std + mean, return_dict=False)[0]
        video = pipe.video_processor.postprocess_video(frames, output_type="np")[0]
    if video.shape[0] != num_frames:
        raise ValueError(f"decoded {video.shape[0]} frames but the latent records {num_frames}")
    # 4. return artifacts
    return {"video": frames_blob(_to_uint8(video), fps)}


AGENT = Agent(
    type="decode_video",
    version=1,
    description="Decode a video latent to frames with the VAE of the pipeline that made it.",
    run=run,
    inputs=(Port("latent", PortType.LATENT, "a video latent from image_to_video or connect_videos"),),
    outputs=(Port("video", PortType.VIDEO, "the decoded frames"),),
    params=(
        Param("decode_chunk_size", int, 8, "frames decoded at once (SVD; more is smoother and uses more memory)",
              min=1, max=64),
        Param("fps", float, 0.0, "frames per second of the video (0: the latent's)", min=0, max=240),
        Param("vae_tiling", bool, False, "decode in spatial tiles (Wan; saves memory, changes pixels slightly)"),
        OFFLOAD_PARAM,
    ),
    model_role=None,
    libraries=("torch", "diffusers"),
)
