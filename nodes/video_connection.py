"""How well a generated transition connects two clips: the recipe's TCON and Tmean idea, weight-free.

The recipe judges video connection by how well the transition's ends match the clips it joins
and how steady it is in between. Here, with SSIM on luma (every frame resized to the first
clip's size, as video_concat does):
- `tcon`: the mean of SSIM(first clip's last frame, transition's first frame) and SSIM(transition's
  last frame, second clip's first frame); 1 is a seamless join at both ends.
- `tmean`: the mean SSIM of consecutive frames from the first clip's last frame, through the
  transition, to the second clip's first frame; 1 is a transition without jumps.
These are this project's reading of the idea (the recipe publishes no reference code), so the
numbers compare runs of Mora with each other, not with the paper's tables.
"""
from __future__ import annotations

import itertools
from typing import Any

from mora.engine.cache.media import number_blob, read_artifact_frames
from mora.engine.graph.agent import Agent, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.video_signals import luma, ssim_map


def _resized(frames: Any, size: tuple[int, int]) -> Any:
    import cv2
    import numpy as np

    if frames.shape[1:3] == (size[1], size[0]):
        return frames
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    # 1. check inputs
    first, bridge, second = (read_artifact_frames(inputs[name]).array for name in ("first", "transition", "second"))
    size = (first.shape[2], first.shape[1])
    # 2. run
    chain = luma(np.concatenate([first[-1:], _resized(bridge, size), _resized(second[:1], size)]))
    steps = [float(ssim_map(a, b).mean()) for a, b in itertools.pairwise(chain)]
    tcon = (steps[0] + steps[-1]) / 2
    # 3. return artifacts
    return {"tcon": number_blob(tcon), "tmean": number_blob(float(np.mean(steps)))}


AGENT = Agent(
    type="video_connection",
    version=1,
    description="TCON and Tmean of a transition: how well its ends match the clips it joins, how steady it is.",
    run=run,
    inputs=(Port("first", PortType.VIDEO, "the clip before the transition"),
            Port("transition", PortType.VIDEO, "the generated transition"),
            Port("second", PortType.VIDEO, "the clip after the transition")),
    outputs=(Port("tcon", PortType.NUMBER, "mean SSIM of the transition's ends to the clips they meet (1: seamless)"),
             Port("tmean", PortType.NUMBER, "mean SSIM of consecutive frames through the transition (1: no jumps)")),
    libraries=("numpy", "opencv-python-headless"),
)
