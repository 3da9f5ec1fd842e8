"""Encoded exports kept in the cache: a video is encoded to MP4 once; every later export of it is a verified copy.

Encoding is the costliest step of a fully cached run, and the only one that needs FFmpeg. The MP4
is an artifact like any other, found through an index entry whose key names the video's digest,
the frame rate and the encoder settings (`media.MP4_ENCODER`), so `gc`, `verify` and leases treat
it as any entry, and a changed encoder is a new entry, never a stale file. An encoded file found
corrupt is quarantined, reported once, and encoded again.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from blake3 import blake3

from mora.engine.cache import media, tmpfiles
from mora.engine.cache.artifacts import ArtifactRef, CorruptArtifact
from mora.engine.cache.store import Store
from mora.engine.ports import PortType

SCHEMA = "mora-export/1"


def export_key(video: ArtifactRef, fps: float | None) -> str:
    """The index key of `video` encoded as MP4 at `fps` (None: its own rate) with today's encoder settings."""
    spec = {"schema": SCHEMA, "video": video.digest, "fps": fps, "encoder": media.MP4_ENCODER}
    return blake3(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def export_mp4(store: Store, video: ArtifactRef, dest: Path, fps: float | None = None) -> Path:
    """Write `video` as an MP4 file at `dest`, encoding it only if the cache holds no intact encoding of it."""
    key = export_key(video, fps)
    entry = store.lookup(key, ports={"file": PortType.VIDEO})
    if entry is not None:
        encoded = store.outputs(entry)["file"]
        try:
            _copy_verified(encoded, dest)
            return dest
        except CorruptArtifact as e:
            store.quarantine(e.ref, e.why, e.inode, node="export")
    tmp = tmpfiles.create(store.root / "tmp", suffix=".mp4")  # locked until stored: maintenance leaves it alone
    try:
        with media.mapped_inputs_checked():  # an MP4 encoded from frames written in place is neither kept nor given
            frames = media.read_artifact_frames(video)
            media.write_mp4(media.Frames(frames.array, fps or frames.fps), tmp.path)
        shutil.copyfile(tmp.path, dest)  # the bytes just written: storing them hashes them once, no second check
        encoded = store.put_file(PortType.VIDEO, "mp4", tmp.path)
    finally:
        tmp.remove()
    store.record(key, {"node": "export", "agent": "export_mp4", "outputs": {"file": encoded.to_json()}})
    return dest


def _copy_verified(ref: ArtifactRef, dest: Path) -> None:
    with open(dest, "wb") as out:
        ref.copy_to(out)
