"""Resolving which model a node uses, without loading it: presets, overrides and identities.

A preset (Hydra group `model`) maps each agent role to a reference `{source, name, revision,
dtype, variant}`; a node's `model` parameter overrides it with `tiny:NAME`, `random:NAME`,
`hub:ID[@REV]`, `path:DIR` or `package:MODULE:FOLDER` (a bare string is a path if that directory
exists, else a hub id). A `package` reference names a folder shipped inside an installed Python
package (the world preset's trained weights); it resolves to that folder's path, wherever the
package is installed, and is a `path` from then on.
The identity that enters cache keys adds, for local paths, a digest of the weight files
(cached by their names, sizes and modification times so it is computed once), and for hub ids
the commit their revision resolves to in the local Hugging Face cache.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mora.engine.agent import Agent
from mora.engine.store import Store

SOURCES = ("tiny", "random", "hub", "path", "package")
DTYPES = ("float32", "float16", "bfloat16")


def parse_override(text: str) -> dict[str, Any]:
    """A model reference from a node's `model` parameter."""
    source, sep, rest = text.partition(":")
    if not sep or source not in SOURCES:
        source, rest = ("path", text) if Path(text).expanduser().is_dir() else ("hub", text)
    revision = None
    if source == "hub" and "@" in rest:
        rest, revision = rest.rsplit("@", 1)
    return {"source": source, "name": rest, "revision": revision}


def resolve(agent: Agent, params: Mapping[str, Any], preset: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The model reference for a node, or a problem message."""
    if agent.model_role is None:
        return None, None
    roles = preset.get("roles") or {}
    override = params.get("model") or ""
    if override:
        ref = {**(roles.get(agent.model_role) or {}), **parse_override(override)}
    elif agent.model_role in roles and roles[agent.model_role]:
        ref = dict(roles[agent.model_role])
    else:
        return None, (f"the model preset '{preset.get('name')}' has no model for role '{agent.model_role}'; add "
                      f"roles.{agent.model_role} to the preset or set the node's `model` parameter")
    ref.setdefault("revision", None)
    ref.setdefault("variant", None)
    ref["dtype"] = params.get("dtype") or ref.get("dtype") or preset.get("dtype") or "float32"
    if ref.get("source") not in SOURCES or not isinstance(ref.get("name"), str) or not ref["name"]:
        return None, f"model reference {ref!r} needs `source` ({'/'.join(SOURCES)}) and `name`"
    if ref["dtype"] not in DTYPES:
        return None, f"model dtype {ref['dtype']!r} is not one of {list(DTYPES)}"
    if ref["source"] == "package":
        path, problem = package_folder(ref["name"])
        if problem:
            return None, f"{problem} (role {agent.model_role})"
        ref["source"], ref["name"] = "path", str(path)
    if ref["source"] == "path":
        path = Path(ref["name"]).expanduser()
        if not path.is_dir():
            return None, (f"model path '{path}' does not exist or is not a directory (role {agent.model_role}); give "
                          "a folder written by save_pretrained")
        ref["name"] = str(path.resolve())
    return {k: ref[k] for k in sorted(ref)}, None


def package_folder(name: str) -> tuple[Path | None, str | None]:
    """The folder `MODULE:FOLDER` names inside an installed package, or a problem message."""
    from importlib.resources import files

    module, sep, folder = name.partition(":")
    if not sep or not module or not folder:
        return None, f"a package model is named 'MODULE:FOLDER' (e.g. mora.nodes.world:weights/sd) but is {name!r}"
    try:
        path = Path(str(files(module) / folder))
    except (ModuleNotFoundError, TypeError) as e:
        return None, f"package model {name!r}: no package {module!r} ({e})"
    if not path.is_dir():
        return None, f"package model {name!r}: '{path}' is not a folder in the installed package"
    return path, None


def identity(ref: dict[str, Any] | None, store: Store) -> dict[str, Any] | None:
    """What of a model reference enters the cache key."""
    if ref is None:
        return None
    ident = {k: ref.get(k) for k in ("source", "name", "revision", "dtype", "variant")}
    if ref["source"] in ("tiny", "random"):
        from mora.nodes.zoo import BUILD_VERSION

        ident["build"] = BUILD_VERSION
    elif ref["source"] == "path":
        ident["weights"] = weights_digest(Path(ref["name"]), store)
    elif ref["source"] == "hub":
        ident["commit"] = hub_commit(ref["name"], ref.get("revision"))
    return ident


def hub_cache_dir() -> Path:
    """The local Hugging Face hub cache, found as huggingface_hub finds it (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub"


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a hub id (at a branch or tag, default main) resolves to in the local cache, if it is there.

    A hub id alone does not say which weights it names: when the cached snapshot moves to a new
    commit, the cache key must change with it.
    """
    rev = revision or "main"
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        return rev
    ref_file = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "refs" / rev
    try:
        return ref_file.read_text().strip() or None
    except OSError:
        return None


def weights_digest(folder: Path, store: Store) -> str:
    """sha256 over a model folder's files, memoized in the index by their names, sizes and mtimes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts[-3:]))
    signature = hashlib.sha256()
    for p in files:
        st = p.stat()
        signature.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    memo_key = f"weights:{signature.hexdigest()}"
    memo = store.index.get(memo_key)
    if isinstance(memo, str):
        return memo
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(folder)}\0".encode())
        with open(p, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    digest = h.hexdigest()
    store.index.set(memo_key, digest)
    return digest

