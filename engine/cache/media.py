"""Open formats for artifacts, and the user's images and videos in and out.

Texts are UTF-8, numbers JSON, images PNG, latents safetensors (written by the agents that
make them), videos a lossless frame store (a safetensors file holding a uint8 T x H x W x 3
array and its fps) so chained edits never re-encode; MP4 is for the files a run hands to the
user and for videos the user gives. Every heavy import (numpy, PIL, av) happens on first use.

Reading policy. The user's files are opened through `engine.userfiles` and read as the user
sees them: an image is turned by its EXIF orientation and converted to RGB by the real range
of its mode (16-bit and 32-bit samples scaled, not clipped; transparency over white; CMYK and
other colour spaces through an embedded ICC profile); a video is turned by its display matrix.
Budgets are checked from the header before decoding, and again while decoding (headers can
lie): `MAX_INPUT_PIXELS` per image or frame, `MAX_INPUT_FRAMES`, and `MAX_DECODED_BYTES` for a
whole decoded video. A video streams: it is decoded one frame at a time into a frame store
written straight to disk, and a frame store is read back as a memory map, so an agent that
needs one frame of a 4K clip touches one frame.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mora.engine.cache.artifacts import ArtifactRef, Blob
from mora.engine.errors import InputError
from mora.engine.ports import PortType
from mora.engine.userfiles import human_size, open_user_file

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

MAX_INPUT_PIXELS = 8192 * 8192
"""Larger input images and video frames are refused rather than decoded (a decompression-bomb guard)."""
MAX_INPUT_FRAMES = 4096
MAX_DECODED_BYTES = 4 << 30
"""A video input decodes to at most this many bytes of RGB frames (a 5-second 4K clip at 30 fps is 3.5 GiB)."""
MAX_IMAGE_FILE_BYTES = 512 << 20
MAX_VIDEO_FILE_BYTES = 16 << 30
HEADER_BYTES = 256
"""A frame store's header (length prefix and JSON, padded with spaces) has this fixed size, so a video can be
written in one pass, frame by frame, and its header filled in once the frame count is known."""


@dataclass(frozen=True)
class Frames:
    """Decoded video: uint8 frames (T x H x W x 3, a read-only memory map when read from a store) and fps."""

    array: np.ndarray
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


def image_blob(image: Image.Image) -> Blob:
    """PNG bytes of an RGB image; PNG is deterministic for the same pixels and settings."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return Blob(PortType.IMAGE, "png", buf.getvalue())


def _frame_store_header(shape: tuple[int, ...], fps: float) -> bytes:
    size = math.prod(shape)
    header = json.dumps({"__metadata__": {"fps": repr(float(fps))},
                         "frames": {"dtype": "U8", "shape": list(shape), "data_offsets": [0, size]}},
                        separators=(",", ":")).encode()
    return struct.pack("<Q", HEADER_BYTES - 8) + header.ljust(HEADER_BYTES - 8)


def frames_blob(frames: np.ndarray, fps: float) -> Blob:
    """A lossless frame store of uint8 T x H x W x 3 frames."""
    import numpy as np

    array = np.ascontiguousarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ValueError(f"video frames must be a non-empty uint8 array T x H x W x 3, got {array.dtype} {array.shape}")
    return Blob(PortType.VIDEO, "frames", _frame_store_header(array.shape, fps) + array.tobytes())


def write_frame_store(frames: Iterator[np.ndarray], fps: float, dest: BinaryIO) -> int:
    """Write frames one at a time as a frame store into `dest` (seekable); return how many were written."""
    start = dest.tell()
    dest.write(b"\0" * HEADER_BYTES)
    shape: tuple[int, ...] | None = None
    count = 0
    for frame in frames:
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise InputError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, but the video's first frame is "
                             f"{shape[1]}x{shape[0]}")
        dest.write(frame.tobytes())
        count += 1
    if shape is not None:
        end = dest.tell()
        dest.seek(start)
        dest.write(_frame_store_header((count, *shape), fps))
        dest.seek(end)
    return count


def read_text(ref: ArtifactRef) -> str:
    return str(ref.read_bytes(), "utf-8")


def read_number(ref: ArtifactRef) -> float:
    return float(json.loads(bytes(ref.read_bytes())))


def read_image(ref: ArtifactRef) -> Image.Image:
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
    """A frame-store artifact, verified whole (streamed through the hash), then memory-mapped.

    Only the frames an agent touches are paged in, so picking the last frame of a long 4K
    video never holds the whole video in memory. A mapping shows whatever is later written into
    the file in place, so inside `mapped_inputs_checked` the file is watched until the agent ends.
    """
    f = ref.open_verified()
    try:
        frames = read_frames(f)
        if (watched := _WATCHED.get()) is not None:
            watched.append(_Watch(ref, os.dup(f.fileno()), os.fstat(f.fileno())))
        return frames
    except ValueError as e:
        raise ValueError(f"artifact {ref.digest[:12]} is not a uint8 frame store ({e})") from None
    finally:
        f.close()


