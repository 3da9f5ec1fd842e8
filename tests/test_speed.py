"""Speed levers (mora.nodes.speed) on tiny real pipelines on CPU: compile, attention backends, step caches, FP8.

Compilation runs for real (inductor's CPU backend) on the tiny Wan transformer; GPU figures are in
bench/README.md. What is checked here is behaviour: which modules are compiled and how, that compiled
and eager results agree, that compilation stays out of cache keys and step caches enter them, that
the compile caches land in Mora's cache directory, and that what cannot run fails with a clear error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import FakeContext, params_of, tiny_ref
from test_agents_video import latent_of, run_i2v

pytestmark = pytest.mark.usefixtures("tiny_models", "own_resident_models")

pytest.importorskip("diffusers")


def wan(put, **params: Any):
    return latent_of(run_i2v(put, "wan_i2v", prompt="a kite", frames=5, guidance=4.0, **params)[0]["latent"])


def test_auto_compiles_on_cuda_only_and_the_preset_decides_when_the_node_does_not():
    from mora.nodes.speed import attention_choice, compile_mode

    assert compile_mode(FakeContext(model=tiny_ref("svd")), {"compile": "auto"}) == "off"
    assert compile_mode(FakeContext(model=tiny_ref("svd"), device="cuda:0"), {"compile": "auto"}) == "on"
    preset_on = FakeContext(model={**tiny_ref("svd"), "compile": "on", "attention": "sdpa_cudnn"})
    assert compile_mode(preset_on, {"compile": ""}) == "on"
    assert compile_mode(preset_on, {"compile": "off"}) == "off"
    assert compile_mode(FakeContext(model=tiny_ref("svd")), {"compile": ""}) == "off"
    assert attention_choice(preset_on, {"attention": ""}) == "sdpa_cudnn"
    assert attention_choice(preset_on, {"attention": "sdpa"}) == "sdpa"


def test_compilation_is_run_only_and_step_caches_and_fp8_are_keyed():
    from mora.engine.execution.models import resolve
    from mora.nodes.image_to_video import AGENT

    base = params_of(AGENT, compile="off", attention="sdpa")
    assert AGENT.keyed_params(params_of(AGENT, compile="on", attention="sdpa_flash")) == AGENT.keyed_params(base)
    assert AGENT.keyed_params(params_of(AGENT, step_cache="first_block")) != AGENT.keyed_params(base)
    # a step cache's settings count only while that cache is on: with none they change nothing, so no miss
    assert AGENT.keyed_params(params_of(AGENT, step_cache_threshold=0.1, step_cache_interval=3)) == \
        AGENT.keyed_params(base)
    first_block = params_of(AGENT, step_cache="first_block")
    assert AGENT.keyed_params({**first_block, "step_cache_threshold": 0.1}) != AGENT.keyed_params(first_block)
    assert AGENT.keyed_params({**first_block, "step_cache_interval": 3}) == AGENT.keyed_params(first_block)
    taylor = params_of(AGENT, step_cache="taylorseer")
    assert AGENT.keyed_params({**taylor, "step_cache_interval": 3}) != AGENT.keyed_params(taylor)
    preset = {"name": "p", "roles": {"image_to_video": tiny_ref("svd")}}
    plain, _ = resolve(AGENT, {}, preset)
    fast, _ = resolve(AGENT, {}, {**preset, "compile": "auto", "attention": "sdpa_cudnn"})
    fp8, _ = resolve(AGENT, {}, {**preset, "quantization": "fp8"})
    assert (plain["compile"], fast["compile"], fast["attention"]) == ("off", "auto", "sdpa_cudnn")
    node, _ = resolve(AGENT, {"compile": "on", "attention": "sdpa_flash"}, {**preset, "compile": "auto"})
    assert (node["compile"], node["attention"]) == ("on", "sdpa_flash")  # what the manifest records per node
    assert fp8["quantization"] == "fp8"
    _, problem = resolve(AGENT, {}, {**preset, "compile": "max"})
    assert "model compile 'max' is not one of ['off', 'on', 'auto']" in problem


@pytest.mark.slow
def test_regional_compile_for_wan_matches_eager_and_caches_under_mora(put, tiny_models, monkeypatch):
    from mora.nodes.models import resident
    from mora.nodes.speed import _regional
    from mora.nodes.video_latent import PIPELINE_KIND

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    eager = wan(put)
    pipe = resident(FakeContext(model=tiny_ref("wan_i2v")), (PIPELINE_KIND,))
    assert not hasattr(pipe.transformer, "_mora_compiled")
    compiled = wan(put, compile="on")
    assert pipe.transformer._mora_compiled == "regional+fused_qkv"
    assert all(block.attn1.fused_projections for block in pipe.transformer.blocks)
    assert all(block._compiled_call_impl is not None for block in pipe.transformer.blocks)
    assert pipe.transformer._compiled_call_impl is None  # the blocks, not the whole model
    assert (compiled - eager).abs().max().item() < 1e-4
    again = wan(put, compile="off")  # compiled modules stay resident with their pipeline
    assert pipe.transformer._mora_compiled == "regional+fused_qkv" and (again - compiled).abs().max().item() < 1e-5
    cache = tiny_models.parent / "compile"
    assert Path(__import__("os").environ["TORCHINDUCTOR_CACHE_DIR"]) == cache / "inductor"
    assert any((cache / "inductor").rglob("*.py")), "inductor wrote nothing under Mora's cache directory"
    svd_unet = run_i2v(put, "svd", frames=2)[1] and resident(FakeContext(model=tiny_ref("svd")), (PIPELINE_KIND,)).unet
    assert not _regional(svd_unet)  # a UNet's transformer blocks are a minority of it: whole-module compile


@pytest.mark.slow
def test_a_compiled_unet_gets_the_guide_levers_and_still_matches_eager(tiny_models, monkeypatch):
    """Whole-module compile of a UNet: qkv fused, 2-d convolutions channels-last, inductor's flags set."""
    import torch
    import torch._inductor.config as inductor
    from diffusers import UNetSpatioTemporalConditionModel

    from mora.nodes.speed import INDUCTOR_FLAGS, compile_denoisers
    from mora.nodes.zoo import build

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    for name in INDUCTOR_FLAGS:
        monkeypatch.setattr(inductor, name, getattr(inductor, name))  # restored after the test
    unet = UNetSpatioTemporalConditionModel.from_pretrained(build("tiny", "svd", tiny_models) / "unet").eval()
    c = unet.config
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(2, 2, c.in_channels, 16, 16, generator=g), torch.tensor(500.0),
              torch.randn(2, 1, c.cross_attention_dim, generator=g),
              torch.randn(2, c.projection_class_embeddings_input_dim // c.addition_time_embed_dim, generator=g))
    with torch.no_grad():
        eager = unet(*inputs).sample
        assert compile_denoisers(FakeContext(), type("Pipe", (), {"unet": unet})()) == [
            "UNetSpatioTemporalConditionModel:whole+fused_qkv+channels_last"]
        compiled = unet(*inputs).sample
    assert unet._compiled_call_impl is not None
    attentions = [m for m in unet.modules() if type(m).__name__ == "Attention"]
    assert attentions and all(a.fused_projections for a in attentions)
    convs = [m for m in unet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert all(getattr(inductor, name) == value for name, value in INDUCTOR_FLAGS.items())
    assert ((compiled - eager).norm() / eager.norm()).item() < 1e-4


@pytest.mark.parametrize("kind", ["wan", "svd"])
def test_fused_projections_share_their_weights_with_the_separate_ones(tiny_models, kind):
    """Fusing keeps diffusers' separate q/k/v layers (another attention backend may read them) as views of the fused
    weights: no second copy, and a model reading them still computes what it did before fusing."""
    import torch
    from diffusers import UNetSpatioTemporalConditionModel, WanTransformer3DModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    from mora.nodes.speed import FUSED_PARTS, _fuse_qkv
    from mora.nodes.zoo import build

    g = torch.Generator().manual_seed(0)
    if kind == "wan":
        model = WanTransformer3DModel.from_pretrained(build("tiny", "wan_i2v", tiny_models) / "transformer").eval()
        c = model.config
        inputs = {"hidden_states": torch.randn(1, c.in_channels, 2, 8, 8, generator=g), "timestep": torch.tensor([500.0]),
                  "encoder_hidden_states": torch.randn(1, 8, c.text_dim, generator=g),
                  "encoder_hidden_states_image": torch.randn(1, 5, c.image_dim, generator=g), "return_dict": False}
    else:
        model = UNetSpatioTemporalConditionModel.from_pretrained(build("tiny", "svd", tiny_models) / "unet").eval()
        c = model.config
        inputs = {"sample": torch.randn(2, 2, c.in_channels, 16, 16, generator=g), "timestep": torch.tensor(500.0),
                  "encoder_hidden_states": torch.randn(2, 1, c.cross_attention_dim, generator=g),
                  "added_time_ids": torch.randn(2, c.projection_class_embeddings_input_dim // c.addition_time_embed_dim,
                                                generator=g), "return_dict": False}
    with torch.no_grad():
        before = model(**inputs)[0]
        assert _fuse_qkv(model)
        fused_out = model(**inputs)[0]
        attentions = [m for m in model.modules() if getattr(m, "fused_projections", False)]
        pairs = [(getattr(m, f), [getattr(m, n) for n in names]) for m in attentions
                 for f, names in FUSED_PARTS.items() if hasattr(m, f)]
        assert pairs and {f for m in attentions for f in FUSED_PARTS if hasattr(m, f)} >= {"to_kv"}
        for fused, parts in pairs:
            assert all(p.weight.untyped_storage().data_ptr() == fused.weight.untyped_storage().data_ptr() for p in parts)
            assert torch.equal(torch.cat([p.weight for p in parts]), fused.weight)
        if kind == "wan":  # its processor reads the separate layers again
            for m in attentions:
                m.fused_projections = False
        else:
            model.set_attn_processor(AttnProcessor2_0())
        separate = model(**inputs)[0]
    assert (fused_out - before).abs().max().item() < 1e-5
    assert (separate - before).abs().max().item() < 1e-5


def test_step_caches_change_results_only_while_on(put):
    plain = wan(put, steps=4)
    skipping = wan(put, steps=4, step_cache="first_block", step_cache_threshold=1.0)
    assert (skipping - plain).abs().max().item() > 1e-3  # every step after the first reused the cached blocks
    assert wan(put, steps=4).equal(plain)  # the cache is removed after the call: the shared pipeline is clean
    seer = wan(put, steps=6, step_cache="taylorseer", step_cache_interval=2)
    assert (seer - wan(put, steps=6)).abs().max().item() > 1e-3  # steps between full ones were predicted


def test_step_cache_needs_a_transformer(put):
    with pytest.raises(ValueError, match="`step_cache` 'first_block' needs a transformer denoiser"):
        run_i2v(put, "svd", frames=2, step_cache="first_block")


def test_attention_backends_run_or_fail_clearly(put):
    plain = wan(put)
    forced = wan(put, attention="sdpa_flash")  # PyTorch has a CPU flash kernel
    assert (forced - plain).abs().max().item() < 1e-4
    with pytest.raises(RuntimeError, match="`attention` 'sdpa_cudnn' has no kernel .* on cpu"):
        wan(put, attention="sdpa_cudnn")
    with pytest.raises(RuntimeError, match="`attention` 'flash_attn' cannot run here"):
        wan(put, attention="flash_attn")
    with pytest.raises(ValueError, match="diffusers' attention dispatcher"):
        run_i2v(put, "svd", frames=2, attention="sage")


def test_a_dispatcher_backend_ends_with_its_node(put, monkeypatch):
    """diffusers' set_attention_backend also sets the process-wide backend; after the node it is the one before."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    from mora.nodes import speed

    before = _AttentionBackendRegistry.get_active_backend()[0]
    plain = wan(put)
    monkeypatch.setitem(speed.DISPATCHER, "sage", "_native_math")  # a dispatcher backend that runs on CPU
    assert (wan(put, attention="sage") - plain).abs().max().item() < 1e-4
    assert _AttentionBackendRegistry.get_active_backend()[0] == before
    assert wan(put).equal(plain)


def test_fp8_needs_a_capable_gpu_and_says_so():
    from mora.nodes.video_latent import load_pipeline

    with pytest.raises(RuntimeError, match="compute capability >= 8.9"):
        load_pipeline(FakeContext(model={**tiny_ref("svd"), "quantization": "fp8"}), {"offload": "", "vae_tiling": False})


def test_fp8_quantizes_only_the_bfloat16_linear_layers(tiny_models, monkeypatch):
    """Wan keeps its time embedder in float32, which rowwise FP8 refuses: those layers stay, the others are FP8."""
    import sys
    import types

    import torch
    from diffusers import WanTransformer3DModel

    from mora.nodes.speed import quantize_fp8
    from mora.nodes.zoo import build

    chosen: list[str] = []

    def quantize_(module, config, filter_fn):  # torchao's entry point; its FP8 kernels need a Hopper GPU
        chosen.extend(name for name, m in module.named_modules() if filter_fn(m, name))

    fake = types.SimpleNamespace(quantize_=quantize_, PerRow=lambda: None,
                                 Float8DynamicActivationFloat8WeightConfig=lambda granularity: None)
    monkeypatch.setitem(sys.modules, "torchao", types.ModuleType("torchao"))
    monkeypatch.setitem(sys.modules, "torchao.quantization", fake)
    model = WanTransformer3DModel.from_pretrained(build("tiny", "wan_i2v", tiny_models) / "transformer",
                                                  dtype=torch.bfloat16)
    quantize_fp8(types.SimpleNamespace(transformer=model), {"quantization": "fp8"})
    kept = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in chosen]
    assert "blocks.0.attn1.to_q" in chosen and "blocks.0.ffn.net.2" in chosen
    assert kept and all(n.startswith("condition_embedder.") for n in kept), kept  # the embedders stay
    # the text embedder reads the prompt padded with zero rows, whose rowwise FP8 scale is 0 (NaN on the H100)
    assert "condition_embedder.text_embedder.linear_1" in kept
    assert all(model.get_submodule(n).weight.dtype == torch.float32 for n in kept if "time_embedder" in n)


def test_speed_fast_turns_compile_on_through_the_preset():
    from hydra import compose, initialize_config_module

    from mora.engine.frontends.config import register

    register()
    with initialize_config_module("mora.conf", version_base="1.3"):
        basic = compose("config")
        fast = compose("config", overrides=["speed=fast", "model=random"])
    assert basic.model.compile == "off" and basic.model.attention == "sdpa"
    assert fast.model.compile == "auto" and fast.model.name == "random" and fast.model.attention == "auto"


def test_auto_attention_is_flash_attention_4_for_wan_where_it_runs(put, monkeypatch):
    from types import SimpleNamespace

    from mora.nodes import flash_attention_4, speed

    WanTransformer3DModel = type("WanTransformer3DModel", (), {})
    wan_pipe, svd_pipe = SimpleNamespace(transformer=WanTransformer3DModel()), SimpleNamespace(unet=object())
    other = SimpleNamespace(transformer=type("FluxTransformer2DModel", (), {})())
    cpu, gpu = FakeContext(model=tiny_ref("wan_i2v")), FakeContext(model=tiny_ref("wan_i2v"), device="cuda:0")
    assert speed.resolved_attention(cpu, wan_pipe, "auto") == "sdpa"  # FA4 never runs on a CPU node
    assert (wan(put, attention="auto") - wan(put)).abs().max().item() == 0
    monkeypatch.setattr(flash_attention_4, "problem", lambda device: None if device.startswith("cuda") else "cpu")
    assert speed.resolved_attention(gpu, wan_pipe, "auto") == "sdpa_fa4"
    assert speed.resolved_attention(gpu, svd_pipe, "auto") == "sdpa"  # no faster on the SVD UNet (bench/README.md)
    assert speed.resolved_attention(gpu, other, "auto") == "sdpa"  # unmeasured models keep PyTorch's choice
    assert speed.resolved_attention(cpu, wan_pipe, "auto") == "sdpa"
    assert speed.resolved_attention(gpu, wan_pipe, "sdpa_cudnn") == "sdpa_cudnn"


def test_flash_attention_4_off_hopper_fails_clearly(put):
    from torch.nn import attention

    with pytest.raises(RuntimeError, match="`attention` 'sdpa_fa4' cannot run here: .*(flash-attn-4|CUDA devices)"):
        wan(put, attention="sdpa_fa4")  # a CPU node: never FA4, whatever GPU the machine has
    assert attention.current_flash_attention_impl() is None


def test_flash_attention_4_is_activated_for_its_node_only(put, monkeypatch):
    """Where FA4 can run (faked here: its kernels need a Hopper GPU) the node's call runs with it active and flash
    first in SDPA's order, AOTAutograd's cache off; after the node torch's default is back."""
    import torch._functorch.config as functorch
    from torch.nn import attention

    from mora.nodes import flash_attention_4
    from mora.nodes.models import resident
    from mora.nodes.video_latent import PIPELINE_KIND

    plain = wan(put, steps=2)
    monkeypatch.setattr(flash_attention_4, "problem", lambda device: None)
    seen: list[tuple[Any, bool]] = []
    pipe = resident(FakeContext(model=tiny_ref("wan_i2v")), (PIPELINE_KIND,))
    pipe.transformer.register_forward_pre_hook(
        lambda *_: seen.append((attention.current_flash_attention_impl(), functorch.enable_autograd_cache)))
    with_fa4 = wan(put, steps=2, attention="sdpa_fa4")  # the CPU's SDPA is untouched: FA4 replaces a CUDA kernel
    assert (with_fa4 - plain).abs().max().item() < 1e-4
    assert seen and set(seen) == {(flash_attention_4.IMPL, False)}
    assert attention.current_flash_attention_impl() is None and functorch.enable_autograd_cache
    seen.clear()
    wan(put, steps=2)
    assert seen and {impl for impl, _ in seen} == {None}


def test_flash_attention_4_gives_back_the_implementation_active_before(monkeypatch):
    from torch.nn import attention

    from mora.nodes import flash_attention_4

    class Handle:
        def remove(self) -> None:
            pass

    monkeypatch.setattr(flash_attention_4, "problem", lambda device: None)
    attention.register_flash_attention_impl("TEST_IMPL", register_fn=Handle)
    attention.activate_flash_attention_impl("TEST_IMPL")
    try:
        with flash_attention_4.active("cuda:0"):
            assert attention.current_flash_attention_impl() == flash_attention_4.IMPL
        assert attention.current_flash_attention_impl() == "TEST_IMPL"
    finally:
        attention.restore_flash_attention_impl(_raise_warn=False)


@pytest.mark.slow
def test_a_model_compiled_under_another_attention_says_fa4_does_not_reach_it(put, monkeypatch, caplog):
    """The compiled graph keeps the SDPA kernel it was traced with (torch compiles per class and does not guard on
    SDPA's order): logged, and only after a call that ran (a failed one traced nothing)."""
    from mora.nodes import flash_attention_4, speed

    monkeypatch.setattr(speed, "TRACED_ATTENTION", {})
    with pytest.raises(RuntimeError, match="sdpa_fa4' cannot run here"):
        wan(put, steps=2, compile="on", attention="sdpa_fa4")
    assert speed.TRACED_ATTENTION == {}
    wan(put, steps=2, compile="on")
    assert list(speed.TRACED_ATTENTION.values()) == ["sdpa"]
    monkeypatch.setattr(flash_attention_4, "problem", lambda device: None)
    wan(put, steps=2, compile="on", attention="sdpa_flash")
    assert "reach FlashAttention-4" not in caplog.text
    wan(put, steps=2, compile="on", attention="sdpa_fa4")
    assert "compiled under attention=sdpa; its compiled graph keeps the SDPA kernel chosen then" in caplog.text


def test_flash_attention_4_adapter_gives_torch_the_shape_it_unpacks(monkeypatch):
    """flash-attn-4 4.0 returns (out, lse, extras...); torch 2.11's FA4 registration unpacks two."""
    import sys
    import types

    from torch.nn.attention import _fa4

    from mora.nodes import flash_attention_4

    fake = types.ModuleType("flash_attn.cute.interface")
    fake._flash_attn_fwd = lambda q, k, v, **kw: ("out", "lse", None, None, None)
    fake._flash_attn_bwd = lambda *a, **kw: ("dq", "dk", "dv", None)
    cute = types.ModuleType("flash_attn.cute")
    cute.interface = fake
    monkeypatch.setitem(sys.modules, "flash_attn", types.ModuleType("flash_attn"))
    monkeypatch.setitem(sys.modules, "flash_attn.cute", cute)
    monkeypatch.setitem(sys.modules, "flash_attn.cute.interface", fake)
    assert flash_attention_4._flash_attn_fwd(1, 2, 3, return_lse=True) == ("out", "lse")
    assert flash_attention_4._flash_attn_bwd(1, 2, 3) == ("dq", "dk", "dv")
    assert _fa4._fa4_import_module("mora.nodes.flash_attention_4") is flash_attention_4  # torch accepts it


def test_fp8_leaves_a_unets_embedders_and_takes_its_attention_and_feed_forward(tiny_models):
    import torch
    from diffusers import UNetSpatioTemporalConditionModel

    from mora.nodes.speed import _fp8_layer
    from mora.nodes.zoo import build

    unet = UNetSpatioTemporalConditionModel.from_pretrained(build("tiny", "svd", tiny_models) / "unet",
                                                            dtype=torch.bfloat16)
    linears = {n: _fp8_layer(m, n) for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear)}
    embedders = [n for n in linears if n.startswith(("time_embedding", "add_embedding"))]
    attention = [n for n in linears if ".attn1.to_q" in n or ".ff.net." in n]
    assert embedders and not any(linears[n] for n in embedders)
    assert attention and all(linears[n] for n in attention)


def test_fusing_for_compile_waits_for_a_prefetch_in_flight(tiny_models, tmp_path):
    """A load runs inside process-wide patches (diffusers skips weight init, accelerate puts new parameters on the meta
    device), so projections fused in another thread meanwhile were built on meta: on one H100 the first compiled
    keyframe of a pool run failed so, its worker prefetching the video model. Fusing now waits for the load."""
    import threading
    import time
    from types import SimpleNamespace

    import torch
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from mora.nodes.models import get_pipeline
    from mora.nodes.speed import FUSED_PARTS, compile_denoisers
    from mora.nodes.zoo import build

    unet = UNet2DConditionModel.from_pretrained(build("tiny", "sd", tiny_models) / "unet").eval()
    inside = threading.Event()

    def slow_load(location: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        with init_empty_weights():
            inside.set()
            time.sleep(1.0)
        return {"loaded": location}

    ref = {"source": "path", "name": str(tmp_path), "revision": None, "dtype": "float32"}
    loader = threading.Thread(target=get_pipeline, args=(FakeContext(model=ref), "slow", slow_load),
                              kwargs={"prefetch": True})
    loader.start()
    assert inside.wait(10)
    started = time.monotonic()
    compile_denoisers(FakeContext(model=tiny_ref("sd")), SimpleNamespace(unet=unet))
    waited = time.monotonic() - started
    loader.join()
    fused = [(getattr(m, f), [getattr(m, n) for n in names]) for m in unet.modules()
             if getattr(m, "fused_projections", False) for f, names in FUSED_PARTS.items() if hasattr(m, f)]
    assert fused and all(f.weight.device.type == "cpu" for f, _ in fused)
    assert all(torch.equal(torch.cat([p.weight for p in parts]), f.weight) for f, parts in fused)
    assert waited > 0.5
