"""Another kernel as PyTorch's flash SDPA kernel for a block: FlashAttention-4 (mora.nodes.flash_attention_4) and
cuDNN's FP8 attention (mora.nodes.fp8_attention) go in this way.

torch >= 2.10 can route `scaled_dot_product_attention`'s flash kernel to an implementation registered by name
(`torch.nn.attention`'s flash-attention registry): every model honours it, compiled or not. Its FA4 glue
(`torch.nn.attention._fa4`) checks the inputs and calls the `_flash_attn_fwd`/`_flash_attn_bwd` of the module named,
so each of Mora's kernels is such a module.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


def problem() -> str | None:
    """Why this torch cannot swap its flash kernel, or None when it can."""
    import torch
    from torch.nn import attention

    if not hasattr(attention, "register_flash_attention_impl"):
        return f"torch {torch.__version__} has no flash-attention registry (needs torch >= 2.10)"
    return None


@contextlib.contextmanager
def as_flash_kernel(impl: str, module_path: str) -> Iterator[None]:
    """The kernel of `module_path`, registered as `impl`, as the flash SDPA kernel and flash first in SDPA's order for
    this block; torch's previous kernel after.

    Flash goes first rather than alone: attention flash cannot run (a text encoder's masked attention) falls to the
    next kernel. The switch is process-wide while the block runs; a Mora process runs one node's model call at a time.
    """
    import functools

    from torch.nn import attention
    from torch.nn.attention import _fa4

    attention.register_flash_attention_impl(impl, register_fn=functools.partial(
        _fa4.register_flash_attention_fa4, module_path=module_path))
    order = [attention.SDPBackend.FLASH_ATTENTION, attention.SDPBackend.CUDNN_ATTENTION,
             attention.SDPBackend.EFFICIENT_ATTENTION, attention.SDPBackend.MATH]
    before = attention.current_flash_attention_impl()
    try:
        if before != impl:
            attention.activate_flash_attention_impl(impl)
        with attention.sdpa_kernel(order, set_priority=True), _no_autograd_cache():
            yield
    finally:
        if before is None:
            attention.restore_flash_attention_impl(_raise_warn=False)
        elif before != impl:
            attention.activate_flash_attention_impl(before)


@contextlib.contextmanager
def _no_autograd_cache() -> Iterator[None]:
    """AOTAutograd's compile cache off while a model is traced in the block: its key is the traced graph before SDPA
    picks a kernel, so a graph cached by a run without this kernel came back with the other one (on the H100, FA4: a
    1.8 s "compile" and no gain). Inductor's FX graph cache stays on: its key is the graph after that choice."""
    import torch._functorch.config as functorch

    with functorch.patch(enable_autograd_cache=False):
        yield
