"""Artifacts: the values that flow between nodes, named by the digest of their content.

A `Blob` is an artifact an agent has just produced (bytes in an open format plus its kind);
an `ArtifactRef` is a stored one, a handle that any process sharing the store can open by
digest. The digest (BLAKE3, about twice as fast as SHA-256 here: bench/verify_cost.py) covers a
small header (kind and format) and the bytes, so the same pixels stored as PNG and as a frame
store never collide.

Policy: a stored artifact is never trusted. `ArtifactRef.read_bytes` reads the file once,
hashing each chunk as it arrives, and raises `CorruptArtifact` (missing, wrong size or wrong
content) instead of returning bytes the store did not write; every decoder reads through it.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from blake3 import blake3

from mora.engine.errors import CacheError
from mora.engine.ports import PortType

EXTENSIONS = {"txt": ".txt", "json": ".json", "png": ".png", "frames": ".safetensors", "safetensors": ".safetensors",
              "mp4": ".mp4"}
_SUFFIXES = "|".join(sorted({re.escape(e) for e in [*EXTENSIONS.values(), ".bin"]}))
OBJECT_NAME = re.compile(rf"[0-9a-f]{{64}}(?:{_SUFFIXES})")
"""How an object file is named (`<digest>.<ext>`, as `ArtifactStore.object_path` names it): maintenance deletes no other."""
DIGEST_SCHEMA = "mora-artifact/2"
"""Version 1 was SHA-256; version 2 is BLAKE3 (entries written under version 1 are plain misses)."""
CHUNK = 1 << 20
STREAM_CHUNK = 1 << 18
ZERO_FILLED_UP_TO = 8 << 20
"""Buffers up to this size are bytearrays (zero-filled, a few ms at most); larger ones numpy's uninitialised memory."""
"""The reusable buffer of a streamed verification (`open_verified`): small, since nothing is kept."""


def _hasher(kind: str, fmt: str) -> Any:
    return blake3(f"{DIGEST_SCHEMA}\0{kind}\0{fmt}\0".encode())


def digest_bytes(kind: str, fmt: str, data: bytes) -> str:
    """The content digest of an artifact: BLAKE3 over a kind/format header and the bytes."""
    h = _hasher(kind, fmt)
    h.update(data)
    return h.hexdigest()


def digest_file(kind: str, fmt: str, path: Path) -> str:
    """`digest_bytes` of a file's content, read in chunks (for artifacts too large to hold in memory)."""
    with open(path, "rb") as f:
        return digest_stream(kind, fmt, f)


def digest_stream(kind: str, fmt: str, f: BinaryIO) -> str:
    """`digest_bytes` of what an open binary file yields from where it stands, read in chunks."""
    h = _hasher(kind, fmt)
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


THE_FILE_ERRNOS = {errno.ELOOP, errno.ENXIO, errno.ENODEV, errno.EISDIR}
"""Errors that describe the thing in the object's place (a symlink loop, a socket, a device): it is moved aside."""
OWN_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM}
"""Errors of this process, not of the object: no verdict on it, the caller fails (the object stays as it is)."""


class CorruptArtifact(CacheError):
    """A stored artifact that is missing or whose bytes do not match its digest."""

    def __init__(self, ref: ArtifactRef, why: str, inode: tuple[int, int] | None = None):
        self.ref = ref
        self.why = why
        self.inode = inode
        """(st_dev, st_ino) of the file that was read: only that file may be quarantined."""
        super().__init__(f"artifact {ref.digest[:12]} ({ref.kind.value}): {why}")


def unreadable(ref: ArtifactRef, e: OSError) -> CacheError:
    """What an OSError opening or reading `ref` means. Only the file's own kind of failure (`THE_FILE_ERRNOS`) blames
    it; a process out of descriptors or memory blames nothing, and the rest (permissions, I/O errors) make the object
    unusable here, recomputed and rewritten in its place but never moved aside as corrupt."""
    why = f"unreadable ({e.strerror or e})"
    if e.errno in OWN_ERRNOS:
        return CacheError(f"cannot read artifact {ref.digest[:12]} ({ref.kind.value}) from {ref.path}: "
                          f"{e.strerror or e}; the cache is unchanged")
    return CorruptArtifact(ref, why, _inode(ref.path) if e.errno in THE_FILE_ERRNOS else None)


@dataclass(frozen=True)
class Blob:
    """A freshly produced artifact, not yet stored."""

    kind: PortType
    fmt: str
    data: bytes

    @property
    def digest(self) -> str:
        return digest_bytes(self.kind.value, self.fmt, self.data)


def _buffer(size: int) -> memoryview:
    """A writable buffer: zero-filling a large bytearray would cost a whole extra pass, importing numpy for a small
    one costs more than the read (a fully cached run reads only small artifacts)."""
    if size <= ZERO_FILLED_UP_TO:
        return memoryview(bytearray(size))
    import numpy as np

    return memoryview(np.empty(size, np.uint8))


