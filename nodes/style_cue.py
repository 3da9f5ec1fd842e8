"""The digital-world style cue: append a style phrase to a prompt (a plain-text agent)."""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import read_text, text_blob
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    # 1. check inputs
    prompt = read_text(inputs["prompt"]).strip()
    cue = params["cue"].strip()
    if not prompt:
        raise ValueError("`prompt` is empty")
    # 2. run
    out = prompt if cue.lower() in prompt.lower() else f"{prompt}{params['separator']}{cue}"
    # 3. return artifacts
    return {"text": text_blob(out), "cue": text_blob(cue)}


AGENT = Agent(
    type="style_cue",
    version=1,
    description="Add a style cue (e.g. 'in digital world style, Minecraft') to a prompt.",
    run=run,
    inputs=(Port("prompt", PortType.TEXT, "the user's prompt"),),
    outputs=(Port("text", PortType.TEXT, "prompt with the cue"), Port("cue", PortType.TEXT, "the cue alone")),
    params=(
        Param("cue", str, "in digital world style, Minecraft", "the style phrase"),
        Param("separator", str, ", ", "text between prompt and cue"),
    ),
)
