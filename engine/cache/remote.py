"""Artifacts in an object store (or any fsspec file system): `s3://bucket/prefix`, `gs://...`, a local path.

Policy. The object store is where a cache's artifacts live for every machine; the index stays
local to the driver, and each machine keeps a local copy of what it has read or written under
the cache directory's `objects/` (the copy is what decoders memory-map).

- Layout under the URL: `objects/ab/<digest>.<ext>` as on disk, `tmp/` for uploads under way,
  `quarantine/` for objects found corrupt.
- Writes are content-addressed and never partial under their final key: an object is uploaded
  to `tmp/<random>` and then moved to its key (a server-side copy on S3 and GCS, whose objects
  appear whole or not at all; a rename on a local path). A writer killed mid-upload leaves at
  most a temporary object, never a partial artifact, and since it recorded no entry its node is
  recomputed by the next run.
- Reads are verified: a missing local copy is downloaded to the cache's `tmp/`, renamed into
  `objects/` and then read through `ArtifactRef.read_bytes`, which checks the digest as for any
  local object; one found corrupt is moved to the store's `quarantine/` and its node recomputed.

Credentials and endpoints come from the file system's own configuration (for S3 the usual AWS
variables, `AWS_ENDPOINT_URL` for an S3-compatible server), never from Mora's config.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mora.engine.cache.artifacts import EXTENSIONS
from mora.engine.errors import CacheError


@dataclass(frozen=True)
class RemoteObject:
    """An object as listed in the store: its file name (`<digest>.<ext>`), size and modification time."""

    name: str
    size: int
    mtime: float


class Remote:
    """One object store holding a cache's artifacts (fsspec file system plus the prefix under it)."""

    def __init__(self, url: str):
        import fsspec  # only a cache with an artifact store pays for the import

        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as e:
            raise CacheError(f"cache.artifacts={url}: {e}") from None
        self.url = url
        self.root = root.rstrip("/")

    def key(self, digest: str, fmt: str) -> str:
        return f"{self.root}/objects/{digest[:2]}/{digest}{EXTENSIONS.get(fmt, '.bin')}"

    def size(self, digest: str, fmt: str) -> int | None:
        """The stored object's size, or None when there is none."""
        try:
            return int(self.fs.info(self.key(digest, fmt))["size"])
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheError(f"cannot reach the artifact store {self.url}: {e}") from None

    def upload(self, file: Path, digest: str, fmt: str) -> None:
        """Store `file` under its digest unless an object of its size is there: via a temporary key, then a move."""
        key = self.key(digest, fmt)
        if self.size(digest, fmt) == file.stat().st_size:
            return
        tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(os.path.dirname(key), exist_ok=True)
            self.fs.makedirs(os.path.dirname(tmp), exist_ok=True)
            self.fs.put_file(str(file), tmp)
            self.fs.mv(tmp, key)
        except OSError as e:
            raise CacheError(f"cannot upload artifact {digest[:12]} to {self.url}: {e}") from None
        finally:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except OSError:  # a temporary object is never read; gc removes leftovers (`clean_uploads`)
                pass
        self.fs.invalidate_cache(os.path.dirname(key))

    def download(self, digest: str, fmt: str, dest: Path, tmp_dir: Path) -> bool:
        """Copy the object to `dest` (via a locked temporary file in `tmp_dir`, then a rename); False if it is absent.

        The bytes are not checked here: the caller reads `dest` through the digest-verified path.
        """
        fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=f"{os.getpid()}-")
        try:
            with os.fdopen(fd, "wb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # `verify` and `gc` leave a locked temporary file alone
                try:
                    with self.fs.open(self.key(digest, fmt), "rb") as src:
                        while chunk := src.read(1 << 20):
                            f.write(chunk)
                except FileNotFoundError:
                    return False
                dest.parent.mkdir(mode=0o700, exist_ok=True)
                os.replace(tmp, dest)
                return True
        except OSError as e:
            raise CacheError(f"cannot download artifact {digest[:12]} from {self.url}: {e}") from None
        finally:
            Path(tmp).unlink(missing_ok=True)

    def quarantine(self, name: str) -> None:
        """Move an object found corrupt out of the way (kept under `quarantine/` for inspection)."""
        src = f"{self.root}/objects/{name[:2]}/{name}"
        try:
            if self.fs.exists(src):
                self.fs.mv(src, f"{self.root}/quarantine/{name}.{uuid.uuid4().hex}")
        except OSError as e:
            raise CacheError(f"cannot move corrupt artifact {name} aside in {self.url}: {e}") from None

    def objects(self) -> list[RemoteObject]:
        """Every stored object (one listing of `objects/`)."""
        try:
            found = self.fs.find(f"{self.root}/objects", detail=True)
        except FileNotFoundError:
            return []
        return [RemoteObject(path.rsplit("/", 1)[-1], int(info["size"]), _mtime(info))
                for path, info in found.items() if info.get("type") == "file"]

    def clean_uploads(self, older_than: float) -> int:
        """Delete temporary objects older than `older_than` seconds (left by writers that died); how many."""
        try:
            found = self.fs.find(f"{self.root}/tmp", detail=True)
        except FileNotFoundError:
            return 0
        old = [path for path, info in found.items() if time.time() - _mtime(info) > older_than]
        for path in old:
            self.fs.rm(path)
        return len(old)

    def delete(self, name: str) -> None:
        self.fs.rm(f"{self.root}/objects/{name[:2]}/{name}")


def _mtime(info: dict[str, Any]) -> float:
    """Modification time in seconds from an fsspec listing (S3: LastModified; local: mtime; GCS: updated, ISO 8601).

    A listing without one counts as new (gc keeps it until a listing says otherwise).
    """
    value = info.get("LastModified", info.get("mtime", info.get("updated")))
    if hasattr(value, "timestamp"):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return float(value) if value is not None else time.time()
