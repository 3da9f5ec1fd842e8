"""The video_quality agents measure what they claim, in the right direction, on synthetic videos made here.

Weight-free numbers are checked on a textured pan and its variants (still, flickering, shuffled,
noisy); the learned-backbone agents run through the engine with the tiny random CLIP and DINO,
whose features still make a still video perfectly consistent and a shuffled noise video less so.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FakeContext, run_file

from mora.engine.cache.media import Frames, frames_blob, write_mp4
from mora.engine.cache.store import Store
from mora.engine.frontends.api import graph_path
from mora.nodes.video_connection import run as connection_run
from mora.nodes.video_quality import measure

SIZE, T = 64, 12


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (2 * SIZE, 3 * SIZE, 3)).astype(np.uint8), (9, 9), 3)
    return ((noise.astype(float) - noise.mean()) * 4 + 128).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pan(texture: np.ndarray) -> np.ndarray:
    """A smooth camera pan: 2 pixels a frame."""
    return np.stack([texture[10:10 + SIZE, 2 * t:2 * t + SIZE] for t in range(T)])


def test_a_still_video_has_zero_dynamic_degree_and_perfect_scores(pan):
    still = np.repeat(pan[:1], T, axis=0)
    m = measure(still)
    assert m["dynamic_degree"] == 0.0
    assert m["motion_smoothness"] == m["temporal_flicker"] == 1.0
    assert m["subject_consistency"] == pytest.approx(1.0) and m["background_consistency"] == pytest.approx(1.0)


def test_dynamic_degree_is_the_flow_in_pixels_at_a_256_pixel_short_side(pan):
    # 2 px per frame at a 64-px short side is 8 px at 256
    assert measure(pan)["dynamic_degree"] == pytest.approx(8.0, rel=0.1)
    assert measure(pan[::2])["dynamic_degree"] == pytest.approx(16.0, rel=0.15)


def test_a_flickering_video_scores_worse_than_a_smooth_one(pan):
    flicker = pan.copy()
    flicker[::2] = (flicker[::2] * 0.6).astype(np.uint8)
    smooth, flickering = measure(pan), measure(flicker)
    assert flickering["temporal_flicker"] < smooth["temporal_flicker"] - 0.1
    assert smooth["temporal_flicker"] > 0.99  # motion alone is not flicker


def test_a_shuffled_video_is_less_smooth(pan):
    shuffled = pan[np.random.default_rng(1).permutation(T)]
    assert measure(shuffled)["motion_smoothness"] < measure(pan)["motion_smoothness"] - 0.05
    assert measure(shuffled)["subject_consistency"] < measure(pan)["subject_consistency"]


def test_noise_lowers_imaging_quality(pan):
    noisy = (pan.astype(int) + np.random.default_rng(2).normal(0, 25, pan.shape)).clip(0, 255).astype(np.uint8)
    flat = np.full_like(pan, 128)
    assert measure(noisy)["imaging_quality"] < measure(pan)["imaging_quality"] / 2
    assert measure(flat)["imaging_quality"] < measure(pan)["imaging_quality"] / 2  # no detail


def _connection(store: Store, first, bridge, second) -> dict[str, float]:
    clips = {"first": first, "transition": bridge, "second": second}
    out = connection_run(FakeContext(), {k: store.put(frames_blob(v, 8.0)) for k, v in clips.items()}, {})
    return {k: float(v.data) for k, v in out.items()}


def test_a_transition_that_meets_both_clips_has_higher_tcon_and_tmean(pan, tmp_path):
    store = Store(tmp_path / "cache")
    first, second = pan[:4], pan[8:]
    seamless = _connection(store, first, pan[3:9], second)  # the frames that really lie between
    rng = np.random.default_rng(3)
    jumpy = _connection(store, first, rng.integers(0, 255, (6, SIZE, SIZE, 3), dtype=np.uint8), second)
    assert seamless["tcon"] == pytest.approx(1.0) and seamless["tcon"] > jumpy["tcon"] + 0.5
    assert seamless["tmean"] > jumpy["tmean"] + 0.3
    assert _connection(store, first, pan[3:9], second[:, :, :32])["tcon"] <= 1.0  # other sizes are resized, not refused


def _run(graph: Path, inputs: dict, tmp: Path, name: str):
    return run_file(graph, inputs, cache=tmp / "cache", run_dir=tmp / name)


def _numbers(outcome) -> dict[str, float]:
    return {k: float((outcome.run_dir / f).read_text()) for k, f in outcome.manifest["outputs"].items()
            if f.endswith(".json")}


@pytest.mark.usefixtures("tiny_models")
def test_learned_backbones_load_through_from_pretrained_and_score_a_still_video_as_consistent(tmp_path, pan):
    still, noise = tmp_path / "still.mp4", tmp_path / "noise.mp4"
    write_mp4(Frames(np.repeat(pan[:1], 6, axis=0), 8.0), still)
    write_mp4(Frames(np.random.default_rng(4).integers(0, 255, (6, SIZE, SIZE, 3), dtype=np.uint8), 8.0), noise)
    graph = graph_path("evaluate_learned", None)
    a = _run(graph, {"video": str(still), "prompt": "a textured wall"}, tmp_path, "still")
    b = _run(graph, {"video": str(noise), "prompt": "a textured wall"}, tmp_path, "noise")
    assert a.manifest["ok"] and b.manifest["ok"], (a.manifest["failed"], b.manifest["failed"])
    assert a.manifest["model_loads"] == 2 and b.manifest["model_loads"] == 0  # CLIP and DINO, once per process
    still_n, noise_n = _numbers(a), _numbers(b)
    assert set(still_n) == {"clip_score", "background_consistency", "subject_consistency"}
    assert still_n["background_consistency"] == pytest.approx(1.0, abs=1e-4)
    assert still_n["subject_consistency"] == pytest.approx(1.0, abs=1e-4)
    assert noise_n["subject_consistency"] < 1.0 and noise_n["background_consistency"] < 1.0
    assert 0.0 <= still_n["clip_score"] <= 100.0
