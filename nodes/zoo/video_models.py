"""Image-to-video pipelines built in code: tiny ones for CPU tests, full-size random ones for GPU benchmarks.

Each builder saves a complete diffusers pipeline folder (model_index.json plus components) that
`DiffusionPipeline.from_pretrained` loads like a downloaded checkpoint:

- `tiny:svd`: StableVideoDiffusionPipeline with the component sizes of diffusers' own SVD tests.
- `tiny:wan_i2v`: WanImageToVideoPipeline shaped like Wan 2.1 I2V (CLIP image tokens, no pos-embed).
- `tiny:wan_flf`: the same shaped like Wan 2.1 FLF2V (image tokens of the first *and* last frame
  with a learnt position embedding), which `last_image` (first-last-frame mode) needs.
- `random:svd_xt`: the published Stable Video Diffusion XT architecture (1.5 B UNet, temporal VAE,
  CLIP ViT-H/14 image encoder), random weights saved in bfloat16.
- `random:wan_i2v_1_3b`: Wan 2.1's 1.3 B transformer widths with the I2V conditioning of the 14 B
  models (36 input channels, CLIP ViT-H image tokens), the Wan 2.1 VAE and a 2-layer encoder of UMT5-XXL's width
  (4096; the text encoder runs once per prompt, not per step, so step timings need only its width).
  Wan publishes I2V only at 14 B; this is the cheapest I2V-shaped Wan for timing the engine.
- `random:wan_flf_1_3b`: the same with Wan 2.1 FLF2V's learnt position embedding over the image
  tokens of both end frames, so `last_image` (the connect agent) works.

The Wan tokenizer is built offline: a byte-level BPE without merges (every text maps to bytes)
with T5's special tokens, wrapped in a transformers fast tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_IMAGE_SIZE = 224
"""SVD resizes the conditioning image to 224 x 224 before CLIP, so its tiny encoder takes that size."""


def _tokenizer(max_length: int) -> Any:
    """A T5-style fast tokenizer (pad=0, eos=1, unk=2) whose vocabulary is the 256 byte symbols."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(specials + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_length)


def _svd_scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    # The scheduler config published with stable-video-diffusion-img2vid(-xt), used by diffusers' tests too.
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
        steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True,
    )


def tiny_svd(dest: Path) -> None:
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 64), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), latent_channels=4,
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE, intermediate_size=37, patch_size=56,
    ))
    feature_extractor = CLIPImageProcessor(crop_size=TINY_IMAGE_SIZE, size=TINY_IMAGE_SIZE)
    StableVideoDiffusionPipeline(
        vae=vae, image_encoder=image_encoder, unet=unet, scheduler=_svd_scheduler(),
        feature_extractor=feature_extractor,
    ).save_pretrained(dest)


def _tiny_wan(dest: Path, first_last: bool) -> None:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    image_size, patch = 32, 8
    image_tokens = (image_size // patch) ** 2 + 1
    tokenizer = _tokenizer(max_length=512)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
    ))
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, image_dim=4, pos_embed_seq_len=2 * image_tokens if first_last else None,
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=4, num_hidden_layers=2, num_attention_heads=2, image_size=image_size,
        intermediate_size=16, patch_size=patch,
    ))
    WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        image_processor=CLIPImageProcessor(crop_size=image_size, size=image_size), image_encoder=image_encoder,
        transformer=transformer,
    ).save_pretrained(dest)


def tiny_wan_i2v(dest: Path) -> None:
    _tiny_wan(dest, first_last=False)


def tiny_wan_flf(dest: Path) -> None:
    _tiny_wan(dest, first_last=True)


def _vit_h_config() -> Any:
    """CLIP ViT-H/14 (open_clip's laion2B encoder), the image encoder of SVD and Wan 2.1 I2V."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
                            patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu",
                            layer_norm_eps=1e-5)


class _DefaultDtype:
    """Build full-size random models directly in bfloat16: half the memory and init time of float32."""

    def __enter__(self) -> None:
        import torch

        self.previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_default_dtype(self.previous)


def random_svd_xt(dest: Path) -> None:
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    with _DefaultDtype():
        unet = UNetSpatioTemporalConditionModel(sample_size=96, num_frames=25)
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            layers_per_block=2, latent_channels=4, sample_size=768,
        )
        image_encoder = CLIPVisionModelWithProjection(_vit_h_config())
    StableVideoDiffusionPipeline(
        vae=vae, image_encoder=image_encoder, unet=unet, scheduler=_svd_scheduler(),
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    ).save_pretrained(dest)


def _random_wan(dest: Path, first_last: bool) -> None:
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    with _DefaultDtype():
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=36, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, rope_max_seq_len=1024,
            pos_embed_seq_len=2 * 257 if first_last else None,  # FLF2V: CLIP tokens of both end frames
        )
        vae = AutoencoderKLWan()
        image_encoder = CLIPVisionModel(_vit_h_config())
        # UMT5-XXL's width (4096, what the transformer reads) in 2 small layers over the byte vocabulary:
        # a denoising step never runs the encoder, and the full 5.7 B encoder (23 GB in float32 while it
        # is built) is what made these presets too slow to build on a benchmark machine.
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(_tokenizer(512)), d_model=4096, d_kv=64, d_ff=1024, num_layers=2, num_heads=64,
            relative_attention_num_buckets=32, relative_attention_max_distance=128,
        ))
    # Wan 2.1 I2V 480P's published scheduler: UniPC on flow-matching sigmas with shift 3.
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                        num_train_timesteps=1000)
    WanImageToVideoPipeline(
        tokenizer=_tokenizer(max_length=512), text_encoder=text_encoder, vae=vae, scheduler=scheduler,
        image_processor=CLIPImageProcessor(crop_size=224, size=224), image_encoder=image_encoder,
        transformer=transformer,
    ).save_pretrained(dest)


def random_wan_i2v_1_3b(dest: Path) -> None:
    _random_wan(dest, first_last=False)


def random_wan_flf_1_3b(dest: Path) -> None:
    _random_wan(dest, first_last=True)


BUILDERS = {
    ("tiny", "svd"): tiny_svd,
    ("tiny", "wan_i2v"): tiny_wan_i2v,
    ("tiny", "wan_flf"): tiny_wan_flf,
    ("random", "svd_xt"): random_svd_xt,
    ("random", "wan_i2v_1_3b"): random_wan_i2v_1_3b,
    ("random", "wan_flf_1_3b"): random_wan_flf_1_3b,
}