@dataclass(frozen=True)
class _Watch:
    ref: ArtifactRef
    fd: int
    st: os.stat_result


_WATCHED: ContextVar[list[_Watch] | None] = ContextVar("mora_mapped_inputs", default=None)


@contextlib.contextmanager
def mapped_inputs_checked() -> Iterator[None]:
    """Run an agent with the frame stores it maps watched: on the way out, each file must be as it was when it was
    verified, or the CorruptArtifact raised here keeps anything computed from it from being stored."""
    watched: list[_Watch] = []
    token = _WATCHED.set(watched)
    try:
        yield
        for w in watched:
            with open(w.fd, "rb", closefd=False) as f:
                w.ref.unchanged_since(f, w.st)
    finally:
        _WATCHED.reset(token)
        for w in watched:
            os.close(w.fd)


def read_frames(source: Path | BinaryIO, max_frames: int | None = None) -> Frames:
    """A frame store (a path, or a file open for reading) as a read-only memory map (safetensors copies
    what it reads, which would load every frame).

    The header is checked whole before anything is mapped; with `max_frames`, a longer video is refused.
    """
    import numpy as np

    path = source if isinstance(source, Path) else "a frame store"
    with open(source, "rb") if isinstance(source, Path) else contextlib.nullcontext(source) as f:
        f.seek(0)
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        if not 2 <= size <= 100_000_000:
            raise ValueError("no safetensors header")
        header = json.loads(f.read(size))
        f.seek(0, 2)
        file_size = f.tell()
    entry = header.get("frames") if isinstance(header, dict) else None
    if not isinstance(entry, dict) or entry.get("dtype") != "U8":
        raise ValueError("no uint8 tensor named 'frames'")
    shape, (begin, end) = [int(n) for n in entry["shape"]], entry["data_offsets"]
    if len(shape) != 4 or shape[-1] != 3 or min(shape) < 0 or end - begin != math.prod(shape) or \
            8 + size + end > file_size:
        raise ValueError(f"'frames' must be T x H x W x 3 and fit the file, got shape {shape}")
    if max_frames is not None and shape[0] > max_frames:
        raise InputError(f"{path}: more than {max_frames} frames; trim the video first")
    fps = float((header.get("__metadata__") or {}).get("fps", "8.0"))
    if shape[0] == 0:
        return Frames(np.zeros(shape, np.uint8), fps)
    # copy-on-write: agents may change frames in place; the file is never written
    return Frames(np.memmap(source, dtype=np.uint8, mode="c", offset=8 + size + begin, shape=tuple(shape)), fps)


