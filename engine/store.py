"""The content-addressed store: artifacts as files named by digest, and the index of node results.

Layout under the cache directory (created owner-only, since whoever can write it decides what
later runs read): `objects/ab/<digest>.<ext>` artifacts in open formats; `index/` the diskcache
index (JSON values); `locks/` per-key lock files; `tmp/` files being written. Every artifact is
written to `tmp/` and atomically renamed into place, so a crash never leaves a half-written
object under its final name. A lookup verifies that each referenced artifact exists with its
recorded size (full digests on request, and in `verify`); anything missing or corrupt is a miss,
never returned data, and is reported.
"""
from __future__ import annotations

import errno
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mora.engine.artifacts import EXTENSIONS, ArtifactRef, Blob, digest_bytes, digest_file
from mora.engine.errors import CacheError
from mora.engine.index import CorruptRow, open_index
from mora.engine.ports import PortType

log = logging.getLogger("mora.cache")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENTRY_VERSION = 1


def default_cache_dir() -> Path:
    """`MORA_CACHE_DIR` if set, else the project's `cache/` directory."""
    return Path(os.environ.get("MORA_CACHE_DIR") or PROJECT_ROOT / "cache").expanduser().resolve()


@dataclass
class Findings:
    """What a lookup or verification found wrong (reported, then treated as misses)."""

    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.corrupt)


class Store:
    """Artifacts by digest plus the key -> result index, in one cache directory."""

    def __init__(self, root: Path, salt: str = "", lock_timeout: float = 3600.0):
        self.root = Path(root).expanduser().resolve()
        self.salt = salt
        self.lock_timeout = lock_timeout
        self.findings = Findings()
        self._made_dirs: set[Path] = set()
        try:
            for sub in ("", "objects", "locks", "tmp", "index"):
                (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create cache directory {self.root}: {e.strerror or e}") from None
        if not os.access(self.root, os.W_OK):
            raise CacheError(f"cache directory {self.root} is not writable; choose another with MORA_CACHE_DIR or "
                             "cache.dir=...")
        self.index = open_index(self.root / "index")

    def close(self) -> None:
        self.index.close()

    # artifacts -------------------------------------------------------------------------
    def object_path(self, digest: str, fmt: str) -> Path:
        return self.root / "objects" / digest[:2] / f"{digest}{EXTENSIONS.get(fmt, '.bin')}"

    def put(self, blob: Blob) -> ArtifactRef:
        """Store a blob (atomically; a no-op when the same content is already there)."""
        digest = blob.digest
        path = self.object_path(digest, blob.fmt)
        size = len(blob.data)
        ref = ArtifactRef(digest, blob.kind, blob.fmt, size, path)
        if self.check(ref, full=path.exists()) is not None:
            self._write_atomic(path, blob.data)  # absent, or present but corrupt: (re)write it
        return ref

    def put_file(self, kind: PortType, fmt: str, file: Path) -> ArtifactRef:
        """Store a finished file written in `tmp/` by moving it into place (for artifacts too large for memory)."""
        digest = digest_file(kind.value, fmt, file)
        path = self.object_path(digest, fmt)
        ref = ArtifactRef(digest, kind, fmt, file.stat().st_size, path)
        if self.check(ref) is None and digest_file(kind.value, fmt, path) == digest:  # already there, intact
            file.unlink()
        else:
            self._mkdir(path.parent)
            os.replace(file, path)
        return ref

    def _write_atomic(self, path: Path, data: bytes) -> None:
        try:
            self._mkdir(path.parent)
            fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=f"{os.getpid()}-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheError(f"no space left on the device of the cache {self.root}; free space or run "
                                 "`mora-admin cache gc`") from None
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise CacheError(f"cache directory {self.root} is not writable ({e.strerror})") from None
            raise

    def ref(self, meta: dict[str, Any]) -> ArtifactRef:
        """An ArtifactRef from its JSON form (as stored in index entries and sent to workers)."""
        digest, fmt = str(meta["digest"]), str(meta["fmt"])
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) or fmt not in EXTENSIONS:
            raise CorruptRow(f"malformed artifact reference {meta!r}")
        return ArtifactRef(digest, PortType(meta["kind"]), fmt, int(meta["size"]), self.object_path(digest, fmt))

    def check(self, ref: ArtifactRef, full: bool = False) -> str | None:
        """Why a stored artifact is unusable (missing, wrong size, wrong digest), or None."""
        try:
            size = ref.path.stat().st_size
        except FileNotFoundError:
            return "missing"
        if size != ref.size:
            return f"size {size} != recorded {ref.size}"
        if full and digest_bytes(ref.kind.value, ref.fmt, ref.path.read_bytes()) != ref.digest:
            return "content does not match its digest"
        return None

    # index -----------------------------------------------------------------------------
    def lookup(self, key: str, full: bool = False) -> dict[str, Any] | None:
        """The verified index entry for `key`, or None (a miss; problems go to `findings`)."""
        try:
            entry = self.index.get(key)
        except CorruptRow as e:
            self.findings.corrupt.append(f"index entry {key[:12]}: {e}")
            return None
        except sqlite3.DatabaseError as e:
            self.findings.corrupt.append(f"index database: {e} (run `mora-admin cache verify`)")
            return None
        if entry is None:
            return None
        try:
            if not isinstance(entry, dict) or not isinstance(entry.get("outputs"), dict):
                raise CorruptRow("entry is not a JSON object with an `outputs` object")
            refs = list(self._refs(entry))
        except (CorruptRow, KeyError, TypeError, ValueError, AttributeError) as e:
            self.findings.corrupt.append(f"index entry {key[:12]}: {e}")
            return None
        for ref in refs:
            problem = self.check(ref, full)
            if problem:
                bucket = self.findings.missing if problem == "missing" else self.findings.corrupt
                bucket.append(f"{ref.path.name} (node {entry.get('node')}): {problem}")
                log.warning("cache: artifact %s of %s is %s; recomputing", ref.digest[:12], entry.get("node"), problem)
                return None
        return entry

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
            self.index.set(key, entry)
        except (OSError, sqlite3.DatabaseError) as e:
            raise CacheError(f"cannot write the cache index in {self.root}: {e}; if the index is damaged, move "
                             f"{self.root / 'index'} aside and run again") from None

    def lock(self, key: str) -> FileLock:
        """A per-key inter-process lock (fcntl: released by the OS if its holder dies)."""
        path = self.root / "locks" / key[:2] / f"{key}.lock"
        self._mkdir(path.parent)
        return FileLock(str(path), timeout=self.lock_timeout)

    def _mkdir(self, path: Path) -> None:
        if path not in self._made_dirs:
            path.mkdir(mode=0o700, exist_ok=True)
            self._made_dirs.add(path)


__all__ = ["Findings", "Store", "Timeout", "default_cache_dir"]
