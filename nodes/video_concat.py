"""Join videos end to end, resizing later clips to the first one's size."""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import frames_blob, read_artifact_frames
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType


def _resize(array: Any, height: int, width: int) -> Any:
    import numpy as np
    from PIL import Image

    if array.shape[1:3] == (height, width):
        return array
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in array])


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    # 1. check inputs
    videos = [read_artifact_frames(ref) for ref in inputs["videos"]]
    if not videos:
        raise ValueError("`videos` is empty: nothing to join")
    # 2. run: drop the first frame of each later clip when it repeats the previous clip's last frame
    h, w = videos[0].array.shape[1:3]
    parts = [videos[0].array]
    for v in videos[1:]:
        arr = _resize(v.array, h, w)
        if params["drop_repeated_frame"] and np.array_equal(arr[0], parts[-1][-1]) and len(arr) > 1:
            arr = arr[1:]
        parts.append(arr)
    fps = params["fps"] or videos[0].fps
    # 3. return artifacts
    return {"video": frames_blob(np.concatenate(parts), fps)}


AGENT = Agent(
    type="video_concat",
    version=1,
    description="Join videos end to end (later clips resized to the first one's size).",
    run=run,
    inputs=(Port("videos", PortType.VIDEO_LIST, "the clips, in order"),),
    outputs=(Port("video", PortType.VIDEO, "the joined video"),),
    params=(
        Param("fps", float, 0.0, "frames per second of the result (0: the first clip's)", min=0, max=240),
        Param("drop_repeated_frame", bool, True, "skip a clip's first frame when it equals the previous last frame"),
    ),
)
