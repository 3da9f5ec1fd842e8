"""quantization=fp8_attention on CPU: the scaling, the refusals, and that a node's call runs with cuDNN's FP8 kernel as
the flash kernel. The kernel itself needs a Hopper GPU; bench/fp8_attention.py measures it there."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import FakeContext, tiny_ref

from mora.nodes import fp8_attention, speed


@pytest.mark.parametrize("spread", [1e-3, 1.0, 300.0])
def test_quantize_maps_the_largest_value_to_448_and_rounds_like_e4m3(spread):
    torch.manual_seed(0)
    x = torch.randn(1, 64, 4, 32, dtype=torch.bfloat16) * spread
    x8, descale = fp8_attention.quantize(x)
    assert x8.dtype == torch.float8_e4m3fn and x8.shape == x.shape and descale.shape == (1, 1, 1, 1)
    assert x8.float().abs().max().item() == 448.0
    back = x8.float() * descale
    normal = x.float().abs() > x.float().abs().max() * 2 ** -6  # e4m3 keeps 3 mantissa bits above its subnormals
    assert ((back - x.float()).abs()[normal] <= x.float().abs()[normal] / 16 * 1.01).all()
    assert (back - x.float()).norm() / x.float().norm() < 0.05


def test_quantize_leaves_room_when_asked_and_keeps_an_all_zero_tensor_finite():
    x = torch.tensor([[[[1.0, -2.0]]]], dtype=torch.bfloat16)
    x8, descale = fp8_attention.quantize(x, headroom=2.0)
    assert x8.float().abs().max().item() == 224.0 and descale.item() == pytest.approx(4 / 448)
    zeros, one = fp8_attention.quantize(torch.zeros(1, 1, 3, 2))
    assert one.item() == 1.0 and zeros.float().eq(0).all()


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


def test_an_fp8_attention_model_needs_a_capable_gpu_and_says_so():
    from mora.nodes.video_latent import load_pipeline

    with pytest.raises(RuntimeError, match="'fp8_attention' needs a CUDA device of compute capability >= 8.9"):
        load_pipeline(FakeContext(model={**tiny_ref("wan_i2v"), "quantization": "fp8_attention"}),
                      {"offload": "", "vae_tiling": False})
