"""Input images and videos are read as the user sees them, within budgets, streaming, and once per run."""
from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mora.engine.cache import media
from mora.engine.cache.store import Store
from mora.engine.errors import GraphError, InputError
from mora.engine.frontends import api

RED = (255, 0, 0)


def png(image: Image.Image, path: Path, **kw) -> Path:
    image.save(path, **kw)
    return path


def exif_rotated(path: Path) -> Path:
    """A 4x2 image, red at its top-left, whose EXIF says: turn 90 degrees clockwise to display (orientation 6)."""
    image = Image.new("RGB", (4, 2), (0, 0, 255))
    image.putpixel((0, 0), RED)
    exif = Image.Exif()
    exif[0x0112] = 6
    return png(image, path.with_suffix(".png"), exif=exif)


def palette_with_transparency(path: Path) -> Path:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    return png(image, path.with_suffix(".png"), transparency=0)


def tiff_float(path: Path) -> Path:
    return png(Image.fromarray(np.full((2, 2), 0.5, np.float32), "F"), path.with_suffix(".tiff"))


def cmyk_jpeg(path: Path) -> Path:
    return png(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), path.with_suffix(".jpg"), quality=100)


@pytest.mark.parametrize("make, size, pixels", [
    (exif_rotated, (2, 4), {(1, 0): RED, (0, 0): (0, 0, 255), (1, 3): (0, 0, 255)}),
    (lambda p: png(Image.fromarray(np.full((2, 2), 32768, np.uint16)), p.with_suffix(".png")), (2, 2),
     {(0, 0): (128, 128, 128)}),
    (lambda p: png(Image.fromarray(np.full((2, 2), 65535, np.uint16)), p.with_suffix(".tiff")), (2, 2),
     {(1, 1): (255, 255, 255)}),
    (lambda p: png(Image.fromarray(np.full((2, 2), 1 << 30, np.int32), "I"), p.with_suffix(".tiff")), (2, 2),
     {(0, 0): (128, 128, 128)}),
    (tiff_float, (2, 2), {(0, 0): (128, 128, 128)}),
    (palette_with_transparency, (2, 1), {(0, 0): (255, 255, 255), (1, 0): RED}),
    (lambda p: png(Image.new("LA", (2, 2), (100, 0)), p.with_suffix(".png")), (2, 2), {(0, 0): (255, 255, 255)}),
    (lambda p: png(Image.new("RGBA", (2, 2), (255, 0, 0, 128)), p.with_suffix(".png")), (2, 2),
     {(0, 0): (255, 127, 127)}),
    (cmyk_jpeg, (8, 8), {(4, 4): (0, 255, 255)}),
    (lambda p: png(Image.new("1", (2, 2), 1), p.with_suffix(".png")), (2, 2), {(0, 0): (255, 255, 255)}),
    (lambda p: png(Image.new("L", (2, 2), 77), p.with_suffix(".png")), (2, 2), {(0, 0): (77, 77, 77)}),
], ids=["exif-orientation", "16-bit-png-mid-grey", "16-bit-tiff-white", "32-bit-tiff-mid-grey", "float-tiff",
        "palette-transparency", "LA-transparent", "RGBA-half", "CMYK", "bilevel", "L"])
def test_images_are_read_as_the_user_sees_them(tmp_path, make, size, pixels):
    image = media.load_image_file(make(tmp_path / "input"))
    assert image.mode == "RGB" and image.size == size
    for xy, colour in pixels.items():
        assert np.abs(np.subtract(image.getpixel(xy), colour)).max() <= 1, (xy, image.getpixel(xy), colour)


def clip(path: Path, frames: np.ndarray, rotation: int = 0, fps: int = 8) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "0"}
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def marked(count: int = 5, height: int = 32, width: int = 48) -> np.ndarray:
    """Grey frames with a white block at the top-left corner."""
    frames = np.full((count, height, width, 3), 60, np.uint8)
    frames[:, :8, :8] = 255
    return frames


