"""The composed config of a run, kept by content: a run whose config files and overrides did not change skips composing.

Hydra reads and merges a dozen YAML files and the schemas to compose Mora's config: about 0.15 s,
an eighth of a fully cached run. Policy: the config `mora.engine.frontends.compose` composes for a
run is kept in a per-user folder (`cache_dir()`), under a digest of everything composing reads:

- the config name, the overrides, Hydra's task name, the working directory, `version_base`;
- the versions of Python, Hydra and OmegaConf;
- each config source on the search path: for `pkg://` and `file://` sources, every file's relative
  path and bytes; for the ConfigStore (`structured://`), every stored node's key, value, node type,
  flags and schema class. Editing a config file, installing a plugin or changing a schema is a miss.

Environment values the config copies (`hydra.job.env_copy`) are compared when an entry is read.
A composition that brought sources of its own (`hydra.searchpath`), or whose defaults lists
interpolate (Hydra resolves them while composing, with any resolver), is not kept, nor is anything
from a source too large to digest cheaply (`MAX_ENTRIES` files and folders, `MAX_BYTES`) or of
another kind. Whatever cannot be read or written is a miss: Hydra composes as it always did.
Entries are pickles of the DictConfig (its schema classes and flags included, which YAML would
lose) without the values its resolvers cached while composing (`${now:...}` is each run's own
time), trusted as Python trusts its `__pycache__`: written atomically by this user into a folder
only this user can write, and read only from such a folder. The newest `KEEP` entries are kept.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import platformdirs
from hydra.core.config_store import ConfigNode, ConfigStore
from hydra.core.utils import JobRuntime
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, Node, OmegaConf

FORMAT = 1
"""Bumped when what a key covers or an entry holds changes."""
KEEP = 64
"""Entries kept (one per distinct command line and folder); the least recently used go first."""
MAX_ENTRIES = 2000
"""A config source with more files and folders than this is not digested (and the run not kept)."""
MAX_BYTES = 8 << 20
"""Nor one whose files hold more bytes than this."""


class _TooLarge(Exception):
    pass


def cache_dir() -> Path:
    """The per-user folder of kept configs (`~/.cache/mora/config` on Linux, honouring XDG_CACHE_HOME)."""
    return platformdirs.user_cache_path("mora") / "config"


def composed(loader: Any, config_name: str | None, overrides: list[str]) -> DictConfig:
    """The config Hydra's `loader` composes for a run of `overrides` (run mode): kept, or composed and kept."""
    folder = cache_dir()
    sources = loader.get_sources()
    interpolating: list[bytes] = []
    key = _key(sources, config_name, overrides, interpolating)
    entry = folder / f"{key}.pickle" if key is not None and _private(folder) else None
    if entry is not None:
        cfg = _read(entry)
        if cfg is not None:
            return cfg
    cfg = loader.load_configuration(config_name=config_name, overrides=overrides, run_mode=RunMode.RUN)
    if entry is not None and _keepable(sources, cfg, interpolating):
        _write(entry, cfg)
    return cfg


def _key(sources: list[Any], config_name: str | None, overrides: list[str], interpolating: list[bytes]) -> str | None:
    """The entry's name (None: not to be kept); the texts of config files that interpolate go to `interpolating`."""
    from hydra import __version__ as hydra_version
    from hydra import version
    from omegaconf import __version__ as omegaconf_version

    try:
        digests = [_source_digest(s, interpolating) for s in sources]
    except (_TooLarge, OSError, ValueError, ImportError):  # a source Hydra itself will report, or too large
        return None
    if None in digests:
        return None
    data = [FORMAT, sys.version, hydra_version, omegaconf_version, str(version.getbase()), config_name,
            list(overrides), JobRuntime.instance().get("name"), os.getcwd(), digests]
    return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()


def _source_digest(source: Any, interpolating: list[bytes]) -> list[str] | None:
    scheme = source.scheme()
    digest = hashlib.sha256()
    if scheme == "structured":
        _digest_store(ConfigStore.instance().repo, "", digest)
    elif scheme == "pkg":
        _digest_tree(files(source.path), "", digest, [0, 0], interpolating)
    elif scheme == "file":
        _digest_tree(Path(source.path), "", digest, [0, 0], interpolating)
    else:
        return None
    return [source.provider, scheme, source.path, digest.hexdigest()]


