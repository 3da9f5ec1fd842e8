"""Animate an image into a video latent with Stable Video Diffusion or Wan image-to-video.

The model family follows from the loaded pipeline (model_index.json's `_class_name`, read by
`DiffusionPipeline.from_pretrained`): StableVideoDiffusionPipeline takes the image plus SVD's
micro-conditioning (fps, motion bucket, noise augmentation) and a per-frame guidance ramp and
ignores the prompt; WanImageToVideoPipeline takes the image, the prompt and one guidance scale,
and with `last_image` (a first-last-frame model) ends the clip on that image. The output is the
latent, not frames: a `decode_video` node decodes it, so decode settings change without
re-denoising. `generate` is shared with connect_videos.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mora.engine.cache.media import read_image, read_text
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import DIFFUSION_PARAMS, generator
from mora.nodes.speed import STEP_CACHE_PARAMS, speedup
from mora.nodes.video_latent import family, latent_blob, load_pipeline, set_vae_tiling

SIZE_PARAMS: tuple[Param, ...] = (
    Param("width", int, 0, "video width (0: the image's, rounded down to the model's multiple)",
          min=0, max=4096, multiple_of=8),
    Param("height", int, 0, "video height (0: the image's, rounded down to the model's multiple)",
          min=0, max=4096, multiple_of=8),
)


def size_multiple(pipe: Any, fam: str) -> int:
    """What width and height must divide by: the VAE's spatial factor, times the patch size for Wan."""
    if fam == "svd":
        return 8
    return pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]


