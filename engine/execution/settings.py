"""Execution settings: the one typed object that carries how a run executes, from the config to the agents.

Policy. The CLI (or the API, from its `Store` and runtime mapping) builds one frozen
`ExecutionSettings` per run: the cache directory, its artifact store, salt and key-lease timeout
(workers open their artifact store from exactly these; only the driver opens the index), where tiny and random models are built, and the model residency
limits. It travels inside every task the scheduler hands an executor, so the in-process executor,
pool workers and Ray actors all run with the run's own settings, even when one executor serves
several runs (a sweep). The runner installs the settings of the unit it runs (`using`) while its
agent code runs; the model loader (mora.nodes.models) reads them with `current()`. No setting
travels through environment variables: the only variable read here is `MORA_MODELS_DIR`, a
documented user-facing default for where models are built (like `MORA_CACHE_DIR` for the cache,
read in mora.engine.cache.store.default_cache_dir).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mora.engine.userfiles import expand_user

if TYPE_CHECKING:
    from mora.engine.cache.objects import ArtifactStore
    from mora.engine.cache.store import Store


@dataclass(frozen=True)
class ExecutionSettings:
    """How a run executes: its cache (opened by every process that runs its nodes) and its models."""

    cache_dir: str
    salt: str = ""
    lock_timeout: float = 3600.0
    """Seconds a driver waits for another driver computing the same key before computing it anyway; also the
    expiry of a key lease that its driver stops renewing (a driver that died)."""
    models_dir: str = ""
    """Where tiny and random models are built; empty: `default_models_dir(cache_dir)`."""
    max_resident_models: int = 4
    max_resident_gib: float = 0.0
    """A budget for resident weights in each process (0: none beyond `max_resident_models`)."""
    artifacts: str = ""
    """The cache's artifact store (`s3://...`), empty when the artifacts live in `cache_dir` itself."""

    @classmethod
    def for_store(cls, store: Store, runtime: Mapping[str, Any] | None = None,
                  models_dir: Path | None = None) -> ExecutionSettings:
        """The settings of a run on `store` with the runtime config `runtime` (residency limits)."""
        runtime = runtime or {}
        return cls(str(store.root), store.salt, float(store.lock_timeout),
                   str(models_dir or default_models_dir(store.root)),
                   int(runtime.get("max_resident_models", 4)), float(runtime.get("max_resident_gib", 0)),
                   store.remote.url if store.remote is not None else "")

    @property
    def models(self) -> Path:
        return Path(self.models_dir) if self.models_dir else default_models_dir(Path(self.cache_dir))

    def open_artifacts(self) -> ArtifactStore:
        """The artifact half of the run's store: what a worker reads and writes (never the index)."""
        from mora.engine.cache.objects import ArtifactStore

        return ArtifactStore(Path(self.cache_dir), self.artifacts or None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExecutionSettings:
        return cls(**data)


def default_models_dir(cache_root: Path) -> Path:
    """`MORA_MODELS_DIR` if set (models shared between caches), else the cache's `models/` folder."""
    env = os.environ.get("MORA_MODELS_DIR")
    return expand_user(env, "MORA_MODELS_DIR") if env else Path(cache_root) / "models"


_CURRENT: ExecutionSettings | None = None


@contextmanager
def using(settings: ExecutionSettings) -> Iterator[None]:
    """Run this process's agents with `settings` meanwhile (the runner, around each unit it runs)."""
    global _CURRENT
    before, _CURRENT = _CURRENT, settings
    try:
        yield
    finally:
        _CURRENT = before


def current() -> ExecutionSettings:
    """The settings of the unit this process runs; outside a run (agents called directly), the defaults."""
    if _CURRENT is not None:
        return _CURRENT
    from mora.engine.cache.store import default_cache_dir

    return ExecutionSettings(str(default_cache_dir()))