@pytest.mark.parametrize("rotation, corner", [(-90, (0, -1)), (90, (-1, 0)), (180, (-1, -1)), (0, (0, 0))],
                         ids=["phone-portrait-cw", "ccw", "upside-down", "none"])
def test_video_rotation_metadata_is_honoured_with_the_exact_frame_count(tmp_path, rotation, corner):
    frames = media.load_video_file(clip(tmp_path / "in.mp4", marked(), rotation)).array
    assert frames.shape == ((5, 48, 32, 3) if rotation % 180 else (5, 32, 48, 3))
    y, x = corner
    assert frames[:, y, x].min() > 230  # the white corner went where a player shows it
    assert frames[:, frames.shape[1] // 2, frames.shape[2] // 2].max() < 80


def test_rotated_video_runs_upright_through_a_graph(write_graph, registry, cache_dir, tmp_path):
    path = write_graph({"inputs": {"clip": {"type": "video"}},
                        "nodes": {"pick": {"agent": "frame_pick", "in": {"video": {"input": "clip"}}}},
                        "outputs": {"image": {"from": "pick.image"}}})
    plan = api.load_plan(path, {"clip": str(clip(tmp_path / "in.mp4", marked(), -90))}, registry=registry)
    outcome = api.run(plan, store=Store(cache_dir), preset={"name": "t"}, run_dir=tmp_path / "run",
                      runtime={"device": "cpu"}, quiet=True)
    with Image.open(outcome.run_dir / "image.png") as image:
        assert image.size == (32, 48) and min(image.getpixel((31, 0))) > 230


@pytest.mark.parametrize("limit, expected", [
    ("MAX_DECODED_BYTES", ("video is 48x32, about 5 frames: 22.5 KiB decoded, more than the 20.0 KiB allowed; trim "
                          "or scale it down first")),
    ("MAX_INPUT_PIXELS", "video frames are 48x32, larger than the 1535 pixels allowed"),
    ("MAX_INPUT_FRAMES", "more than 4 frames; trim the video first"),
])
def test_video_budgets_are_checked_from_the_header(tmp_path, monkeypatch, limit, expected):
    monkeypatch.setattr(f"mora.engine.cache.media.{limit}", {"MAX_DECODED_BYTES": 20 << 10,
                                                       "MAX_INPUT_PIXELS": 48 * 32 - 1, "MAX_INPUT_FRAMES": 4}[limit])
    path = clip(tmp_path / "in.mp4", marked())
    decoded = []
    monkeypatch.setattr("mora.engine.cache.media.write_frame_store", lambda *a: decoded.append(a))
    with pytest.raises(InputError) as info:
        media.ingest_video_file(path, io.BytesIO())
    assert str(info.value) == f"{path}: {expected}"
    assert decoded == []  # refused before a frame was decoded


def test_budgets_hold_while_decoding_when_the_header_understates_the_length(tmp_path, monkeypatch):
    monkeypatch.setattr("mora.engine.cache.media.MAX_INPUT_FRAMES", 4)
    header_check = media._check_budget
    monkeypatch.setattr(media, "_check_budget",
                        lambda path, frames, h, w, exact: header_check(path, frames if exact else 1, h, w, exact))
    with pytest.raises(InputError, match="more than 4 frames; trim the video first"):
        media.ingest_video_file(clip(tmp_path / "in.mp4", marked()), io.BytesIO())


def test_frame_store_budget_is_checked_from_its_header(tmp_path, monkeypatch):
    monkeypatch.setattr("mora.engine.cache.media.MAX_DECODED_BYTES", 500)
    path = tmp_path / "in.safetensors"
    path.write_bytes(media.frames_blob(np.zeros((3, 8, 8, 3), np.uint8), 8).data)
    with pytest.raises(InputError, match="video is 8x8, 3 frames: 576 bytes decoded, more than the 500 bytes allowed"):
        media.ingest_video_file(path, io.BytesIO())


def test_ingesting_a_video_holds_about_one_frame_in_memory(tmp_path):
    """32 frames of 256x256 decode to 6 MiB; streaming into the frame store keeps a few frames at most."""
    rng = np.random.default_rng(0)
    path = clip(tmp_path / "in.mp4", rng.integers(0, 255, (32, 256, 256, 3), np.uint8))
    with open(tmp_path / "store.safetensors", "w+b") as dest:
        tracemalloc.start()
        media.ingest_video_file(path, dest)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4 * 256 * 256 * 3, f"peak {peak} bytes"
    frames = media.read_frames(tmp_path / "store.safetensors")
    assert frames.count == 32 and frames.fps == 8.0


def stored_clip(tmp_path: Path, frames: np.ndarray):
    from mora.engine.cache.artifacts import ArtifactRef
    from mora.engine.ports import PortType

    path = tmp_path / "clip.safetensors"
    blob = media.frames_blob(frames, 8)
    path.write_bytes(blob.data)
    return ArtifactRef(blob.digest, PortType.VIDEO, "frames", path.stat().st_size, path)


def peak_bytes(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_frame_pick_reads_only_the_frame_it_picks(tmp_path):
    from mora.nodes.frame_pick import AGENT

    frames = np.zeros((64, 256, 256, 3), np.uint8)
    frames[-1] = 200
    ref = stored_clip(tmp_path, frames)
    out, peak = peak_bytes(lambda: AGENT.run(None, {"video": ref}, AGENT.resolve_params({})))
    assert peak < 4 * 256 * 256 * 3, f"peak {peak} bytes for a 12 MiB clip"
    assert Image.open(io.BytesIO(out["image"].data)).getpixel((5, 5)) == (200, 200, 200)


def test_one_bad_input_used_by_four_nodes_is_decoded_and_reported_once(write_graph, registry, cache_dir, tmp_path,
                                                                       monkeypatch):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    calls = []
    real = media.load_image_file
    monkeypatch.setattr(media, "load_image_file", lambda p: calls.append(p) or real(p))
    nodes = {f"n{i}": {"agent": "image_resize", "in": {"image": {"input": "picture" if i < 2 else "again"}}}
             for i in range(4)}
    path = write_graph({"inputs": {"picture": {"type": "image"}, "again": {"type": "image"}}, "nodes": nodes,
                        "outputs": {f"o{i}": {"from": f"n{i}.image"} for i in range(4)}})
    monkeypatch.chdir(tmp_path)
    plan = api.load_plan(path, {"picture": str(bad), "again": "./bad.png"}, registry=registry)
    with pytest.raises(GraphError) as info:
        api.run(plan, store=Store(cache_dir), preset={"name": "t"}, run_dir=tmp_path / "run",
                runtime={"device": "cpu"}, quiet=True)
    [problem] = info.value.problems
    assert (problem.node, problem.field) == ("n0", "in.image")
    assert problem.message.startswith(f"{bad}: not a readable image")
    assert problem.message.endswith("(also the input of n1, n2, n3)")
    assert len(calls) == 1


def test_a_good_video_used_twice_is_stored_once_and_staging_is_cleaned(write_graph, registry, cache_dir, tmp_path):
    video = clip(tmp_path / "in.mp4", marked())
    path = write_graph({"inputs": {"a": {"type": "video"}, "b": {"type": "video"}},
                        "nodes": {"first": {"agent": "frame_pick", "in": {"video": {"input": "a"}},
                                            "params": {"index": 0}},
                                  "last": {"agent": "frame_pick", "in": {"video": {"input": "b"}}}},
                        "outputs": {"first": {"from": "first.image"}, "last": {"from": "last.image"}}})
    plan = api.load_plan(path, {"a": str(video), "b": str(tmp_path / "." / "in.mp4")}, registry=registry)
    api.run(plan, store=Store(cache_dir), preset={"name": "t"}, run_dir=tmp_path / "run", runtime={"device": "cpu"},
            quiet=True)
    assert len(list((cache_dir / "objects").rglob("*.safetensors"))) == 1
    assert list((cache_dir / "tmp").iterdir()) == []
