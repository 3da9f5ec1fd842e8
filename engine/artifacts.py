"""Artifacts: the values that flow between nodes, named by the digest of their content.

A `Blob` is an artifact an agent has just produced (bytes in an open format plus its kind);
an `ArtifactRef` is a stored one, a handle that any process sharing the store can open by
digest. The digest covers a small header (kind and format) and the bytes, so the same pixels
stored as PNG and as a frame store never collide.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mora.engine.ports import PortType

EXTENSIONS = {"txt": ".txt", "json": ".json", "png": ".png", "frames": ".safetensors", "safetensors": ".safetensors"}


def digest_bytes(kind: str, fmt: str, data: bytes) -> str:
    """The content digest of an artifact: sha256 over a kind/format header and the bytes."""
    h = hashlib.sha256(f"mora-artifact/1\0{kind}\0{fmt}\0".encode())
    h.update(data)
    return h.hexdigest()


def digest_file(kind: str, fmt: str, path: Path) -> str:
    """`digest_bytes` of a file's content, read in chunks (for artifacts too large to hold in memory)."""
    h = hashlib.sha256(f"mora-artifact/1\0{kind}\0{fmt}\0".encode())
    with open(path, "rb") as f:
        hashlib.file_digest(f, lambda: h)
    return h.hexdigest()


@dataclass(frozen=True)
class Blob:
    """A freshly produced artifact, not yet stored."""

    kind: PortType
    fmt: str
    data: bytes

    @property
    def digest(self) -> str:
        return digest_bytes(self.kind.value, self.fmt, self.data)


@dataclass(frozen=True)
class ArtifactRef:
    """A stored artifact: its digest, kind, format, size and where it lies in the store."""

    digest: str
    kind: PortType
    fmt: str
    size: int
    path: Path

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "kind": self.kind.value, "fmt": self.fmt, "size": self.size}

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def text(self) -> str:
        from mora.engine import media

        return media.read_text(self)

    def number(self) -> float:
        from mora.engine import media

        return media.read_number(self)

    def image(self) -> Any:
        """The image as an RGB `PIL.Image.Image`."""
        from mora.engine import media

        return media.read_image(self)

    def video(self) -> Any:
        """The video as an `mora.engine.media.Frames` (uint8 array T x H x W x 3 and fps)."""
        from mora.engine import media

        return media.read_frames(self.path)
