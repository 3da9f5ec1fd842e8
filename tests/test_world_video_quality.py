"""The world's video readers (follow, kept, join) on frames the renderer drew, where the truth is known, and a
smoke run of bench/world_video_quality.py on pipelines built by the video training scripts."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FakeContext, params_of
from PIL import Image

from mora.engine.cache.artifacts import Blob
from mora.engine.ports import PortType
from mora.nodes.world import captions, detect
from mora.nodes.world import scene as world


def clip(text: str, seed: int = 0, frames: int = 17) -> tuple[world.Scene, list[np.ndarray]]:
    s = captions.parse(text)
    layout = world.place(s, np.random.default_rng(seed))
    return s, [world.render(s, layout, frame=f) for f in range(frames)]


def glide(s: world.Scene, start: tuple[float, float], end: tuple[float, float], frames: int = 17) -> list[np.ndarray]:
    """The thing drawn moving in a straight line from `start` to `end`, both ends included."""
    half = world.SIZES[s.things[0].size]
    return [world.render(s, world.Layout(((start[0] + a * (end[0] - start[0]), start[1] + a * (end[1] - start[1])),),
                                         (half,))) for a in np.linspace(0, 1, frames)]


@pytest.mark.parametrize("direction", list(world.DIRECTIONS))
def test_a_followed_thing_moves_in_its_caption_s_direction_and_backwards_in_the_reversed_clip(direction):
    s, frames = clip(f"a small green triangle moving {direction} slowly on a striped black background")
    thing = s.things[0]
    forward = detect.follow(frames, thing.colour, thing.shape)
    assert all(c is not None for c in forward.centres)
    assert forward.direction == direction
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[direction]
    assert detect.follow(frames[::-1], thing.colour, thing.shape).direction == opposite


def test_a_still_thing_reads_as_still_and_another_colour_is_not_followed():
    _, frames = clip("a blue square at the top left on a white background")
    assert detect.follow(frames, "blue", "square").direction == "still"
    assert detect.follow(frames, "red", "square").centres == (None,) * len(frames)


def test_kept_says_in_which_frames_the_thing_has_its_colour_and_shape():
    s, frames = clip("a red circle moving right on a white background")
    assert all(detect.kept(frames, "red", "circle"))
    recoloured = dataclasses.replace(s, things=(dataclasses.replace(s.things[0], colour="blue"),))
    layout = world.place(s, np.random.default_rng(0))
    changed = frames[:9] + [world.render(recoloured, layout, frame=f) for f in range(9, 17)]
    assert detect.kept(changed, "red", "circle") == (True,) * 9 + (False,) * 8
    reshaped = dataclasses.replace(s, things=(dataclasses.replace(s.things[0], shape="square"),))
    assert not any(detect.kept([world.render(reshaped, layout, frame=f) for f in range(3)], "red", "circle"))


def test_a_glide_joins_the_clips_it_starts_and_ends_on():
    s = captions.parse("a large orange diamond on a striped white background")
    way = glide(s, (0.25, 0.3), (0.7, 0.65))
    j = detect.join(way[0], way, way[-1], "orange", "diamond")
    assert j.start_gap < 1 and j.end_gap < 1 and j.monotone and j.joins()


def test_a_cross_fade_between_the_same_ends_does_not_join():
    s = captions.parse("a large orange diamond on a striped white background")
    way = glide(s, (0.25, 0.3), (0.7, 0.65))
    a, b = way[0].astype(np.float32), way[-1].astype(np.float32)
    fade = [np.round((1 - t) * a + t * b).astype(np.uint8) for t in np.linspace(0, 1, 17)]
    j = detect.join(way[0], fade, way[-1], "orange", "diamond")
    assert j.start_gap < 1 and j.end_gap < 1  # its ends are right: only the path between gives it away
    assert not j.monotone and not j.joins()
    cut = [way[0]] * 8 + [way[-1]] * 9  # one thing in every frame, never turning back: but it jumps
    assert not detect.join(way[0], cut, way[-1], "orange", "diamond").joins()


def test_a_cross_fade_between_overlapping_ends_does_not_join_though_its_blob_moves_steadily():
    s = captions.parse("a large black diamond on a white background")
    way = glide(s, (0.45, 0.5), (0.6, 0.55))  # 10 px apart: the faded ends overlap into one blob
    a, b = way[0].astype(np.float32), way[-1].astype(np.float32)
    fade = [np.round((1 - t) * a + t * b).astype(np.uint8) for t in np.linspace(0, 1, 17)]
    j = detect.join(way[0], fade, way[-1], "black", "diamond")
    assert j.start_gap < 1 and j.end_gap < 1 and not j.steady and not j.joins()
    assert detect.join(way[0], way, way[-1], "black", "diamond").joins()


def test_a_transition_that_turns_back_or_starts_elsewhere_does_not_join():
    s = captions.parse("a purple cross on a yellow background")
    way = glide(s, (0.25, 0.5), (0.75, 0.5))
    back_and_forth = way[:9] + way[4:9][::-1] + way[5:]
    assert not detect.join(way[0], back_and_forth, way[-1], "purple", "cross").monotone
    late = glide(s, (0.35, 0.5), (0.75, 0.5))
    j = detect.join(way[0], late, way[-1], "purple", "cross")
    assert j.monotone and j.start_gap == pytest.approx(6.4, abs=1.5) and not j.joins()
    assert not detect.join(way[0], way, glide(s, (0.5, 0.2), (0.5, 0.2), 1)[0], "purple", "cross").joins()


# The bench on pipelines the training scripts build and save (random weights: the scripts' own builders and savers,
# without training steps, which take minutes on a CPU) ----------------------------------------------------------

@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory):
    import torch

    from training import world_svd, world_video

    out = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    vae = world_video.vae_model()
    for name, first_last in (("wan_i2v", False), ("wan_flf", True)):
        world_video.save_wan(out / name, world_video.components(first_last), vae)
    world_svd.save_svd(out / "svd", world_svd.components(), world_svd.vae_model())
    return out


def bench_script(name: str) -> Any:
    """bench/<name>.py as a module (bench/ is scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    yield bench_script("world_video_quality")
    del sys.modules["world_video_quality"]


@pytest.mark.parametrize("n", [1, 3])
def test_connect_finds_as_many_scenes_as_asked_at_the_trained_length(bench, n):
    # 17 frames: most first clips carry their thing out of frame; one scene asked for once found none to bridge
    cases = bench.connect_cases(n, 17)
    assert len(cases) == n
    assert [c[1].tobytes() for c in cases] == [c[1].tobytes() for c in bench.connect_cases(3, 17)[:n]]


def test_the_bench_runs_every_task_and_the_detectors_pass_the_truth_and_fail_noise(weights, bench, tmp_path):
    out = tmp_path / "r.json"
    results = bench.main(["--weights", str(weights), "--n", "1", "--steps", "1", "--frames", "5", "--svd-frames", "4",
                          "--extensions", "2", "--keyframe-steps", "1", "--json", str(out),
                          "--strips", str(tmp_path / "strips")])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    for task in ("image_to_video", "text_to_video", "svd", "connect", "extend", "extend_svd"):
        assert results[task]["n"] == 1, task
    for task in ("image_to_video", "svd"):  # the renderer's own videos of the same scenes pass
        assert results[task]["detector_on_renders"] == {"direction": 1.0, "kept": 1.0}
    assert results["connect"]["detector_on_renders"] == {"glide_joins": 1.0, "cross_fade_joins": 0.0}
    # random weights make noise, and noise neither moves a thing its way nor carries it from clip to clip
    assert results["image_to_video"]["direction"] == results["text_to_video"]["direction"] == 0.0
    assert results["connect"]["caption"]["joins"] == results["connect"]["default_prompt"]["joins"] == 0.0
    assert 0 <= results["extend"]["kept_at_end"] <= 1
    # the ceiling: the renderer's clips through the (random) Wan VAE and back keep no thing in any frame
    assert (results["vae"]["n"], results["vae"]["kept"], results["vae"]["frames_kept"]) == (1, 0.0, 0.0)
    assert Image.open(tmp_path / "strips" / "vae_round_trip.png").size == (5 * 66, 66)
    assert Image.open(tmp_path / "strips" / "image_to_video.png").size == (5 * 66, 66)
    assert Image.open(tmp_path / "strips" / "connect_caption.png").size == ((5 + 2) * 66, 66)
    assert "background" in (tmp_path / "strips" / "connect_caption.txt").read_text()


@pytest.mark.usefixtures("own_resident_models")
def test_the_bench_makes_the_very_video_the_image_to_video_agent_makes(weights, bench, put):
    from mora.engine.cache.media import image_blob
    from mora.nodes.decode_video import decode
    from mora.nodes.image_to_video import AGENT
    from mora.nodes.video_latent import read_latent

    s, frames = clip("a red circle moving right on a white background")
    text = captions.caption(s)
    ref = {"source": "path", "name": str(weights / "wan_i2v"), "revision": None, "dtype": "float32", "variant": None}
    ctx = FakeContext(model=ref, seed=7)
    given = {"steps": 2, "width": 64, "height": 64, "frames": 5}
    out = AGENT.run(ctx, {"image": put(image_blob(Image.fromarray(frames[0]))),
                          "prompt": put(Blob(PortType.TEXT, "txt", text.encode()))}, params_of(AGENT, **given))
    model = bench.load(weights / "wan_i2v", AGENT, "cpu", **given)
    latents, _ = read_latent(put(out["latent"]))
    video = model.video(frames[0], text, 7)
    assert video.shape == (5, 64, 64, 3)
    np.testing.assert_array_equal(video, decode(model.pipe, "wan", latents, 5, 8)[0])


@pytest.mark.parametrize(("args", "named"), [
    (["--frames", "6"], "--frames: 6 is not 4k+1"), (["--frames", "-3"], "--frames: must be >= 2, got -3"),
    (["--n", "0"], "--n: 0 is not at least 1"), (["--steps", "0"], "--steps: must be >= 1"),
    (["--svd-frames", "1"], "--svd-frames: must be >= 2"), (["--guidance", "nan"], "--guidance: must be a finite"),
    (["--keyframe-steps", "-1"], "--keyframe-steps: must be >= 1"), (["--device", "banana"], "not a torch device"),
    (["--json", "/nonexistent/results.json"], "--json: /nonexistent/results.json: folder /nonexistent does not exist"),
    (["--vae", "/nonexistent"], "--vae /nonexistent: no such folder"), (["--only", "svd"], "holds no pipeline"),
    (["--strips", ""], "--strips: an empty path")])
def test_the_bench_refuses_bad_arguments_and_an_empty_weights_folder_with_exit_2(bench, tmp_path, capsys, args, named):
    with pytest.raises(SystemExit) as stop:
        bench.main(["--weights", str(tmp_path), *args])
    assert stop.value.code == 2
    assert named in capsys.readouterr().err


@pytest.fixture(scope="module")
def cache_bench(bench):
    yield bench_script("step_cache_quality")
    del sys.modules["step_cache_quality"]


@pytest.mark.usefixtures("own_resident_models")
def test_the_step_cache_bench_compares_each_cache_with_the_uncached_video(weights, cache_bench, tmp_path):
    out = tmp_path / "c.json"
    results = cache_bench.main(["--weights", str(weights / "wan_i2v"), "--n", "1", "--steps", "6", "--frames", "5",
                                "--setting", "first_block:1.0", "--setting", "taylorseer:2", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    none, first, seer = (results["settings"][k] for k in ("none", "first_block:1", "taylorseer:2"))
    assert none["skipped"] == 0.0 and "psnr_db" not in none
    assert first["skipped"] == pytest.approx(5 / 6, abs=1e-4)  # threshold 1: every step after the first reuses the blocks
    assert seer["skipped"] == pytest.approx(2 / 6, abs=1e-4)  # 3 warm-up steps, then every other step predicted
    for cached in (first, seer):  # skipping changes the video, so it is compared with the uncached one
        assert cached["psnr_db"] < 100 and cached["ssim"] < 1


@pytest.mark.parametrize(("setting", "named"), [("first_block:2", "must be <= 1"), ("taylorseer:0", "must be >= 1"),
                                                ("fast:1", "expected first_block:THRESHOLD"), ("first_block", "expected")])
def test_the_step_cache_bench_refuses_settings_the_agent_would(cache_bench, weights, capsys, setting, named):
    with pytest.raises(SystemExit) as stop:
        cache_bench.main(["--weights", str(weights / "wan_i2v"), "--setting", setting])
    assert stop.value.code == 2
    assert named in capsys.readouterr().err


@pytest.fixture(scope="module")
def levers_bench(bench):
    yield bench_script("wan_levers_quality")
    del sys.modules["wan_levers_quality"]


@pytest.mark.usefixtures("own_resident_models")
def test_the_levers_bench_compares_each_lever_with_bfloat16_and_skips_what_cannot_run(weights, levers_bench, tmp_path):
    out = tmp_path / "l.json"
    results = levers_bench.main(["--weights", str(weights / "wan_i2v"), "--n", "1", "--steps", "3", "--frames", "5",
                                 "--variant", "float32", "--variant", "fa4", "--variant", "fp8", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    bf16, full, fa4, fp8 = (results["variants"][k] for k in ("bf16", "float32", "fa4", "fp8"))
    assert "psnr_db" not in bf16 and set(bf16) == {"direction", "kept"}
    assert 0 < full["latent_rel_error"] < 0.5 and full["psnr_db"] < 100  # bfloat16 rounds: the two differ, a little
    assert "flash-attn-4" in fa4["skipped"] or "CUDA devices" in fa4["skipped"]
    assert "compute capability >= 8.9" in fp8["skipped"]


def test_the_levers_bench_refuses_an_unknown_lever(levers_bench, weights, capsys):
    with pytest.raises(SystemExit) as stop:
        levers_bench.main(["--weights", str(weights / "wan_i2v"), "--variant", "fp4"])
    assert stop.value.code == 2
    assert "--variant: invalid choice: 'fp4'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        levers_bench.main(["--weights", str(weights / "wan_i2v"), "--variant", "compile", "--variant", "fp8_compile"])
    assert stop.value.code == 2
    assert "one compiled variant a process" in capsys.readouterr().err
