"""Loading models once per process: resolve a model reference, build tiny/random ones, keep an LRU.

A model reference (resolved by `mora.engine.execution.models` from the preset and the node's `model` param)
is a mapping with `source` ("tiny", "random", "hub" or "path"), `name`, `revision` and
`dtype`. Tiny and random models are real diffusers/transformers classes built in code from
a fixed seed by a builder in `mora.nodes.zoo`, saved once in the settings' models folder and then loaded
like any other model, through `from_pretrained`. Hub ids load at the commit the run was pinned to,
through huggingface_hub's cache: a missing file is downloaded unless HF_HUB_OFFLINE is set. A model whose files are
there but do not load (truncated weights, a config or tokenizer that is not the library's, a class it does not know)
fails its node with a ModelNotFoundError naming the model, its folder and the library's cause in one line; errors
placing or quantizing a loaded model are the agents' own.

Pipelines stay resident, keyed by (kind, identity, dtype, device, offload mode), in an LRU bounded by
the run's settings (mora.engine.execution.settings.current(): `max_resident_models`, default 4, and, if set,
`max_resident_gib` of weights); every real load is reported to the run context so the manifest can count them.

Loads may run on a second thread (a worker loading the next node's model while the current node
runs, `prefetch=True`): one lock guards the LRU, a pipeline being loaded is never loaded twice
(the second caller waits for the first), and loads run one at a time, since diffusers and
transformers set torch's process-wide default dtype while they build a model and two interleaved
builds could leave it changed for good. A prefetched load is counted against the first node that
uses it, so the manifest's counts do not depend on whether a load was prefetched. A prefetch only
fills free room: it never evicts, and a prefetched pipeline that puts the LRU over its budget is
dropped again. Every load is also logged with its start and duration (`take_load_events`) for the
pool's per-worker timeline. On CUDA a prefetch copies weights on its own stream, so it does not
queue behind (or stall) the kernels of the node running meanwhile. A load also patches torch process-wide while it
builds a model (diffusers' `no_init_weights` skips every `torch.nn.init` function, accelerate's `init_empty_weights`
puts every new parameter on the meta device), so code that builds or rewires modules outside a load (fusing
projections before compiling) holds `building_modules()`: it waits for a prefetch in flight, and none starts meanwhile.
"""
from __future__ import annotations

import gc
import os
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mora.engine.errors import ModelNotFoundError, MoraError
from mora.engine.execution.model_loader import ModelLoader
from mora.engine.execution.models import hub_cache_dir, hub_commit, label
from mora.engine.execution.settings import current
from mora.engine.graph.agent import RunContext
from mora.engine.userfiles import expand_user
from mora.nodes import zoo

_RESIDENT: OrderedDict[tuple[str, str, str, str, str], Any] = OrderedDict()
_LOCK = threading.RLock()
_ONE_LOAD_AT_A_TIME = threading.Lock()
_LOADING: dict[tuple[str, str, str, str, str], threading.Event] = {}
_UNCLAIMED: set[tuple[str, str, str, str, str]] = set()
"""Prefetched pipelines no node has used yet (the first one to use it counts the load)."""
_EVENTS: list[dict[str, Any]] = []


def max_resident() -> int:
    return current().max_resident_models


def max_resident_bytes() -> int | None:
    """The memory budget for resident weights (the settings' `max_resident_gib`; 0: none)."""
    gib = current().max_resident_gib
    return int(gib * 2**30) if gib > 0 else None


def resident_bytes() -> int:
    """Bytes of weights and buffers held by the resident pipelines, shared modules counted once."""
    import torch

    seen: set[int] = set()
    total = 0
    for pipe in _RESIDENT.values():
        parts = pipe if isinstance(pipe, tuple) else getattr(pipe, "components", {}).values()
        for module in (m for m in parts if isinstance(m, torch.nn.Module)):
            for t in (*module.parameters(), *module.buffers()):
                if t.data_ptr() not in seen:
                    seen.add(t.data_ptr())
                    total += t.numel() * t.element_size()
    return total


def _over_budget() -> bool:
    budget = max_resident_bytes()
    return len(_RESIDENT) > max_resident() or (budget is not None and len(_RESIDENT) > 1
                                               and resident_bytes() > budget)


def models_dir() -> Path:
    """Where tiny/random models are built (the run's settings say)."""
    return current().models


def torch_dtype(name: str) -> Any:
    import torch

    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    except KeyError:
        raise ValueError(f"`dtype` must be float32, float16 or bfloat16 but is {name!r}") from None


