"""The six task templates end to end on the tiny preset (CPU), and what their manifests prove."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, run_file

from mora.engine.cache.media import load_video_file
from mora.engine.frontends.api import graph_path
from mora.engine.frontends.report import write_run_report

pytestmark = pytest.mark.usefixtures("tiny_models")


def run_template(name: str, inputs: dict, tmp: Path, run_name: str = "run", cache: Path | None = None):
    return run_file(graph_path(name, None), inputs, cache=cache or tmp / "cache", run_dir=tmp / run_name)


def statuses(outcome) -> dict[str, bool]:
    return {node: data["cached"] for node, data in outcome.manifest["nodes"].items()}


CASES = {
    "text_to_video": lambda m: {"prompt": "a fox in the snow"},
    "image_to_video": lambda m: {"image": str(m["image"])},
    "extend_video": lambda m: {"video": str(m["first"]), "times": 2},
    "edit_video": lambda m: {"video": str(m["first"]), "instruction": "make it winter"},
    "connect_videos": lambda m: {"first": str(m["first"]), "second": str(m["second"])},
    "digital_world": lambda m: {"prompt": "a village"},
    "digital_world_video": lambda m: {"video": str(m["second"])},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_template_runs_end_to_end_and_reruns_from_cache(name, media, tmp_path):
    first = run_template(name, CASES[name](media), tmp_path, "run1")
    assert first.manifest["ok"], first.manifest["failed"]
    assert first.manifest["outputs"]["video"] == "video.mp4"
    metrics = {"dynamic_degree", "motion_smoothness", "subject_consistency", "background_consistency",
               "temporal_flicker", "imaging_quality"} | ({"tcon", "tmean"} if name == "connect_videos" else set())
    assert metrics <= set(first.manifest["outputs"])
    report = write_run_report(tmp_path / "run1").read_text()  # the task's report shows its metrics
    for metric in metrics:
        assert f'<div class="card output kind-number" data-output="{metric}">' in report
    video = load_video_file(tmp_path / "run1" / "video.mp4")
    assert video.count >= 2
    second = run_template(name, CASES[name](media), tmp_path, "run2")
    assert all(statuses(second).values())
    assert second.manifest["model_loads"] == 0


def test_image_to_video_settings_reuse_the_keyframe_and_decode_settings_reuse_latents(tmp_path):
    base = run_template("text_to_video", {"seed": 5}, tmp_path, "a")
    assert not any(statuses(base).values())
    motion = run_template("text_to_video", {"seed": 5, "motion_bucket_id": 40}, tmp_path, "b")
    assert statuses(motion) == {"t2v/enrich": True, "t2v/keyframe": True, "t2v/animate/motion": False,
                                "t2v/animate/decode": False, "evaluate/quality": False}
    decode = run_template("text_to_video", {"seed": 5, "motion_bucket_id": 40, "decode_chunk_size": 2}, tmp_path, "c")
    assert statuses(decode) == {"t2v/enrich": True, "t2v/keyframe": True, "t2v/animate/motion": True,
                                "t2v/animate/decode": False, "evaluate/quality": False}


def test_extend_video_eight_times_makes_nine_clips_and_reuses_shorter_runs(media, tmp_path):
    source = load_video_file(media["first"])
    short = run_template("extend_video", {"video": str(media["first"]), "times": 2}, tmp_path, "two")
    long = run_template("extend_video", {"video": str(media["first"]), "times": 8}, tmp_path, "eight")
    frames = TINY["inputs"]["frames"]
    assert load_video_file(tmp_path / "eight" / "video.mp4").count == source.count + 8 * frames
    cached = statuses(long)
    assert all(v for k, v in cached.items() if k.startswith(("extend/0/", "extend/1/")) or k == "enrich")
    assert not any(v for k, v in cached.items() if k.startswith("extend/7/"))
    assert short.manifest["ok"] and long.manifest["ok"]
