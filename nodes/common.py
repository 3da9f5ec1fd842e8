"""What the diffusion agents share: their standard parameters, seeds, devices and memory options.

Every model agent takes the same `model`, `dtype`, `seed` and `attention` parameters, and every
diffusion agent the same memory and speed options (mora.nodes.speed), declared here once. Attention is PyTorch SDPA by
default; `attention=xformers` is used only if xformers imports and runs a real kernel on the
device, otherwise the agent fails with a clear error rather than silently falling back.

A loaded pipeline is shared by every node that uses the same model, so no node's settings may
stick to it for the next: attention is set on every call (`use_attention`, cheap to switch),
and the offload mode, which is fixed when a pipeline is placed, is part of the resident-model
key (a node asking for another mode gets its own placement). Offload is diffusers' own
(`model`, `sequential` or `group` offload to the CPU), on CUDA devices only; it changes memory
and speed, not results, so it is run-only.
"""
from __future__ import annotations

import functools
import importlib.util
from typing import Any

from mora.engine.execution.models import OFFLOADS
from mora.engine.graph.agent import Param, RunContext
from mora.nodes.speed import ATTENTIONS, COMPILE_PARAM

OFFLOAD_PARAM = Param("offload", str, "", "diffusers CPU offload on CUDA (empty: the preset's): model (whole models), "
                      "group (blocks, streamed) or sequential (layers; least memory, slowest)",
                      choices=("", *OFFLOADS), run_only=True)

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
    *(p for p in MODEL_PARAMS if p.name != "attention"),
    Param("attention", str, "", "attention backend (empty: the preset's, else sdpa); see mora.nodes.speed",
          choices=("", *ATTENTIONS), run_only=True),
    COMPILE_PARAM,
    OFFLOAD_PARAM,
    Param("vae_slicing", bool, False, "decode the VAE one item at a time", run_only=True),
    Param("vae_tiling", bool, False, "decode the VAE in tiles (changes pixels slightly)"),
)


def generator(ctx: RunContext, seed: int | None = None) -> Any:
    """A torch.Generator seeded with the node's seed, on CPU so results match across devices."""
    import torch

    return torch.Generator("cpu").manual_seed(int(ctx.seed if seed is None else seed))


@functools.cache
def xformers_works(device: str) -> bool:
    """True when xformers imports and its memory-efficient attention runs on `device`."""
    try:
        import torch
        import xformers.ops

        q = torch.zeros(1, 8, 1, 16, device=device, dtype=torch.float16 if device != "cpu" else torch.float32)
        xformers.ops.memory_efficient_attention(q, q, q)
        return True
    except Exception:  # noqa: BLE001 (any import or kernel failure means "does not work here")
        return False


def offload_mode(params: dict[str, Any], ref: dict[str, Any] | None) -> str:
    """The node's offload mode: its own parameter, else its model reference's (from the preset)."""
    return params.get("offload") or (ref or {}).get("offload") or "none"


def place(ctx: RunContext, pipe: Any, params: dict[str, Any], offload: str) -> Any:
    """Move a freshly loaded pipeline to the node's device with diffusers' `offload` mode (CUDA only)."""
    import torch

    if offload != "none" and ctx.device.startswith("cuda"):
        if offload == "model":
            pipe.enable_model_cpu_offload(device=ctx.device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=ctx.device)
        else:
            pipe.enable_group_offload(onload_device=torch.device(ctx.device), offload_type="block_level",
                                      num_blocks_per_group=1, use_stream=True)
    else:
        pipe.to(ctx.device)
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if params.get("vae_slicing") and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
        if params.get("vae_tiling") and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def quantization_config(ref: dict[str, Any], pipeline: bool = True) -> dict[str, Any]:
    """`from_pretrained` kwargs quantizing the heavy modules with bitsandbytes, as `ref['quantization']` says.

    `fp8` and `fp8_attention` need no kwargs: they are checked here and applied to the placed pipeline and its calls
    (mora.nodes.speed).

    The denoiser (unet or transformer) and the text encoders are quantized; VAEs, image encoders
    and schedulers stay in `dtype` (small, and sensitive). Needs CUDA and the bitsandbytes package.
    """
    mode = ref.get("quantization") or "none"
    if mode == "none":
        return {}
    if mode in ("fp8", "fp8_attention"):  # applied after placement (mora.nodes.speed); checked before the load
        from mora.nodes.speed import check_fp8

        check_fp8(mode)
        return {}
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(f"`quantization` {mode!r} needs the bitsandbytes package (`pip install bitsandbytes`) and "
                           "a CUDA device; or set model.quantization=none")
    import torch

    compute = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(ref.get("dtype") or "", torch.float32)
    if mode == "int8":
        backend, kwargs = "bitsandbytes_8bit", {"load_in_8bit": True}
    else:
        backend, kwargs = "bitsandbytes_4bit", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                               "bnb_4bit_compute_dtype": compute}
    if not pipeline:
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(**kwargs)}
    from diffusers.quantizers import PipelineQuantizationConfig

    components = ["unet", "transformer", "transformer_2", "text_encoder", "text_encoder_2", "text_encoder_3"]
    return {"quantization_config": PipelineQuantizationConfig(quant_backend=backend, quant_kwargs=kwargs,
                                                              components_to_quantize=components)}


def use_attention(ctx: RunContext, pipe: Any, attention: str) -> None:
    """Switch a (shared) pipeline to this node's attention backend for this call."""
    if getattr(pipe, "_mora_attention", "sdpa") == attention:
        return
    if attention == "xformers":
        if not xformers_works(ctx.device):
            raise RuntimeError(
                "`attention` is 'xformers' but xformers does not import or its kernels do not run on "
                f"{ctx.device}; use attention=sdpa"
            )
        pipe.enable_xformers_memory_efficient_attention()
    else:
        pipe.disable_xformers_memory_efficient_attention()
    pipe._mora_attention = attention


def feature_model(ctx: RunContext, kind: str, processor_class: str, model_class: str) -> tuple[Any, Any]:
    """A resident (processor, model) pair of transformers classes for the node's model, in eval mode on its device.

    The metric agents that embed frames or text (CLIP, DINO) load through this one path.
    """
    import transformers

    from mora.nodes.models import get_pipeline, torch_dtype

    def load(location: str, kwargs: dict[str, Any]) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if k != "variant"}
        processor = getattr(transformers, processor_class).from_pretrained(location, **kwargs)
        model = getattr(transformers, model_class).from_pretrained(location, dtype=torch_dtype(ctx.model["dtype"]),
                                                                   **kwargs)
        return processor, model.to(ctx.device).eval()

    return get_pipeline(ctx, kind, load)
