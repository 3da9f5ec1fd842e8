"""The offline world: captions round-trip, the detectors read back what the renderer drew, motion is tracked."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mora.nodes.world import captions, detect
from mora.nodes.world import scene as world


def scenes(n: int, seed: int, **kw: float) -> list[tuple[world.Scene, world.Layout]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = world.sample_scene(rng, **kw)
        out.append((s, world.place(s, rng)))
    return out


def test_every_caption_parses_back_to_its_scene_and_stated_defaults_change_nothing():
    for s, _ in scenes(800, 0, two=0.3, digital=0.3, striped=0.3):
        assert captions.parse(captions.caption(s)) == s
        assert captions.parse(captions.caption(s, explicit=True)) == s
        assert captions.parse(captions.caption(s).upper() + ".") == s


def test_the_issue_s_examples_parse_to_what_they_say():
    s = captions.parse("a red circle moving right on a white background")
    assert s.things == (world.Thing("circle", "red", motion="right"),)
    assert s.things[0].start_region == "left" and s.background == "white" and s.style == "plain"
    digital = captions.parse("a blue square on a black background, in digital world style, Minecraft")
    assert digital.style == "digital" and digital.things[0].shape == "square"


@pytest.mark.parametrize("text", ["a red fox in the snow", "a red circle", "a red circle on a red background",
                                  "a mauve circle on a white background"])
def test_text_outside_the_grammar_is_refused_with_the_text_named(text):
    with pytest.raises(captions.CaptionError, match="fox|red circle|mauve"):
        captions.parse(text)


def test_held_out_split_is_stable_and_about_a_tenth():
    texts = {captions.caption(s) for s, _ in scenes(3000, 1)}
    share = sum(map(captions.held_out, texts)) / len(texts)
    assert 0.07 < share < 0.13
    assert [captions.held_out(t) for t in sorted(texts)] == [captions.held_out(t) for t in sorted(texts)]


def test_detectors_read_back_colour_shape_region_and_background_of_plain_renders():
    cases = scenes(400, 2, two=0.25, digital=0.0)
    right = 0
    for s, layout in cases:
        r = detect.read(world.render(s, layout))
        found = {(f.colour, f.shape) for f in r.things}
        ok = r.background == s.background and r.texture == s.texture and len(r.things) == len(s.things)
        ok &= all((t.colour, t.shape) in found for t in s.things)
        if len(s.things) == 1:
            ok &= r.things[0].region == s.things[0].start_region and r.things[0].size == s.things[0].size
        right += ok
    assert right / len(cases) >= 0.98


def test_digital_world_frames_are_blocky_and_keep_their_colours():
    for (s, layout), (plain, plain_layout) in zip(scenes(100, 3, digital=1.0), scenes(100, 3, digital=0.0)):
        frame = world.render(s, layout)
        assert detect.blockiness(frame) >= detect.BLOCKY
        r = detect.read(frame)
        assert r.background == s.background
        assert {t.colour for t in s.things} <= {f.colour for f in r.things}
    plain_blocky = [detect.blockiness(world.render(s, lay)) >= detect.BLOCKY for s, lay in scenes(200, 4, digital=0.0)]
    assert np.mean(plain_blocky) < 0.05


@pytest.mark.parametrize("direction", ["left", "right", "up", "down", None])
def test_a_moving_thing_is_tracked_in_its_direction_and_stays_in_frame(direction):
    s = world.Scene((world.Thing("triangle", "orange", "small", motion=direction, speed="fast"),), "blue")
    layout = world.place(s, np.random.default_rng(5))
    frames = [world.render(s, layout, frame=i) for i in range(8)]
    (track,) = detect.track(frames)
    assert (track.colour, track.shape) == ("orange", "triangle")
    assert track.direction == (direction or "still")
    if direction:
        assert track.speed == pytest.approx(world.SPEEDS["fast"], rel=0.15)
    assert all(c is not None for c in track.centres)


def test_frames_and_videos_of_bad_shape_are_refused():
    with pytest.raises(ValueError, match="H x W x 3"):
        detect.read(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="at least one frame"):
        detect.track([])


def test_edit_instructions_ask_for_the_scene_they_were_made_from_and_the_detector_sees_the_change():
    rng = np.random.default_rng(6)
    for s, layout in scenes(150, 6, two=0.3, digital=0.0):
        instruction, target = captions.edit(s, rng)
        kind, read_back = captions.apply_instruction(s, instruction)
        assert read_back == target
        before, after = detect.read(world.render(s, layout)), detect.read(world.render(target, layout))
        if kind == "background":
            assert (before.background, after.background) == (s.background, target.background)
            assert detect.mask_iou(before.mask, after.mask) > 0.8  # edges: the contrast changed
        else:
            assert {(f.colour, f.shape) for f in after.things} == {(t.colour, t.shape) for t in target.things}
    with pytest.raises(captions.CaptionError, match="names a square"):
        captions.apply_instruction(captions.parse("a red circle on a white background"), "make the square blue")


def test_loose_prompts_name_the_scene_s_colour_and_a_word_for_its_shape():
    rng = np.random.default_rng(7)
    for s, _ in scenes(200, 7, two=0.0, digital=0.0):
        text = captions.loose(s, rng).lower()
        assert s.things[0].colour in text
        assert any(w in text for w in captions.SHAPE_WORDS[s.things[0].shape])


def test_impossible_scenes_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="`colour`"):
        world.Thing("circle", "mauve")
    with pytest.raises(ValueError, match="invisible"):
        world.Scene((world.Thing("circle", "red"),), "red")


def test_the_training_batch_renderer_draws_exactly_what_the_world_renders():
    from training.world import draw, scene_params

    cases = scenes(120, 8, two=0.4, digital=0.3, striped=0.4)
    batch = draw(torch.stack([scene_params(s, lay) for s, lay in cases]))
    reference = torch.stack([torch.from_numpy(world.render(s, lay)).permute(2, 0, 1).float() / 127.5 - 1
                             for s, lay in cases])
    assert torch.equal(batch, reference)


def test_the_image_vae_loss_weighs_a_small_thing_s_pixels_above_its_background():
    from training.world import THING_WEIGHT, thing_weight

    scene = world.Scene((world.Thing("triangle", "red", "small"),), "white")
    img = world.render(scene, world.place(scene, np.random.default_rng(0)))
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 127.5 - 1
    w = thing_weight(x)[0, 0].numpy()
    red = (img[..., 0] > 150) & (img[..., 1] < 120)
    assert 0 < red.mean() < 0.05
    assert (w[red] == THING_WEIGHT).all() and (w[(img > 240).all(-1)] == 1).all()


def test_the_world_tokenizer_reads_a_word_a_token_and_still_reads_any_text_byte_by_byte(tmp_path):
    from transformers import CLIPTokenizer

    from mora.nodes.zoo.tokenizers import clip_words

    vocabulary = captions.vocabulary(samples=300)
    assert {"circle", "diamond", "striped", "background", "minecraft", "turn"} <= set(vocabulary)
    tok = clip_words(vocabulary, 32)
    tok.save_pretrained(tmp_path)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    text = "a small blue cross moving left slowly at the top right on a striped grey background, in digital world style"
    pieces = tok.convert_ids_to_tokens(tok(text).input_ids)
    assert pieces[1:-1] == [w + "</w>" for w in text.replace(",", " ,").split()]
    assert tok.decode(tok("a fox, jumping").input_ids, skip_special_tokens=True) == "a fox , jumping"
    assert len(tok("a fox").input_ids) > 4  # unknown words fall back to bytes
