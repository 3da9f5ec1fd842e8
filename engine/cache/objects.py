"""The artifact half of the store: content-addressed writes and verified reads, with no index and no locks.

This is all a worker (a pool process, a Ray actor, the in-process runner) opens: it reads its
inputs and writes its outputs here and returns the entry to the driver, which alone owns the
index (store.py). Nothing here takes a file lock on shared storage or opens SQLite, so the
artifacts may live on a network filesystem or, with `remote` (`s3://...`, `gs://...`, a path;
remote.py), in an object store, with `root` then holding this machine's copies.

Layout under `root`: `objects/ab/<digest>.<ext>` artifacts in open formats, `tmp/` files being
written, `quarantine/` objects found corrupt. Every artifact is written to `tmp/` and atomically
renamed into place (uploaded to a temporary key and moved, in an object store), so a writer that
dies never leaves a half-written object under its final name. A worker holds no run lease: an
object it finds already stored gets a fresh modification time, so that gc's grace period keeps
it until the driver has recorded the entry that names it.

Trust. `check` says why a stored artifact is unusable (cheap: size; full: digest); the bytes are
verified whenever they are read for use (`ArtifactRef.read_bytes`). `quarantine` moves the very
file found bad aside (a file replaced since, by a writer healing it, is left alone).
"""
from __future__ import annotations

import errno
import os
import stat
import time
from pathlib import Path
from typing import Any

from mora.engine.cache import tmpfiles
from mora.engine.cache.artifacts import EXTENSIONS, ArtifactRef, Blob, CorruptArtifact, digest_file
from mora.engine.cache.remote import Remote
from mora.engine.errors import CacheError, shown
from mora.engine.ports import PortType


