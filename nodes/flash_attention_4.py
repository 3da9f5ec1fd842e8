"""FlashAttention-4's kernels in the shape PyTorch's FA4 flash-attention implementation calls them.

torch 2.11's `torch.nn.attention._fa4` unpacks `_flash_attn_fwd(...)` as `(out, lse)`; flash-attn-4 4.0 betas
return more (`out, lse` and optional extras), so torch's own registration fails on the first call with "too many
values to unpack". Registering this module instead (`mora.nodes.speed.flash_attention_4`) passes the kernels
through and keeps what torch reads.
"""
from __future__ import annotations

from typing import Any


def _flash_attn_fwd(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    from flash_attn.cute import interface

    out, lse, *_ = interface._flash_attn_fwd(*args, **kwargs)
    return out, lse


def _flash_attn_bwd(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    from flash_attn.cute import interface

    dq, dk, dv, *_ = interface._flash_attn_bwd(*args, **kwargs)
    return dq, dk, dv
