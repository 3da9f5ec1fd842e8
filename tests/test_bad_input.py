"""Bad graph inputs and input files fail before anything runs, naming node and field, writing nothing."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mora.engine.cache.store import Store
from mora.engine.errors import GraphError
from mora.engine.frontends import api

IMAGE_GRAPH = {
    "inputs": {"picture": {"type": "image"}},
    "nodes": {"fit": {"agent": "image_resize", "in": {"image": {"input": "picture"}}, "params": {"width": 16,
                                                                                                 "height": 16}}},
    "outputs": {"image": {"from": "fit.image"}},
}
VIDEO_GRAPH = {
    "inputs": {"clip": {"type": "video"}},
    "nodes": {"pick": {"agent": "frame_pick", "in": {"video": {"input": "clip"}}}},
    "outputs": {"image": {"from": "pick.image"}},
}


def png_bytes(size: tuple[int, int] = (24, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 10)).save(buf, format="PNG")
    return buf.getvalue()


def frame_store(frames: np.ndarray) -> bytes:
    from safetensors.numpy import save

    return save({"frames": frames}, metadata={"fps": "8.0"})


def audio_only_mp4(path: Path) -> None:
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


def run_with_input(graph: dict, name: str, value: str, write_graph, registry, cache_dir: Path, tmp_path: Path):
    path = write_graph(graph)
    plan = api.load_plan(path, {name: value}, registry=registry)
    store = Store(cache_dir)
    try:
        return api.run(plan, store=store, preset={"name": "t"}, run_dir=tmp_path / "run",
                       runtime={"name": "local", "device": "cpu"}, quiet=True)
    finally:
        store.close()


def assert_nothing_written(cache_dir: Path, tmp_path: Path) -> None:
    assert [p for p in (cache_dir / "objects").rglob("*") if p.is_file()] == []
    assert [p for p in (cache_dir / "tmp").iterdir()] == []
    store = Store(cache_dir)
    assert len(store.index) == 0
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("make, expected", [
    (lambda p: None, "image file does not exist"),
    (lambda p: p.write_bytes(b""), "image file is empty"),
    (lambda p: p.write_text("definitely not a PNG\n"), "not a readable image"),
    (lambda p: p.write_bytes(png_bytes()[:60]), "not a readable image"),
    (lambda p: p.mkdir(), "image path is a directory, not a regular file"),
], ids=["missing", "empty", "text", "truncated", "directory"])
def test_bad_image_file(write_graph, registry, cache_dir, tmp_path, make, expected):
    bad = tmp_path / "input.png"
    make(bad)
    with pytest.raises(GraphError) as info:
        run_with_input(IMAGE_GRAPH, "picture", str(bad), write_graph, registry, cache_dir, tmp_path)
    [p] = info.value.problems
    assert (p.node, p.field) == ("fit", "in.image")
    assert str(bad) in p.message and expected in p.message
    assert "<_io." not in p.message and " at 0x" not in p.message  # the user's file, not a Python object's repr
    assert_nothing_written(cache_dir, tmp_path)


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.with_suffix(".mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 200), "not a readable video"),
    (lambda p: (p.with_suffix(".mp4")).write_bytes(b""), "video file is empty"),
    (lambda p: audio_only_mp4(p.with_suffix(".mp4")), "has no video stream"),
    (lambda p: (p.with_suffix(".safetensors")).write_bytes(b"{not a header"), "not a readable frame store"),
    (lambda p: (p.with_suffix(".safetensors")).write_bytes(frame_store(np.zeros((0, 8, 8, 3), np.uint8))),
     "clip.safetensors: the video has zero frames"),
], ids=["garbage-mp4", "empty-mp4", "audio-only", "bad-frame-store", "zero-frames"])
def test_bad_video_file(write_graph, registry, cache_dir, tmp_path, make, expected):
    make(tmp_path / "clip")
    bad = next(tmp_path.glob("clip.*"))
    with pytest.raises(GraphError) as info:
        run_with_input(VIDEO_GRAPH, "clip", str(bad), write_graph, registry, cache_dir, tmp_path)
    [p] = info.value.problems
    assert (p.node, p.field) == ("pick", "in.video")
    assert expected in p.message
    assert_nothing_written(cache_dir, tmp_path)


def test_huge_image_is_refused_before_decoding(write_graph, registry, cache_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("mora.engine.cache.media.MAX_INPUT_PIXELS", 24 * 20 - 1)
    bad = tmp_path / "input.png"
    bad.write_bytes(png_bytes((24, 20)))
    with pytest.raises(GraphError) as info:
        run_with_input(IMAGE_GRAPH, "picture", str(bad), write_graph, registry, cache_dir, tmp_path)
    [p] = info.value.problems
    assert (p.node, p.field) == ("fit", "in.image")
    assert "image is 24x20, larger than the 479 pixels allowed" in p.message
    assert_nothing_written(cache_dir, tmp_path)


@pytest.mark.parametrize("suffix", [".mp4", ".safetensors"])
def test_overlong_video_is_refused(write_graph, registry, cache_dir, tmp_path, monkeypatch, suffix):
    from mora.engine.cache.media import Frames, write_mp4

    monkeypatch.setattr("mora.engine.cache.media.MAX_INPUT_FRAMES", 2)
    bad = tmp_path / f"clip{suffix}"
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    if suffix == ".mp4":
        write_mp4(Frames(frames, 8.0), bad)
    else:
        bad.write_bytes(frame_store(frames))
    with pytest.raises(GraphError) as info:
        run_with_input(VIDEO_GRAPH, "clip", str(bad), write_graph, registry, cache_dir, tmp_path)
    [p] = info.value.problems
    assert (p.node, p.field) == ("pick", "in.video")
    assert "more than 2 frames; trim the video first" in p.message
    assert_nothing_written(cache_dir, tmp_path)


def test_model_path_that_does_not_exist_fails_before_any_load(write_graph, cache_dir, tmp_path):
    from mora.engine.graph.registry import default_registry

    path = write_graph({"nodes": {"draw": {"agent": "text_to_image", "in": {"prompt": "a fox"},
                                           "params": {"model": f"path:{tmp_path / 'no-such-model'}", "seed": 1}}},
                        "outputs": {"image": {"from": "draw.image"}}})
    plan = api.load_plan(path, {}, registry=default_registry())
    store = Store(cache_dir)
    with pytest.raises(GraphError) as info:
        api.run(plan, store=store, preset={"name": "t", "roles": {}}, run_dir=tmp_path / "run",
                runtime={"name": "local", "device": "cpu"}, quiet=True)
    store.close()
    [p] = info.value.problems
    assert p.node == "draw" and p.field == "params.model"
    assert f"model path '{tmp_path / 'no-such-model'}' does not exist" in p.message
    assert_nothing_written(cache_dir, tmp_path)


def test_good_input_files_run(write_graph, registry, cache_dir, tmp_path):
    picture = tmp_path / "ok.png"
    picture.write_bytes(png_bytes())
    outcome = run_with_input(IMAGE_GRAPH, "picture", str(picture), write_graph, registry, cache_dir, tmp_path)
    assert outcome.manifest["ok"] is True
    with Image.open(outcome.run_dir / "image.png") as img:
        assert img.size == (16, 16)
    clip = tmp_path / "ok.safetensors"
    clip.write_bytes(frame_store(np.full((3, 8, 8, 3), 9, np.uint8)))
    outcome = run_with_input(VIDEO_GRAPH, "clip", str(clip), write_graph, registry, cache_dir, tmp_path / "v")
    with Image.open(outcome.run_dir / "image.png") as img:
        assert img.size == (8, 8) and img.getpixel((0, 0)) == (9, 9, 9)


def test_one_bad_file_among_good_ones_writes_nothing(write_graph, registry, cache_dir, tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(png_bytes())
    bad.write_bytes(b"junk")
    path = write_graph({
        "inputs": {"a": {"type": "image"}, "b": {"type": "image"}, "word": {"type": "text", "default": "hi"}},
        "nodes": {"fa": {"agent": "image_resize", "in": {"image": {"input": "a"}}},
                  "fb": {"agent": "image_resize", "in": {"image": {"input": "b"}}},
                  "t": {"agent": "text_template", "in": {"text": {"input": "word"}}}},
        "outputs": {"a": {"from": "fa.image"}, "b": {"from": "fb.image"}, "t": {"from": "t.text"}}})
    plan = api.load_plan(path, {"a": str(good), "b": str(bad)}, registry=registry)
    with pytest.raises(GraphError) as info:
        api.run(plan, store=Store(cache_dir), preset={"name": "t"}, run_dir=tmp_path / "run",
                runtime={"device": "cpu"}, quiet=True)
    assert [(p.node, p.field) for p in info.value.problems] == [("fb", "in.image")]
    assert_nothing_written(cache_dir, tmp_path)


def test_every_bad_file_is_reported_at_once(write_graph, registry, cache_dir, tmp_path):
    path = write_graph({
        "inputs": {"a": {"type": "image"}, "v": {"type": "video"}},
        "nodes": {"fa": {"agent": "image_resize", "in": {"image": {"input": "a"}}},
                  "pick": {"agent": "frame_pick", "in": {"video": {"input": "v"}}}},
        "outputs": {"a": {"from": "fa.image"}, "b": {"from": "pick.image"}}})
    plan = api.load_plan(path, {"a": str(tmp_path / "none.png"), "v": str(tmp_path / "none.mp4")}, registry=registry)
    with pytest.raises(GraphError) as info:
        api.run(plan, store=Store(cache_dir), preset={"name": "t"}, run_dir=tmp_path / "run",
                runtime={"device": "cpu"}, quiet=True)
    assert sorted((p.node, p.field) for p in info.value.problems) == [("fa", "in.image"), ("pick", "in.video")]
    assert all(p.file == str(path) for p in info.value.problems)


# -- graph input values -------------------------------------------------------------------------

INPUTS_GRAPH = {
    "inputs": {"prompt": {"type": "text"}, "n": {"type": "number", "default": 2}},
    "nodes": {"t": {"agent": "text_template", "in": {"text": {"input": "prompt"}}},
              "s": {"agent": "t_add", "in": {"a": {"input": "n"}, "b": 1}}},
    "outputs": {"t": {"from": "t.text"}, "s": {"from": "s.value"}},
}


def test_unknown_graph_input(write_graph, graph_problems):
    [p] = graph_problems(write_graph(INPUTS_GRAPH), {"prompt": "x", "promt": "typo"})
    assert (p.field, p.message) == ("inputs.promt", ("unknown graph input 'promt'; inputs are ['n', 'prompt']; "
                                                    "did you mean prompt?"))


def test_misspelled_names_suggest_the_closest_in_every_place(write_graph, graph_problems):
    graph = {**INPUTS_GRAPH, "nodes": {**INPUTS_GRAPH["nodes"],
                                       "s": {"agent": "t_add", "in": {"a": {"input": "nn"}, "b": {"from": "tt.txt"}}}}}
    messages = {p.message for p in graph_problems(write_graph(graph), {"prompt": "x"}, outputs=["ss"])}
    assert "link to unknown graph input 'nn'; inputs are ['n', 'prompt']; did you mean n?" in messages
    assert "link to unknown node 'tt'; did you mean t?" in messages
    assert "unknown output 'ss'; outputs are ['s', 't']; did you mean s?" in messages


def test_missing_required_graph_input(write_graph, graph_problems):
    path = write_graph(INPUTS_GRAPH)
    [p] = graph_problems(path)
    assert (p.file, p.field, p.line) == (str(path), "inputs.prompt", 2)
    assert p.message == "missing required graph input 'prompt' (text); set it with inputs.prompt=..."


@pytest.mark.parametrize("values, field, expected", [
    ({"prompt": 3}, "inputs.prompt", "expected text, got int 3"),
    ({"prompt": "x", "n": "two"}, "inputs.n", "expected a number, got str 'two'"),
    ({"prompt": "x", "n": float("nan")}, "inputs.n", "expected a finite number"),
    ({"prompt": "x", "n": True}, "inputs.n", "expected a number, got bool True"),
    ({"prompt": "x" * 100_001}, "inputs.prompt", "text is 100001 characters long"),
])
def test_graph_input_of_the_wrong_kind(write_graph, graph_problems, values, field, expected):
    [p] = graph_problems(write_graph(INPUTS_GRAPH), values)
    assert p.field == field and expected in p.message


def test_graph_inputs_override_defaults(write_graph, registry):
    plan = api.load_plan(write_graph(INPUTS_GRAPH), {"prompt": "x", "n": 5.0}, registry=registry)
    assert plan.nodes["s"].inputs["a"].value == 5 and type(plan.nodes["s"].inputs["a"].value) is int


def test_graph_input_link_to_undeclared_input(write_graph, graph_problems):
    path = write_graph({"nodes": {"t": {"agent": "text_template", "in": {"text": {"input": "prompt"}}}},
                        "outputs": {"t": {"from": "t.text"}}})
    [p] = graph_problems(path)
    assert (p.node, p.field) == ("t", "in.text")
    assert p.message == "link to unknown graph input 'prompt'; inputs are []"


def test_empty_path_for_a_file_input(write_graph, graph_problems):
    [p] = graph_problems(write_graph(VIDEO_GRAPH), {"clip": ""})
    assert p.field == "inputs.clip" and "expected a file path, got an empty string" in p.message


@pytest.mark.parametrize("graph, name, value, says", [
    (IMAGE_GRAPH, "picture", "bad\udcffname.png", "the file path 'bad\\udcffname.png' holds bytes that are not UTF-8"),
    (VIDEO_GRAPH, "clip", "\udcc3clip.mp4", "rename the file"),
    (INPUTS_GRAPH, "prompt", "a fox \udcff", "the text 'a fox \\udcff' holds bytes that are not UTF-8"),
])
def test_undecodable_bytes_from_the_command_line_are_refused_before_the_run(write_graph, graph_problems, graph, name,
                                                                             value, says):
    """Bytes the system could not decode reach Python as surrogate escapes: they ran, then the manifest failed."""
    [p] = graph_problems(write_graph(graph), {name: value})
    assert p.field == f"inputs.{name}" and says in p.message


def test_list_typed_graph_input_takes_a_list(write_graph, registry):
    path = write_graph({"inputs": {"clips": {"type": "list[video]"}},
                        "nodes": {"j": {"agent": "video_concat", "in": {"videos": {"input": "clips"}}}},
                        "outputs": {"out": {"from": "j.video"}}})
    plan = api.load_plan(path, {"clips": ["a.mp4", "b.mp4"]}, registry=registry)
    assert [s.value for s in plan.nodes["j"].inputs["videos"]] == ["a.mp4", "b.mp4"]


def test_list_bound_to_a_template_list_input(write_graph, registry):
    write_graph({"inputs": {"clips": {"type": "list[video]"}},
                 "nodes": {"j": {"agent": "video_concat", "in": {"videos": {"input": "clips"}}}},
                 "outputs": {"video": {"from": "j.video"}}}, "join.yaml")
    path = write_graph({"nodes": {"t": {"graph": "join", "in": {"clips": ["a.mp4", "b.mp4"]}}},
                        "outputs": {"out": {"from": "t.video"}}})
    plan = api.load_plan(path, {}, registry=registry)
    assert [s.value for s in plan.nodes["t/j"].inputs["videos"]] == [str(path.parent / "a.mp4"),
                                                                      str(path.parent / "b.mp4")]  # beside the file
