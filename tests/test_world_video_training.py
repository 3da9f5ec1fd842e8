"""The world's video training (Wan and SVD layouts) builds its inputs exactly as the pipelines do at inference, and its
commands save pipelines that load with `from_pretrained` and run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mora.nodes.world import captions
from mora.nodes.world import scene as world
from training import world_video

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module", params=[4, 2, 1], ids=["temporal4", "temporal2", "temporal1"])
def pipe(request):
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

    torch.manual_seed(0)
    vae = world_video.vae_model(request.param)
    vae.register_to_config(latents_mean=[0.1 * i for i in range(world_video.Z)],
                           latents_std=[1.0 + 0.1 * i for i in range(world_video.Z)])
    vae = AutoencoderKLWan.from_config(vae.config)  # the config the pipeline reads its normalisation from
    parts = world_video.components(first_last=True, temporal=request.param)
    return WanImageToVideoPipeline(tokenizer=world_video.text_tokenizer(), image_processor=world_video.image_processor(),
                                   vae=vae.eval(), scheduler=None, **{k: m.eval() for k, m in parts.items()})


def clip(seed: int) -> torch.Tensor:
    scene = captions.parse("a red circle moving right on a striped blue background")
    rng = np.random.default_rng(seed)
    return world_video.draw_clips(world_video.clip_params(scene, world.place(scene, rng))[None])


def as_image(frame: torch.Tensor) -> Image.Image:
    return Image.fromarray(((frame.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())


@pytest.mark.parametrize("first_last", [False, True])
def test_training_targets_and_conditioning_equal_the_vae_s_and_the_pipeline_s_prepare_latents(pipe, first_last):
    clips = torch.cat([clip(0), clip(1)])
    with torch.no_grad():
        x0, ours = world_video.encode_clips(pipe.vae, clips, first_last)  # both from one VAE call
        alone = world_video.normalise(pipe.vae, pipe.vae.encode(clips).latent_dist.mode())
        torch.testing.assert_close(x0, alone, atol=1e-5, rtol=1e-5)
        for i in range(2):
            image = pipe.video_processor.preprocess(as_image(clips[i, :, 0]), height=64, width=64)
            last = pipe.video_processor.preprocess(as_image(clips[i, :, -1]), height=64, width=64) if first_last else None
            _, theirs = pipe.prepare_latents(image, 1, world_video.Z, 64, 64, world_video.FRAMES, torch.float32,
                                             torch.device("cpu"), None, None, last)
            torch.testing.assert_close(ours[i:i + 1], theirs, atol=2e-4, rtol=1e-4)


def test_training_image_tokens_equal_the_pipeline_s_encode_image(pipe):
    frames = torch.cat([clip(0), clip(1)])[:, :, 0]
    with torch.no_grad():
        ours = world_video.image_tokens(pipe.image_encoder, frames)
        theirs = pipe.encode_image([as_image(f) for f in frames], torch.device("cpu"))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_training_noise_levels_are_spread_as_the_saved_scheduler_spreads_its_steps():
    from diffusers import UniPCMultistepScheduler

    torch.manual_seed(0)
    ours = world_video.flow_sigmas(20_000, torch.device("cpu")).sort().values
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        flow_shift=world_video.SHIFT)
    scheduler.set_timesteps(1000)
    theirs = scheduler.sigmas[:-1].float().sort().values  # the grid any step count samples from
    quantiles = torch.linspace(0.02, 0.98, 49)
    torch.testing.assert_close(torch.quantile(ours, quantiles), torch.quantile(theirs, quantiles), atol=0.02, rtol=0)
    assert 0.23 < float((ours > 0.9).float().mean()) < 0.27  # a quarter of the samples where motion is decided


def test_most_i2v_training_clips_move():
    clips = iter(world_video.ClipStream("i2v", 0))
    moving = [bool((p[-1] != p[0]).any()) for p, _ in (next(clips) for _ in range(300))]
    assert 0.55 < np.mean(moving) < 0.75  # 0.8 of the one-thing scenes (0.8 of all); the world's default gave 0.3


def test_the_training_commands_save_pipelines_that_load_and_make_video(tmp_path):
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

    def train(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "training.world_video", *args, "--steps", "1", "--batch", "1",
                               "--workers", "0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]

    train("vae", "--temporal", "2", "--out", str(tmp_path / "vae0"))
    train("vae", "--init", str(tmp_path / "vae0"), "--out", str(tmp_path / "vae"))  # goes on from a saved VAE
    assert AutoencoderKLWan.from_pretrained(tmp_path / "vae").config.scale_factor_temporal == 2
    train("flf", "--vae", str(tmp_path / "vae"), "--out", str(tmp_path / "flf"))
    pipe = WanImageToVideoPipeline.from_pretrained(tmp_path / "flf", dtype=torch.float32)
    first = as_image(clip(0)[0, :, 0])
    frames = pipe(first, last_image=first, prompt="a red circle on a blue background", height=64, width=64,
                  num_frames=5, num_inference_steps=1, max_sequence_length=pipe.tokenizer.model_max_length,
                  output_type="np").frames[0]
    assert frames.shape == (5, 64, 64, 3)
    assert pipe.transformer.config.pos_embed_seq_len == 2 * world_video.IMAGE_TOKENS


def test_vae_image_share_trains_on_each_frame_alone_then_on_clips(tmp_path, monkeypatch):
    from diffusers import AutoencoderKLWan

    seen: list[tuple[int, int]] = []
    encode = AutoencoderKLWan.encode

    def spy(self, x, *args, **kwargs):
        seen.append((x.shape[0], x.shape[2]))  # (videos, frames) of each encode
        return encode(self, x, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKLWan, "encode", spy)
    world_video.main(["vae", "--temporal", "1", "--image-share", "0.5", "--steps", "4", "--batch", "1",
                      "--workers", "0", "--out", str(tmp_path / "vae")])
    frames = world_video.FRAMES
    assert seen[:4] == [(frames, 1), (frames, 1), (1, frames), (1, frames)]  # half the steps frames alone, then clips
    vae = AutoencoderKLWan.from_pretrained(tmp_path / "vae")
    assert vae.config.scale_factor_temporal == 1 and vae.config.temperal_downsample == [False, False]


def test_a_temporal_1_vae_trained_on_frames_alone_codes_each_frame_alone(tmp_path):
    from diffusers import AutoencoderKLWan

    world_video.main(["vae", "--temporal", "1", "--image-share", "1", "--steps", "2", "--batch", "1", "--workers", "0",
                      "--out", str(tmp_path / "vae")])
    vae = AutoencoderKLWan.from_pretrained(tmp_path / "vae", dtype=torch.float32).eval()
    assert world_video.codes_frames_alone(vae)
    clips = torch.cat([clip(0), clip(1)])
    changed = clips.clone()
    changed[:, :, 0] = -changed[:, :, 0]  # another first frame: no later latent frame may notice
    with torch.no_grad():
        before, after = (vae.encode(c).latent_dist.mode() for c in (clips, changed))
        assert (before[:, :, 0] - after[:, :, 0]).abs().max() > 1e-2
        torch.testing.assert_close(before[:, :, 1:], after[:, :, 1:])
        for first_last in (False, True):  # the one-batch encoding equals the pipeline's chunk-by-chunk one
            torch.testing.assert_close(world_video.encode_clips(vae, clips, first_last, alone=True),
                                       world_video.encode_clips(vae, clips, first_last), atol=1e-4, rtol=1e-4)
    assert not world_video.codes_frames_alone(world_video.vae_model(2))


def test_frame_convs_code_and_decode_a_per_frame_vae_exactly_as_its_3d_convolutions():
    torch.manual_seed(0)
    vae = world_video.vae_model(1).eval()
    with torch.no_grad():  # taps of a per-frame VAE stay zero; give the rest weights that are not a fresh init's
        for m in vae.modules():
            if isinstance(m, torch.nn.Conv3d):
                m.weight[..., -1:, :, :].normal_(0, 0.05)
    clips = torch.cat([clip(0), clip(1)])
    with torch.no_grad():
        z = vae.encode(clips).latent_dist.mode()
        out = vae.decode(z).sample
        given = {first_last: world_video.encode_clips(vae, clips, first_last) for first_last in (False, True)}
        world_video.frame_convs(vae)
        for taps in world_video.time_taps(vae):  # unused now: what they hold changes nothing
            taps.fill_(1.0)
        torch.testing.assert_close(vae.encode(clips).latent_dist.mode(), z, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(vae.decode(z).sample, out, atol=1e-4, rtol=1e-4)
        for first_last in (False, True):  # the 3-D, chunk-by-chunk encoding of the pipeline's given video
            torch.testing.assert_close(world_video.encode_clips(vae, clips, first_last, alone=True), given[first_last],
                                       atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="codes each frame alone"):
        world_video.frame_convs(world_video.vae_model(2))


def test_a_frame_conv_pads_and_strides_each_axis_as_its_3d_convolution():
    """Unequal kernel, padding and stride per axis: a swapped height and width would show."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    torch.manual_seed(0)
    conv = WanCausalConv3d(3, 4, kernel_size=(3, 3, 5), stride=(1, 2, 1), padding=(1, 1, 2))
    with torch.no_grad():
        conv.weight[:, :, :-1] = 0
        x = torch.randn(2, 3, 5, 9, 12)
        torch.testing.assert_close(world_video._frame_conv(conv, x), conv(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("first_last", [False, True], ids=["i2v", "flf"])
def test_the_agents_make_the_frames_asked_of_a_per_frame_world_model(tmp_path, put, first_last):
    """Diffusers 0.42's Wan pipelines turn 17 frames into 18 for a VAE of temporal stride 1; the agents ask so that the
    count given is the count made."""
    from conftest import FakeContext, params_of

    from mora.engine.cache.media import image_blob
    from mora.nodes.image_to_video import AGENT

    torch.manual_seed(0)
    world_video.save_wan(tmp_path / "wan", world_video.components(first_last, temporal=1), world_video.vae_model(1))
    ctx = FakeContext(model={"source": "path", "name": str(tmp_path / "wan"), "revision": None, "dtype": "float32",
                             "variant": None})
    frame = as_image(clip(0)[0, :, 0])
    inputs = {"image": put(image_blob(frame)), **({"last_image": put(image_blob(frame))} if first_last else {})}
    out = AGENT.run(ctx, inputs, params_of(AGENT, frames=9, steps=1, width=64, height=64))
    from safetensors.torch import load

    assert tuple(load(out["latent"].data)["latents"].shape) == (1, world_video.Z, 9, 16, 16)


def test_a_decoder_trained_alone_keeps_the_encoder_and_its_latent_statistics(tmp_path, monkeypatch):
    """A decoder trained alone keeps the encoder and its latent statistics, and trains on the latent noise asked for."""
    from diffusers import AutoencoderKLWan

    common = ["--steps", "2", "--batch", "1", "--workers", "0"]
    world_video.main(["vae", "--temporal", "1", *common, "--out", str(tmp_path / "a")])
    asked, loss = [], world_video.vae_loss
    monkeypatch.setattr(world_video, "vae_loss", lambda *a: (asked.append(a[3]), loss(*a))[1])
    world_video.main(["vae", "--init", str(tmp_path / "a"), "--decoder-only", "--latent-noise", "0.3", "--lr", "1e-2",
                      *common, "--out", str(tmp_path / "b")])
    a, b = (AutoencoderKLWan.from_pretrained(tmp_path / n) for n in "ab")
    for part in ("encoder", "quant_conv"):
        for (name, x), y in zip(getattr(a, part).state_dict().items(), getattr(b, part).state_dict().values()):
            assert torch.equal(x, y), f"{part}.{name} changed"
    assert any(not torch.equal(x, y) for x, y in zip(a.decoder.state_dict().values(), b.decoder.state_dict().values()))
    assert (a.config.latents_mean, a.config.latents_std) == (b.config.latents_mean, b.config.latents_std)
    assert asked == [0.3, 0.3]


def test_decoder_only_without_init_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        world_video.main(["vae", "--decoder-only", "--out", "unused"])
    assert stop.value.code == 2
    assert "--decoder-only needs --init" in capsys.readouterr().err


def test_latent_noise_without_decoder_only_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        world_video.main(["vae", "--latent-noise", "0.2", "--out", "unused"])
    assert stop.value.code == 2
    assert "--latent-noise needs --decoder-only" in capsys.readouterr().err


def test_latent_noise_reaches_the_decoder_in_the_video_models_units():
    """The decoder is handed the posterior sample (exactly, without noise) plus noise whose size follows the option
    and whose spread, channel by channel, follows `latents_std` (the units a video model's latents are off in)."""
    import contextlib

    torch.manual_seed(0)
    vae = world_video.vae_model(1)
    vae.register_to_config(latents_std=[0.5, 1.0, 2.0, 4.0, 0.5, 1.0, 2.0, 4.0])
    decode, seen = vae.decode, []
    vae.decode = lambda z: (seen.append(z.detach()), decode(z))[1]
    x = clip(0)
    for noise in (0.0, 0.5, 1.0):
        torch.manual_seed(1)
        world_video.vae_loss(vae, x, contextlib.nullcontext(), noise)
    torch.manual_seed(1)
    torch.testing.assert_close(seen[0], vae.encode(x).latent_dist.sample())
    half, whole = seen[1] - seen[0], seen[2] - seen[0]
    torch.testing.assert_close(2 * half, whole, rtol=1e-4, atol=1e-5)
    added = whole.transpose(0, 1).flatten(1).std(dim=1)
    ratio = added / torch.tensor(vae.config.latents_std)
    assert added.min() > 0
    torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio), rtol=0.25, atol=0)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "half"])
