"""Decode a video latent into frames with the VAE of the pipeline that made it.

The latent's format and the shared pipeline loader are `mora.nodes.video_latent`'s. The decoder
loads the pipeline through the same resident cache with the same kind and model reference, so in
one process it reuses the denoiser's pipeline, and a change of decode settings re-runs only the
decode, never the denoising.

- SVD: `pipe.decode_latents(latents, num_frames, decode_chunk_size)`, as at the end of
  StableVideoDiffusionPipeline.__call__ (chunks trade memory for temporal consistency).
- Wan: undo the latents_mean/std normalisation and `vae.decode`, as at the end of
  WanImageToVideoPipeline.__call__; its causal VAE decodes frame by frame, so the chunk size
  has no effect there.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import OFFLOAD_PARAM
from mora.nodes.video_latent import REF_FIELDS, family, load_pipeline, read_latent, set_vae_tiling


def _to_uint8(video: Any) -> Any:
    """[0, 1] float frames to uint8 the way diffusers' numpy_to_pil does it."""
    import numpy as np

    return (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)


def run(ctx: RunContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    from mora.engine.cache.media import frames_blob

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
    video = decode(pipe, fam, latents, num_frames, params["decode_chunk_size"])[0]
    if video.shape[0] != num_frames:
        raise ValueError(f"decoded {video.shape[0]} frames but the latent records {num_frames}")
    # 4. return artifacts
    return {"video": frames_blob(video, fps)}


def decode(pipe: Any, fam: str, latents: Any, num_frames: int, decode_chunk_size: int) -> Any:
    """uint8 frames (B x F x H x W x 3) of a pipeline's latents, as the pipeline's own decoding would give them
    (also what bench/world_video_quality.py reads)."""
    import torch

    vae = pipe.vae
    latents = latents.to(device=vae.device, dtype=vae.dtype)
    with torch.no_grad():
        if fam == "svd":
            frames = pipe.decode_latents(latents, num_frames, decode_chunk_size)
        else:
            shape = (1, vae.config.z_dim, 1, 1, 1)
            mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
            std = torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
            frames = vae.decode(latents * std + mean, return_dict=False)[0]
        return _to_uint8(pipe.video_processor.postprocess_video(frames, output_type="np"))


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
