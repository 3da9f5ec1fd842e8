"""Turning literal values and user files into artifacts before a run starts.

Texts and numbers become small artifacts; image and video paths are decoded (so an unreadable
file fails here, naming the node and field, before any model is loaded) and re-encoded
canonically (PNG, frame store), so the same pixels give the same digest whatever the file's
container. Nothing is written to the store until every input has been read successfully.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mora.engine import media
from mora.engine.artifacts import Blob
from mora.engine.errors import InputError
from mora.engine.ports import PortType


def to_blob(kind: PortType, value: Any) -> Blob:
    """The artifact for a literal of port type `kind` (a path for image, video and latent)."""
    if kind == PortType.TEXT:
        return media.text_blob(value)
    if kind == PortType.NUMBER:
        return media.number_blob(value)
    path = Path(str(value)).expanduser()
    if kind == PortType.IMAGE:
        return media.image_blob(media.load_image_file(path))
    if kind == PortType.VIDEO:
        frames = media.load_video_file(path)
        return media.frames_blob(frames.array, frames.fps)
    if kind == PortType.LATENT:
        return _latent_file(path)
    raise InputError(f"cannot make a literal of type {kind.value}")


def _latent_file(path: Path) -> Blob:
    from safetensors import safe_open

    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path}: latent file does not exist or is empty")
    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except Exception as e:  # safetensors raises several types for a bad header
        raise InputError(f"{path}: not a readable safetensors file ({e})") from None
    return Blob(PortType.LATENT, "safetensors", path.read_bytes())
