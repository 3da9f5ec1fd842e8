"""Text-to-image and instruction-edit pipelines built in code.

- `tiny:sd`, `tiny:pix2pix`: StableDiffusionPipeline and StableDiffusionInstructPix2PixPipeline
  with the component sizes of diffusers' own tests (CPU, seconds).
- `random:sd15`, `random:pix2pix`: the Stable Diffusion 1.5 architecture (860 M UNet, its VAE,
  CLIP ViT-L/14 text encoder), random weights in bfloat16; pix2pix takes 8 input channels.
- `random:sdxl`: the SDXL base architecture (2.6 B UNet, two text encoders).
- `tiny:sdxl`, `tiny:sdxl_refiner`: SDXL base and refiner at the sizes of diffusers' SDXL tests;
  they share their VAE and second text encoder, as the published pair does, for the 80/20 hand-off.
Every text encoder gets the offline byte-level `CLIPTokenizer` of mora.nodes.zoo.tokenizers; the
random ones keep CLIP's 49,408-entry embedding, of which the tokenizer uses the first 514.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mora.nodes.zoo.tokenizers import CLIP_BOS, CLIP_EOS, CLIP_VOCAB_SIZE

CLIP_IDS = {"bos_token_id": CLIP_BOS, "eos_token_id": CLIP_EOS, "pad_token_id": CLIP_EOS,
            "max_position_embeddings": 77}


def _sd_scheduler() -> Any:
    """Stable Diffusion 1.x's noise schedule, sampled with DDIM."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def _sd_pipeline(unet: Any, vae: Any, text_encoder: Any) -> dict[str, Any]:
    from mora.nodes.zoo.tokenizers import clip

    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip(), "safety_checker": None,
            "feature_extractor": None, "requires_safety_checker": False}


def tiny_components(in_channels: int) -> dict[str, Any]:
    """UNet, VAE and text encoder at the sizes of diffusers' Stable Diffusion tests, each seeded."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=2,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=64, layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=CLIP_VOCAB_SIZE, **CLIP_IDS,
    ))
    return _sd_pipeline(unet, vae, text_encoder)


def sd15_components(in_channels: int) -> dict[str, Any]:
    """Stable Diffusion 1.5's UNet, VAE and CLIP ViT-L/14 text encoder (float32, on the current device)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, in_channels=in_channels, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, sample_size=512,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, projection_dim=768,
        vocab_size=49408, **CLIP_IDS,
    ))
    return _sd_pipeline(unet, vae, text_encoder)


def sdxl_components() -> dict[str, Any]:
    """SDXL base's UNet, VAE and two text encoders (float32, on the current device)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from mora.nodes.zoo.tokenizers import clip

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, sample_size=1024,
        scaling_factor=0.13025, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                                num_hidden_layers=12, vocab_size=49408, **CLIP_IDS))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32, projection_dim=1280,
        hidden_act="gelu", vocab_size=49408, **CLIP_IDS))
    return {"vae": vae, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2, "tokenizer": clip(),
            "tokenizer_2": clip(), "unet": unet}


def _save(pipeline_class: Any, components: dict[str, Any], dest: Path, dtype: Any = None,
          scheduler: Any = None) -> None:
    pipe = pipeline_class(**components, scheduler=scheduler or _sd_scheduler())
    if dtype is not None:
        pipe.to(dtype=dtype)
    pipe.save_pretrained(dest)


def tiny_sd(dest: Path) -> None:
    from diffusers import StableDiffusionPipeline

    _save(StableDiffusionPipeline, tiny_components(4), dest)


def tiny_pix2pix(dest: Path) -> None:
    from diffusers import StableDiffusionInstructPix2PixPipeline

    _save(StableDiffusionInstructPix2PixPipeline, tiny_components(8), dest)


def random_sd15(dest: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    _save(StableDiffusionPipeline, sd15_components(4), dest, torch.bfloat16)


def random_pix2pix(dest: Path) -> None:
    import torch
    from diffusers import StableDiffusionInstructPix2PixPipeline

    _save(StableDiffusionInstructPix2PixPipeline, sd15_components(8), dest, torch.bfloat16)


def random_sdxl(dest: Path) -> None:
    import torch
    from diffusers import StableDiffusionXLPipeline

    _save(StableDiffusionXLPipeline, sdxl_components(), dest, torch.bfloat16, _sdxl_scheduler())


def _sdxl_scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  steps_offset=1, timestep_spacing="leading")


def tiny_sdxl_components(refiner: bool) -> dict[str, Any]:
    """SDXL base (two text encoders) or refiner (the second only, aesthetic-score conditioning), tiny and seeded."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from mora.nodes.zoo.tokenizers import clip

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), norm_num_groups=2,
        # time ids: 6 (size, crop, target) for the base, 5 (size, crop, aesthetic score) for the refiner
        projection_class_embeddings_input_dim=(5 if refiner else 6) * 8 + 32,
        cross_attention_dim=32 if refiner else 64,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )
    config = CLIPTextConfig(hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5, num_attention_heads=4,
                            num_hidden_layers=2, projection_dim=32, hidden_act="gelu", vocab_size=CLIP_VOCAB_SIZE,
                            **CLIP_IDS)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(config)
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(config)
    if refiner:
        return {"unet": unet, "vae": vae, "text_encoder": None, "tokenizer": None, "text_encoder_2": text_encoder_2,
                "tokenizer_2": clip(), "requires_aesthetics_score": True}
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip(),
            "text_encoder_2": text_encoder_2, "tokenizer_2": clip()}


def tiny_sdxl(dest: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    _save(StableDiffusionXLPipeline, tiny_sdxl_components(refiner=False), dest, scheduler=_sdxl_scheduler())


def tiny_sdxl_refiner(dest: Path) -> None:
    from diffusers import StableDiffusionXLImg2ImgPipeline

    _save(StableDiffusionXLImg2ImgPipeline, tiny_sdxl_components(refiner=True), dest, scheduler=_sdxl_scheduler())


BUILDERS = {
    ("tiny", "sd"): tiny_sd,
    ("tiny", "sdxl"): tiny_sdxl,
    ("tiny", "sdxl_refiner"): tiny_sdxl_refiner,
    ("tiny", "pix2pix"): tiny_pix2pix,
    ("random", "sd15"): random_sd15,
    ("random", "pix2pix"): random_pix2pix,
    ("random", "sdxl"): random_sdxl,
}
