"""`bench_score`: a number from two numbers, microseconds of work; the Optuna benchmark's objective (bench/ only).

It is registered through a real `mora.agents` entry point written by bench/sweep_scale.py, so the
`mora` process finds it as it would a third-party package's agent; nodes/ is left as it is.
"""
from __future__ import annotations

from typing import Any

from mora.engine.cache.media import number_blob
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.ports import PortType


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    # 1. run: a bowl with its minimum 0 at (2, -1)
    value = (params["x"] - 2.0) ** 2 + (params["y"] + 1.0) ** 2
    # 2. return artifacts
    return {"value": number_blob(value)}


AGENT = Agent(
    type="bench_score",
    version=1,
    description="(x - 2)^2 + (y + 1)^2: the Optuna benchmark's objective.",
    run=run,
    inputs=(),
    outputs=(Port("value", PortType.NUMBER, "the score"),),
    params=(
        Param("x", float, 0.0, "first coordinate", min=-100.0, max=100.0),
        Param("y", float, 0.0, "second coordinate", min=-100.0, max=100.0),
    ),
)
