"""Video agents on tiny, seeded, random-weight pipelines (SVD, Wan I2V, Wan FLF2V) on CPU.

The pipelines are real diffusers classes built by mora.nodes.zoo.video_models into a temporary
models folder and loaded with `DiffusionPipeline.from_pretrained`, as in a real run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FakeContext, params_of, tiny_ref

from mora.engine.cache.artifacts import Blob
from mora.engine.cache.media import frames_blob, image_blob, read_frames
from mora.engine.ports import PortType

pytestmark = pytest.mark.usefixtures("tiny_models", "own_resident_models")

pytest.importorskip("diffusers")


def gradient(width: int, height: int, shift: int = 0):
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 7 + shift) % 256, (y * 5) % 256, ((x + y) * 3 + shift) % 256], -1).astype(np.uint8)
    return Image.fromarray(rgb)


def solid_video(colour: tuple[int, int, int], frames: int = 4, size: int = 32) -> Blob:
    return frames_blob(np.broadcast_to(np.array(colour, np.uint8), (frames, size, size, 3)).copy(), fps=8)


def run_i2v(put, model: str, seed: int = 0, prompt: str | None = None, image=None, last=None, **params: Any):
    from mora.nodes.image_to_video import AGENT

    ctx = FakeContext(model=tiny_ref(model), seed=seed)
    inputs = {"image": put(image_blob(image or gradient(32, 32)))}
    if prompt is not None:
        inputs["prompt"] = put(Blob(PortType.TEXT, "txt", prompt.encode()))
    if last is not None:
        inputs["last_image"] = put(image_blob(last))
    out = AGENT.run(ctx, inputs, params_of(AGENT, **{"steps": 2, "width": 32, "height": 32, **params}))
    return out, ctx


def latent_of(blob: Blob):
    from safetensors.torch import load

    return load(blob.data)["latents"]


def metadata_of(blob: Blob, tmp_path: Path) -> dict[str, str]:
    from safetensors import safe_open

    path = tmp_path / "meta.safetensors"
    path.write_bytes(blob.data)
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["mora"])


def decode(put, latent: Blob, **params: Any):
    from mora.nodes.decode_video import AGENT

    ctx = FakeContext()
    out = AGENT.run(ctx, {"latent": put(latent)}, params_of(AGENT, **params))
    assert out["video"].kind == PortType.VIDEO
    return read_frames(put(out["video"]).path), ctx


def test_modules_import_without_torch():
    code = ("import sys; import mora.nodes.image_to_video, mora.nodes.connect_videos, mora.nodes.decode_video, "
            "mora.nodes.video_latent, mora.nodes.zoo.video_models; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_param_bounds():
    from mora.nodes.connect_videos import AGENT as CONNECT
    from mora.nodes.decode_video import AGENT as DECODE
    from mora.nodes.image_to_video import AGENT as I2V

    assert I2V.param("frames").check(0) is not None
    assert I2V.param("frames").check(257) is not None
    assert "divisible by 8" in I2V.param("width").check(30)
    assert I2V.param("height").check(0) is None
    assert I2V.param("motion_bucket_id").check(1024) is not None
    assert I2V.param("noise_aug_strength").check(1.5) is not None
    assert I2V.param("seed").batchable and I2V.param("negative_prompt").batchable
    assert CONNECT.param("frames").check(1) is not None
    assert DECODE.param("decode_chunk_size").check(0) is not None
    assert DECODE.param("decode_chunk_size").check(65) is not None
    for agent in (I2V, CONNECT, DECODE):
        assert all(p.check(p.default) is None for p in agent.params), agent.type
    assert I2V.random and CONNECT.random and not DECODE.random
    assert (I2V.model_role, CONNECT.model_role, DECODE.model_role) == ("image_to_video", "connect", None)
    assert [p.name for p in I2V.outputs] == ["latent"] and [p.name for p in CONNECT.outputs] == ["transition"]


def test_svd_latent_decodes_to_requested_frames(put, tmp_path):
    from mora.nodes.models import resident_count

    out, ctx = run_i2v(put, "svd", frames=3, fps=6)
    latent = out["latent"]
    assert latent.kind == PortType.LATENT and latent.fmt == "safetensors"
    assert tuple(latent_of(latent).shape) == (1, 3, 4, 16, 16)  # tiny SVD VAE downsamples by 2
    meta = metadata_of(latent, tmp_path)
    assert {k: meta[k] for k in ("family", "source", "name", "dtype", "num_frames", "height", "width")} == {
        "family": "svd", "source": "tiny", "name": "svd", "dtype": "float32", "num_frames": "3",
        "height": "32", "width": "32"}
    assert ctx.loads == ["tiny:svd"] and ctx.steps == 2

    video, dctx = decode(put, latent)
    assert video.array.shape == (3, 32, 32, 3) and video.array.dtype == np.uint8
    assert video.fps == 6.0
    assert dctx.loads == []  # the decoder reuses the resident pipeline
    assert resident_count() == 1

    chunked, _ = decode(put, latent, decode_chunk_size=1, fps=24.0)
    assert chunked.count == 3 and chunked.fps == 24.0


def test_svd_is_deterministic_per_seed_and_loads_once(put):
    first, ctx1 = run_i2v(put, "svd", seed=7, frames=3)
    again, ctx2 = run_i2v(put, "svd", seed=7, frames=3)
    other, ctx3 = run_i2v(put, "svd", seed=8, frames=3)
    assert first["latent"].data == again["latent"].data
    assert first["latent"].data != other["latent"].data
    assert ctx1.loads + ctx2.loads + ctx3.loads in ([], ["tiny:svd"])  # at most one load in the process


def test_svd_resizes_input_and_defaults_to_image_size(put, tmp_path):
    out, _ = run_i2v(put, "svd", frames=2, image=gradient(40, 36), width=0, height=0)
    meta = metadata_of(out["latent"], tmp_path)
    assert (meta["width"], meta["height"]) == ("40", "32")
    video, _ = decode(put, out["latent"])
    assert video.array.shape == (2, 32, 40, 3)
    out, _ = run_i2v(put, "svd", frames=2, image=gradient(50, 70), width=16, height=24)
    assert tuple(latent_of(out["latent"]).shape) == (1, 2, 4, 12, 8)


def test_svd_rejects_last_image_and_bad_guidance(put):
    with pytest.raises(ValueError, match="last_image"):
        run_i2v(put, "svd", frames=2, last=gradient(32, 32))
    with pytest.raises(ValueError, match="max_guidance"):
        run_i2v(put, "svd", frames=2, min_guidance=3.0, max_guidance=1.0)


def test_wan_i2v_latent_and_decode(put, tmp_path):
    out, ctx = run_i2v(put, "wan_i2v", prompt="a red kite over the sea", frames=5, guidance=4.0)
    latent = out["latent"]
    assert tuple(latent_of(latent).shape) == (1, 16, 2, 4, 4)  # 5 frames -> 2 latent frames, 32 px -> 4
    assert metadata_of(latent, tmp_path)["family"] == "wan"
    assert ctx.loads == ["tiny:wan_i2v"]
    video, dctx = decode(put, latent)
    assert video.array.shape == (5, 32, 32, 3) and video.fps == 7.0 and dctx.loads == []

    same, _ = run_i2v(put, "wan_i2v", prompt="a red kite over the sea", frames=5, guidance=4.0)
    other_prompt, _ = run_i2v(put, "wan_i2v", prompt="a dog in the snow", frames=5, guidance=4.0)
    other_seed, _ = run_i2v(put, "wan_i2v", seed=1, prompt="a red kite over the sea", frames=5, guidance=4.0)
    assert same["latent"].data == latent.data
    assert other_prompt["latent"].data != latent.data and other_seed["latent"].data != latent.data


def test_wan_checks(put):
    with pytest.raises(ValueError, match=r"4k\+1.*6"):
        run_i2v(put, "wan_i2v", frames=6)
    with pytest.raises(ValueError, match="divisible by 16.*24"):
        run_i2v(put, "wan_i2v", frames=5, width=24)
    with pytest.raises(ValueError, match="first-last-frame"):
        run_i2v(put, "wan_i2v", frames=5, last=gradient(32, 32))
    with pytest.raises(ValueError, match="needs `last_image`"):
        run_i2v(put, "wan_flf", frames=5)


def test_wan_flf_image_to_video_with_last_image(put):
    out, _ = run_i2v(put, "wan_flf", frames=5, last=gradient(32, 32, shift=90))
    video, _ = decode(put, out["latent"], vae_tiling=True)
    assert video.count == 5


def connect(put, first: Blob, second: Blob, seed: int = 0, model: str = "wan_flf", **params: Any):
    from mora.nodes.connect_videos import AGENT

    ctx = FakeContext(model=tiny_ref(model), seed=seed)
    inputs = {"first": put(first), "second": put(second)}
    out = AGENT.run(ctx, inputs, params_of(AGENT, **{"frames": 5, "steps": 2, **params}))
    return out, ctx


def test_connect_videos_generates_a_transition_from_both_ends(put, monkeypatch):
    from diffusers import WanImageToVideoPipeline

    calls: list[dict[str, Any]] = []
    original = WanImageToVideoPipeline.__call__

    def spy(self, image, **kwargs):
        calls.append({"image": image, **kwargs})
        return original(self, image, **kwargs)

    monkeypatch.setattr(WanImageToVideoPipeline, "__call__", spy)
    red, blue, green = solid_video((220, 20, 20)), solid_video((20, 20, 220)), solid_video((20, 200, 20))
    out, ctx = connect(put, red, blue)
    transition = out["transition"]
    assert transition.kind == PortType.LATENT
    assert tuple(latent_of(transition).shape) == (1, 16, 2, 4, 4)
    assert ctx.steps == 2
    (call,) = calls
    assert call["prompt"] == "smooth transition"
    assert np.asarray(call["image"]).reshape(-1, 3)[0].tolist() == [220, 20, 20]
    assert np.asarray(call["last_image"]).reshape(-1, 3)[0].tolist() == [20, 20, 220]

    video, _ = decode(put, transition)
    assert video.array.shape == (5, 32, 32, 3) and video.fps == 8.0
    # A cross-fade would be a pixel blend of the two boundary frames; the model's frames are not.
    weights = np.linspace(0, 1, 5)[:, None, None, None]
    fade = (1 - weights) * np.array([220, 20, 20]) + weights * np.array([20, 20, 220])
    assert np.abs(video.array.astype(float) - fade).mean() > 5

    again, _ = connect(put, red, blue)
    to_green, _ = connect(put, red, green)
    reseeded, _ = connect(put, red, blue, seed=1)
    assert again["transition"].data == transition.data
    assert to_green["transition"].data != transition.data
    assert reseeded["transition"].data != transition.data
    assert decode(put, transition)[0].array.tobytes() == video.array.tobytes()  # decoding is deterministic too


def test_connect_videos_needs_a_first_last_frame_model(put):
    red, blue = solid_video((220, 20, 20)), solid_video((20, 20, 220))
    with pytest.raises(ValueError, match="needs a Wan first-last-frame model"):
        connect(put, red, blue, model="svd")
    with pytest.raises(ValueError, match="without first-last-frame"):
        connect(put, red, blue, model="wan_i2v")
    with pytest.raises(ValueError, match=r"4k\+1"):
        connect(put, red, blue, frames=4)


def test_decode_rejects_other_latents(put):
    import torch
    from safetensors.torch import save

    from mora.nodes.decode_video import AGENT

    blob = Blob(PortType.LATENT, "safetensors", save({"latents": torch.zeros(1, 4, 2, 2)}))
    with pytest.raises(ValueError, match="not a video latent"):
        AGENT.run(FakeContext(), {"latent": put(blob)}, AGENT.resolve_params({}))
