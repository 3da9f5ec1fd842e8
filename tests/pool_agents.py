"""Pure-Python agents for runtime tests: they sleep, load a stand-in model, or kill their process.

They live in their own module so worker processes (pool, Ray) can import them by name.
"""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from mora.engine.cache.media import number_blob, read_text, text_blob
from mora.engine.graph.agent import Agent, Param, Port, RunContext
from mora.engine.graph.registry import Registry
from mora.engine.ports import PortType


def _sleep(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    time.sleep(params["seconds"])
    return {"value": number_blob(params["value"])}


def _modelled(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    from mora.nodes.models import get_pipeline

    model = get_pipeline(ctx, "stand-in", lambda location, kwargs: {"loaded_from": location, "pid": os.getpid()})
    time.sleep(params["seconds"])
    return {"text": text_blob(f"{params['tag']} by {model['pid']}")}


def _slow_model(ctx: RunContext, params: dict[str, Any], prefetch: bool = False) -> Any:
    from mora.nodes.models import get_pipeline

    def load(location: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        time.sleep(params["load_seconds"])
        return {"loaded_from": location}

    return get_pipeline(ctx, "slow stand-in", load, prefetch=prefetch)


def _loaded(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    model = _slow_model(ctx, params)
    advance = ctx.progress(1, "sleeping")  # as a diffusion agent does once it has its pipeline
    time.sleep(params["seconds"])
    advance(1)
    return {"text": text_blob(f"{params['tag']} with {model['loaded_from']}")}


def _die(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


SLEEP = Agent("p_sleep", 1, "Sleep, then output a number.", _sleep, outputs=(Port("value", PortType.NUMBER),),
              params=(Param("seconds", float, 0.5, "how long", min=0, max=60), Param("value", float, 0.0, "output")))
MODELLED = Agent("p_modelled", 1, "Load a stand-in model through the model LRU, then output text.", _modelled,
                 inputs=(Port("after", PortType.TEXT, required=False),), outputs=(Port("text", PortType.TEXT),),
                 params=(Param("seconds", float, 0.0, "how long", min=0, max=60), Param("tag", str, "", "label"),
                         Param("model", str, "", "model override"), Param("dtype", str, "", "dtype")),
                 model_role="standin")
def _count(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    with open(params["log"], "a") as f:
        f.write(f"{ctx.node_id} {params['tag']}\n")
    time.sleep(params["seconds"])
    prev = read_text(inputs["after"]) if "after" in inputs else ""
    return {"text": text_blob(f"{prev}/{params['tag']}")}


COUNT = Agent("p_count", 1, "Log each execution to a file, sleep, output text.", _count,
              inputs=(Port("after", PortType.TEXT, required=False),), outputs=(Port("text", PortType.TEXT),),
              params=(Param("tag", str, "", "label (part of the key)"),
                      Param("seconds", float, 0.0, "how long", min=0, max=60),
                      Param("log", str, "", "file to log executions to", run_only=True)))
LOADED = Agent("p_loaded", 1, "Load a stand-in model that takes `load_seconds` (preloadable), sleep, output text.",
               _loaded, inputs=(Port("after", PortType.TEXT, required=False),), outputs=(Port("text", PortType.TEXT),),
               params=(Param("seconds", float, 0.0, "how long", min=0, max=60), Param("tag", str, "", "label"),
                       Param("load_seconds", float, 0.0, "how long a load takes", min=0, max=60),
                       Param("model", str, "", "model override"), Param("dtype", str, "", "dtype")),
               model_role="standin", preload=lambda ctx, params: _slow_model(ctx, params, prefetch=True))
DIE = Agent("p_die", 1, "Kill the process running it.", _die, outputs=(Port("value", PortType.NUMBER),))


def registry() -> Registry:
    from mora.engine.graph.registry import default_registry

    return Registry([*default_registry(), SLEEP, MODELLED, DIE, COUNT, SCALED, LOADED, INDEX_FILES, GATED])


def _scaled(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return _scaled_batch(ctx, [inputs], [params], [ctx.seed])[0]


def _scaled_batch(ctx: RunContext, inputs_list: list, params_list: list, seeds: list | None = None) -> list[dict[str, Any]]:
    seeds = seeds if seeds is not None else ctx.seeds
    with open(params_list[0]["log"], "a") as f:
        f.write(f"{len(params_list)}\n")
    return [{"value": number_blob(p["scale"] * 1000 + s)} for p, s in zip(params_list, seeds)]


SCALED = Agent("p_scaled", 1, "A seeded toy agent that can run batches (logs each call's batch size).", _scaled,
               outputs=(Port("value", PortType.NUMBER),), random=True,
               params=(Param("scale", float, 1.0, "not batchable: must match within a batch"),
                       Param("seed", int, None, "per-item seed", batchable=True),
                       Param("log", str, "", "file to log batch sizes to", run_only=True)),
               run_batch=lambda ctx, inputs_list, params_list: _scaled_batch(ctx, inputs_list, params_list))


def _index_files(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    from mora.engine.execution.settings import current

    cache = os.path.realpath(current().cache_dir)
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if any(target.startswith(os.path.join(cache, sub) + os.sep) for sub in ("index", "leases", "locks")):
            held.append(os.path.relpath(target, cache))
    return {"text": text_blob(json.dumps({"pid": os.getpid(), "held": sorted(held), "tag": params["tag"]}))}


def _gated(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    with open(params["log"], "a") as f:
        f.write(f"{ctx.node_id} {os.getpid()}\n")
    deadline = time.monotonic() + 120
    while not os.path.exists(params["gate"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"text": text_blob(params["tag"])}


INDEX_FILES = Agent("p_index_files", 1, "Output which files under the cache's index/, leases/ and locks/ this process "
                    "holds open.", _index_files, outputs=(Port("text", PortType.TEXT),),
                    inputs=(Port("after", PortType.TEXT, required=False),),
                    params=(Param("tag", str, "", "label (part of the key)"),))
GATED = Agent("p_gated", 1, "Log its start to `log`, wait until the file `gate` exists, output text.", _gated,
              outputs=(Port("text", PortType.TEXT),),
              params=(Param("tag", str, "", "label (part of the key)"),
                      Param("log", str, "", "file to log executions to", run_only=True),
                      Param("gate", str, "", "file whose existence lets the node finish", run_only=True)))
