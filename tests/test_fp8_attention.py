"""quantization=fp8_attention on CPU: the scaling, the refusals, and that a node's call runs with cuDNN's FP8 kernel as
the flash kernel. The kernel itself needs a Hopper GPU; bench/fp8_attention.py measures it there."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import FakeContext, tiny_ref

from mora.nodes import fp8_attention, speed


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spread", [1e-3, 1.0, 300.0])
def test_quantize_scales_by_a_power_of_two_into_e4m3s_top_binade_without_bias(spread, dtype):
    torch.manual_seed(0)
    x = (torch.randn(1, 256, 4, 32) * spread).to(dtype)
    x8, descale = fp8_attention.quantize(x)
    assert x8.dtype == torch.float8_e4m3fn and x8.shape == x.shape and descale.shape == (1, 1, 1, 1)
    top = x8.float().abs().max().item()
    if dtype == torch.float16 and spread < 0.01:  # the scale stops at 2**14, float16's largest power of two but one
        assert descale.item() == 2 ** -14 and top < 224.0
    else:
        assert 224.0 < top <= 448.0
    assert torch.log2(descale).item() == round(torch.log2(descale).item())  # exact in any dtype
    back, exact = x8.float() * descale, x.float()
    normal = exact.abs() > exact.abs().max() * 2 ** -6  # e4m3 keeps 3 mantissa bits above its subnormals
    assert ((back - exact).abs()[normal] <= exact.abs()[normal] / 16).all()
    assert (back - exact).norm() / exact.norm() < 0.05
    assert abs((back * exact).sum() / (exact * exact).sum() - 1) < 2e-3  # no systematic scale error


def test_quantize_leaves_room_when_asked_and_keeps_an_all_zero_tensor_zero():
    x = torch.tensor([[[[1.0, -2.0]]]], dtype=torch.bfloat16)
    x8, descale = fp8_attention.quantize(x, headroom=2.0)
    assert x8.float().abs().max().item() == 128.0 and descale.item() == 2 ** -6  # 2 * 2 * 2**6 = 256 <= 448 < 512
    zeros, descale = fp8_attention.quantize(torch.zeros(1, 1, 3, 2))
    assert zeros.float().eq(0).all() and torch.isfinite(descale).all() and descale.item() > 0


def test_it_says_why_it_cannot_run_off_a_hopper_gpu():
    reason = fp8_attention.problem("cpu")
    assert reason and ("nvidia-cudnn-frontend" in reason or "CUDA devices" in reason)
    with pytest.raises(RuntimeError, match="'fp8_attention' cannot run here: .*use quantization=fp8"), \
            fp8_attention.active("cpu"):
        pass


@pytest.mark.parametrize(("asked", "named"), [({"cu_seqlens_q": torch.zeros(2)}, "cu_seqlens_q"),
                                              ({"window_size_left": 8}, "window_size_left"),
                                              ({"num_splits": 2}, "num_splits")])
def test_the_kernel_refuses_what_it_does_not_do_by_name(asked, named):
    q = torch.zeros(1, 16, 2, 32, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match=f"cuDNN FP8 attention: {named} not supported"):
        fp8_attention._flash_attn_fwd(q, q, q, **asked)
    with pytest.raises(RuntimeError, match="grouped-query"):
        fp8_attention._flash_attn_fwd(q, q[:, :, :1], q[:, :, :1])
    with pytest.raises(RuntimeError, match="inference-only"):
        fp8_attention._flash_attn_bwd(q, q, q)


def test_a_node_of_an_fp8_attention_model_runs_with_the_fp8_kernel_as_flash_whatever_its_attention(monkeypatch):
    """Where it can run (faked: its kernel needs Hopper) the node's call has cuDNN's FP8 kernel as PyTorch's flash
    kernel, also under attention=auto (which picks FA4 for a Wan otherwise); after the call torch's default is back."""
    from torch.nn import attention

    monkeypatch.setattr(fp8_attention, "problem", lambda device: None)
    seen = []
    pipe = SimpleNamespace(transformer=torch.nn.Linear(2, 2))
    for asked in ("sdpa", "auto"):
        ctx = FakeContext(model={**tiny_ref("wan_i2v"), "quantization": "fp8_attention"}, device="cuda:0")
        with speed.speedup(ctx, pipe, {"attention": asked, "compile": "off", "step_cache": "none"}):
            seen.append(attention.current_flash_attention_impl())
        assert attention.current_flash_attention_impl() is None
    assert seen == [fp8_attention.IMPL, fp8_attention.IMPL]
    with speed.speedup(FakeContext(model=tiny_ref("wan_i2v")), pipe, {"attention": "sdpa", "step_cache": "none"}):
        assert attention.current_flash_attention_impl() is None  # quantization=none: the node's attention as asked


