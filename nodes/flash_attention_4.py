"""FlashAttention-4 (the flash-attn-4 package's CuTe kernels, Hopper and Blackwell) as PyTorch's flash SDPA kernel
for one node's call: `attention=sdpa_fa4`, and `auto` on Wan (mora.nodes.speed).

torch >= 2.10 can route `scaled_dot_product_attention`'s flash kernel to FA4 (`torch.nn.attention`'s flash-attention
registry), so every model honours it, compiled or not. torch 2.11's own "FA4" registration unpacks the package's
forward as `(out, lse)`; flash-attn-4 4.0 betas return more, and the first call fails with "too many values to
unpack". So Mora registers this module, whose `_flash_attn_fwd`/`_flash_attn_bwd` pass the kernels through and keep
what torch reads, under its own name (`IMPL`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

IMPL = "MORA_FA4"


def _flash_attn_fwd(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    from flash_attn.cute import interface

    out, lse, *_ = interface._flash_attn_fwd(*args, **kwargs)
    return out, lse


def _flash_attn_bwd(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    from flash_attn.cute import interface

    dq, dk, dv, *_ = interface._flash_attn_bwd(*args, **kwargs)
    return dq, dk, dv


def problem(device: str) -> str | None:
    """Why FA4 cannot run for a node on `device` (torch, package or device), or None when it can."""
    import importlib.util

    import torch
    from torch.nn import attention

    if not hasattr(attention, "register_flash_attention_impl"):
        return f"torch {torch.__version__} has no flash-attention registry (needs torch >= 2.10)"
    if importlib.util.find_spec("flash_attn") is None or importlib.util.find_spec("flash_attn.cute") is None:
        return "the flash-attn-4 package is not installed (pip install --pre flash-attn-4)"
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return f"FA4 runs on CUDA devices (Hopper, Blackwell); this node runs on {device}"
    capability = torch.cuda.get_device_capability(torch.device(device))
    if capability[0] not in (9, 10):
        return f"FA4 runs on compute capability 9.0 or 10.x (Hopper, Blackwell); {device} has {capability}"
    return None


@contextlib.contextmanager
def active(device: str) -> Iterator[None]:
    """FA4 as the flash SDPA kernel and flash first in SDPA's order for this block; torch's previous kernel after.

    Flash goes first rather than alone: attention flash cannot run (a text encoder's masked attention) falls to the
    next kernel. The switch is process-wide while the block runs; a Mora process runs one node's model call at a time.
    """
    import functools

    from torch.nn import attention
    from torch.nn.attention import _fa4

    if reason := problem(device):
        raise RuntimeError(f"`attention` 'sdpa_fa4' cannot run here: {reason}; use attention=sdpa")
    attention.register_flash_attention_impl(IMPL, register_fn=functools.partial(
        _fa4.register_flash_attention_fa4, module_path=__name__))
    order = [attention.SDPBackend.FLASH_ATTENTION, attention.SDPBackend.CUDNN_ATTENTION,
             attention.SDPBackend.EFFICIENT_ATTENTION, attention.SDPBackend.MATH]
    before = attention.current_flash_attention_impl()
    try:
        if before != IMPL:
            attention.activate_flash_attention_impl(IMPL)
        with attention.sdpa_kernel(order, set_priority=True), _no_autograd_cache():
            yield
    finally:
        if before is None:
            attention.restore_flash_attention_impl(_raise_warn=False)
        elif before != IMPL:
            attention.activate_flash_attention_impl(before)


@contextlib.contextmanager
def _no_autograd_cache() -> Iterator[None]:
    """AOTAutograd's compile cache off while a model is traced in the block: its key is the traced graph before SDPA
    picks a kernel, so a graph cached by a run without FA4 came back with the other kernel (on the H100: a 1.8 s
    "compile" and no gain). Inductor's FX graph cache stays on: its key is the graph after that choice."""
    import torch._functorch.config as functorch

    with functorch.patch(enable_autograd_cache=False):
        yield
