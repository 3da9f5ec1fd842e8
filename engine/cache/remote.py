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
  local object. A copy found corrupt is moved aside; the store's object follows it to the store's
  `quarantine/` only if its own bytes are wrong too (a local copy that rotted is fetched again).

Credentials and endpoints come from the file system's own configuration (for S3 the usual AWS
variables, `AWS_ENDPOINT_URL` for an S3-compatible server), never from Mora's config.
"""
from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mora.engine.cache import tmpfiles
from mora.engine.cache.artifacts import EXTENSIONS, OBJECT_NAME, ArtifactRef, digest_stream
from mora.engine.errors import CacheError

UPLOAD_NAME = re.compile(r"[0-9a-f]{32}")
"""How a temporary upload is named (`upload`): gc deletes no other file under the store's `tmp/`."""


@dataclass(frozen=True)
class RemoteObject:
    """An object as listed in the store: its file name (`<digest>.<ext>`), size and modification time."""

    name: str
    size: int
    mtime: float


class Remote:
    """One object store holding a cache's artifacts (fsspec file system plus the prefix under it).

    Every failure of the file system becomes a CacheError naming the store: fsspec back ends raise
    their own types (botocore's NoCredentialsError, gcsfs's and aiohttp's errors), not only OSError.
    """

    def __init__(self, url: str):
        import fsspec  # only a cache with an artifact store pays for the import

        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except Exception as e:  # noqa: BLE001 - any back end's complaint about the URL is a bad setting
            raise CacheError(f"cache.artifacts={url}: {e}") from None
        self.url = url
        self.root = root.rstrip("/")

    @contextmanager
    def _reaching(self, what: str) -> Iterator[None]:
        try:
            yield
        except CacheError:
            raise
        except Exception as e:  # noqa: BLE001 - see the class docstring
            detail = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
            raise CacheError(f"cannot {what} the artifact store {self.url} (cache.artifacts): {detail}") from None

    def probe(self) -> None:
        """Write and delete a small object under `tmp/`: a store that takes one is there, reachable with these
        credentials and writable (reading alone would pass a misspelt bucket: an absent key reads as absent)."""
        tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
        with self._reaching("write to"):
            if "file" in self.fs.protocol:  # an object store needs no folders (and s3fs's makedirs makes buckets)
                self.fs.makedirs(os.path.dirname(tmp), exist_ok=True)
            self.fs.pipe_file(tmp, b"mora")
            self.fs.rm(tmp)

    def key(self, digest: str, fmt: str) -> str:
        return f"{self.root}/objects/{digest[:2]}/{digest}{EXTENSIONS.get(fmt, '.bin')}"

    def size(self, digest: str, fmt: str) -> int | None:
        """The stored object's size, or None when there is none."""
        with self._reaching("reach"):
            try:
                return int(self.fs.info(self.key(digest, fmt))["size"])
            except FileNotFoundError:
                return None

    def upload(self, file: Path, ref: ArtifactRef) -> None:
        """Store `file` (the verified local copy of `ref`) unless the store holds an object of its size: via a
        temporary key, then a move. The store's bytes are not hashed here (every run puts its literal inputs: a long
        video would be read back from the store each time); a copy that rotted there is found when it is read,
        quarantined, and stored again by the node that recomputes it."""
        digest, fmt = ref.digest, ref.fmt
        key = self.key(digest, fmt)
        if self.size(digest, fmt) == file.stat().st_size:
            return
        tmp = f"{self.root}/tmp/{uuid.uuid4().hex}"
        try:
            with self._reaching(f"upload artifact {digest[:12]} to"):
                self.fs.makedirs(os.path.dirname(key), exist_ok=True)
                self.fs.makedirs(os.path.dirname(tmp), exist_ok=True)
                self.fs.put_file(str(file), tmp)
                self.fs.mv(tmp, key)
                self.fs.invalidate_cache(os.path.dirname(key))
        finally:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except Exception:  # noqa: BLE001, S110 - a temporary object is never read; gc removes leftovers
                pass

    def download(self, digest: str, fmt: str, dest: Path, tmp_dir: Path) -> bool:
        """Copy the object to `dest` (via a locked temporary file in `tmp_dir`, then a rename); False if it is absent.

        The bytes are not checked here: the caller reads `dest` through the digest-verified path.
        """
        tmp = tmpfiles.create(tmp_dir)
        try:
            with self._reaching(f"download artifact {digest[:12]} from"):
                with open(tmp.fd, "wb", closefd=False) as f:
                    try:
                        with self.fs.open(self.key(digest, fmt), "rb") as src:
                            while chunk := src.read(1 << 20):
                                f.write(chunk)
                    except FileNotFoundError:
                        return False
                    f.flush()  # every byte on disk before the file takes its final name
                    os.fsync(f.fileno())
                dest.parent.mkdir(mode=0o700, exist_ok=True)
                os.replace(tmp.path, dest)
                return True
        finally:
            tmp.remove()

    def digest_of(self, ref: ArtifactRef) -> str | None:
        """The digest of the store's object for `ref` as its bytes hash now, streamed where it lies (no local copy
        is written); None when there is no such object."""
        with self._reaching(f"check artifact {ref.path.name} in"):
            try:
                with self.fs.open(self.key(ref.digest, ref.fmt), "rb") as f:
                    return digest_stream(ref.kind.value, ref.fmt, f)
            except FileNotFoundError:
                return None

    def quarantine(self, ref: ArtifactRef) -> None:
        """Move the store's copy of `ref` to `quarantine/` if its own bytes are wrong (kept there for inspection).

        A copy found bad on one machine says nothing of the store's: an intact or absent object stays.
        """
        if self.digest_of(ref) in (None, ref.digest):
            return
        with self._reaching(f"quarantine artifact {ref.path.name} in"):
            self.fs.makedirs(f"{self.root}/quarantine", exist_ok=True)
            self.fs.mv(self.key(ref.digest, ref.fmt), f"{self.root}/quarantine/{ref.path.name}.{uuid.uuid4().hex}")

    def objects(self) -> list[RemoteObject]:
        """Every stored object (one listing of `objects/`; files Mora did not name are not objects)."""
        with self._reaching("list"):
            try:
                found = self.fs.find(f"{self.root}/objects", detail=True)
            except FileNotFoundError:
                return []
        return [RemoteObject(name, int(info["size"]), _mtime(info))
                for path, info in found.items() if info.get("type") == "file"
                and OBJECT_NAME.fullmatch(name := path.rsplit("/", 1)[-1])]

    def clean_uploads(self, older_than: float) -> int:
        """Delete temporary uploads older than `older_than` seconds (left by writers that died); how many."""
        with self._reaching("clean up temporary uploads in"):
            try:
                found = self.fs.find(f"{self.root}/tmp", detail=True)
            except FileNotFoundError:
                return 0
            old = [path for path, info in found.items() if UPLOAD_NAME.fullmatch(path.rsplit("/", 1)[-1])
                   and time.time() - _mtime(info) > older_than]
            for path in old:
                self.fs.rm(path)
        return len(old)


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