def write_error(root: Path, e: OSError) -> CacheError:
    """A failed write into the cache, said plainly: disk full, not writable, or what the system said."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return CacheError(f"disk full: no space left on the device of the cache {root}; free space or run "
                          "`mora-admin cache gc`")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return CacheError(f"cache directory {root} is not writable ({e.strerror})")
    return CacheError(f"cannot write into the cache {root}: {e.strerror or e}")


class ArtifactStore:
    """Artifacts by digest under `root` (and in `remote`, when given): what workers read and write."""

    def __init__(self, root: Path, remote: str | None = None):
        try:
            self.root = Path(root).expanduser().resolve()
        except (OSError, RuntimeError) as e:
            raise CacheError(f"cannot use cache directory {root}: {e}") from None
        self._made_dirs: set[Path] = set()
        try:
            for sub in ("", "objects", "tmp"):
                (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create cache directory {self.root}: {e.strerror or e}") from None
        if not os.access(self.root, os.W_OK):
            raise CacheError(f"cache directory {self.root} is not writable; choose another with MORA_CACHE_DIR or "
                             "cache.dir=...")
        self.remote = Remote(remote) if remote else None

    def object_path(self, digest: str, fmt: str) -> Path:
        return self.root / "objects" / digest[:2] / f"{digest}{EXTENSIONS.get(fmt, '.bin')}"

    def put(self, blob: Blob) -> ArtifactRef:
        """Store a blob (atomically; only a fresher mtime when the same content is already there intact)."""
        path = self.object_path(blob.digest, blob.fmt)
        ref = ArtifactRef(blob.digest, blob.kind, blob.fmt, len(blob.data), path)
        if self._needs_writing(ref):  # this machine's copy, whatever the artifact store holds
            self._write_atomic(path, blob.data)
        else:
            self._found(path)
        if self.remote is not None:
            self.remote.upload(path, ref)
        return ref

    def put_file(self, kind: PortType, fmt: str, file: Path, digest: str | None = None) -> ArtifactRef:
        """Store a finished file written in `tmp/` by moving it into place (for artifacts too large for memory).

        `digest`: the file's, when the caller has just computed it (a long video is hashed once).
        """
        digest = digest or digest_file(kind.value, fmt, file)
        path = self.object_path(digest, fmt)
        ref = ArtifactRef(digest, kind, fmt, file.stat().st_size, path)
        if not self._needs_writing(ref):  # already here, intact (the upload below needs this local copy)
            file.unlink()
            self._found(path)
        else:
            try:
                self._mkdir(path.parent)
                os.replace(file, path)
            except OSError as e:
                raise write_error(self.root, e) from None
        if self.remote is not None:
            self.remote.upload(path, ref)
        return ref

    def _write_atomic(self, path: Path, data: bytes) -> None:
        try:
            self._mkdir(path.parent)
            tmp = tmpfiles.create(self.root / "tmp")
            try:
                with open(tmp.fd, "wb", closefd=False) as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp.path, path)
            finally:
                tmp.remove()
        except OSError as e:
            raise write_error(self.root, e) from None

    def _needs_writing(self, ref: ArtifactRef) -> bool:
        """Whether this machine's copy of `ref` is missing or bad. A bad one is moved aside first: the rename that
        rewrites it cannot replace a folder, and a file of the wrong bytes is evidence worth keeping. (This class's
        own `quarantine`, unlocked: a driver's `put` holds the maintenance lock shared already, which keeps gc away.)"""
        try:
            ref.open_verified().close()
            return False
        except CorruptArtifact as e:
            if e.inode is not None:
                ArtifactStore.quarantine(self, ref, e.why, e.inode)
            return True

    def ref(self, meta: dict[str, Any]) -> ArtifactRef:
        """An ArtifactRef from its JSON form (as stored in index entries and sent to workers)."""
        digest, fmt, size = str(meta["digest"]), str(meta["fmt"]), meta["size"]
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest) or fmt not in EXTENSIONS or \
                type(size) is not int or size < 0:
            raise ValueError(f"malformed artifact reference {shown(meta)}")
        return ArtifactRef(digest, PortType(meta["kind"]), fmt, size, self.object_path(digest, fmt),
                           fetch=self._fetch if self.remote is not None else None)

    def _fetch(self, ref: ArtifactRef) -> bool:
        assert self.remote is not None
        self._mkdir(ref.path.parent)
        return self.remote.download(ref.digest, ref.fmt, ref.path, self.root / "tmp")

    def check(self, ref: ArtifactRef, full: bool = False) -> str | None:
        """Why a stored artifact is unusable (missing, wrong size, wrong digest), or None.

        `full` reads this machine's copy only (a ref made here fetches nothing); the cheap check
        counts an object the artifact store holds as present (it is fetched when read).
        """
        if full:
            try:
                ref.open_verified().close()  # streamed: a long video is hashed through a small buffer
            except CorruptArtifact as e:
                return e.why
            return None
        problem = self.size_problem(ref)
        return problem[0] if problem else None

    def size_problem(self, ref: ArtifactRef) -> tuple[str, tuple[int, int] | None] | None:
        """Why the artifact's size is wrong, with the inode of the file found (None: nothing here), or None."""
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
        if st.st_size == ref.size:
            return None
        try:  # the file or the record: hashing the file says which (`ArtifactRef._check_size`)
            ref.open_verified().close()
        except CorruptArtifact as e:
            return e.why, e.inode
        return None

    def quarantine(self, ref: ArtifactRef, why: str, inode: tuple[int, int] | None, node: str = "?") -> None:
        """Move the very file found bad (`inode`: st_dev, st_ino) to `quarantine/`; None means nothing to move."""
        if inode is None:
            return
        try:
            st = ref.path.lstat()
            if (st.st_dev, st.st_ino) != inode:
                return
            folder = self.root / "quarantine"
            folder.mkdir(mode=0o700, exist_ok=True)
            os.replace(ref.path, folder / f"{ref.path.name}.{time.time_ns()}")
        except FileNotFoundError:  # moved or deleted meanwhile (another reader, gc)
            return
        if self.remote is not None:  # a bad local copy says nothing of the store's: it moves only if bad itself
            self.remote.quarantine(ref)

    def _found(self, path: Path) -> None:
        """An object this writer needs is already stored: a fresh mtime keeps gc off it until the driver records it."""
        try:
            os.utime(path)
        except OSError:  # read-only shared storage: the object is there; gc's grace period was only a margin
            pass

    def _mkdir(self, path: Path) -> None:
        if path not in self._made_dirs:
            path.mkdir(mode=0o700, exist_ok=True)
            self._made_dirs.add(path)

