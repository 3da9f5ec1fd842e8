"""The content-addressed store: artifacts as files named by digest, and the index of node results.

Layout under the cache directory (created owner-only, since whoever can write it decides what
later runs read): `objects/ab/<digest>.<ext>` artifacts in open formats; `index/` the diskcache
index (JSON values); `locks/` per-key lock files; `leases/` what live runs rely on, and the
maintenance lock (see leases.py); `quarantine/` objects found corrupt, kept for inspection;
`tmp/` files being written. Every artifact is written to `tmp/` and atomically renamed into
place, so a crash never leaves a half-written object under its final name.

Artifacts elsewhere. With `artifacts=URL` (config `cache.artifacts`: `s3://bucket/prefix`, `gs://...`,
a path) the artifacts live in that object store (remote.py) and `objects/` holds this machine's
copies of them; the index stays here. The URL is recorded in the cache directory (`artifacts`),
so every process that opens the cache (workers, `mora-admin cache`) uses the same store, and
opening it with another URL is refused (its index would name objects the other store lacks).

Trust. A lookup checks that each artifact of an entry exists with its recorded size (cheap:
a fully cached run reads nothing it does not export); the bytes themselves are verified against
their digest whenever they are read for use (`ArtifactRef.read_bytes`). An object found missing,
short or corrupt is a miss for the entries that use it and nothing else: it is moved to
`quarantine/`, reported once in `findings`, and its node is recomputed.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from filelock import FileLock, Timeout

from mora.engine.cache.artifacts import EXTENSIONS, ArtifactRef, Blob, CorruptArtifact, digest_file
from mora.engine.cache.index import INDEX_FILE, CorruptRow, index_error, open_index
from mora.engine.cache.leases import Lease, MaintenanceLock
from mora.engine.cache.remote import Remote
from mora.engine.errors import CacheError
from mora.engine.ports import PortType

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
        return Path(os.environ["MORA_CACHE_DIR"]).expanduser().resolve()
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


def stale(entry: Any) -> bool:
    """An entry written by another cache version (never hit, never reported as corrupt)."""
    return isinstance(entry, dict) and isinstance(entry.get("v"), int) and entry["v"] != ENTRY_VERSION


class Store:
    """Artifacts by digest plus the key -> result index, in one cache directory.

    `create=False` opens only a directory that already holds a cache (maintenance commands must
    neither create one nor work on a folder that is something else).
    """

    def __init__(self, root: Path, salt: str = "", lock_timeout: float = 3600.0, create: bool = True,
                 artifacts: str | None = None):
        try:
            self.root = Path(root).expanduser().resolve()
        except (OSError, RuntimeError) as e:
            raise CacheError(f"cannot use cache directory {root}: {e}") from None
        self.salt = salt
        self.lock_timeout = lock_timeout
        self.findings = Findings()
        self.lease: Lease | None = None
        self._joined: Lease | None = None
        self._made_dirs: set[Path] = set()
        if not create and not (self.root / "index" / INDEX_FILE).is_file():
            raise CacheError(f"{self.root} holds no Mora cache (no index/{INDEX_FILE}); nothing was changed")
        try:
            for sub in ("", "objects", "locks", "leases", "tmp", "index"):
                (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create cache directory {self.root}: {e.strerror or e}") from None
        if not os.access(self.root, os.W_OK):
            raise CacheError(f"cache directory {self.root} is not writable; choose another with MORA_CACHE_DIR or "
                             "cache.dir=...")
        try:
            self.maintenance = MaintenanceLock(self.root / "leases" / "maintenance.lock")
        except OSError as e:
            raise CacheError(f"cannot create the maintenance lock in {self.root}: {e.strerror or e}") from None
        self.remote = self._bind(artifacts)
        self.index = open_index(self.root / "index")

    def _bind(self, artifacts: str | None) -> Remote | None:
        """The artifact store recorded for this cache, recording `artifacts` if none is yet; a different one is refused."""
        binding = self.root / "artifacts"
        try:
            recorded = binding.read_text(encoding="utf-8").strip() if binding.is_file() else None
            if artifacts and recorded is None:
                binding.write_text(artifacts + "\n", encoding="utf-8")
                recorded = artifacts
        except OSError as e:
            raise CacheError(f"cannot read or record the artifact store of {self.root}: {e.strerror or e}") from None
        if artifacts and artifacts != recorded:
            raise CacheError(f"cache {self.root} keeps its artifacts in {recorded}, not cache.artifacts={artifacts}; "
                             "use another cache.dir for another artifact store")
        return Remote(recorded) if recorded else None

    def close(self) -> None:
        for lease in (self.lease, self._joined):
            if lease is not None:
                lease.release()
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

    def join(self, path: str) -> Lease | None:
        """The lease of the run at `path` (a worker's handle on it), or None if there is none."""
        if not path:
            return None
        if self.lease is not None and str(self.lease.path) == path:
            return self.lease
        if self._joined is None or str(self._joined.path) != path:
            if self._joined is not None:
                self._joined.release()
            self._joined = None
            try:
                self._joined = Lease.join(Path(path))
            except OSError:  # its run has ended; the grace period still protects new objects
                return None
        return self._joined

    # artifacts -------------------------------------------------------------------------
    def object_path(self, digest: str, fmt: str) -> Path:
        return self.root / "objects" / digest[:2] / f"{digest}{EXTENSIONS.get(fmt, '.bin')}"

    def put(self, blob: Blob, lease: Lease | None = None) -> ArtifactRef:
        """Store a blob (atomically; a no-op when the same content is already there intact)."""
        digest = blob.digest
        path = self.object_path(digest, blob.fmt)
        ref = ArtifactRef(digest, blob.kind, blob.fmt, len(blob.data), path)
        lease = lease or self.lease
        with self.maintenance.shared():
            if lease is not None:
                lease.add([digest])
            if self.check(ref, full=path.exists()) is not None:
                self._write_atomic(path, blob.data)  # absent, or present but corrupt: (re)write it
            if self.remote is not None:
                self.remote.upload(path, digest, blob.fmt)
        return ref

    def put_file(self, kind: PortType, fmt: str, file: Path, lease: Lease | None = None) -> ArtifactRef:
        """Store a finished file written in `tmp/` by moving it into place (for artifacts too large for memory)."""
        digest = digest_file(kind.value, fmt, file)
        path = self.object_path(digest, fmt)
        ref = ArtifactRef(digest, kind, fmt, file.stat().st_size, path)
        lease = lease or self.lease
        with self.maintenance.shared():
            if lease is not None:
                lease.add([digest])
            if self.check(ref, full=path.exists()) is None:  # already there, intact
                file.unlink()
            else:
                self._mkdir(path.parent)
                os.replace(file, path)
            if self.remote is not None:
                self.remote.upload(path, digest, fmt)
        return ref

    def _write_atomic(self, path: Path, data: bytes) -> None:
        try:
            self._mkdir(path.parent)
            fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=f"{os.getpid()}-")
            try:
                with os.fdopen(fd, "wb") as f:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # `verify` and `gc` leave a locked temporary file alone
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                    os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheError(f"disk full: no space left on the device of the cache {self.root}; free space "
                                 "or run `mora-admin cache gc`") from None
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise CacheError(f"cache directory {self.root} is not writable ({e.strerror})") from None
            raise CacheError(f"cannot write into the cache {self.root}: {e.strerror or e}") from None

    def ref(self, meta: dict[str, Any]) -> ArtifactRef:
        """An ArtifactRef from its JSON form (as stored in index entries and sent to workers)."""
        digest, fmt = str(meta["digest"]), str(meta["fmt"])
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) or fmt not in EXTENSIONS:
            raise CorruptRow(f"malformed artifact reference {meta!r}")
        return ArtifactRef(digest, PortType(meta["kind"]), fmt, int(meta["size"]), self.object_path(digest, fmt),
                           fetch=self._fetch if self.remote is not None else None)

    def _fetch(self, ref: ArtifactRef) -> bool:
        assert self.remote is not None
        self._mkdir(ref.path.parent)
        return self.remote.download(ref.digest, ref.fmt, ref.path, self.root / "tmp")

    def check(self, ref: ArtifactRef, full: bool = False) -> str | None:
        """Why a stored artifact is unusable (missing, wrong size, wrong digest), or None."""
        if full:
            try:
                ref.read_bytes()
            except CorruptArtifact as e:
                return e.why
            return None
        problem = self._size_problem(ref)
        return problem[0] if problem else None

    def _size_problem(self, ref: ArtifactRef) -> tuple[str, tuple[int, int] | None] | None:
        try:
            st = ref.path.lstat()
        except FileNotFoundError:
            if self.remote is None:
                return "missing", None
            size = self.remote.size(ref.digest, ref.fmt)  # the store holds it; it is fetched when read
            if size is None:
                return "missing", None
            return None if size == ref.size else (f"{size} bytes in {self.remote.url}, not the {ref.size} recorded",
                                                  None)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file", (st.st_dev, st.st_ino)
        return None if st.st_size == ref.size else (f"{st.st_size} bytes, not the {ref.size} recorded",
                                                    (st.st_dev, st.st_ino))

    def quarantine(self, ref: ArtifactRef, why: str, inode: tuple[int, int] | None, node: str = "?") -> None:
        """Move the very file found bad (`inode`: st_dev, st_ino) to `quarantine/` and report it once.

        A file replaced since (a writer healed it) is left alone; None means nothing to move (missing).
        """
        self.findings.add(ref.digest, f"{ref.path.name} (node {node}): {why}", missing=inode is None)
        if inode is None:
            return
        with self.maintenance.exclusive():
            try:
                st = ref.path.lstat()
            except FileNotFoundError:
                return
            if (st.st_dev, st.st_ino) != inode:
                return
            folder = self.root / "quarantine"
            folder.mkdir(mode=0o700, exist_ok=True)
            os.replace(ref.path, folder / f"{ref.path.name}.{time.time_ns()}")
            if self.remote is not None:  # the local copy came from (or went to) the store: so did its bytes
                self.remote.quarantine(ref.path.name)

    # index -----------------------------------------------------------------------------
    def lookup(self, key: str, lease: Lease | None = None) -> dict[str, Any] | None:
        """The index entry for `key` if every artifact it names is present, or None (a miss)."""
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
        except (CorruptRow, KeyError, TypeError, ValueError, AttributeError) as e:
            self.findings.add(f"entry {key}", f"index entry {key[:12]}: {e}")
            return None
        lease = lease or self.lease
        with self.maintenance.shared():
            if lease is not None:
                lease.add(r.digest for r in refs)
            problems = [(r, *problem) for r in refs if (problem := self._size_problem(r))]
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

    def lock(self, key: str) -> FileLock:
        """A per-key inter-process lock (fcntl: released by the OS if its holder dies)."""
        path = self.root / "locks" / key[:2] / f"{key}.lock"
        self._mkdir(path.parent)
        return FileLock(str(path), timeout=self.lock_timeout)

    def _mkdir(self, path: Path) -> None:
        if path not in self._made_dirs:
            path.mkdir(mode=0o700, exist_ok=True)
            self._made_dirs.add(path)


__all__ = ["Findings", "Store", "Timeout", "default_cache_dir", "stale"]
