"""The model loader as the engine sees it: hooks that the agents' package registers through an entry point.

Policy. The engine never imports the agents' package. What it needs of the code that loads models in
a worker process (which models are resident, for placement; the loads since the last answer, for the
pool's timeline) and of the tiny/random model builder (its version, part of a model's cache
identity; which models it can build, checked before a run; where a model is built, and building it, for
`mora-admin models`) comes from the one
`ModelLoader` registered under the `mora.model_loader` entry-point group (Mora's own is
`mora.nodes.models:LOADER`). With none registered no model is ever resident and none can be built;
two registered is an error.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from mora.engine.errors import MoraError

ENTRY_POINT_GROUP = "mora.model_loader"


@dataclass(frozen=True)
class ModelLoader:
    """What a worker process reports of its models, and how tiny and random models are built."""

    resident_models: Callable[[], list[str]]
    """Labels of the models resident in this process."""
    take_loads: Callable[[], list[dict[str, Any]]]
    """The model loads in this process since the last call (model, kind, started, seconds, prefetch)."""
    build_version: int
    """Bumped when a built model's content changes: part of a tiny or random model's cache identity."""
    built_folder: Callable[[str, str, Path], Path]
    """Where `build(source, name, models_dir)` puts a model (whether or not it is built yet)."""
    build: Callable[[str, str, Path], Path]
    buildable: Callable[[], Collection[tuple[str, str]]] | None = None
    """Every (source, name) that `build` can build, so a run refuses an unknown `tiny:`/`random:` name before it
    starts; None: the loader does not say, and a wrong name fails when its node runs."""


def _cannot_build(source: str, name: str, root: Path) -> Path:
    raise MoraError(f"cannot build the {source} model '{name}': no model loader is installed")


NO_LOADER = ModelLoader(list, list, 0, lambda source, name, root: root / source / name, _cannot_build)


@cache
def model_loader() -> ModelLoader:
    """The registered model loader, loaded once per process."""
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    if len(found) > 1:
        raise MoraError(f"more than one model loader is registered ({', '.join(ep.value for ep in found)})")
    if not found:
        return NO_LOADER
    loader = found[0].load()
    if not isinstance(loader, ModelLoader):
        raise MoraError(f"entry point '{found[0].name}' ({found[0].value}) is not a ModelLoader")
    return loader
