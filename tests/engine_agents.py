"""Pure-Python agents for engine tests: numbers in, numbers out, failures and counted executions.

Every agent here appends its node id to the file named by `MORA_TEST_LOG` (when set) each time it
really runs, so a test can tell a cache hit from an execution, in this process or another one.
They live in their own module so that other processes can import them by name (the runner finds
an agent that is not registered there through `NodeTask.agent_module`).
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from mora.engine.cache.media import number_blob, read_number, text_blob
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.graph.registry import Registry
from mora.engine.ports import PortType

LOG_ENV = "MORA_TEST_LOG"


def _log(ctx: RunContext) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{ctx.node_id}\n")


def _number(inputs: dict[str, Any], port: str, default: float = 0.0) -> float:
    return read_number(inputs[port]) if port in inputs else default


def _source(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    _log(ctx)
    return {"value": number_blob(params["value"])}


def _text(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    _log(ctx)
    return {"text": text_blob(params["text"])}


def _add(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    _log(ctx)
    return {"value": number_blob(_number(inputs, "a") + _number(inputs, "b") + params["offset"])}


def _fail(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    _log(ctx)
    raise RuntimeError(params["message"])


def _count(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    _log(ctx)
    if params["path"]:
        with open(params["path"], "a", encoding="utf-8") as f:
            f.write(f"{ctx.node_id} {os.getpid()}\n")
    time.sleep(params["sleep"])
    return {"value": number_blob(_number(inputs, "x") + params["value"])}


def _random(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    _log(ctx)
    return {"value": number_blob(random.Random(ctx.seed).random())}


def _flaky(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    _log(ctx)
    marker = Path(params["marker"])
    if not marker.exists():
        marker.write_text("failed once\n")
        raise RuntimeError("first attempt fails")
    return {"value": number_blob(params["value"])}


def _wrong(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    _log(ctx)
    return {"value": text_blob("not a number")}


NUMBER_OUT = (Port("value", PortType.NUMBER, "the result"),)

SOURCE = Agent("t_source", 1, "Output the number given as `value`.", _source, outputs=NUMBER_OUT,
               params=(Param("value", float, 0.0, "the number", min=-1e9, max=1e9),))
TEXT = Agent("t_text", 1, "Output the text given as `text`.", _text, outputs=(Port("text", PortType.TEXT),),
             params=(Param("text", str, "", "the text"),))
ADD = Agent("t_add", 1, "a + b + offset.", _add, outputs=NUMBER_OUT,
            inputs=(Port("a", PortType.NUMBER, "first term"), Port("b", PortType.NUMBER, "second term")),
            params=(Param("offset", float, 0.0, "added to the sum"),))
FAIL = Agent("t_fail", 1, "Raise RuntimeError(message).", _fail, outputs=NUMBER_OUT,
             inputs=(Port("x", PortType.NUMBER, "ignored", required=False),),
             params=(Param("message", str, "planned failure", "the error message"),))
COUNT = Agent("t_count", 1, "Append 'NODE PID' to `path`, sleep, output x + value.", _count, outputs=NUMBER_OUT,
              inputs=(Port("x", PortType.NUMBER, "added to value", required=False),),
              params=(Param("value", float, 0.0, "added to x"),
                      Param("path", str, "", "file that records each execution", run_only=True),
                      Param("sleep", float, 0.0, "seconds to sleep", min=0, max=30, run_only=True)))
RANDOM = Agent("t_random", 1, "A random number from the node's seed.", _random, outputs=NUMBER_OUT, random=True,
               params=(Param("seed", int, None, "random seed", min=0, max=2**31 - 1),))
FLAKY = Agent("t_flaky", 1, "Fail on the first attempt (creating `marker`), succeed afterwards.", _flaky,
              outputs=NUMBER_OUT,
              params=(Param("marker", str, "", "marker file", run_only=True), Param("value", float, 1.0, "output")))

WRONG = Agent("t_wrong", 1, "Return text on its number port (a broken agent).", _wrong, outputs=NUMBER_OUT)

TEST_AGENTS = (SOURCE, TEXT, ADD, FAIL, COUNT, RANDOM, FLAKY, WRONG)


def registry() -> Registry:
    """The built-in agents plus the test agents."""
    from mora.engine.graph.registry import default_registry

    return Registry([*default_registry(), *TEST_AGENTS])