def locate(ref: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return what to pass to `from_pretrained` (a directory or hub id) and the extra kwargs."""
    source, name = ref["source"], ref["name"]
    if source in ("tiny", "random"):
        return str(zoo.build(source, name, models_dir())), {}
    if source == "path":
        path = expand_user(name, "model path")
        if not path.is_dir():
            raise ModelNotFoundError(
                f"model path '{path}' does not exist or is not a directory; point `model` at a folder written by "
                "save_pretrained (with model_index.json or config.json)"
            )
        return str(path), {}
    if source == "hub":  # huggingface_hub's cache and settings decide whether a missing file is downloaded
        kwargs: dict[str, Any] = {}
        if ref.get("commit") or ref.get("revision"):
            kwargs["revision"] = ref.get("commit") or ref["revision"]
        if ref.get("variant"):
            kwargs["variant"] = ref["variant"]
        return name, kwargs
    raise ModelNotFoundError(f"unknown model source {source!r} (expected tiny, random, hub or path)")


def hub_missing(ref: Mapping[str, Any], error: Exception) -> ModelNotFoundError:
    """The error for a hub id that could be neither found in the local Hugging Face cache nor downloaded."""
    from huggingface_hub import constants

    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "it could not be downloaded"
    return ModelNotFoundError(
        f"model '{ref['name']}' is not (completely) in the local Hugging Face cache and {why} "
        f"({type(error).__name__}: {error}). Fetch it where the hub can be reached (`mora-admin models --download`, "
        f"or `hf download {ref['name']}`) and copy the cache (HF_HOME), or save it to a folder and use "
        "`path:/that/folder`."
    )


def read_the_files(error: Exception) -> bool:
    """Whether `error` came out of a model library's own `from_pretrained` (reading a model's files), not out of an
    agent's loader around it (its own refusals, such as a quantization it cannot do) nor out of placing the model on
    its device (out of memory there is the device's failure, not the model's)."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return False
    return any(frame.f_code.co_name == "from_pretrained" and
               str(frame.f_globals.get("__name__", "")).partition(".")[0] in MODEL_LIBRARIES
               for frame, _ in traceback.walk_tb(error.__traceback__))


MODEL_LIBRARIES = {"diffusers", "transformers"}
"""The libraries whose `from_pretrained` reads a model's files."""


def load_failed(ref: Mapping[str, Any], location: str, error: Exception) -> ModelNotFoundError:
    """The error for a model whose files are there but do not load (truncated weights, a config that is not the
    library's, a class it does not know): the model, its folder, and the library's cause in one line."""
    where = f"'{location}'"
    if ref["source"] == "hub":
        commit = ref.get("commit") or hub_commit(ref["name"], ref.get("revision"))
        snapshot = hub_cache_dir() / f"models--{ref['name'].replace('/', '--')}" / "snapshots" / str(commit)
        where = f"its snapshot '{snapshot}' in the Hugging Face cache" if commit else "the Hugging Face cache"
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    cause = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return ModelNotFoundError(f"could not load model {label(ref)} from {where}: {cause}")


def _key(ctx: RunContext, kind: str, ref: Mapping[str, Any], offload: str) -> tuple[str, str, str, str, str]:
    """What makes two loads the same: settings fixed at load (dtype, device, offload) belong here."""
    return (kind, label(ref), str(ref.get("dtype")), ctx.device, offload)


def resident(ctx: RunContext, kinds: tuple[str, ...], ref: Mapping[str, Any] | None = None, *,
             offload: str = "none") -> Any | None:
    """A pipeline of one of `kinds` already resident for `ref` (default ctx.model) on ctx.device, else None.

    Loads nothing: agents use it to build a view on the same modules (diffusers' `from_pipe`)
    instead of a second copy of the weights.
    """
    ref = ctx.model if ref is None else ref
    if ref is None:
        return None
    return next((_RESIDENT[k] for k in (_key(ctx, kind, ref, offload) for kind in kinds) if k in _RESIDENT), None)


def resident_offload(ctx: RunContext, kind: str, ref: Mapping[str, Any]) -> str | None:
    """The offload mode of a resident `kind` pipeline for `ref` on ctx.device, if one is resident."""
    return next((k[4] for k in _RESIDENT if k[:4] == _key(ctx, kind, ref, "")[:4]), None)


