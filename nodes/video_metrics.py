"""Numbers about a video, for sweeps to optimise: how much it moves and how far it drifts.

`motion` is the mean absolute change between consecutive frames (0-255 scale); `drift` the mean
absolute difference between the first and the last frame. Plain NumPy, no model.
"""
from __future__ import annotations

from typing import Any

from mora.engine.agent import Agent, Port
from mora.engine.media import number_blob
from mora.engine.ports import PortType


def run(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    # 1. check inputs
    frames = inputs["video"].video().array.astype(np.float32)
    # 2. run
    motion = float(np.abs(np.diff(frames, axis=0)).mean()) if len(frames) > 1 else 0.0
    drift = float(np.abs(frames[-1] - frames[0]).mean())
    # 3. return artifacts
    return {"motion": number_blob(motion), "drift": number_blob(drift)}


AGENT = Agent(
    type="video_metrics",
    version=1,
    description="Motion (mean change between frames) and drift (first to last frame) of a video.",
    run=run,
    inputs=(Port("video", PortType.VIDEO, "the video to measure"),),
    outputs=(Port("motion", PortType.NUMBER, "mean absolute change between consecutive frames"),
             Port("drift", PortType.NUMBER, "mean absolute difference between first and last frame")),
)