def to_rgb(image: Image.Image, white: float | None = None) -> Image.Image:
    """An RGB image as a viewer shows `image`: samples scaled from their real range (`white`, else found from
    `image`), transparency over white, colours through an embedded ICC profile."""
    import numpy as np
    from PIL import Image, ImageCms

    icc = image.info.get("icc_profile")
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        grey = np.asarray(image, dtype=np.float64) * (255 / (white or white_level(image)))
        image = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info or image.mode == "PA":
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    if image.mode in ("LA", "La", "RGBA", "RGBa"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    if icc and image.mode in ("RGB", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            image = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: the plain conversion below is the best remaining guess
    return image.convert("RGB")


def white_level(image: Image.Image) -> float:
    """The white level of a high-range image: 1.0 for float, 65535 for 16-bit, int32's largest for 32-bit TIFF."""
    if image.mode == "F":
        return 1.0
    tags = getattr(image, "tag_v2", None)
    bits = tags.get(258) if image.mode == "I" and tags is not None else None
    bits = int(bits[0] if isinstance(bits, tuple) else bits or 16)
    return 2.0**31 - 1 if bits >= 32 else 2.0**bits - 1


def load_image_file(path: Path) -> Image.Image:
    """Decode a user's image file as the user sees it (orientation, colours), or fail with a clear error."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with open_user_file(path, "image", MAX_IMAGE_FILE_BYTES) as f:
        try:
            with Image.open(f) as img:
                if img.width * img.height > MAX_INPUT_PIXELS:
                    raise InputError(f"{path}: image is {img.width}x{img.height}, larger than the {MAX_INPUT_PIXELS} "
                                     "pixels allowed")
                img.load()
                return to_rgb(ImageOps.exif_transpose(img), white_level(img))  # turning drops TIFF tags
        except UnidentifiedImageError:  # Pillow's own text names its file object, not the user's file
            raise InputError(f"{path}: not a readable image (no image format recognised)") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"{path}: not a readable image ({e})") from None


def _check_budget(path: Path, frames: int, height: int, width: int, exact: bool) -> None:
    """Refuse a video whose frame size, frame count or decoded size is over its budget."""
    if width * height > MAX_INPUT_PIXELS:
        raise InputError(f"{path}: video frames are {width}x{height}, larger than the {MAX_INPUT_PIXELS} pixels "
                         "allowed")
    if frames > MAX_INPUT_FRAMES:
        raise InputError(f"{path}: more than {MAX_INPUT_FRAMES} frames; trim the video first")
    decoded = frames * width * height * 3
    if decoded > MAX_DECODED_BYTES:
        count = f"{frames} frames" if exact else f"about {frames} frames"
        raise InputError(f"{path}: video is {width}x{height}, {count}: {human_size(decoded)} decoded, more than the "
                         f"{human_size(MAX_DECODED_BYTES)} allowed; trim or scale it down first")


def _decode(path: Path, file: BinaryIO) -> tuple[float, Iterator[np.ndarray]]:
    """The fps and a stream of upright RGB frames of a user's video, refused from its header if over budget."""
    import av
    import numpy as np

    container = av.open(file)
    try:
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 8
        expected = stream.frames or (int(float(stream.duration * stream.time_base) * rate) if stream.duration else 0)
        if not expected and container.duration:
            expected = int(container.duration / 1_000_000 * rate)
        _check_budget(path, expected, stream.codec_context.height, stream.codec_context.width, exact=False)
    except BaseException:
        container.close()
        raise

    def frames() -> Iterator[np.ndarray]:
        with container:
            for count, frame in enumerate(container.decode(stream), 1):
                _check_budget(path, count, frame.height, frame.width, exact=True)
                turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns for display
                array = frame.to_ndarray(format="rgb24")
                yield np.ascontiguousarray(np.rot90(array, turns)) if turns else array

    return float(rate), frames()


def ingest_video_file(path: Path, dest: BinaryIO) -> None:
    """Decode a user's video (any container FFmpeg reads, or a frame store) into a frame store written to `dest`.

    Frames stream from the decoder to `dest`, so memory holds one frame whatever the video's length.
    """
    import av

    with open_user_file(path, "video", MAX_VIDEO_FILE_BYTES) as f:
        if path.suffix == ".safetensors":
            try:
                frames = read_frames(path)
            except (ValueError, KeyError, TypeError, OSError) as e:
                raise InputError(f"{path}: not a readable frame store ({e})") from None
            _check_budget(path, frames.count, *frames.array.shape[1:3], exact=True)
            fps, stream = frames.fps, iter(frames.array)
        else:
            try:
                fps, stream = _decode(path, f)
            except av.FFmpegError as e:
                raise InputError(f"{path}: not a readable video ({e})") from None
        try:
            count = write_frame_store(stream, fps, dest)
        except av.FFmpegError as e:
            raise InputError(f"{path}: not a readable video ({e})") from None
    if count == 0:
        raise InputError(f"{path}: the video has zero frames")


def load_video_file(path: Path) -> Frames:
    """Decode every frame of a user's video (within the same budgets) into memory."""
    import numpy as np

    buf = io.BytesIO()
    ingest_video_file(path, buf)
    data = buf.getbuffer()
    header = json.loads(bytes(data[8:HEADER_BYTES]))
    array = np.frombuffer(data, np.uint8, offset=HEADER_BYTES).reshape(header["frames"]["shape"])
    return Frames(array, float(header["__metadata__"]["fps"]))


MP4_ENCODER = {"codec": "libx264", "crf": 17, "x264-params": "mbtree=0"}
"""How exports are encoded (part of the key of a cached encoding: see engine/cache/encoded.py).

mbtree=0: x264's macroblock-tree rate control made the same frames encode to different bytes."""


def write_mp4(frames: Frames, path: Path, codec: str = MP4_ENCODER["codec"], crf: int = MP4_ENCODER["crf"]) -> None:
    """Encode frames to an MP4 file, keeping the exact frame count (odd sizes are padded, a frame at a time)."""
    import av
    import numpy as np

    h, w = frames.array.shape[1:3]
    pad = ((0, h % 2), (0, w % 2), (0, 0))
    rate = Fraction(frames.fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = w + w % 2, h + h % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "x264-params": MP4_ENCODER["x264-params"]} if codec == "libx264" else {}
        for frame in frames.array:
            frame = np.pad(frame, pad, mode="edge") if h % 2 or w % 2 else frame
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def export(ref: ArtifactRef, dest_stem: Path, video_format: str = "mp4", fps: float | None = None) -> Path:
    """Write an artifact as a user-facing file next to `dest_stem` and return its path."""
    kind = ref.kind
    if kind == PortType.VIDEO and video_format == "mp4":
        dest = dest_stem.with_suffix(".mp4")
        with mapped_inputs_checked():  # frames written in place while they are encoded fail the export
            frames = read_artifact_frames(ref)
            write_mp4(Frames(frames.array, fps or frames.fps), dest)
        return dest
    suffix = {"txt": ".txt", "json": ".json", "png": ".png"}.get(ref.fmt, ".safetensors")
    dest = dest_stem.with_suffix(suffix)
    dest.write_bytes(ref.read_bytes())
    return dest
