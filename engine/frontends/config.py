"""The Hydra configuration schema, and the one validation step every run passes before anything starts.

Groups: `graph` (which template in graphs/), `model` (the model preset: a model per agent role),
`runtime` (where nodes run) and `cache`. `inputs` holds the graph's inputs (`inputs.NAME=VALUE`);
`prompt` and `seed` are short aliases for the inputs of the same names.

Policy: types are checked by Hydra against these dataclasses (registered in the ConfigStore), so a
wrong type or an unknown choice (an Enum field) is refused while the config is composed. What
types cannot say is declared next to the field, in its metadata: numeric bounds (`min`) and a
`check` function (devices that must exist on this machine). `validate` walks the schema once, checks
that each model role is a mapping of the keys a role takes (`ROLE_KEYS`: what `dict[str, Any]` cannot say), and
reports every problem at once, before any cache is opened or worker started.

Model roles on the command line (`register` installs this into Hydra's override step, so `mora`, its sweeps and
`mora-admin` compose alike): a role takes any of `ROLE_KEYS` whether or not its preset sets it
(`model.roles.connect.offload=group`; Hydra's struct mode would refuse a key the preset's role lacks, and the key is
checked by `validate` instead), and a mapping given for a role replaces the role
(`model.roles.text_to_image={source: path, name: DIR}` keeps nothing of the preset's model, its refiner and variant
included) where Hydra would merge it into the old one; a dotted key (`model.roles.X.name=...`) changes that key only.
"""
from __future__ import annotations

import enum
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict

from mora.engine.errors import MoraError, did_you_mean, shown

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override


class VideoFormat(str, enum.Enum):
    """How video outputs are written into the run directory."""

    mp4 = "mp4"
    frames = "frames"


class RuntimeName(str, enum.Enum):
    local = "local"
    pool = "pool"
    ray = "ray"
    auto = "auto"


def visible_gpus() -> int:
    from mora.engine.execution.executors.pool import count_gpus

    return count_gpus()


def available_devices() -> list[str]:
    """Device names this machine offers (counted without importing torch)."""
    gpus = visible_gpus()
    names = ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(gpus)] if gpus else [])
    return names + (["mps"] if sys.platform == "darwin" else [])


def check_device(value: Any, runtime: Any) -> str | None:
    if value in ("auto", "cpu") or runtime.name == RuntimeName.ray or runtime.get("attach") is not None:
        return None  # always there (no GPU count needed); a Ray cluster's or standing workers' devices are their own
    available = available_devices()
    if value not in available:
        return f"device {value!r} is not available on this machine; available: {', '.join(available)}"
    return None


def check_devices(value: Any, runtime: Any) -> str | None:
    """`all`, a positive count, or a non-empty list of distinct GPU ids (non-negative integers)."""
    if value == "all":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            return f"must be `all` or a count of at least 1, got {value}"
        return None
    if isinstance(value, (list, tuple)):
        if not value:
            return "an empty list of devices: give `all`, a count, or GPU ids such as [0, 1]"
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
            return f"GPU ids must be non-negative integers, got {list(value)}"
        if len(set(value)) != len(value):
            return f"a GPU id is listed twice in {list(value)}"
        return None
    return f"must be `all`, a count such as 2, or a list of GPU ids such as [0, 1]; got {value!r}"


def check_address(value: Any, runtime: Any) -> str | None:
    """Empty (a local cluster), `auto`, `HOST:PORT` or `ray://HOST:PORT`: what Ray can connect to."""
    if value in (None, "", "auto", "local"):
        return None
    host, sep, port = str(value).removeprefix("ray://").rpartition(":")
    if sep and host and port.isdigit() and 0 < int(port) < 65536:
        return None
    return f"must be null (start a local cluster), `auto`, `HOST:PORT` or `ray://HOST:PORT`; got {value!r}"


def check_num_gpus(value: Any, runtime: Any) -> str | None:
    """Logical GPUs of a local Ray cluster: each is an actor, so no more than the machine's GPUs (or, for
    `device: cpu`, its CPUs) can serve them."""
    if value is None or runtime.name != RuntimeName.ray or runtime.get("address") not in (None, ""):
        return None
    if runtime.get("device") == "cpu":
        cpus = os.cpu_count() or 1
        return f"{value} CPU actors but this machine has {cpus} CPU(s)" if value > cpus else None
    gpus = visible_gpus()
    if value > gpus:
        return (f"{value} GPU(s) asked but this machine has {gpus}" +
                ("; use runtime.device=cpu to run the actors on CPU" if not gpus else ""))
    return None


def check_attach(value: Any, runtime: Any) -> str | None:
    """Standing workers serve the pool runtime only."""
    if value is None or runtime.name in (RuntimeName.pool, RuntimeName.auto):
        return None
    return f"attaches a pool to standing workers: use it with runtime=pool, not runtime={getattr(runtime.name, 'value', runtime.name)}"