def _digest_tree(folder: Any, prefix: str, digest: Any, seen: list[int], interpolating: list[bytes]) -> None:
    """Every file's path and bytes under `folder` (a Traversable or Path), in name order; Python's caches left out."""
    if not folder.is_dir():
        return
    for child in sorted(folder.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        seen[0] += 1
        if seen[0] > MAX_ENTRIES:
            raise _TooLarge(prefix)
        path = f"{prefix}/{child.name}"
        if child.is_dir():
            digest.update(f"d{len(path)}:{path}".encode())
            _digest_tree(child, path, digest, seen, interpolating)
            continue
        data = child.read_bytes()
        seen[1] += len(data)
        if seen[1] > MAX_BYTES:
            raise _TooLarge(path)
        digest.update(f"f{len(path)}:{path}{len(data)}:".encode() + data)
        if b"${" in data and path.endswith(".yaml"):
            interpolating.append(data)


def _digest_store(repo: dict[str, Any], prefix: str, digest: Any) -> None:
    for name in sorted(repo):
        item = repo[name]
        path = f"{prefix}/{name}"
        if isinstance(item, ConfigNode):
            digest.update(json.dumps([path, item.package, item.provider]).encode())
            for entry in _node_entries(item.node, ""):
                digest.update(entry.encode())
        else:
            _digest_store(item, path, digest)


def _node_entries(node: Node, path: str) -> Iterator[str]:
    """Each node's key, node type, schema class, flags and (for leaves and empty containers) value, as text."""
    meta = node._metadata
    schema = meta.object_type if isinstance(node, DictConfig) else None
    yield json.dumps([path, type(node).__name__, _qualname(meta.ref_type), _qualname(schema), meta.optional,
                      sorted(meta.flags.items())])
    if isinstance(node, (DictConfig, ListConfig)) and not (node._is_none() or node._is_missing()
                                                           or node._is_interpolation()):
        children = node.keys() if isinstance(node, DictConfig) else range(len(node))
        for k in children:
            yield from _node_entries(node._get_node(k), f"{path}.{k}")  # type: ignore[arg-type]
    else:
        yield repr(node._value())


def _qualname(kind: Any) -> str:
    return f"{getattr(kind, '__module__', '')}.{getattr(kind, '__qualname__', repr(kind))}"


def _keepable(sources: list[Any], cfg: DictConfig, interpolating: list[bytes]) -> bool:
    """Whether `cfg` was composed from `sources` only (its own `hydra.searchpath` brought none) and from no
    defaults list that interpolates: Hydra resolves those while composing, with any resolver (`oc.env`, `now`)."""
    known = {(s.provider, s.scheme(), s.path) for s in sources}
    used = {(s.provider, s.schema, s.path) for s in cfg.hydra.runtime.config_sources}
    if not used <= known:
        return False
    import yaml

    try:
        texts = [yaml.load(text, Loader=yaml.CSafeLoader) for text in interpolating]
    except yaml.YAMLError:
        return False
    stored = [c.node for c in _config_nodes(ConfigStore.instance().repo)]
    defaults = [t.get("defaults") for t in texts if isinstance(t, dict)]
    defaults += [OmegaConf.to_container(n.defaults, resolve=False) for n in stored if "defaults" in n]
    return "${" not in json.dumps(defaults)


def _config_nodes(repo: dict[str, Any]) -> Iterator[ConfigNode]:
    for item in repo.values():
        if isinstance(item, ConfigNode):
            yield item
        else:
            yield from _config_nodes(item)


def _private(folder: Path) -> bool:
    """Create `folder` for this user only; True if it exists and no one else can write it."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return owner_ok and not st.st_mode & 0o022


def _read(entry: Path) -> DictConfig | None:
    try:
        with entry.open("rb") as f:
            env, cfg = pickle.load(f)
    except Exception:  # noqa: BLE001 (missing, unreadable, truncated or from other code: a miss, composed again)
        return None
    if not isinstance(cfg, DictConfig) or not isinstance(env, dict) or any(os.environ.get(k) != v
                                                                           for k, v in env.items()):
        return None
    with contextlib.suppress(OSError):  # most recently used: kept longest (a read-only folder still serves it)
        os.utime(entry)
    return cfg


def _write(entry: Path, cfg: DictConfig) -> None:
    env = {k: os.environ.get(k) for k in cfg.hydra.job.env_copy}
    tmp: str | None = None
    try:
        resolved = OmegaConf.get_cache(cfg)
        OmegaConf.clear_cache(cfg)  # `${now:...}`, resolved while composing, is resolved again by each run
        try:
            data = pickle.dumps((env, cfg), protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            OmegaConf.set_cache(cfg, resolved)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, entry)
        _prune(entry.parent)
    except Exception:  # noqa: BLE001 (a config not kept only costs the next run a composition)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _prune(folder: Path) -> None:
    """Keep the `KEEP` most recently used entries (another run may be pruning too: a vanished file is fine)."""
    with contextlib.suppress(OSError):
        by_use = sorted(((p.stat().st_mtime_ns, p) for p in folder.glob("*.pickle")), reverse=True)
        for _, old in by_use[KEEP:]:
            old.unlink(missing_ok=True)


__all__ = ["cache_dir", "composed"]