def test_an_image_share_outside_0_to_1_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as stop:
        world_video.main(["vae", "--image-share", value, "--out", "unused"])
    assert stop.value.code == 2
    assert "--image-share" in capsys.readouterr().err


def test_svd_training_image_embeddings_equal_the_pipeline_s_encode_image():
    from diffusers import StableVideoDiffusionPipeline

    from training import world_svd

    torch.manual_seed(0)
    parts = world_svd.components()
    pipe = StableVideoDiffusionPipeline(vae=world_svd.vae_model(), scheduler=None,
                                        feature_extractor=world_svd.feature_extractor(), **parts)
    frames = torch.cat([clip(0), clip(1)])[:, :, 0]
    with torch.no_grad():
        ours = world_svd.image_embeddings(pipe.image_encoder, frames)
        theirs = torch.cat([pipe._encode_image(as_image(f), torch.device("cpu"), 1, False) for f in frames])
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_the_svd_training_commands_save_a_pipeline_that_loads_and_makes_video(tmp_path):
    from diffusers import StableVideoDiffusionPipeline

    for args in (["vae", "--out", str(tmp_path / "vae")],
                 ["svd", "--vae", str(tmp_path / "vae"), "--out", str(tmp_path / "svd")]):
        done = subprocess.run([sys.executable, "-m", "training.world_svd", *args, "--steps", "1", "--batch", "1",
                               "--workers", "0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    pipe = StableVideoDiffusionPipeline.from_pretrained(tmp_path / "svd", dtype=torch.float32)
    frames = pipe(as_image(clip(0)[0, :, 0]), height=64, width=64, num_frames=4, num_inference_steps=1,
                  decode_chunk_size=4, motion_bucket_id=127, output_type="np").frames[0]
    assert frames.shape == (4, 64, 64, 3)


def test_vae_independent_frames_trains_on_single_frames_of_distinct_scenes(tmp_path, monkeypatch):
    from diffusers import AutoencoderKLWan

    seen: list[torch.Tensor] = []
    encode = AutoencoderKLWan.encode

    def spy(self, x, *args, **kwargs):
        seen.append(x.detach().clone())
        return encode(self, x, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKLWan, "encode", spy)
    world_video.main(["vae", "--temporal", "1", "--independent-frames", "--decoder-width", "48", "--steps", "2",
                      "--batch", "6", "--workers", "0", "--out", str(tmp_path / "vae")])
    first = seen[0]
    assert first.shape[:3] == (6, 3, 1)  # six single frames a step
    assert len({f.numpy().tobytes() for f in first}) == 6  # each of its own scene
    vae = AutoencoderKLWan.from_pretrained(tmp_path / "vae")
    assert world_video.codes_frames_alone(vae) and vae.config.decoder_base_dim == 48


def test_the_transformer_takes_its_width_and_depth(tmp_path):
    vae = tmp_path / "vae"
    world_video.main(["vae", "--temporal", "1", "--image-share", "1", "--steps", "1", "--batch", "1", "--workers", "0",
                      "--out", str(vae)])
    world_video.main(["i2v", "--vae", str(vae), "--width", "64", "--layers", "2", "--steps", "1", "--batch", "1",
                      "--workers", "0", "--out", str(tmp_path / "i2v")])
    config = json.loads((tmp_path / "i2v" / "transformer" / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_layers"], config["ffn_dim"]) == (2, 2, 256)
    world_video.main(["flf", "--vae", str(vae), "--width", "128", "--head-dim", "64", "--layers", "1", "--steps", "1",
                      "--batch", "1", "--workers", "0", "--out", str(tmp_path / "flf")])
    config = json.loads((tmp_path / "flf" / "transformer" / "config.json").read_text())
    assert (config["num_attention_heads"], config["attention_head_dim"]) == (2, 64)


@pytest.mark.parametrize("argv, problem", [
    (["vae", "--independent-frames"], "--independent-frames needs a VAE that codes each frame alone"),
    (["vae", "--temporal", "4", "--independent-frames"], "--independent-frames needs a VAE that codes each frame"),
    (["i2v", "--width", "100"], "--width 100: must be a multiple of the heads' 32 channels"),
    (["flf", "--width", "160", "--head-dim", "64"], "--width 160: must be a multiple of the heads' 64 channels"),
    (["i2v", "--head-dim", "48"], "--head-dim: invalid choice"),
    (["vae", "--head-dim", "64"], "`vae` takes no --head-dim"),
    (["i2v", "--init", "INIT", "--head-dim", "64"], "--init keeps its model's layers"),
    (["vae", "--width", "64"], "`vae` takes no --width"),
    (["i2v", "--decoder-width", "64"], "`i2v` takes no --decoder-width"),
    (["vae", "--weigh-things"], "`vae` takes no --weigh-things"),
    (["vae", "--compile"], "`vae` takes no --compile"),
    (["i2v", "--weigh-things"], "--weigh-things needs a --vae that codes each frame alone"),
    (["i2v", "--init", "INIT", "--width", "128"], "--init keeps its model's layers"),
    (["flf", "--frozen-encoders", "nowhere"], "--frozen-encoders nowhere: no such folder"),
    (["vae", "--frozen-encoders", "INIT"], "`vae` takes no --frozen-encoders"),
])
def test_new_recipe_options_are_checked_before_anything_runs(argv, problem, tmp_path, capsys):
    if argv[0] != "vae" or "INIT" in argv:  # a VAE that packs frames (the default stride), a transformer to go on from
        world_video.main(["vae", "--steps", "1", "--batch", "1", "--workers", "0", "--out", str(tmp_path / "vae")])
        world_video.main(["i2v", "--vae", str(tmp_path / "vae"), "--steps", "1", "--batch", "1", "--workers", "0",
                          "--out", str(tmp_path / "init")])
        argv = [str(tmp_path / "init") if a == "INIT" else a for a in argv]
        argv += ["--vae", str(tmp_path / "vae")] if argv[0] != "vae" else []
    with pytest.raises(SystemExit) as exit_:
        world_video.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2 and problem in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_latent_thing_weight_marks_the_cells_a_small_thing_covers_in_each_frame():
    scene = captions.parse("a small red circle moving right on a white background")
    layout = world.place(scene, np.random.default_rng(0))
    clips = world_video.draw_clips(world_video.clip_params(scene, layout)[None])
    w = world_video.latent_thing_weight(clips, 16)
    assert w.shape == (1, 1, world_video.FRAMES, 16, 16) and set(w.unique().tolist()) == {1.0, 8.0}
    for f in (0, world_video.FRAMES - 1):
        cells = (w[0, 0, f] > 1).nonzero().float() * 4 + 2  # the weighted cells' pixel centres (row, column)
        (cx, cy), half = world.positions(scene, layout, f)[0], layout.halves[0]
        assert abs(cells[:, 1].mean() / 64 - cx) < 0.05 and abs(cells[:, 0].mean() / 64 - cy) < 0.05
        assert len(cells) <= (2 * half * 64 / 4 + 2) ** 2  # the thing's cells only, not the background's
    error = torch.ones_like(w).expand(1, 8, -1, -1, -1)
    assert world_video.weighted_mean(error, w) == pytest.approx(1.0)  # a weighted mean, not a rescaled loss


def test_weigh_things_trains_the_transformer_on_the_weighted_loss(tmp_path, monkeypatch):
    vae = tmp_path / "vae"
    world_video.main(["vae", "--temporal", "1", "--image-share", "1", "--steps", "1", "--batch", "1", "--workers", "0",
                      "--out", str(vae)])
    weighted = []
    mean = world_video.weighted_mean
    monkeypatch.setattr(world_video, "weighted_mean", lambda e, w: weighted.append(w.shape) or mean(e, w))
    world_video.main(["i2v", "--vae", str(vae), "--weigh-things", "--steps", "2", "--batch", "2", "--workers", "0",
                      "--out", str(tmp_path / "i2v")])
    assert weighted == [(2, 1, world_video.FRAMES, 16, 16)] * 2


def test_compile_runs_the_transformer_through_torch_compile_and_saves_its_own_weights(tmp_path, monkeypatch):
    vae = tmp_path / "vae"
    world_video.main(["vae", "--temporal", "1", "--image-share", "1", "--steps", "1", "--batch", "1", "--workers", "0",
                      "--out", str(vae)])
    compiled, calls = [], []

    def fake_compile(module):  # torch.compile's cost without its minutes: count the calls through the wrapper
        compiled.append(type(module).__name__)
        return lambda **kw: calls.append(kw["hidden_states"].shape) or module(**kw)

    monkeypatch.setattr(world_video.torch, "compile", fake_compile)
    world_video.main(["i2v", "--vae", str(vae), "--compile", "--steps", "2", "--batch", "1", "--workers", "0",
                      "--out", str(tmp_path / "i2v")])
    assert compiled == ["WanTransformer3DModel"] and len(calls) == 2
    assert (tmp_path / "i2v" / "transformer" / "diffusion_pytorch_model.safetensors").exists()


def test_frozen_encoders_are_the_given_pipeline_s_unchanged_beside_a_new_transformer(tmp_path):
    from safetensors.torch import load_file

    vae = tmp_path / "vae"
    world_video.main(["vae", "--temporal", "1", "--image-share", "1", "--steps", "1", "--batch", "1", "--workers", "0",
                      "--out", str(vae)])
    world_video.main(["i2v", "--vae", str(vae), "--width", "64", "--layers", "1", "--steps", "1", "--batch", "1",
                      "--workers", "0", "--out", str(tmp_path / "i2v")])
    world_video.main(["flf", "--vae", str(vae), "--frozen-encoders", str(tmp_path / "i2v"), "--width", "64",
                      "--layers", "2", "--steps", "3", "--batch", "2", "--workers", "0", "--lr", "1e-2",
                      "--out", str(tmp_path / "flf")])
    for part in ("text_encoder", "image_encoder"):
        mine, given = (load_file(tmp_path / m / part / "model.safetensors") for m in ("flf", "i2v"))
        assert mine.keys() == given.keys() and all(torch.equal(mine[k], given[k]) for k in mine)
    fresh = world_video.components(True, 1, 64, 2)["transformer"]
    saved = load_file(tmp_path / "flf" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert json.loads((tmp_path / "flf" / "transformer" / "config.json").read_text())["num_layers"] == 2
    assert saved.keys() == fresh.state_dict().keys()
