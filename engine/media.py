"""Open formats for artifacts, and video files in and out.

Texts are UTF-8, numbers JSON, images PNG, latents safetensors (written by the agents that
make them), videos a lossless frame store (a safetensors file holding a uint8 T x H x W x 3
array and its fps) so chained edits never re-encode; MP4 is for the files a run hands to the
user and for videos the user gives. Every heavy import (numpy, PIL, av) happens on first use.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mora.engine.artifacts import ArtifactRef, Blob
from mora.engine.errors import InputError
from mora.engine.ports import PortType

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MAX_INPUT_PIXELS = 8192 * 8192
"""Larger input images are refused rather than decoded (a decompression-bomb guard)."""
MAX_INPUT_FRAMES = 4096


@dataclass(frozen=True)
class Frames:
    """Decoded video: uint8 frames (T x H x W x 3) and frames per second."""

    array: "np.ndarray"
    fps: float

    @property
    def count(self) -> int:
        return int(self.array.shape[0])


def text_blob(value: str) -> Blob:
    return Blob(PortType.TEXT, "txt", value.encode("utf-8"))


def number_blob(value: float) -> Blob:
    if not math.isfinite(float(value)):
        raise ValueError(f"numbers must be finite, got {value!r}")
    return Blob(PortType.NUMBER, "json", json.dumps(float(value)).encode())


def image_blob(image: "Image.Image") -> Blob:
    """PNG bytes of an RGB image; PNG is deterministic for the same pixels and settings."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return Blob(PortType.IMAGE, "png", buf.getvalue())


def frames_blob(frames: "np.ndarray", fps: float) -> Blob:
    """A lossless frame store of uint8 T x H x W x 3 frames."""
    import numpy as np
    from safetensors.numpy import save

    array = np.ascontiguousarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ValueError(f"video frames must be a non-empty uint8 array T x H x W x 3, got {array.dtype} {array.shape}")
    return Blob(PortType.VIDEO, "frames", save({"frames": array}, metadata={"fps": repr(float(fps))}))


def read_text(ref: ArtifactRef) -> str:
    return str(ref.read_bytes(), "utf-8")


def read_number(ref: ArtifactRef) -> float:
    return float(json.loads(bytes(ref.read_bytes())))


def read_image(ref: ArtifactRef) -> "Image.Image":
    from PIL import Image

    with Image.open(io.BytesIO(ref.read_bytes())) as img:
        return img.convert("RGB")


def safetensors_header(data: memoryview) -> tuple[dict[str, Any], int]:
    """The JSON header of safetensors bytes and where their tensor data starts.

    safetensors loads from a file or copies out of bytes; parsing its 8-byte length and JSON header
    here lets a verified buffer become an array without a second read or a second copy.
    """
    n = int.from_bytes(data[:8], "little")
    if not 2 <= n <= len(data) - 8:
        raise ValueError(f"not a safetensors file (header length {n})")
    return json.loads(bytes(data[8:8 + n])), 8 + n


def read_artifact_frames(ref: ArtifactRef) -> Frames:
    """A frame-store artifact, verified as it is read, as frames sharing the read buffer."""
    import numpy as np

    data = ref.read_bytes()
    header, start = safetensors_header(data)
    info = header["frames"]
    begin, end = info["data_offsets"]
    if info["dtype"] != "U8" or len(info["shape"]) != 4:
        raise ValueError(f"artifact {ref.digest[:12]} is not a uint8 frame store")
    array = np.frombuffer(data, dtype=np.uint8, count=end - begin, offset=start + begin).reshape(info["shape"])
    return Frames(array, float((header.get("__metadata__") or {}).get("fps", "8.0")))


def read_frames(path: Path, max_frames: int | None = None) -> Frames:
    """Read a frame store; with `max_frames`, refuse a longer one from its header, before reading frames."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        if max_frames is not None and f.get_slice("frames").get_shape()[0] > max_frames:
            raise InputError(f"{path}: more than {max_frames} frames; trim the video first")
        fps = float((f.metadata() or {}).get("fps", "8.0"))
        return Frames(f.get_tensor("frames"), fps)


def load_image_file(path: Path) -> "Image.Image":
    """Decode a user's image file, with a clear error for anything that is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    _check_file(path, "image")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_INPUT_PIXELS:
                raise InputError(
                    f"{path}: image is {img.width}x{img.height}, larger than the {MAX_INPUT_PIXELS} pixels allowed"
                )
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{path}: not a readable image ({e})") from None


def load_video_file(path: Path) -> Frames:
    """Decode every frame of a user's video (MP4 or any container FFmpeg reads) to RGB."""
    import av
    import numpy as np

    _check_file(path, "video")
    if path.suffix == ".safetensors":
        try:
            frames = read_frames(path, MAX_INPUT_FRAMES)
        except InputError:
            raise
        except Exception as e:  # safetensors raises several types for a bad header
            raise InputError(f"{path}: not a readable frame store ({e})") from None
        if frames.count == 0:
            raise InputError(f"{path}: the video has zero frames")
        return frames
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 8)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) > MAX_INPUT_FRAMES:
                    raise InputError(f"{path}: more than {MAX_INPUT_FRAMES} frames; trim the video first")
    except av.FFmpegError as e:
        raise InputError(f"{path}: not a readable video ({e})") from None
    if not frames:
        raise InputError(f"{path}: the video has zero frames")
    return Frames(np.stack(frames), fps)


def write_mp4(frames: Frames, path: Path, codec: str = "libx264", crf: int = 17) -> None:
    """Encode frames to an MP4 file, keeping the exact frame count (even sizes are padded)."""
    import av
    import numpy as np

    array = frames.array
    h, w = array.shape[1:3]
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        array = np.pad(array, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(frames.fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = array.shape[2], array.shape[1]
        stream.pix_fmt = "yuv420p"
        # mbtree=0: x264's macroblock-tree rate control made the same frames encode to different bytes
        stream.options = {"crf": str(crf), "x264-params": "mbtree=0"} if codec == "libx264" else {}
        for frame in array:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def export(ref: ArtifactRef, dest_stem: Path, video_format: str = "mp4", fps: float | None = None) -> Path:
    """Write an artifact as a user-facing file next to `dest_stem` and return its path."""
    kind = ref.kind
    if kind == PortType.VIDEO and video_format == "mp4":
        frames = read_artifact_frames(ref)
        dest = dest_stem.with_suffix(".mp4")
        write_mp4(Frames(frames.array, fps or frames.fps), dest)
        return dest
    suffix = {"txt": ".txt", "json": ".json", "png": ".png"}.get(ref.fmt, ".safetensors")
    dest = dest_stem.with_suffix(suffix)
    dest.write_bytes(ref.read_bytes())
    return dest


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: {what} file does not exist")
    if not path.is_file():
        raise InputError(f"{path}: {what} path is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: {what} file is empty")


def describe(value: Any) -> str:
    """A short description of an input value for error messages."""
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."
