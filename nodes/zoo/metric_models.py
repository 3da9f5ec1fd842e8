"""Image-feature models for the metric agents, built in code: a tiny CLIP and a tiny DINO-style ViT.

- `tiny:clip`: transformers' `CLIPModel` (2-layer text and vision towers, 32 wide, 32x32 images,
  16-dim projection) with the offline byte-level `CLIPTokenizer` and a `CLIPImageProcessor`,
  saved as one folder that `CLIPModel`/`CLIPProcessor.from_pretrained` load.
- `tiny:dino`: a 2-layer `ViTModel` (the architecture of facebook/dino-vitb16) with a
  `ViTImageProcessor`; its CLS token is the image feature.
Random weights, seeded: the numbers they give are for tests of the plumbing, not of quality.
"""
from __future__ import annotations

from pathlib import Path

from mora.nodes.zoo.image_models import CLIP_IDS
from mora.nodes.zoo.tokenizers import CLIP_VOCAB_SIZE

IMAGE_SIZE = 32


def tiny_clip(dest: Path) -> None:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from mora.nodes.zoo.tokenizers import clip

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "vocab_size": CLIP_VOCAB_SIZE, **CLIP_IDS},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": IMAGE_SIZE, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(dest)
    images = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    CLIPProcessor(image_processor=images, tokenizer=clip()).save_pretrained(dest)


def tiny_dino(dest: Path) -> None:
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                       image_size=IMAGE_SIZE, patch_size=8)).save_pretrained(dest)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(dest)


BUILDERS = {("tiny", "clip"): tiny_clip, ("tiny", "dino"): tiny_dino}
