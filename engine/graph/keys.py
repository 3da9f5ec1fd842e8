"""Cache keys: a sha256 over canonical, type-tagged JSON of everything that decides a node's output.

Ingredients: the key schema version and an optional salt; the agent's type and version; the
model identity (source and name or path, revision or weight digest, dtype); the resolved
parameters minus run-only ones; the seed; the content digest of every input artifact (so an
upstream result that comes out identical cuts off recomputation below it); and the versions of
the libraries the agent declares as changing its numerics. Values are tagged with their type
(`1` and `1.0` and `"1"` differ; floats are written exactly with `float.hex`), never `str()`,
`hash()` or pickle.
"""
from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

KEY_SCHEMA = 1


def canonical(value: Any) -> Any:
    """A JSON-able, type-tagged form of a plain value; anything else is refused."""
    if value is None:
        return ["null"]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, (list, tuple)):
        return ["list", [canonical(v) for v in value]]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("cache key mappings must have string keys")
        return ["dict", [[k, canonical(value[k])] for k in sorted(value)]]
    raise TypeError(f"cannot put a {type(value).__name__} into a cache key")


def digest_of(value: Any) -> str:
    data = json.dumps(canonical(value), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@cache
def library_version(name: str) -> str:
    """The installed version of a distribution, read from metadata (nothing is imported)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def node_key(
    *,
    agent: str,
    agent_version: int,
    params: dict[str, Any],
    seed: int | None,
    inputs: dict[str, str | list[str]],
    model: dict[str, Any] | None,
    libraries: tuple[str, ...],
    salt: str = "",
) -> str:
    """The cache key of one node run."""
    return digest_of(
        {
            "schema": KEY_SCHEMA,
            "salt": salt,
            "agent": agent,
            "version": agent_version,
            "model": model,
            "params": params,
            "seed": seed,
            "inputs": inputs,
            "libraries": {name: library_version(name) for name in sorted(libraries)},
        }
    )
