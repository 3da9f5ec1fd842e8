"""The prompt, text-to-image, instruction-edit and img2img agents on their tiny presets (CPU)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.artifacts import ArtifactRef, Blob
from engine.errors import ModelNotFoundError
from engine.media import image_blob, text_blob
from engine.ports import PortType
from nodes import image_edit, image_to_image, prompt, text_to_image


@pytest.fixture(scope="module", autouse=True)
def models_dir(tmp_path_factory: pytest.TempPathFactory):
    from nodes.models import clear_resident

    mp = pytest.MonkeyPatch()
    mp.setenv("MORA_MODELS_DIR", str(tmp_path_factory.getbasetemp() / "models"))
    clear_resident()
    yield
    clear_resident()
    mp.undo()


@dataclass
class Ctx:
    model: dict[str, Any]
    seed: int = 0
    node_id: str = "test"
    device: str = "cpu"
    seeds: list[int] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)

    def progress(self, total: int, description: str):
        return lambda n=1: None

    def note_model_load(self, identity: str) -> None:
        self.loads.append(identity)


def tiny(name: str, **kw: Any) -> Ctx:
    return Ctx({"source": "tiny", "name": name, "revision": None, "dtype": "float32", "variant": None}, **kw)


@pytest.fixture
def put(tmp_path: Path):
    def put(blob: Blob) -> ArtifactRef:
        path = tmp_path / blob.digest
        path.write_bytes(blob.data)
        return ArtifactRef(blob.digest, blob.kind, blob.fmt, len(blob.data), path)

    return put


def params(agent: Any, **given: Any) -> dict[str, Any]:
    for name, value in given.items():
        assert agent.param(name).check(value) is None, (name, value)
    return agent.resolve_params(given)


def pixels(blob: Blob) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob.data)))


def test_prompt_template_mode_needs_no_model_and_keeps_the_style_cue(put):
    ctx = tiny("prompt_lm")
    out = prompt.run(ctx, {"prompt": put(text_blob("a fox")), "style": put(text_blob("in digital world style"))},
                     params(prompt.AGENT, mode="template"))["text"]
    assert out.kind == PortType.TEXT
    assert out.data.decode() == "a fox, highly detailed, cinematic lighting, in digital world style"
    assert ctx.loads == []


def test_prompt_llm_is_deterministic_per_seed_and_loads_once(put):
    ctx = tiny("prompt_lm", seed=1)
    p = params(prompt.AGENT, max_new_tokens=12, seed=1)
    first = prompt.run(ctx, {"prompt": put(text_blob("a fox"))}, p)["text"]
    again = prompt.run(ctx, {"prompt": put(text_blob("a fox"))}, p)["text"]
    other = prompt.run(tiny("prompt_lm", seed=2), {"prompt": put(text_blob("a fox"))},
                       params(prompt.AGENT, max_new_tokens=12))["text"]
    assert first.data == again.data
    assert first.data != other.data
    assert ctx.loads == ["tiny:prompt_lm"]
    styled = prompt.run(ctx, {"prompt": put(text_blob("a fox")), "style": put(text_blob("Minecraft"))}, p)["text"]
    assert styled.data.decode().endswith("Minecraft")


@pytest.mark.parametrize("text, message", [("  ", "empty"), ("x" * 5000, "at most 4000")])
def test_prompt_rejects_empty_and_absurdly_long_prompts(put, text, message):
    with pytest.raises(ValueError, match=message):
        prompt.run(tiny("prompt_lm"), {"prompt": put(text_blob(text))}, params(prompt.AGENT, mode="template"))


def test_text_to_image_size_determinism_and_single_load(put):
    ctx = tiny("sd", seed=3)
    p = params(text_to_image.AGENT, width=64, height=48, steps=2)
    a = text_to_image.run(ctx, {"prompt": put(text_blob("a red fox"))}, p)["image"]
    b = text_to_image.run(ctx, {"prompt": put(text_blob("a red fox"))}, p)["image"]
    c = text_to_image.run(tiny("sd", seed=4), {"prompt": put(text_blob("a red fox"))}, p)["image"]
    assert a.kind == PortType.IMAGE and a.fmt == "png"
    assert pixels(a).shape == (48, 64, 3)
    assert a.data == b.data and a.data != c.data
    assert ctx.loads == ["tiny:sd"]


def test_text_to_image_batch_items_keep_their_own_seeds(put):
    p = params(text_to_image.AGENT, width=32, height=32, steps=2)
    fox, cat, owl = (put(text_blob(t)) for t in ("a fox", "a cat", "an owl"))
    alone = text_to_image.run(tiny("sd", seed=7), {"prompt": fox}, p)["image"]
    batch1 = text_to_image.run_batch(tiny("sd", seeds=[7, 8]), [{"prompt": fox}, {"prompt": cat}], [p, p])
    batch2 = text_to_image.run_batch(tiny("sd", seeds=[7, 9]), [{"prompt": fox}, {"prompt": owl}], [p, p])
    assert len(batch1) == 2
    first1, first2 = pixels(batch1[0]["image"]).astype(int), pixels(batch2[0]["image"]).astype(int)
    assert np.abs(first1 - first2).max() <= 2, "an item's image depends on its neighbour's seed"
    assert np.abs(first1 - pixels(alone).astype(int)).max() <= 2
    assert batch1[1]["image"].data != batch2[1]["image"].data


def test_text_to_image_parameter_bounds():
    assert "divisible by 8" in text_to_image.AGENT.param("width").check(500)
    assert ">= 1" in text_to_image.AGENT.param("steps").check(0)
    assert "finite" in text_to_image.AGENT.param("guidance").check(float("nan"))


def test_image_edit_keeps_size_and_is_deterministic(put):
    image = put(image_blob(Image.new("RGB", (40, 32), (200, 30, 30))))
    p = params(image_edit.AGENT, steps=2)
    a = image_edit.run(tiny("pix2pix", seed=1), {"image": image, "instruction": put(text_blob("make it snow"))}, p)
    b = image_edit.run(tiny("pix2pix", seed=1), {"image": image, "instruction": put(text_blob("make it snow"))}, p)
    c = image_edit.run(tiny("pix2pix", seed=2), {"image": image, "instruction": put(text_blob("make it snow"))}, p)
    assert pixels(a["image"]).shape == (32, 40, 3)
    assert a["image"].data == b["image"].data != c["image"].data
    with pytest.raises(ValueError, match="instruction"):
        image_edit.run(tiny("pix2pix"), {"image": image, "instruction": put(text_blob(" "))}, p)


def test_image_to_image_strength_and_size(put):
    image = put(image_blob(Image.new("RGB", (64, 64), (10, 120, 200))))
    p = params(image_to_image.AGENT, strength=0.5, steps=4, width=32, height=32)
    out = image_to_image.run(tiny("sd", seed=0), {"image": image, "prompt": put(text_blob("a lake"))}, p)["image"]
    assert pixels(out).shape == (32, 32, 3)
    assert image_to_image.AGENT.param("strength").check(0.0) is not None
    with pytest.raises(ValueError, match="at least 1"):
        image_to_image.run(tiny("sd"), {"image": image, "prompt": put(text_blob("x"))},
                           params(image_to_image.AGENT, strength=0.1, steps=2))


@pytest.mark.parametrize("ref, needle", [({"source": "hub", "name": "no-such/model-xyz"}, "no-such/model-xyz"),
                                         ({"source": "path", "name": "/nonexistent/model"}, "/nonexistent/model")])
def test_missing_models_say_which_and_how_to_provide_them(put, ref, needle):
    ctx = Ctx({**ref, "revision": None, "dtype": "float32", "variant": None})
    with pytest.raises(ModelNotFoundError, match=needle):
        text_to_image.run(ctx, {"prompt": put(text_blob("x"))}, params(text_to_image.AGENT, steps=1))
