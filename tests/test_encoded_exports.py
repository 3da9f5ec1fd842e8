"""Exported MP4s are encoded once per video and encoder, kept in the cache, and checked like any artifact."""
from __future__ import annotations

import numpy as np
import pytest

from mora.engine.cache import encoded, media
from mora.engine.cache.maintenance import verify
from mora.engine.cache.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "cache")
    yield s
    s.close()


@pytest.fixture
def video(store):
    frames = np.random.default_rng(3).integers(0, 255, (5, 24, 32, 3), dtype=np.uint8)
    return store.put(media.frames_blob(frames, 8.0))


@pytest.fixture
def encodings(monkeypatch):
    calls = []
    real = media.write_mp4

    def counting(frames, path, *args, **kwargs):
        calls.append(path)
        real(frames, path, *args, **kwargs)

    monkeypatch.setattr(media, "write_mp4", counting)
    return calls


def test_a_video_is_encoded_once_and_later_exports_copy_the_same_bytes(store, video, encodings, tmp_path):
    first = encoded.export_mp4(store, video, tmp_path / "a.mp4")
    second = encoded.export_mp4(store, video, tmp_path / "b.mp4")
    assert len(encodings) == 1
    assert first.read_bytes() == second.read_bytes()
    decoded = media.load_video_file(second)
    assert decoded.count == 5 and decoded.fps == 8.0
    assert not list((store.root / "tmp").iterdir())  # the encoder's temporary file went into the store


def test_another_frame_rate_is_another_encoding(store, video, encodings, tmp_path):
    encoded.export_mp4(store, video, tmp_path / "a.mp4")
    encoded.export_mp4(store, video, tmp_path / "b.mp4", fps=4.0)
    assert len(encodings) == 2
    assert media.load_video_file(tmp_path / "b.mp4").fps == 4.0
    assert encoded.export_key(video, None) != encoded.export_key(video, 4.0)


def test_a_corrupt_encoding_is_quarantined_reported_and_encoded_again(store, video, encodings, tmp_path):
    good = encoded.export_mp4(store, video, tmp_path / "a.mp4").read_bytes()
    entry = store.lookup(encoded.export_key(video, None))
    stored = store.outputs(entry)["file"].path
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, different bytes
    stored.write_bytes(bytes(data))
    again = encoded.export_mp4(store, video, tmp_path / "b.mp4")
    assert again.read_bytes() == good and len(encodings) == 2
    assert list((store.root / "quarantine").iterdir())
    assert any("does not match its digest" in text for text in store.findings.corrupt)


def test_cache_verify_checks_encoded_exports(store, video, tmp_path):
    encoded.export_mp4(store, video, tmp_path / "a.mp4")
    stored = store.outputs(store.lookup(encoded.export_key(video, None)))["file"].path
    stored.write_bytes(b"\0" * stored.stat().st_size)
    report = verify(store)
    assert report.bad_entries and "export" in report.bad_entries[0]
