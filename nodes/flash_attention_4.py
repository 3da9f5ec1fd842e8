"""FlashAttention-4 (the flash-attn-4 package's CuTe kernels, Hopper and Blackwell) as PyTorch's flash SDPA kernel
for one node's call: `attention=sdpa_fa4`, and `auto` on Wan (mora.nodes.speed).

It goes in through torch's flash-attention registry (mora.nodes.flash_registry), so every model honours it, compiled
or not. torch 2.11's own "FA4" registration unpacks the package's
forward as `(out, lse)`; flash-attn-4 4.0 betas return more, and the first call fails with "too many values to
unpack". So Mora registers this module, whose `_flash_attn_fwd`/`_flash_attn_bwd` pass the kernels through and keep
what torch reads, under its own name (`IMPL`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mora.nodes import flash_registry

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

    if reason := flash_registry.problem():
        return reason
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
    """FA4 as the flash SDPA kernel, flash first in SDPA's order, for this block (mora.nodes.flash_registry)."""
    if reason := problem(device):
        raise RuntimeError(f"`attention` 'sdpa_fa4' cannot run here: {reason}; use attention=sdpa")
    with flash_registry.as_flash_kernel(IMPL, __name__):
        yield
