"""The simulation's one agent: sleep, then output a short text (its own module, so pool workers import it by name)."""
from __future__ import annotations

import time
from typing import Any

from mora.engine.cache.media import text_blob
from mora.engine.graph.agent import Agent, Param, Port
from mora.engine.graph.registry import Registry
from mora.engine.ports import PortType


def _sleep(ctx: Any, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    time.sleep(params["seconds"])
    return {"text": text_blob(f"node {params['tag']}")}


SLEEP = Agent("sim_sleep", 1, "Sleep `seconds`, then output a text naming `tag`.", _sleep,
              outputs=(Port("text", PortType.TEXT),),
              params=(Param("seconds", float, 1.0, "how long", min=0, max=600), Param("tag", str, "", "label")))


def registry() -> Registry:
    return Registry([SLEEP])