def _meta(min: float | None = None, check: Callable[[Any, Any], str | None] | None = None) -> dict[str, Any]:
    return {"min": min, "check": check}


@dataclass
class GraphConf:
    name: str = MISSING


@dataclass
class ModelConf:
    name: str = MISSING
    dtype: str = "float32"
    offload: str = "none"
    """diffusers CPU offload for every role without its own: none, model, group or sequential (run-only)."""
    quantization: str = "none"
    """Quantized weights for every role without its own: none, int8 or nf4 (bitsandbytes), fp8 (torchao), fp8_attention
    (fp8, and attention in FP8 through cuDNN on Hopper); keyed."""
    compile: str = "off"
    """torch.compile of the denoisers for every role without its own: off, on or auto (run-only; `speed=fast`)."""
    attention: str = "sdpa"
    """Attention backend for every role without its own (run-only; mora.nodes.speed lists them)."""
    roles: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    """Defaults for graph inputs of the same names (sizes, steps, frames suited to these models)."""


@dataclass
class RuntimeConf:
    name: RuntimeName = RuntimeName.local
    device: str = field(default="auto", metadata=_meta(check=check_device))
    retries: int = field(default=0, metadata=_meta(min=0))
    agent_retries: dict[str, int] = field(default_factory=dict, metadata=_meta(min=0))
    """Retries for nodes of the named agent types, instead of `retries` (e.g. {image_to_video: 2})."""
    batch_size: int = field(default=1, metadata=_meta(min=1))
    """Up to this many batch-compatible nodes run as one pipeline call (1: no batching)."""
    devices: Any = field(default="all", metadata=_meta(check=check_devices))
    max_resident_models: int = field(default=4, metadata=_meta(min=1))
    max_resident_gib: float = field(default=0.0, metadata=_meta(min=0))
    """Evict least recently used models past this many GiB of weights per worker (0: count only)."""
    address: str | None = field(default=None, metadata=_meta(check=check_address))
    num_gpus: int | None = field(default=None, metadata=_meta(min=0, check=check_num_gpus))
    attach: str | None = field(default=None, metadata=_meta(check=check_attach))
    """A folder of standing workers (`mora-admin workers start`; `auto`: the default cache's `workers/`) the pool
    attaches to instead of starting its own; `device` and `devices` are then the workers' own."""


@dataclass
class CacheConf:
    dir: str | None = None
    artifacts: str | None = None
    salt: str = ""
    lock_timeout: float = field(default=3600.0, metadata=_meta(min=0))


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
    video_format: VideoFormat = VideoFormat.mp4
    quiet: bool = False
    objective: str | None = None


def _bound_problem(value: Any, low: float) -> str | None:
    values = value.values() if isinstance(value, dict) else [value]
    for v in values:
        if v is None:
            continue
        if not math.isfinite(v):
            return f"must be a finite number, got {v}"
        if v < low:
            return f"must be at least {low:g}, got {v}"
    return None


def problems(schema: type, node: DictConfig, prefix: str = "") -> list[str]:
    """Every bound or check that `node` (composed and type-checked by Hydra) breaks, as `key: problem`.

    Only fields that declare a bound or check are read, so graph inputs are never resolved here.
    """
    found: list[str] = []
    for f in fields(schema):
        factory = f.default_factory
        if is_dataclass(factory) and isinstance(node.get(f.name), DictConfig):
            found += problems(factory, node[f.name], f"{prefix}{f.name}.")  # type: ignore[arg-type]
            continue
        low, check = f.metadata.get("min"), f.metadata.get("check")
        if (low is None and check is None) or f.name not in node:
            continue
        value = node[f.name]
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        problem = _bound_problem(value, low) if low is not None else None
        problem = problem or (check(value, node) if check is not None else None)
        if problem:
            found.append(f"{prefix}{f.name}: {problem}")
    return found


def group_options(group: str) -> list[str]:
    """The options of a config group (conf/GROUP/*.yaml)."""
    from importlib.resources import files

    return sorted(p.name.removesuffix(".yaml") for p in files("mora.conf").joinpath(group).iterdir()
                  if p.name.endswith(".yaml"))


ROLE_KEYS = ("source", "name", "revision", "variant", "dtype", "offload", "quantization", "compile", "attention",
             "refiner")
"""The keys a model role takes (mora.engine.execution.models resolves them; the README documents them)."""
REFINER_KEYS = ("source", "name", "revision", "variant")
"""The keys of a role's refiner (its dtype, offload and quantization are the role's)."""


def role_problems(cfg: DictConfig) -> list[str]:
    """Each model role that is not a mapping (`model.roles.NAME=foo`), and each key of one that a role does not take
    or whose value is not text: the types say only `dict[str, Any]`."""
    from mora.engine.execution.models import role_problem

    roles = OmegaConf.to_container(cfg.model.roles, resolve=True)
    assert isinstance(roles, dict)
    found = []
    for role, spec in roles.items():
        problem = role_problem(str(role), spec)
        found += [problem] if problem else _key_problems(f"model.roles.{role}", spec or {}, ROLE_KEYS)
    return found


