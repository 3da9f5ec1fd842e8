"""Numbers about a video, for sweeps to optimise: how much it moves and how far it drifts.

`motion` is the mean absolute change between consecutive frames (0-255 scale); `drift` the mean
absolute difference between the first and the last frame. Plain NumPy, no model; frames are read
two at a time from the mapped frame store, so a long or large video is never held whole.
"""
from __future__ import annotations

from typing import Any

from mora.engine.agent import Agent, Port
from mora.engine.media import number_blob
from mora.engine.ports import PortType


def run(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    def change(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.int16) - b).mean())

    # 1. check inputs
    frames = inputs["video"].video().array
    # 2. run: every pair has the same size, so the mean of per-pair means is the mean over the video
    pairs = [change(frames[i + 1], frames[i]) for i in range(len(frames) - 1)]
    motion = sum(pairs) / len(pairs) if pairs else 0.0
    drift = change(frames[-1], frames[0])
    # 3. return artifacts
    return {"motion": number_blob(motion), "drift": number_blob(drift)}


AGENT = Agent(
    type="video_metrics",
    version=2,
    description="Motion (mean change between frames) and drift (first to last frame) of a video.",
    run=run,
    inputs=(Port("video", PortType.VIDEO, "the video to measure"),),
    outputs=(Port("motion", PortType.NUMBER, "mean absolute change between consecutive frames"),
             Port("drift", PortType.NUMBER, "mean absolute difference between first and last frame")),
)