@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability() >= speed.FP8_CAPABILITY,
                    reason="this GPU can run FP8")
def test_an_fp8_attention_model_needs_a_capable_gpu_and_says_so():
    from mora.nodes.video_latent import load_pipeline

    with pytest.raises(RuntimeError, match="'fp8_attention' needs a CUDA device of compute capability >= 8.9"):
        load_pipeline(FakeContext(model={**tiny_ref("wan_i2v"), "quantization": "fp8_attention"}),
                      {"offload": "", "vae_tiling": False})


def test_fp8_attention_refused_with_its_reason_where_fp8_products_could_run(monkeypatch):
    import importlib.util

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 9))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torchao" else find_spec(name))
    monkeypatch.setattr(fp8_attention, "problem", lambda device: f"no FP8 attention on {device} here")
    speed.check_fp8("fp8")  # FP8 products alone can run
    with pytest.raises(RuntimeError, match="'fp8_attention' cannot run here: no FP8 attention on cuda:0 here; use "
                                           "quantization=fp8"):
        speed.check_fp8("fp8_attention")


def test_a_model_compiled_under_a_non_flash_attention_is_refused_fp8_attention(monkeypatch):
    """Its compiled graph keeps that SDPA kernel: the FP8 kernel would not run while the results are keyed as FP8."""
    monkeypatch.setattr(fp8_attention, "problem", lambda device: None)
    transformer = torch.nn.Linear(2, 2)
    transformer._mora_compiled = "regional"
    pipe = SimpleNamespace(transformer=transformer)
    monkeypatch.setattr(speed, "TRACED_ATTENTION", {torch.nn.Linear: "sdpa_cudnn"})
    ctx = FakeContext(model={**tiny_ref("wan_i2v"), "quantization": "fp8_attention"}, device="cuda:0")
    with pytest.raises(RuntimeError, match="compiled in this process under attention=sdpa_cudnn.*new process"), \
            speed.speedup(ctx, pipe, {"attention": "sdpa", "compile": "off", "step_cache": "none"}):
        pass
    monkeypatch.setattr(speed, "TRACED_ATTENTION", {torch.nn.Linear: "sdpa_fa4"})  # flash first: replaced
    with speed.speedup(ctx, pipe, {"attention": "sdpa", "compile": "off", "step_cache": "none"}):
        pass
    assert speed.TRACED_ATTENTION[torch.nn.Linear] == "sdpa_fa4"


needs_hopper = pytest.mark.skipif(not torch.cuda.is_available() or fp8_attention.problem("cuda") is not None,
                                  reason="cuDNN's FP8 attention needs a Hopper or Blackwell GPU and nvidia-cudnn-frontend")


@needs_hopper
@pytest.mark.parametrize("keys", [512, fp8_attention.MIN_KEYS])
def test_on_a_hopper_gpu_sdpa_runs_fp8_over_long_keys_and_bfloat16_over_short_ones(keys):
    import torch.nn.functional as F

    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(1, 4, n, 128, device="cuda", dtype=torch.bfloat16, generator=g)
               for n in (2048, keys, keys))
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    compiled = torch.compile(F.scaled_dot_product_attention)
    with fp8_attention.active("cuda"):
        eager, traced = F.scaled_dot_product_attention(q, k, v), compiled(q, k, v)
    for out in (eager, traced):
        error = ((out.float() - ref).norm() / ref.norm()).item()
        assert (0.01 < error < 0.08) if keys >= fp8_attention.MIN_KEYS else error < 0.01  # FP8 rounds; bf16 barely
    out, lse = fp8_attention._flash_attn_fwd(*(t.transpose(1, 2) for t in (q, k, v)))
    scores = (q.float() @ k.float().transpose(-1, -2)) * 128 ** -0.5
    assert lse.shape == (1, 4, 2048) and lse.dtype == torch.float32
    assert (lse - torch.logsumexp(scores, -1)).abs().max().item() < 0.1