def get_pipeline(
    ctx: RunContext, kind: str, load: Callable[[str, dict[str, Any]], Any], ref: Mapping[str, Any] | None = None,
    *, shares_weights: bool = False, offload: str = "none", prefetch: bool = False,
) -> Any:
    """Return the resident pipeline for `ref` (default ctx.model), loading it with `load(location, kwargs)` on a miss.

    `kind` separates different pipeline classes built from the same weights (e.g. text-to-image
    and image-to-image views of one checkpoint) so each is cached on its own. `ref` serves agents
    without a model role that find their model elsewhere (a decoder reads it from a latent's metadata).
    `shares_weights` says that `load` builds a view on a resident pipeline's modules: no model load.
    `offload` is the offload mode `load` places the pipeline with: another mode is another pipeline.
    `prefetch` loads ahead of the node that needs it (see the module's policy); it returns None
    when there is no room.
    """
    ref = ctx.model if ref is None else ref
    if ref is None:
        raise ValueError(f"node '{ctx.node_id}' has no model reference to load a {kind} pipeline from")
    key = _key(ctx, kind, ref, offload)
    _follow_hub_progress_setting()
    while True:
        with _LOCK:
            if key in _RESIDENT:
                _RESIDENT.move_to_end(key)
                if not prefetch and key in _UNCLAIMED:
                    _UNCLAIMED.discard(key)
                    ctx.note_model_load(label(ref))
                return _RESIDENT[key]
            loading = _LOADING.get(key)
            if loading is None:
                if prefetch and not _has_room():
                    return None
                loading = _LOADING[key] = threading.Event()
                break
        loading.wait()  # another thread is loading it; if that load failed, try it here
    try:
        with _ONE_LOAD_AT_A_TIME:  # a tiny or random model's first build happens in `locate`
            location, kwargs = locate(ref)
            started = time.time()
            try:
                cuda = prefetch and str(ctx.device).startswith("cuda")
                pipe = _load_on_side_stream(load, location, kwargs) if cuda else load(location, kwargs)
            except MoraError:
                raise
            except OSError as e:
                if ref["source"] == "hub":
                    raise hub_missing(ref, e) from None
                raise load_failed(ref, location, e) from None
            except Exception as e:
                if not read_the_files(e):  # placing or quantizing the model: the agent's errors, as they were
                    raise
                raise load_failed(ref, location, e) from None  # a corrupt or foreign folder: the library's own error
        with _LOCK:
            _RESIDENT[key] = pipe
            if not shares_weights:
                _EVENTS.append({"model": label(ref), "kind": kind, "started": started,
                                "seconds": round(time.time() - started, 3), "prefetch": prefetch})
                if prefetch:
                    _UNCLAIMED.add(key)
                else:
                    ctx.note_model_load(label(ref))
            if prefetch and _over_budget():
                _drop(key)
                return None
            while _over_budget():  # least recently used first; the pipeline just loaded stays
                _drop(next(iter(_RESIDENT)))
        return pipe
    finally:
        with _LOCK:
            _LOADING.pop(key).set()


@contextmanager
def building_modules() -> Iterator[None]:
    """Build or rewire modules in this thread with no load in flight in another (see the module's policy)."""
    with _ONE_LOAD_AT_A_TIME:
        yield


def _has_room() -> bool:
    budget = max_resident_bytes()
    return len(_RESIDENT) < max_resident() and (budget is None or not _RESIDENT or resident_bytes() < budget)


def _drop(key: tuple[str, str, str, str, str]) -> None:
    _sync_device()  # no kernel queued by another thread may still read weights whose memory is freed
    _RESIDENT.pop(key)
    _UNCLAIMED.discard(key)
    gc.collect()
    _empty_device_cache()


def _load_on_side_stream(load: Callable[[str, dict[str, Any]], Any], location: str, kwargs: dict[str, Any]) -> Any:
    import torch

    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        pipe = load(location, kwargs)
    stream.synchronize()
    return pipe


def _follow_hub_progress_setting() -> None:
    """diffusers' loading bar ignores `HF_HUB_DISABLE_PROGRESS_BARS` (transformers honours it): make it follow.

    Mora sets that switch unless the run is verbose (mora.engine.execution.progress.quiet_libraries).
    """
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").lower() in ("1", "true", "yes", "on"):
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()


def take_load_events() -> list[dict[str, Any]]:
    """The loads since the last call: model, pipeline kind, start (epoch s), seconds, prefetched or not."""
    with _LOCK:
        events = list(_EVENTS)
        _EVENTS.clear()
    return events


def resident_count() -> int:
    return len(_RESIDENT)


def clear_resident() -> None:
    """Drop every resident pipeline (tests use this to measure loads from a cold process)."""
    with _LOCK:
        _RESIDENT.clear()
        _UNCLAIMED.clear()
    gc.collect()
    _empty_device_cache()


def _empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync_device() -> None:
    import sys

    torch = sys.modules.get("torch")  # no torch imported: nothing can be running on a device
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def resident_identities() -> list[str]:
    """Identities of the models resident in this process (the pool uses them for affinity)."""
    with _LOCK:
        return sorted({key[1] for key in _RESIDENT})


LOADER = ModelLoader(resident_identities, take_load_events, zoo.BUILD_VERSION, zoo.folder, zoo.build,
                     lambda: frozenset(zoo.builders()))
"""What the engine reads of this module (entry point `mora.model_loader`; see mora.engine.execution.model_loader)."""
