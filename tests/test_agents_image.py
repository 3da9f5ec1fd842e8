"""The prompt, text-to-image, instruction-edit and img2img agents on their tiny presets (CPU)."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import FakeContext, params_of, pixels, tiny_ref
from PIL import Image

from mora.engine.cache.media import image_blob, text_blob
from mora.engine.errors import ModelNotFoundError
from mora.engine.execution import settings
from mora.engine.ports import PortType
from mora.nodes import image_edit, image_to_image, prompt_select, text_to_image

pytestmark = pytest.mark.usefixtures("tiny_models", "own_resident_models")


@pytest.fixture
def cold():
    """No pipeline resident, so a test can count its own model loads whatever ran before it."""
    from mora.nodes.models import clear_resident

    clear_resident()


def tiny(name: str, **kw: Any) -> FakeContext:
    return FakeContext(tiny_ref(name), **kw)


def test_prompt_template_mode_needs_no_model_and_keeps_the_style_cue(put):
    ctx = tiny("prompt_lm")
    style = put(text_blob("in digital world style"))
    out = prompt_select.run(ctx, {"prompt": put(text_blob("a fox")), "style": style},
                     params_of(prompt_select.AGENT, mode="template"))["text"]
    assert out.kind == PortType.TEXT
    assert out.data.decode() == "a fox, highly detailed, cinematic lighting, in digital world style"
    assert ctx.loads == []


def test_prompt_llm_is_deterministic_per_seed_and_loads_once(put, cold):
    ctx = tiny("prompt_lm", seed=1)
    p = params_of(prompt_select.AGENT, max_new_tokens=12, seed=1)
    first = prompt_select.run(ctx, {"prompt": put(text_blob("a fox"))}, p)["text"]
    again = prompt_select.run(ctx, {"prompt": put(text_blob("a fox"))}, p)["text"]
    other = prompt_select.run(tiny("prompt_lm", seed=2), {"prompt": put(text_blob("a fox"))},
                       params_of(prompt_select.AGENT, max_new_tokens=12))["text"]
    assert first.data == again.data
    assert first.data != other.data
    assert ctx.loads == ["tiny:prompt_lm"]
    styled = prompt_select.run(ctx, {"prompt": put(text_blob("a fox")), "style": put(text_blob("Minecraft"))},
                               p)["text"]
    assert styled.data.decode().endswith("Minecraft")


def test_prompt_greedy_ignores_the_seed_and_long_prompts_fit_the_model(put):
    p = params_of(prompt_select.AGENT, max_new_tokens=8, temperature=0.0)
    a = prompt_select.run(tiny("prompt_lm", seed=1), {"prompt": put(text_blob("a fox"))}, p)["text"]
    b = prompt_select.run(tiny("prompt_lm", seed=2), {"prompt": put(text_blob("a fox"))}, p)["text"]
    assert a.data == b.data and a.data.strip()
    longest = prompt_select.run(tiny("prompt_lm"), {"prompt": put(text_blob("ü" * prompt_select.MAX_PROMPT))},
                         params_of(prompt_select.AGENT, max_new_tokens=2))["text"]
    assert longest.kind == PortType.TEXT


def test_prompt_chat_template_uses_single_special_tokens():
    from mora.nodes.zoo.tokenizers import chat

    tok = chat()
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)["input_ids"]
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert ids.count(start) == 2 and ids.count(end) == 1
    assert tok.decode(tok("any text: ü, 🦊, \x00")["input_ids"]) == "any text: ü, 🦊, \x00"


@pytest.mark.parametrize("text, message", [("  ", "empty"), ("x" * 5000, "at most 4000")])
def test_prompt_rejects_empty_and_absurdly_long_prompts(put, text, message):
    with pytest.raises(ValueError, match=message):
        prompt_select.run(tiny("prompt_lm"), {"prompt": put(text_blob(text))},
                          params_of(prompt_select.AGENT, mode="template"))


def test_text_to_image_size_determinism_and_single_load(put, cold):
    ctx = tiny("sd", seed=3)
    p = params_of(text_to_image.AGENT, width=64, height=48, steps=2)
    a = text_to_image.run(ctx, {"prompt": put(text_blob("a red fox"))}, p)["image"]
    b = text_to_image.run(ctx, {"prompt": put(text_blob("a red fox"))}, p)["image"]
    c = text_to_image.run(tiny("sd", seed=4), {"prompt": put(text_blob("a red fox"))}, p)["image"]
    assert a.kind == PortType.IMAGE and a.fmt == "png"
    assert pixels(a).shape == (48, 64, 3)
    assert a.data == b.data and a.data != c.data
    assert ctx.loads == ["tiny:sd"]


def test_text_to_image_batch_items_keep_their_own_seeds(put):
    p = params_of(text_to_image.AGENT, width=32, height=32, steps=2)
    fox, cat, owl = (put(text_blob(t)) for t in ("a fox", "a cat", "an owl"))
    alone = text_to_image.run(tiny("sd", seed=7), {"prompt": fox}, p)["image"]
    batch1 = text_to_image.run_batch(tiny("sd", seeds=[7, 8]), [{"prompt": fox}, {"prompt": cat}], [p, p])
    batch2 = text_to_image.run_batch(tiny("sd", seeds=[7, 9]), [{"prompt": fox}, {"prompt": owl}], [p, p])
    assert len(batch1) == 2
    first1, first2 = pixels(batch1[0]["image"]).astype(int), pixels(batch2[0]["image"]).astype(int)
    assert np.abs(first1 - first2).max() <= 2, "an item's image depends on its neighbour's seed"
    assert np.abs(first1 - pixels(alone).astype(int)).max() <= 2
    assert batch1[1]["image"].data != batch2[1]["image"].data


def test_text_to_image_parameter_bounds_and_run_time_checks(put):
    assert "divisible by 8" in text_to_image.AGENT.param("width").check(500)
    assert ">= 1" in text_to_image.AGENT.param("steps").check(0)
    assert "finite" in text_to_image.AGENT.param("guidance").check(float("nan"))
    p = {**params_of(text_to_image.AGENT), "width": 500, "height": 512}
    with pytest.raises(ValueError, match="divisible by 8 but are 512 and 500"):
        text_to_image.run(tiny("sd"), {"prompt": put(text_blob("a fox"))}, p)
    with pytest.raises(ValueError, match="empty"):
        text_to_image.run(tiny("sd"), {"prompt": put(text_blob(" "))}, params_of(text_to_image.AGENT, steps=1))


def test_sd_tokenizer_is_clip_and_spells_any_prompt():
    from transformers import CLIPTokenizer

    from mora.nodes.zoo.tokenizers import CLIP_BOS, CLIP_EOS, clip

    tok = clip()
    assert isinstance(tok, CLIPTokenizer)
    ids = tok("A Fox 🦊 über", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == CLIP_BOS and ids[-1] == CLIP_EOS
    assert tok.unk_token_id not in ids[1:ids.index(CLIP_EOS)]
    assert tok.decode(ids, skip_special_tokens=True) == "a fox 🦊 über"


def test_image_edit_keeps_size_and_is_deterministic(put, cold):
    image = put(image_blob(Image.new("RGB", (40, 32), (200, 30, 30))))
    p = params_of(image_edit.AGENT, steps=2)
    ctx = tiny("pix2pix", seed=1)
    a = image_edit.run(ctx, {"image": image, "instruction": put(text_blob("make it snow"))}, p)
    b = image_edit.run(ctx, {"image": image, "instruction": put(text_blob("make it snow"))}, p)
    c = image_edit.run(tiny("pix2pix", seed=2), {"image": image, "instruction": put(text_blob("make it snow"))}, p)
    assert pixels(a["image"]).shape == (32, 40, 3)
    assert a["image"].data == b["image"].data != c["image"].data
    assert ctx.loads == ["tiny:pix2pix"]
    resized = image_edit.run(ctx, {"image": image, "instruction": put(text_blob("make it snow"))},
                             params_of(image_edit.AGENT, steps=1, width=16, height=24))["image"]
    assert pixels(resized).shape == (24, 16, 3)
    with pytest.raises(ValueError, match="instruction"):
        image_edit.run(tiny("pix2pix"), {"image": image, "instruction": put(text_blob(" "))}, p)


def test_image_edit_refuses_a_text_to_image_model(put):
    image = put(image_blob(Image.new("RGB", (16, 16))))
    with pytest.raises(ValueError, match="instruction-edit pipeline.*StableDiffusionPipeline"):
        image_edit.run(tiny("sd"), {"image": image, "instruction": put(text_blob("make it snow"))},
                       params_of(image_edit.AGENT, steps=1))


def test_image_to_image_strength_size_and_determinism(put):
    image = put(image_blob(Image.new("RGB", (64, 64), (10, 120, 200))))
    p = params_of(image_to_image.AGENT, strength=0.5, steps=4, width=32, height=32)
    lake = put(text_blob("a lake"))
    out = image_to_image.run(tiny("sd", seed=0), {"image": image, "prompt": lake}, p)["image"]
    again = image_to_image.run(tiny("sd", seed=0), {"image": image, "prompt": lake}, p)["image"]
    other = image_to_image.run(tiny("sd", seed=1), {"image": image, "prompt": lake}, p)["image"]
    assert pixels(out).shape == (32, 32, 3)
    assert out.data == again.data != other.data
    assert image_to_image.AGENT.param("strength").check(0.0) is not None
    with pytest.raises(ValueError, match="at least 1"):
        image_to_image.run(tiny("sd"), {"image": image, "prompt": put(text_blob("x"))},
                           params_of(image_to_image.AGENT, strength=0.1, steps=2))


@pytest.mark.parametrize("agent, model, words, extra", [
    (image_edit, "pix2pix", "instruction", {}),
    (image_to_image, "sd", "prompt", {"strength": 0.5}),
], ids=["image_edit", "image_to_image"])
def test_image_agents_batch_items_of_any_size_with_their_own_seeds(put, agent, model, words, extra):
    p = params_of(agent.AGENT, steps=2, **extra)
    red, blue = (put(image_blob(Image.new("RGB", (32, 32), c))) for c in ((200, 30, 30), (30, 30, 200)))
    wide = put(image_blob(Image.new("RGB", (48, 32), (30, 200, 30))))
    text = put(text_blob("make it snow"))
    alone = agent.run(tiny(model, seed=7), {"image": red, words: text}, p)["image"]
    batch = agent.run_batch(tiny(model, seeds=[7, 8, 9]),
                            [{"image": red, words: text}, {"image": blue, words: text}, {"image": wide, words: text}],
                            [p, p, p])
    other = agent.run_batch(tiny(model, seeds=[7, 5]), [{"image": red, words: text}, {"image": blue, words: text}],
                            [p, p])
    assert [pixels(b["image"]).shape for b in batch] == [(32, 32, 3), (32, 32, 3), (32, 48, 3)]
    first, first_other = pixels(batch[0]["image"]).astype(int), pixels(other[0]["image"]).astype(int)
    assert np.abs(first - pixels(alone).astype(int)).max() <= 2
    assert np.abs(first - first_other).max() <= 2, "an item's image depends on its neighbour's seed"
    assert batch[1]["image"].data != other[1]["image"].data


@pytest.mark.parametrize("first, second", [(text_to_image, image_to_image), (image_to_image, text_to_image)])
def test_text_to_image_and_image_to_image_share_one_copy_of_the_weights(put, cold, first, second):
    from mora.nodes.models import resident

    ctx = tiny("sd")
    image = put(image_blob(Image.new("RGB", (32, 32), (10, 120, 200))))
    for agent in (first, second):
        agent.run(ctx, {"image": image, "prompt": put(text_blob("a lake"))}, params_of(agent.AGENT, steps=2))
    t2i, i2i = resident(ctx, ("text_to_image",)), resident(ctx, ("image_to_image",))
    assert type(t2i).__name__ == "StableDiffusionPipeline" and type(i2i).__name__ == "StableDiffusionImg2ImgPipeline"
    assert t2i.unet is i2i.unet and t2i.vae is i2i.vae and t2i.text_encoder is i2i.text_encoder
    assert type(t2i.tokenizer).__name__ == "CLIPTokenizer"
    assert ctx.loads == ["tiny:sd"]


def test_random_builders_have_the_published_parameter_counts():
    import torch
    from transformers import Qwen2ForCausalLM

    from mora.nodes.zoo import image_models, text_models

    def count(module: Any) -> int:
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        sd15, sdxl = image_models.sd15_components(4), image_models.sdxl_components()
        qwen = count(Qwen2ForCausalLM(text_models.qwen2_0_5b_config()))
    assert (count(sd15["unet"]), count(sd15["vae"]), count(sd15["text_encoder"])) == (859_520_964, 83_653_863,
                                                                                      123_060_480)
    assert (count(sdxl["unet"]), count(sdxl["text_encoder_2"])) == (2_567_463_684, 694_659_840)
    assert qwen == 494_032_768


def test_tiny_builds_are_reproducible(tmp_path):
    from mora.nodes.zoo import image_models, text_models

    for name, builder in (("lm", text_models.tiny_prompt_lm), ("sd", image_models.tiny_sd)):
        builder(tmp_path / f"{name}1")
        builder(tmp_path / f"{name}2")
        files = sorted(p.relative_to(tmp_path / f"{name}1") for p in (tmp_path / f"{name}1").rglob("*.safetensors"))
        assert files
        for rel in files:
            assert (tmp_path / f"{name}1" / rel).read_bytes() == (tmp_path / f"{name}2" / rel).read_bytes(), rel


@pytest.mark.parametrize("ref, needle", [({"source": "hub", "name": "no-such/model-xyz"}, "no-such/model-xyz"),
                                         ({"source": "path", "name": "/nonexistent/model"}, "/nonexistent/model")])
@pytest.mark.parametrize("agent", [text_to_image, prompt_select])
def test_missing_models_say_which_and_how_to_provide_them(put, ref, needle, agent):
    ctx = FakeContext({**ref, "revision": None, "dtype": "float32", "variant": None})
    with pytest.raises(ModelNotFoundError, match=needle):
        agent.run(ctx, {"prompt": put(text_blob("x"))}, params_of(agent.AGENT))


def test_resident_models_are_evicted_past_the_memory_budget(put, cold, monkeypatch):
    from mora.nodes.models import resident_bytes, resident_identities

    image = put(image_blob(Image.new("RGB", (32, 32), (200, 30, 30))))
    draw = {"prompt": put(text_blob("a fox"))}
    edit = {"image": image, "instruction": put(text_blob("make it snow"))}
    text_to_image.run(tiny("sd"), draw, params_of(text_to_image.AGENT, width=32, height=32, steps=1))
    one = resident_bytes()
    assert one > 0
    image_edit.run(tiny("pix2pix"), edit, params_of(image_edit.AGENT, steps=1))
    assert resident_identities() == ["tiny:pix2pix", "tiny:sd"]  # no budget: both stay
    monkeypatch.setattr(settings, "_CURRENT", replace(settings.current(), max_resident_gib=1.5 * one / 2**30))
    ctx = tiny("sd")
    text_to_image.run(ctx, draw, params_of(text_to_image.AGENT, width=32, height=32, steps=1))
    assert ctx.loads == []  # still resident: a hit, and the least recently used model is not evicted yet
    image_to_image.run(tiny("sd"), {"image": image, "prompt": draw["prompt"]},
                       params_of(image_to_image.AGENT, steps=2, strength=0.5))
    assert resident_identities() == ["tiny:sd"]  # the view shares sd's weights; pix2pix went over budget


def test_run_only_settings_do_not_stick_to_a_shared_pipeline(put, cold):
    """A node asking for xformers after one that loaded the model with SDPA gets xformers or a clear refusal."""
    from mora.nodes.common import xformers_works

    if xformers_works("cpu"):
        pytest.skip("xformers runs here: this test shows the refusal where it cannot")
    draw = {"prompt": put(text_blob("a fox"))}
    first = tiny("sd")
    text_to_image.run(first, draw, params_of(text_to_image.AGENT, width=32, height=32, steps=1))
    assert len(first.loads) == 1
    with pytest.raises(RuntimeError, match="`attention` is 'xformers' but xformers does not import"):
        text_to_image.run(tiny("sd"), draw, params_of(text_to_image.AGENT, width=32, height=32, steps=1,
                                                   attention="xformers"))
    again = tiny("sd")
    text_to_image.run(again, draw, params_of(text_to_image.AGENT, width=32, height=32, steps=1))
    assert again.loads == []  # the SDPA pipeline is still shared


def test_each_offload_mode_places_its_own_pipeline(put, cold):
    draw = {"prompt": put(text_blob("a fox"))}
    runs = [tiny("sd") for _ in range(3)]
    for ctx, offload in zip(runs, ("none", "model", "none")):
        text_to_image.run(ctx, draw, params_of(text_to_image.AGENT, width=32, height=32, steps=1, offload=offload))
    assert [len(ctx.loads) for ctx in runs] == [1, 1, 0]


def test_a_preset_refiner_finishes_the_base_schedule_from_its_latents(put):
    """SDXL base + refiner as the recipe ran them: the base stops at `refine_from`, the refiner takes its latents."""
    model = {"source": "tiny", "name": "sdxl", "revision": None, "dtype": "float32", "variant": None,
             "refiner": {"source": "tiny", "name": "sdxl_refiner", "revision": None, "dtype": "float32",
                         "variant": None}}
    draw = {"prompt": put(text_blob("a fox"))}
    alone, refined, later = FakeContext({k: v for k, v in model.items() if k != "refiner"}), FakeContext(model), FakeContext(model)
    base_only = text_to_image.run(alone, draw, params_of(text_to_image.AGENT, width=32, height=32, steps=4))
    both = text_to_image.run(refined, draw, params_of(text_to_image.AGENT, width=32, height=32, steps=4,
                                                   refine_from=0.5))
    handed_late = text_to_image.run(later, draw, params_of(text_to_image.AGENT, width=32, height=32, steps=4,
                                                        refine_from=0.75))
    assert refined.loads == ["tiny:sdxl_refiner"] and later.loads == []  # the base was resident, the refiner now is
    assert pixels(both["image"]).shape == (32, 32, 3)
    assert not np.array_equal(pixels(both["image"]), pixels(base_only["image"]))
    assert not np.array_equal(pixels(both["image"]), pixels(handed_late["image"]))


def test_a_refiner_needs_a_base_that_can_hand_over_latents(put):
    model = {**tiny("sd").model, "refiner": {"source": "tiny", "name": "sdxl_refiner", "revision": None,
                                             "dtype": "float32", "variant": None}}
    with pytest.raises(ValueError, match="StableDiffusionPipeline takes no `denoising_end`"):
        text_to_image.run(FakeContext(model), {"prompt": put(text_blob("a fox"))},
                          params_of(text_to_image.AGENT, width=32, height=32, steps=2))


def test_quantization_without_bitsandbytes_is_a_clear_refusal(put):
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    ctx = FakeContext({**tiny("sd").model, "quantization": "nf4"})
    with pytest.raises(RuntimeError, match="`quantization` 'nf4' needs the bitsandbytes package"):
        text_to_image.run(ctx, {"prompt": put(text_blob("a fox"))}, params_of(text_to_image.AGENT, steps=1))
    assert ctx.loads == []


def test_image_pipelines_import_only_the_family_the_model_names(tmp_path):
    code = (
        "import sys, json\n"
        "from mora.nodes.diffusion import TaskPipeline\n"
        "t2i, i2i = TaskPipeline('text2image'), TaskPipeline('image2image')\n"
        "names = [t2i._class('StableDiffusionPipeline').__name__, i2i._class('StableDiffusionPipeline').__name__,\n"
        "         t2i._class('StableDiffusionXLImg2ImgPipeline').__name__]\n"
        "auto = 'diffusers.pipelines.auto_pipeline' in sys.modules\n"
        "other = i2i._class('KandinskyV22Pipeline').__name__\n"
        "print(json.dumps([names, auto, other]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    names, auto_imported, other = json.loads(out.stdout.strip().splitlines()[-1])
    assert names == ["StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionXLPipeline"]
    assert not auto_imported  # AutoPipeline imports every pipeline family: seconds of a worker's start-up
    assert other == "AutoPipelineForImage2Image"  # a family outside the table goes through AutoPipeline
