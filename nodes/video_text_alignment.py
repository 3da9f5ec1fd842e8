"""Text-video alignment with CLIP (transformers `CLIPModel`), and background consistency on CLIP features.

`clip_score` is CLIPSIM as video papers report it: 100 x the mean over frames of the cosine
similarity (clamped at 0) between each frame's and the prompt's CLIP embeddings; with
openai/clip-vit-base-patch32 it is comparable with CLIPSIM numbers computed with that model.
`background_consistency` is VBench's background-consistency formula on the same CLIP image
features; with ViT-B/32 and `max_frames=0` (every frame) it follows VBench's method (frames are
resized and centre-cropped by the model's own image processor rather than VBench's transform,
so expect small differences). The model comes from the preset's `clip` role or the `model`
parameter, loaded with `from_pretrained` like every model; tests use a tiny random CLIP.
"""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import number_blob, read_artifact_frames, read_text
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import MODEL_PARAMS, feature_model
from mora.nodes.video_signals import cosine_consistency, sample_indices

CHUNK = 32
"""Frames per forward pass."""



def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    # 1. check inputs
    prompt = read_text(inputs["prompt"]).strip()
    if not prompt:
        raise ValueError("`prompt` is empty: text-video alignment needs the text the video should show")
    frames = read_artifact_frames(inputs["video"]).array
    picks = sample_indices(len(frames), params["max_frames"])
    # 2. get the model
    processor, model = feature_model(ctx, "clip", "CLIPProcessor", "CLIPModel")
    # 3. run
    images, texts = [], None
    with torch.no_grad():
        for start in range(0, len(picks), CHUNK):
            batch = [frames[i] for i in picks[start:start + CHUNK]]
            enc = processor(text=[prompt], images=batch, return_tensors="pt", padding=True, truncation=True,
                            max_length=77).to(ctx.device)
            enc["pixel_values"] = enc["pixel_values"].to(model.dtype)
            out = model(**enc)
            images.append(out.image_embeds.float().cpu().numpy())
            texts = out.text_embeds.float().cpu().numpy()[0]
    features = np.concatenate(images)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    text = texts / max(float(np.linalg.norm(texts)), 1e-12)
    score = 100 * float(np.clip(unit @ text, 0, None).mean())
    # 4. return artifacts
    return {"clip_score": number_blob(score), "background_consistency": number_blob(cosine_consistency(features))}


AGENT = Agent(
    type="video_text_alignment",
    version=1,
    description="CLIP score of a video against its prompt, and background consistency on CLIP features.",
    run=run,
    inputs=(Port("video", PortType.VIDEO, "the video to measure"),
            Port("prompt", PortType.TEXT, "the text the video should show")),
    outputs=(Port("clip_score", PortType.NUMBER, "100 x mean frame-prompt CLIP cosine similarity (CLIPSIM)"),
             Port("background_consistency", PortType.NUMBER, "VBench consistency of CLIP image features (1: steady)")),
    params=(Param("max_frames", int, 16, "frames measured, evenly spaced (0: every frame, as VBench does)",
                  min=0, max=4096),
            *MODEL_PARAMS),
    model_role="clip",
    libraries=("torch", "transformers"),
)
