"""Pick one frame of a video as an image: the first, the last, or any index."""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import image_blob, read_artifact_frames
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    from PIL import Image

    # 1. check inputs
    frames = read_artifact_frames(inputs["video"])
    index = params["index"]
    if not -frames.count <= index < frames.count:
        raise ValueError(f"`index` {index} is outside a video of {frames.count} frames")
    # 2. run
    frame = frames.array[index]
    # 3. return artifacts
    return {"image": image_blob(Image.fromarray(frame))}


AGENT = Agent(
    type="frame_pick",
    version=1,
    description="One frame of a video as an image (index 0 is the first, -1 the last).",
    run=run,
    inputs=(Port("video", PortType.VIDEO, "the video"),),
    outputs=(Port("image", PortType.IMAGE, "the chosen frame"),),
    params=(Param("index", int, -1, "frame index; negative counts from the end", min=-100_000, max=100_000),),
)
