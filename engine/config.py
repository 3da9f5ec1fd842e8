"""The Hydra configuration schema, registered in the ConfigStore so overrides are type-checked.

Groups: `graph` (which template in graphs/), `model` (the model preset: a model per agent role),
`runtime` (where nodes run) and `cache`. `inputs` holds the graph's inputs (`inputs.NAME=VALUE`);
`prompt` and `seed` are short aliases for the inputs of the same names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class GraphConf:
    name: str = MISSING


@dataclass
class ModelConf:
    name: str = MISSING
    dtype: str = "float32"
    roles: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    """Defaults for graph inputs of the same names (sizes, steps, frames suited to these models)."""


@dataclass
class RuntimeConf:
    name: str = "local"
    device: str = "auto"
    retries: int = 0
    agent_retries: dict[str, int] = field(default_factory=dict)
    """Retries for nodes of the named agent types, instead of `retries` (e.g. {image_to_video: 2})."""
    batch_size: int = 1
    """Up to this many batch-compatible nodes run as one pipeline call (1: no batching)."""
    devices: Any = "all"
    max_resident_models: int = 4
    max_resident_gib: float = 0.0
    """Evict least recently used models past this many GiB of weights per worker (0: count only)."""
    address: str | None = None
    num_gpus: int | None = None


@dataclass
class CacheConf:
    dir: str | None = None
    salt: str = ""
    lock_timeout: float = 3600.0


@dataclass
class MoraConf:
    graph: GraphConf = field(default_factory=GraphConf)
    model: ModelConf = field(default_factory=ModelConf)
    runtime: RuntimeConf = field(default_factory=RuntimeConf)
    cache: CacheConf = field(default_factory=CacheConf)
    graph_file: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    prompt: str | None = None
    seed: int | None = None
    video_format: str = "mp4"
    quiet: bool = False
    objective: str | None = None


def register() -> None:
    """Store the schema as the root config only: its typed fields check every group option merged into them.

    No schema is stored inside a group, so none shows up as a group option (in `--help` or in
    shell completion); the group files need no `defaults` entry of their own.
    """
    ConfigStore.instance().store(name="mora_schema", node=MoraConf)


def register_launcher() -> None:
    """Make `hydra/launcher=mora` available to the `mora` app however Mora is installed.

    Hydra 1.3 finds plugins by listing the `hydra_plugins` namespace package, which an editable
    install by setuptools >= 64 hides from it (hydra#2359); Hydra's public `Plugins.register`
    does not depend on that listing. Importing the plugin module stores its config.
    """
    from hydra.core.plugins import Plugins

    from hydra_plugins.mora_launcher.mora_launcher import MoraLauncher

    plugins = Plugins.instance()
    if f"{MoraLauncher.__module__}.{MoraLauncher.__name__}" not in plugins.class_name_to_class:  # not found by the scan
        plugins.register(MoraLauncher)
