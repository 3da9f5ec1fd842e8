"""Text templating: fill `{text}` (and `{step}`) in a template; no model involved."""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import read_text, text_blob
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    # 1. check inputs
    text = read_text(inputs["text"])
    template = params["template"]
    if "{text}" not in template:
        raise ValueError(f"`template` must contain '{{text}}' but is {template!r}")
    # 2. run
    out = template.replace("{text}", text).replace("{step}", str(params["step"]))
    # 3. return artifacts
    return {"text": text_blob(out)}


AGENT = Agent(
    type="text_template",
    version=1,
    description="Fill {text} (and {step}) in a text template.",
    run=run,
    inputs=(Port("text", PortType.TEXT, "the text to insert"),),
    outputs=(Port("text", PortType.TEXT, "the filled template"),),
    params=(
        Param("template", str, "{text}", "template with {text} (and optionally {step})"),
        Param("step", int, 0, "value for {step}", min=0),
    ),
)