@dataclass(frozen=True)
class ArtifactRef:
    """A stored artifact: its digest, kind, format, size and where it lies in the store."""

    digest: str
    kind: PortType
    fmt: str
    size: int
    path: Path
    fetch: Callable[[ArtifactRef], bool] | None = field(default=None, compare=False, repr=False)
    """Brings a missing `path` from the artifact store (see remote.py); True if it did. None: the file is all."""

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "kind": self.kind.value, "fmt": self.fmt, "size": self.size}

    def read_bytes(self) -> memoryview:
        """The artifact's bytes (writable), verified against its digest in the same single pass that reads them."""
        with self._open() as (f, st):
            self._check_size(f, st)  # before a buffer of the recorded size is made: a row may claim a petabyte
            view = _buffer(self.size)
            self._verify(f, st, view)
            return view

    def open_verified(self) -> BinaryIO:
        """The artifact's file, open at its start, once its whole content has been hashed and found right.

        For artifacts to be memory-mapped rather than held (a long video): the hash pass streams
        through a small buffer, and the caller maps this same open file, so a file put in its
        place afterwards is never what is read. Bytes written into this very file meanwhile are: a
        write during the hash pass is refused here, one after it is what `unchanged_since` tells.
        """
        with self._open(close=False) as (f, st):
            self._verify(f, st, _buffer(min(self.size, STREAM_CHUNK)))
            self.unchanged_since(f, st)
            f.seek(0)
            return f

    def unchanged_since(self, f: BinaryIO, st: os.stat_result) -> None:
        """Refuse the open file `f` if its bytes changed since `st` was taken. Any write moves the change time, which
        no one can set back; so does a writer storing the same object again (it refreshes the modification time for
        gc), so a moved time is checked by hashing the file again, and only other bytes are refused."""
        now = os.fstat(f.fileno())
        if (now.st_size, now.st_mtime_ns, now.st_ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return
        f.seek(0)
        h = _hasher(self.kind.value, self.fmt)
        buffer = _buffer(STREAM_CHUNK)
        while n := f.readinto(buffer):
            h.update(buffer[:n])
        if now.st_size != self.size or h.hexdigest() != self.digest:
            raise CorruptArtifact(self, "written in place while it was read", (st.st_dev, st.st_ino))

    def copy_to(self, out: BinaryIO) -> None:
        """Write the artifact's bytes to `out`, hashed in the pass that reads them, so what is written is what was
        verified (a check, then a second read, would copy whatever was written into the file in between). On a
        mismatch `out` holds bytes that are not the artifact: the caller overwrites or removes it."""
        with self._open() as (f, st):
            self._verify(f, st, _buffer(min(self.size, STREAM_CHUNK)), out.write)

    @contextmanager
    def _open(self, close: bool = True) -> Iterator[tuple[BinaryIO, os.stat_result]]:
        """Open without blocking, refused unless a regular file: a FIFO or device in an object's place is corrupt."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            if self.fetch is None or not self.fetch(self):
                raise CorruptArtifact(self, "missing") from None
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:  # fetched, then gone or unreadable (another reader found it bad, gc)
                raise unreadable(self, e) from None
        except OSError as e:
            raise unreadable(self, e) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise CorruptArtifact(self, "not a regular file", (st.st_dev, st.st_ino))
        f = open(fd, "rb", buffering=0)  # noqa: SIM115 (closed in the finally below, after the yield)
        try:
            yield f, st
        except OSError as e:
            f.close()
            raise unreadable(self, e) from None
        except BaseException:
            f.close()
            raise
        if close:
            f.close()

    def _check_size(self, f: BinaryIO, st: os.stat_result) -> None:
        """Refuse a file of another size than recorded, blaming the right side: a file whose bytes hash to the digest
        is the object, intact, and the record's size is what is wrong (nothing to quarantine: other entries may
        rely on it); otherwise the file is bad."""
        if st.st_size == self.size:
            return
        h = _hasher(self.kind.value, self.fmt)
        buffer = _buffer(STREAM_CHUNK)
        while n := f.readinto(buffer):
            h.update(buffer[:n])
        f.seek(0)
        if h.hexdigest() == self.digest:
            raise CorruptArtifact(self, f"recorded as {self.size} bytes, but the object, intact, holds {st.st_size}")
        raise CorruptArtifact(self, f"{st.st_size} bytes, not the {self.size} recorded", (st.st_dev, st.st_ino))

    def _verify(self, f: BinaryIO, st: os.stat_result, buffer: memoryview,
                sink: Callable[[memoryview], Any] | None = None) -> None:
        """Read the whole file into `buffer` (the artifact's size, or a smaller one reused chunk by chunk), hashing
        (and handing each chunk to `sink`)."""
        inode = (st.st_dev, st.st_ino)
        self._check_size(f, st)
        h = _hasher(self.kind.value, self.fmt)
        whole = len(buffer) == self.size
        done = 0
        while done < self.size:
            at = done if whole else 0
            n = f.readinto(buffer[at:at + min(CHUNK, len(buffer), self.size - done)])
            if not n:
                break
            h.update(buffer[at:at + n])
            if sink is not None:
                sink(buffer[at:at + n])
            done += n
        if done != self.size or f.read(1) or h.hexdigest() != self.digest:
            raise CorruptArtifact(self, "content does not match its digest", inode)
