"""Small pictures derived from a run's outputs: animated previews, thumbnails and contact-sheet frames.

A browser may not play a video file (a frame store, a codec it lacks), so each video also gets an
animated WebP preview: at most `PREVIEW_FRAMES` frames, evenly spaced, at most `PREVIEW_SIDE`
pixels on the long side, embedded in the page as a data URI. A video is opened as a user's video
is (`engine.userfiles`: a regular file within `media.MAX_VIDEO_FILE_BYTES`, never a FIFO or a
device). Nothing here writes into the run directory except `contact_sheet.png` (written atomically).

A run report's preview and poster are kept by the video file's BLAKE3 digest in the user's cache
folder (`PREVIEWS_DIR`, platformdirs'), so a video is decoded once however many reports show it: a
fully cached run's report then imports neither PyAV nor numpy. A kept pair is derived data, keyed
also by `PREVIEW_VERSION` and the sizes; the folder keeps the `KEPT_PREVIEWS` most recent, and any
problem reading or writing it only means decoding the video again.
"""
from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from blake3 import blake3

from mora.engine.cache import media
from mora.engine.userfiles import open_user_file

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

PREVIEW_FRAMES = 32
PREVIEW_SIDE = 256
THUMB_SIDE = 320
PREVIEW_VERSION = 1
"""Bumped when a preview or poster made from the same video would differ."""
PREVIEWS_DIR = platformdirs.user_cache_path("mora") / "report-previews"
KEPT_PREVIEWS = 500


def read_video(path: Path) -> media.Frames:
    """Every frame of an MP4 (or anything FFmpeg reads) or of a frame store, opened as a user's video is."""
    if path.suffix != ".safetensors":
        return media.load_video_file(path)
    with open_user_file(path, "video", media.MAX_VIDEO_FILE_BYTES) as f:
        return media.read_frames(f)


def _fit(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    if scale >= 1:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))


def preview_uri(frames: media.Frames, count: int = PREVIEW_FRAMES, side: int = PREVIEW_SIDE) -> str:
    """An animated WebP of at most `count` frames, `side` pixels, at the video's own pace, as a data URI."""
    import numpy as np
    from PIL import Image, WebPImagePlugin  # noqa: F401  the one writer needed: saving by format name
    # would otherwise import every PIL plugin first, most of a fully cached run's report time

    picks = np.unique(np.linspace(0, frames.count - 1, min(frames.count, count)).round().astype(int))
    images = [_fit(Image.fromarray(frames.array[i]), side) for i in picks]
    duration = max(20, round(1000 * frames.count / max(frames.fps, 1e-3) / len(images)))
    buf = io.BytesIO()
    images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], duration=duration, loop=0,
                   quality=80)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()


def image_uri(image: Image.Image, side: int = THUMB_SIDE) -> str:
    """A JPEG thumbnail as a data URI."""
    buf = io.BytesIO()
    _fit(image.convert("RGB"), side).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def poster_uri(frames: media.Frames, side: int = PREVIEW_SIDE) -> str:
    """The middle frame, shown by a video element before it plays."""
    from PIL import Image

    return image_uri(Image.fromarray(frames.array[frames.count // 2]), side)


def video_previews(path: Path, side: int = PREVIEW_SIDE) -> tuple[str, str]:
    """The animated preview and the poster of a video file, decoded only if not kept for its digest yet."""
    digest = blake3(f"{PREVIEW_VERSION}\0{PREVIEW_FRAMES}\0{side}\0".encode())
    with open_user_file(path, "video", media.MAX_VIDEO_FILE_BYTES) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    kept = PREVIEWS_DIR / f"{digest.hexdigest()}.json"
    try:
        pair = json.loads(kept.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pair = None
    if isinstance(pair, list) and [type(uri) for uri in pair] == [str, str] and \
            pair[0].startswith("data:image/webp;base64,") and pair[1].startswith("data:image/jpeg;base64,"):
        return pair[0], pair[1]
    frames = read_video(path)
    made = preview_uri(frames, side=side), poster_uri(frames, side)
    _keep(kept, json.dumps(made))
    return made


def _keep(path: Path, text: str) -> None:
    """Write a kept pair atomically and drop the oldest past `KEPT_PREVIEWS`; a failure only loses the pair."""
    tmp = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        tmp = None
        kept = sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-KEPT_PREVIEWS]:
            old.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def key_frames(frames: media.Frames) -> list[np.ndarray]:
    """The first, middle and last frames."""
    n = frames.count
    return [frames.array[i] for i in (0, n // 2, n - 1)]


def write_contact_sheet(rows: list[tuple[str, list[np.ndarray] | None]], path: Path, height: int = 128) -> Path:
    """One row per job: its label, then its first, middle and last frames (blank when it has no video)."""
    from PIL import Image, ImageDraw

    label_w, pad = 280, 6
    widths = [sum(round(f.shape[1] * height / f.shape[0]) for f in frames) + pad * len(frames)
              for _, frames in rows if frames]
    width = label_w + max(widths, default=3 * height)
    sheet = Image.new("RGB", (width, max(1, len(rows)) * (height + pad) + pad), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for r, (label, frames) in enumerate(rows):
        y = pad + r * (height + pad)
        for i, line in enumerate(_wrap(label, 40)[: height // 14]):
            draw.text((pad, y + 2 + 14 * i), line, fill=(20, 20, 20))
        x = label_w
        for frame in frames or []:
            tile = Image.fromarray(frame).resize((max(1, round(frame.shape[1] * height / frame.shape[0])), height))
            sheet.paste(tile, (x, y))
            x += tile.width + pad
        if not frames:
            draw.text((x, y + height // 2), "(no video)", fill=(150, 150, 150))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
    os.close(fd)
    try:
        sheet.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for part in text.split("\n"):
        while len(part) > width:
            lines.append(part[:width])
            part = part[width:]
        lines.append(part)
    return lines
