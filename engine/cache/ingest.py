"""Turning literal values and user files into artifacts before a run starts.

Texts and numbers become small artifacts; image and video paths are decoded (so an unreadable
file fails here, naming the node and field, before any model is loaded) and re-encoded
canonically (PNG, frame store), so the same pixels give the same digest whatever the file's
container. Each distinct input is read once per run, however many nodes use it and however its
path is spelt, and a failure is remembered as well as a success, so one bad file is decoded and
reported once. A video is streamed into a file in the store's `tmp/` rather than held in memory,
in the run's staging folder, locked once for all its videos (tmpfiles.py), so maintenance never takes
one for a dead writer's however long the other inputs take, and a sweep over thousands of videos
holds one descriptor, not one a video; nothing enters the store until every input has been
read successfully (`keep`), and `discard` removes whatever was staged but not kept.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mora.engine.cache import media, tmpfiles
from mora.engine.cache.artifacts import ArtifactRef, Blob
from mora.engine.cache.store import Store
from mora.engine.cache.tmpfiles import TempDir
from mora.engine.errors import InputError
from mora.engine.ports import FILE_KINDS, PortType
from mora.engine.userfiles import expand_user, read_user_file

MAX_LATENT_FILE_BYTES = 1 << 30


@dataclass(frozen=True)
class Staged:
    """An artifact already written to a file in the run's locked staging folder in `tmp/`, too large to hold in
    memory."""

    kind: PortType
    fmt: str
    path: Path


class Ingest:
    """Reads a run's literal inputs, each distinct one once, staging large ones in `store`'s tmp/."""

    def __init__(self, store: Store):
        self.store = store
        self._read: dict[tuple[str, Any], Blob | Staged | str] = {}
        self._kept: dict[int, ArtifactRef] = {}
        self._staging: TempDir | None = None

    def read(self, kind: PortType, value: Any) -> Blob | Staged:
        """The artifact for a literal of port type `kind` (a path for image, video and latent); InputError if bad."""
        path = kind in FILE_KINDS and "\0" not in str(value)  # a NUL byte: no real path; refused on opening
        key = (kind.value, os.path.realpath(expand_user(str(value), f"{kind.value} input")) if path else value)
        if key not in self._read:
            try:
                self._read[key] = self._make(kind, value)
            except (InputError, ValueError) as e:
                self._read[key] = str(e)
        result = self._read[key]
        if isinstance(result, str):
            raise InputError(result)
        return result

    def keep(self, item: Blob | Staged) -> ArtifactRef:
        """Store an artifact that `read` returned."""
        if isinstance(item, Staged):  # read once however many sources name it, so moved into place once
            if id(item) not in self._kept:
                self._kept[id(item)] = self.store.put_file(item.kind, item.fmt, item.path)
            return self._kept[id(item)]
        return self.store.put(item)

    def discard(self) -> None:
        """Remove the staging folder with the files that were not kept (a failed input elsewhere, or an
        interruption), and release its lock."""
        if self._staging is not None:
            self._staging.remove()
            self._staging = None

    def _make(self, kind: PortType, value: Any) -> Blob | Staged:
        if kind == PortType.TEXT:
            return media.text_blob(value)
        if kind == PortType.NUMBER:
            return media.number_blob(value)
        path = expand_user(str(value), f"{kind.value} input")
        if kind == PortType.IMAGE:
            return media.image_blob(media.load_image_file(path))
        if kind == PortType.VIDEO:
            return self._video(path)
        if kind == PortType.LATENT:
            return _latent_file(path)
        raise InputError(f"cannot make a literal of type {kind.value}")

    def _video(self, path: Path) -> Staged:
        if self._staging is None:
            self._staging = tmpfiles.create_dir(self.store.root / "tmp", label="input")
        fd, name = tempfile.mkstemp(dir=self._staging.path)
        try:
            with open(fd, "w+b") as dest:
                media.ingest_video_file(path, dest)
        except BaseException:
            os.unlink(name)
            raise
        return Staged(PortType.VIDEO, "frames", Path(name))


def _latent_file(path: Path) -> Blob:
    from safetensors.numpy import load

    data = read_user_file(path, "latent", MAX_LATENT_FILE_BYTES)
    try:
        load(data)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad header
        raise InputError(f"{path}: not a readable safetensors file ({e})") from None
    return Blob(PortType.LATENT, "safetensors", data)
