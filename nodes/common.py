"""What the diffusion agents share: their standard parameters, seeds, devices and memory options.

Every model agent takes the same `model`, `dtype`, `seed` and `attention` parameters, and every
diffusion agent the same memory options, declared here once. Attention is PyTorch SDPA by
default; `attention=xformers` is used only if xformers imports and runs a real kernel on the
device, otherwise the agent fails with a clear error rather than silently falling back.
"""
from __future__ import annotations

from typing import Any

from mora.engine.agent import Param

MODEL_PARAMS: tuple[Param, ...] = (
    Param("model", str, "", "model override: 'tiny:NAME', 'random:NAME', 'hub:ID[@REV]', 'path:DIR', "
          "'package:MODULE:FOLDER' (empty: preset)"),
    Param("dtype", str, "", "weights dtype (empty: preset's)", choices=("", "float32", "float16", "bfloat16")),
    Param("seed", int, None, "random seed; without one the node is not cached across runs", min=0, max=2**63 - 1,
          batchable=True),
    Param("attention", str, "sdpa", "attention backend", choices=("sdpa", "xformers"), run_only=True),
)
"""What every model agent takes (the prompt language model too)."""

DIFFUSION_PARAMS: tuple[Param, ...] = (
    *MODEL_PARAMS,
    Param("cpu_offload", bool, False, "model CPU offload (saves GPU memory, slower)", run_only=True),
    Param("vae_slicing", bool, False, "decode the VAE one item at a time", run_only=True),
    Param("vae_tiling", bool, False, "decode the VAE in tiles (changes pixels slightly)"),
)


def generator(ctx: Any, seed: int | None = None) -> Any:
    """A torch.Generator seeded with the node's seed, on CPU so results match across devices."""
    import torch

    return torch.Generator("cpu").manual_seed(int(ctx.seed if seed is None else seed))


def xformers_works(device: str) -> bool:
    """True when xformers imports and its memory-efficient attention runs on `device`."""
    try:
        import torch
        import xformers.ops

        q = torch.zeros(1, 8, 1, 16, device=device, dtype=torch.float16 if device != "cpu" else torch.float32)
        xformers.ops.memory_efficient_attention(q, q, q)
        return True
    except Exception:  # any import or kernel failure means "does not work here"
        return False


def place(ctx: Any, pipe: Any, params: dict[str, Any]) -> Any:
    """Move a freshly loaded pipeline to the node's device and apply its memory options."""
    if params.get("cpu_offload") and ctx.device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=ctx.device)
    else:
        pipe.to(ctx.device)
    if params.get("attention") == "xformers":
        if not xformers_works(ctx.device):
            raise RuntimeError(
                "`attention` is 'xformers' but xformers does not import or its kernels do not run on "
                f"{ctx.device}; use attention=sdpa"
            )
        pipe.enable_xformers_memory_efficient_attention()
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if params.get("vae_slicing") and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
        if params.get("vae_tiling") and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe
