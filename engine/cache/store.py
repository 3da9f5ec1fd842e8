"""The driver's store: the artifacts (objects.py) plus the index of node results, which only the driver writes.

Layout under the cache directory (created owner-only, since whoever can write it decides what
later runs read): `objects/`, `tmp/` and `quarantine/` as in objects.py; `index/` the diskcache
index (JSON values: node results, and the key leases of key_leases.py); `leases/` what live runs
rely on, and the maintenance lock (see leases.py). Workers open only the artifact half
(`ArtifactStore`), never the index or a lock here: they return their entry to the driver, which
looks keys up before dispatch and records entries as results come back.

Artifacts elsewhere. With `artifacts=URL` (config `cache.artifacts`: `s3://bucket/prefix`, `gs://...`,
a path) the artifacts live in that object store (remote.py) and `objects/` holds this machine's
copies of them; the index stays here. The URL is recorded in the cache directory (`artifacts`),
so every process that opens the cache (`mora-admin cache`, later runs) uses the same store, and
opening it with another URL is refused (its index would name objects the other store lacks).
Workers get the URL with the run's settings, so a machine running them needs no copy of this directory.

Trust. A lookup checks that each artifact of an entry exists with its recorded size (cheap:
a fully cached run reads nothing it does not export); the bytes themselves are verified against
their digest whenever they are read for use (`ArtifactRef.read_bytes`). An object found missing,
short or corrupt is a miss for the entries that use it and nothing else: it is moved to
`quarantine/`, reported once in `findings`, and its node is recomputed.
"""
from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from mora.engine.cache.artifacts import ArtifactRef, Blob, digest_file
from mora.engine.cache.index import INDEX_FILE, CorruptRow, index_error, open_index
from mora.engine.cache.leases import Lease, MaintenanceLock
from mora.engine.cache.objects import ArtifactStore
from mora.engine.cache.remote import Remote
from mora.engine.errors import CacheError
from mora.engine.ports import PortType
from mora.engine.userfiles import expand_user

ENTRY_VERSION = 2
"""Entries of other versions (1: SHA-256 digests) are plain misses, never reported as corrupt."""
DISTRIBUTION = "mora-dag"


def source_checkout() -> Path | None:
    """The repository root when this code runs from a source checkout of Mora, else None.

    In a checkout `engine/` sits next to a pyproject.toml naming our distribution; in an installed
    wheel the package's parent is `site-packages/mora`, which holds none. (This module is engine/cache/store.py.)
    """
    root = Path(__file__).resolve().parents[2]
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(rf"^name\s*=\s*[\"']{DISTRIBUTION}[\"']", text, re.MULTILINE) else None


def default_cache_dir() -> Path:
    """`MORA_CACHE_DIR` if set; else the checkout's `cache/` when run from source; else the user cache dir.

    The user cache dir is platformdirs' (`~/.cache/mora` on Linux, honouring XDG_CACHE_HOME), never
    a folder inside site-packages.
    """
    if os.environ.get("MORA_CACHE_DIR"):
        return expand_user(os.environ["MORA_CACHE_DIR"], "MORA_CACHE_DIR").resolve()
    checkout = source_checkout()
    if checkout is not None:
        return checkout / "cache"
    return platformdirs.user_cache_path("mora").resolve()


@dataclass
class Findings:
    """What lookups and reads found wrong (each object reported once, then treated as a miss)."""

    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set, repr=False)

    def add(self, what: str, text: str, missing: bool = False) -> None:
        if what not in self._seen:
            self._seen.add(what)
            (self.missing if missing else self.corrupt).append(text)

    def __bool__(self) -> bool:
        return bool(self.missing or self.corrupt)


def artifact_url(value: str) -> str:
    """`cache.artifacts` as recorded: a URL as given, a plain path made absolute (it must not depend on the cwd)."""
    import fsspec.core

    if fsspec.core.split_protocol(value)[0] is not None:
        return value
    try:
        return str(expand_user(value, "cache.artifacts").resolve())
    except (OSError, RuntimeError) as e:
        raise CacheError(f"cache.artifacts={value}: {e}") from None


def port_mismatch(outputs: dict[str, Any], ports: Mapping[str, PortType]) -> str | None:
    """How an entry's outputs differ from a node's output ports (names, list or single, artifact kinds), or None."""
    if set(outputs) != set(ports):
        return f"its outputs ({', '.join(sorted(outputs)) or 'none'}) are not the node's ({', '.join(sorted(ports))})"
    for name, kind in ports.items():
        metas = outputs[name] if kind.is_list else [outputs[name]]
        if not isinstance(metas, list) or any(not isinstance(m, dict) or m.get("kind") != kind.item.value
                                              for m in metas):
            return f"its output {name!r} is not {kind.value}"
    return None


def stale(entry: Any) -> bool:
    """An entry written by another cache version (never hit, never reported as corrupt)."""
    return isinstance(entry, dict) and isinstance(entry.get("v"), int) and entry["v"] != ENTRY_VERSION


class Store(ArtifactStore):
    """Artifacts by digest plus the key -> result index, in one cache directory: the driver's view.

    `create=False` opens only a directory that already holds a cache (maintenance commands must
    neither create one nor work on a folder that is something else).
    """

    def __init__(self, root: Path, salt: str = "", lock_timeout: float = 3600.0, create: bool = True,
                 artifacts: str | None = None):
        try:
            resolved = Path(root).expanduser().resolve()
        except (OSError, RuntimeError) as e:
            raise CacheError(f"cannot use cache directory {root}: {e}") from None
        if not create and not (resolved / "index" / INDEX_FILE).is_file():
            raise CacheError(f"{resolved} holds no Mora cache (no index/{INDEX_FILE}); nothing was changed")
        super().__init__(resolved)
        self.salt = salt
        self.lock_timeout = lock_timeout
        self.findings = Findings()
        self.lease: Lease | None = None
        try:
            for sub in ("leases", "index"):
                (self.root / sub).mkdir(mode=0o700, exist_ok=True)
            self.maintenance = MaintenanceLock(self.root / "leases" / "maintenance.lock", lock_timeout)
        except OSError as e:
            raise CacheError(f"cannot create the index or leases in {self.root}: {e.strerror or e}") from None
        self.remote = self._bind(artifact_url(artifacts) if artifacts else None)
        self.index = open_index(self.root / "index")

    def _bind(self, artifacts: str | None) -> Remote | None:
        """The artifact store recorded for this cache, recording `artifacts` if none is yet; a different one is refused.

        A URL is recorded only once an object was written there and deleted (`Remote.probe`): a typo must not bind
        every later run to a store that is not there (back ends connect lazily, so opening proves nothing).
        """
        binding = self.root / "artifacts"
        try:
            recorded = binding.read_text(encoding="utf-8").strip() if binding.is_file() else None
        except OSError as e:
            raise CacheError(f"cannot read the artifact store recorded in {binding}: {e.strerror or e}") from None
        if artifacts and recorded and artifacts != artifact_url(recorded):  # a relative path recorded before 2026-11-27
            raise CacheError(f"cache {self.root} keeps its artifacts in {recorded}, not cache.artifacts={artifacts}; "
                             "use another cache.dir for another artifact store")
        if recorded is not None:
            try:
                return Remote(recorded)
            except CacheError as e:
                raise CacheError(f"{e} (recorded in {binding})") from None
        if not artifacts:
            return None
        remote = Remote(artifacts)
        remote.probe()
        try:
            binding.write_text(artifacts + "\n", encoding="utf-8")
        except OSError as e:
            raise CacheError(f"cannot record the artifact store of {self.root}: {e.strerror or e}") from None
        return remote

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()
        self.maintenance.close()
        self.index.close()

    # leases ----------------------------------------------------------------------------
    @contextmanager
    def leased(self) -> Iterator[None]:
        """Hold a lease for the duration of a run (re-entrant: an inner run shares the outer lease)."""
        if self.lease is not None:
            yield
            return
        with self.maintenance.shared():
            self.lease = Lease.take(self.root / "leases")
        try:
            yield
        finally:
            self.lease.release()
            self.lease = None

    def name_in_lease(self, digests: Iterable[str]) -> None:
        """Name artifacts a worker has stored in the run's lease (they are young: gc's grace period holds meanwhile)."""
        if self.lease is not None:
            with self.maintenance.shared():
                self.lease.add(digests)

    # artifacts, with the run's lease and the maintenance lock ---------------------------
    def put(self, blob: Blob, lease: Lease | None = None) -> ArtifactRef:
        """Store a blob (atomically; a no-op when the same content is already there intact), named in the lease."""
        lease = lease or self.lease
        with self.maintenance.shared():
            if lease is not None:
                lease.add([blob.digest])
            return super().put(blob)

    def put_file(self, kind: PortType, fmt: str, file: Path, lease: Lease | None = None) -> ArtifactRef:
        """Store a finished file written in `tmp/` by moving it into place, named in the lease."""
        digest = digest_file(kind.value, fmt, file)
        lease = lease or self.lease
        with self.maintenance.shared():
            if lease is not None:
                lease.add([digest])
            return super().put_file(kind, fmt, file, digest)

    def _found(self, path: Path) -> None:
        """Nothing to do: the run's lease already names the object (see put)."""

    def quarantine(self, ref: ArtifactRef, why: str, inode: tuple[int, int] | None, node: str = "?") -> None:
        """Move the very file found bad to `quarantine/` (under the maintenance lock: gc decides meanwhile), report it once."""
        self.findings.add(ref.digest, f"{ref.path.name} (node {node}): {why}", missing=why.startswith("missing"))
        if inode is None:
            return
        with self.maintenance.exclusive():
            super().quarantine(ref, why, inode, node)

    # index -----------------------------------------------------------------------------
    def lookup(self, key: str, lease: Lease | None = None,
               ports: Mapping[str, PortType] | None = None) -> dict[str, Any] | None:
        """The index entry for `key` if every artifact it names is present, or None (a miss).

        `ports`: the node's output ports; an entry whose outputs are not exactly these (a stale or
        foreign row under the key) is a miss, reported, never handed to the scheduler.
        """
        try:
            entry = self.index.get(key)
        except CorruptRow as e:
            self.findings.add(f"entry {key}", f"index entry {key[:12]}: {e}")
            return None
        except sqlite3.DatabaseError as e:
            self.findings.add("index", f"index database: {index_error(e, self.root)} (run `mora-admin cache verify`)")
            return None
        if entry is None or stale(entry):
            return None
        try:
            if not isinstance(entry, dict) or not isinstance(entry.get("outputs"), dict):
                raise CorruptRow("entry is not a JSON object with an `outputs` object")
            refs = list(self._refs(entry))
            if ports is not None and (why := port_mismatch(entry["outputs"], ports)):
                raise CorruptRow(why)
        except (CorruptRow, KeyError, TypeError, ValueError, AttributeError) as e:
            self.findings.add(f"entry {key}", f"index entry {key[:12]}: {e}")
            return None
        lease = lease or self.lease
        with self.maintenance.shared():
            if lease is not None:
                lease.add(r.digest for r in refs)
            problems = [(r, *problem) for r in refs if (problem := self.size_problem(r))]
        for ref, why, inode in problems:
            self.quarantine(ref, why, inode, node=str(entry.get("node")))
        return None if problems else entry

    def _refs(self, entry: dict[str, Any]) -> Iterator[ArtifactRef]:
        for value in entry["outputs"].values():
            for meta in value if isinstance(value, list) else [value]:
                yield self.ref(meta)

    def outputs(self, entry: dict[str, Any]) -> dict[str, ArtifactRef | list[ArtifactRef]]:
        return {port: [self.ref(m) for m in v] if isinstance(v, list) else self.ref(v)
                for port, v in entry["outputs"].items()}

    def record(self, key: str, entry: dict[str, Any]) -> None:
        entry = {"v": ENTRY_VERSION, "created": time.time(), **entry}
        try:
            self.index.set(key, entry, tag=str(entry.get("agent")))  # the tag index makes `cache stats` a count
        except (OSError, sqlite3.DatabaseError) as e:
            raise CacheError(f"cannot write the cache index in {self.root}: {index_error(e, self.root)}; the index is "
                             "unchanged") from None


__all__ = ["Findings", "Store", "artifact_url", "default_cache_dir", "port_mismatch", "stale"]