def _key_problems(where: str, spec: dict[str, Any], known: tuple[str, ...]) -> list[str]:
    found = []
    for key, value in spec.items():
        if key not in known:
            found.append(f"{where}: unknown key {key!r}{did_you_mean(str(key), known)} (a "
                         f"{'refiner' if known is REFINER_KEYS else 'model role'} takes {', '.join(known)})")
        elif key == "refiner" and isinstance(value, dict):
            found += _key_problems(f"{where}.refiner", value, REFINER_KEYS)
        elif key == "refiner" and value is not None:
            found.append(f"{where}.refiner: a refiner is a mapping such as {{source: hub, name: ID}} (or null for "
                         f"none), not {shown(value)}")
        elif key != "refiner" and value is not None and not isinstance(value, str):
            found.append(f"{where}.{key}: must be text, not {shown(value)}")
    return found


def validate(cfg: DictConfig) -> None:
    """Refuse a configuration that types alone cannot catch (bounds, devices, model roles), naming every bad key."""
    found = [f"{group}: no option chosen; choose one of {', '.join(group_options(group))}" for group in ("graph", "model")
             if OmegaConf.is_missing(cfg[group], "name") and not (group == "graph" and cfg.graph_file)]
    found += problems(MoraConf, cfg)
    found += role_problems(cfg)
    if found:
        raise MoraError("invalid configuration:\n" + "\n".join(f"  - {p}" for p in found))


def register() -> None:
    """Store the schema as the root config only: its typed fields check every group option merged into them.

    No schema is stored inside a group, so none shows up as a group option (in `--help` or in
    shell completion); the group files need no `defaults` entry of their own.
    """
    OmegaConf.register_new_resolver("mora.pid", os.getpid, replace=True)  # for the run-dir pattern
    ConfigStore.instance().store(name="mora_schema", node=MoraConf)
    _apply_role_overrides_as_documented()


def _apply_role_overrides_as_documented() -> None:
    """Install the module's policy on model roles into Hydra's override step, which every composition passes through
    (a run, each job of a sweep, the compose API of `mora-admin`).

    Hydra 1.3 has no hook there, nor a syntax to replace a mapping (an override's mapping is always merged into the
    node it names), so its `ConfigLoaderImpl._apply_overrides_to_config` is wrapped: each override is applied as Hydra
    applies it, after the roles are opened to any key and a role the override gives a mapping for is emptied.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    apply = ConfigLoaderImpl._apply_overrides_to_config
    if getattr(apply, "applies_role_overrides", False):
        return

    def apply_overrides(overrides: list[Override], cfg: DictConfig) -> None:
        for override in overrides:
            roles = OmegaConf.select(cfg, "model.roles", throw_on_missing=False)
            if isinstance(roles, DictConfig) and not roles._is_none():
                for name in replaced_roles(override):
                    if name in roles:
                        with open_dict(roles):
                            roles[name] = None  # a mapping set on None replaces it (Hydra merges into a mapping)
                for name in roles:  # the preset's roles and any added by earlier overrides
                    node = roles._get_node(name)
                    if isinstance(node, DictConfig):
                        OmegaConf.set_struct(node, False)  # any key; validate() refuses a key no role takes
            apply([override], cfg)

    apply_overrides.applies_role_overrides = True  # type: ignore[attr-defined]
    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_overrides)  # type: ignore[method-assign]


def replaced_roles(override: Override) -> list[str]:
    """The model roles an override gives a whole mapping for (`model.roles.NAME={...}`, or each mapping in
    `model.roles={NAME: {...}}`): those it replaces."""
    if override.is_delete() or override.package is not None or override.is_sweep_override():
        return []
    key, value = override.key_or_group, override.value()
    if not isinstance(value, dict):
        return []
    if key == "model.roles":
        return [str(name) for name, spec in value.items() if isinstance(spec, dict)]
    prefix, _, name = key.rpartition(".")
    return [name] if prefix == "model.roles" else []


def register_launcher() -> None:
    """Make `hydra/launcher=mora` and `hydra/sweeper=mora` available to the `mora` app however Mora is installed.

    Hydra 1.3 finds plugins by listing the `hydra_plugins` namespace package, which an editable
    install by setuptools >= 64 hides from it (hydra#2359); Hydra's public `Plugins.register`
    does not depend on that listing. Importing the plugin module stores its config.
    """
    from hydra.core.plugins import Plugins

    from hydra_plugins.mora_launcher.mora_launcher import MoraLauncher, MoraSweeper

    plugins = Plugins.instance()
    for plugin in (MoraLauncher, MoraSweeper):
        if f"{plugin.__module__}.{plugin.__name__}" not in plugins.class_name_to_class:  # not found by the scan
            plugins.register(plugin)


__all__ = ["ROLE_KEYS", "MoraConf", "RuntimeName", "VideoFormat", "available_devices", "register", "register_launcher",
           "validate"]
