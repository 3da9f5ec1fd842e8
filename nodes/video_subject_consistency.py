"""Subject consistency on DINO features: VBench's method with a learned backbone (transformers `AutoModel`).

Each sampled frame goes through the model's own image processor and the model; the CLS token of
the last hidden state is its feature, and the score is VBench's consistency formula (cosine
similarity to the first and to the previous frame). With facebook/dino-vitb16 and `max_frames=0`
it follows VBench's subject-consistency method (preprocessing differs slightly, see
video_text_alignment). The model comes from the preset's `dino` role or the `model` parameter.
"""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import number_blob, read_artifact_frames
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.common import MODEL_PARAMS, feature_model
from mora.nodes.video_signals import cosine_consistency, sample_indices

CHUNK = 32



def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    # 1. check inputs
    frames = read_artifact_frames(inputs["video"]).array
    picks = sample_indices(len(frames), params["max_frames"])
    # 2. get the model
    processor, model = feature_model(ctx, "image_features", "AutoImageProcessor", "AutoModel")
    # 3. run
    features = []
    with torch.no_grad():
        for start in range(0, len(picks), CHUNK):
            enc = processor(images=[frames[i] for i in picks[start:start + CHUNK]], return_tensors="pt")
            pixels = enc["pixel_values"].to(ctx.device, model.dtype)
            features.append(model(pixel_values=pixels).last_hidden_state[:, 0].float().cpu().numpy())
    # 4. return artifacts
    return {"subject_consistency": number_blob(cosine_consistency(np.concatenate(features)))}


AGENT = Agent(
    type="video_subject_consistency",
    version=1,
    description="Subject consistency of a video on DINO (ViT) features, VBench's method.",
    run=run,
    inputs=(Port("video", PortType.VIDEO, "the video to measure"),),
    outputs=(Port("subject_consistency", PortType.NUMBER, "VBench consistency of DINO CLS features (1: steady)"),),
    params=(Param("max_frames", int, 16, "frames measured, evenly spaced (0: every frame, as VBench does)",
                  min=0, max=4096),
            *MODEL_PARAMS),
    model_role="dino",
    libraries=("torch", "transformers"),
)