def resolve_size(params: Mapping[str, Any], default: tuple[int, int], multiple: int, model: str) -> tuple[int, int]:
    """(width, height): the given ones, checked, or `default` rounded down to `multiple`."""
    width = params["width"] or max(multiple, default[0] // multiple * multiple)
    height = params["height"] or max(multiple, default[1] // multiple * multiple)
    if width % multiple or height % multiple:
        raise ValueError(
            f"`height` and `width` have to be divisible by {multiple} for {model} but are {height} and {width}."
        )
    return width, height


def check_family(pipe: Any, fam: str, model: str, frames: int, last_image: Any) -> None:
    """Raise ValueError for what the loaded family cannot do: Wan's 4k+1 frames, the last frame's tokens."""
    if fam == "svd":
        if last_image is not None:
            raise ValueError(f"`last_image` needs a Wan first-last-frame model, but {model} is Stable Video Diffusion")
        return
    temporal = pipe.vae_scale_factor_temporal
    if (frames - 1) % temporal:
        raise ValueError(f"`frames` has to be {temporal}k+1 for Wan models (e.g. {temporal + 1}, "
                         f"{2 * temporal + 1}) but is {frames}.")
    config = pipe.transformer.config
    if config.image_dim is None:  # Wan 2.2 style: no CLIP image tokens, either mode works
        return
    if config.pos_embed_seq_len is not None and last_image is None:
        raise ValueError(f"{model} is a Wan first-last-frame model: it needs `last_image`")
    if config.pos_embed_seq_len is None and last_image is not None:
        raise ValueError(f"{model} is a Wan image-to-video model without first-last-frame image tokens; "
                         "`last_image` needs a FLF2V model")


def asked_frames(pipe: Any, frames: int) -> int:
    """The `num_frames` that makes a Wan pipeline give `frames` frames. Diffusers 0.42's Wan pipelines round any count
    with `num_frames % stride != 1` to `num_frames // stride * stride + 1`; with a VAE that codes each frame alone
    (temporal stride 1, the offline world's) that test is always true, so 17 would become 18, which the VAE's
    4k+1 chunking cannot encode. Asking one frame fewer gives the count wanted, unchanged for every other stride."""
    return frames - 1 if getattr(pipe, "vae_scale_factor_temporal", None) == 1 else frames


def generate(ctx: RunContext, pipe: Any, fam: str, image: Any, last_image: Any, prompt: str,
             params: Mapping[str, Any], size: tuple[int, int]) -> Any:
    """Denoise a video latent from `image` (and `last_image` for Wan first-last-frame models)."""
    from PIL import Image

    from mora.engine.execution.models import label

    check_family(pipe, fam, label(ctx.model), params["frames"], last_image)
    width, height = size
    image, last_image = (
        im if im is None or im.size == size else im.resize(size, Image.Resampling.BICUBIC)
        for im in (image, last_image)
    )
    set_vae_tiling(pipe, params["vae_tiling"])
    advance = ctx.progress(params["steps"], "denoising")

    def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        advance(1)
        return {}

    common = {"height": height, "width": width, "num_frames": asked_frames(pipe, params["frames"]),
              "num_inference_steps": params["steps"],
              "generator": generator(ctx), "output_type": "latent", "callback_on_step_end": on_step}
    with speedup(ctx, pipe, params):
        if fam == "svd":
            return pipe(image, min_guidance_scale=params["min_guidance"], max_guidance_scale=params["max_guidance"],
                        fps=params["fps"], motion_bucket_id=params["motion_bucket_id"],
                        noise_aug_strength=params["noise_aug_strength"], **common).frames
        # the text length the model was trained with is its tokenizer's (Wan's UMT5: 512, the pipeline's default)
        return pipe(image, prompt=prompt, negative_prompt=params["negative_prompt"] or None, last_image=last_image,
                    guidance_scale=params["guidance"], max_sequence_length=min(512, pipe.tokenizer.model_max_length),
                    **common).frames


def run(ctx: RunContext, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    # 1. check inputs
    image = read_image(inputs["image"])
    last_image = read_image(inputs["last_image"]) if inputs.get("last_image") is not None else None
    prompt = read_text(inputs["prompt"]) if inputs.get("prompt") is not None else ""
    if params["max_guidance"] < params["min_guidance"]:
        raise ValueError(f"`max_guidance` {params['max_guidance']} is below `min_guidance` {params['min_guidance']}")
    # 2. get the pipeline
    pipe = load_pipeline(ctx, params)
    fam = family(pipe, ctx.model)
    size = resolve_size(params, image.size, size_multiple(pipe, fam), f"{ctx.model['name']} ({fam})")
    # 3. run
    latents = generate(ctx, pipe, fam, image, last_image, prompt, params, size)
    # 4. return artifacts
    return {"latent": latent_blob(latents, ctx.model, fam, params["frames"], params["fps"], size[1], size[0])}


def preload(ctx: RunContext, params: Mapping[str, Any]) -> None:
    load_pipeline(ctx, params, prefetch=True)


AGENT = Agent(
    type="image_to_video",
    version=1,
    description="Animate an image into a video latent (SVD or Wan I2V; decode it with decode_video).",
    run=run,
    preload=preload,
    inputs=(
        Port("image", PortType.IMAGE, "the first frame"),
        Port("prompt", PortType.TEXT, "what happens (Wan; SVD ignores it)", required=False),
        Port("last_image", PortType.IMAGE, "the last frame (Wan first-last-frame models only)", required=False),
    ),
    outputs=(Port("latent", PortType.LATENT, "the video latent, for decode_video"),),
    params=(
        Param("frames", int, 25, "number of frames (Wan: 4k+1)", min=2, max=256),
        Param("fps", int, 7, "frames per second (SVD is conditioned on it; recorded for decoding)", min=1, max=60),
        Param("steps", int, 25, "denoising steps", min=1, max=1000),
        *SIZE_PARAMS,
        Param("motion_bucket_id", int, 127, "amount of motion (SVD)", min=0, max=1023),
        Param("noise_aug_strength", float, 0.02, "noise added to the conditioning image (SVD)", min=0.0, max=1.0),
        Param("min_guidance", float, 1.0, "guidance at the first frame (SVD)", min=0.0, max=30.0),
        Param("max_guidance", float, 3.0, "guidance at the last frame (SVD)", min=0.0, max=30.0),
        Param("guidance", float, 5.0, "classifier-free guidance scale (Wan)", min=0.0, max=30.0),
        Param("negative_prompt", str, "", "what to avoid (Wan)", batchable=True),
        *STEP_CACHE_PARAMS,
        *DIFFUSION_PARAMS,
    ),
    model_role="image_to_video",
    random=True,
    libraries=("torch", "diffusers", "transformers"),
)
