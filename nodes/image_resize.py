"""Resize (and centre-crop) an image to a size a model accepts."""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import image_blob, read_image
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    from PIL import ImageOps

    # 1. check inputs
    image = read_image(inputs["image"])
    size = (params["width"], params["height"])
    # 2. run
    out = ImageOps.fit(image, size) if params["crop"] else image.resize(size)
    # 3. return artifacts
    return {"image": image_blob(out)}


AGENT = Agent(
    type="image_resize",
    version=1,
    description="Resize an image, centre-cropping to keep its aspect ratio unless crop=false.",
    run=run,
    inputs=(Port("image", PortType.IMAGE, "the image"),),
    outputs=(Port("image", PortType.IMAGE, "the resized image"),),
    params=(
        Param("width", int, 64, "width in pixels", min=8, max=8192, multiple_of=8),
        Param("height", int, 64, "height in pixels", min=8, max=8192, multiple_of=8),
        Param("crop", bool, True, "centre-crop to keep the aspect ratio"),
    ),
)
