"""Speed levers on a loaded pipeline's denoiser: torch.compile, the attention kernel and denoising step caches.

Each diffusion agent wraps its pipeline call in `speedup(ctx, pipe, params)`. The policy:

- `compile` (run-only: compiled code changes floats in the last bits, like batching): `off`, `on` or
  `auto`; empty takes the preset's (`model.compile`, which `speed=fast` sets). `on` compiles the
  denoiser (unet, transformer, transformer_2) in place with torch.compile's default mode, once per
  resident pipeline: regionally (diffusers' `compile_repeated_blocks`) where the model's own stack of
  layers is the repeated blocks it declares (Wan's transformer blocks), the whole module otherwise (a
  UNet, whose declared transformer blocks sit deep inside its down and up blocks, a minority of its work). Before
  compiling, the weight-independent levers of diffusers' torch.compile guide are applied: the attention's query, key
  and value projections fused into one matrix product (`fuse_qkv_projections`, where the model has it), a
  convolutional model's weights in channels-last memory format, and inductor's `INDUCTOR_FLAGS` (1x1
  convolutions as matrix products; not max-autotune, whose minutes of tuning every process would pay). The log says
  what was done per module (the manifest records the node's `compile` mode). The compiled modules stay with the
  pipeline, so every later node on it runs compiled; a node asking `off` does not undo that.
  `auto` compiles on CUDA devices, where bench/README.md measured it to pay, and never on CPU or MPS.
  Inductor's, Triton's and the FX graph caches live under `<cache>/compile` (the models directory's
  sibling), so a second process on the machine compiles from them.
- `attention` (run-only): `sdpa` (PyTorch's choice of kernel), `auto` (what measured best per model,
  `resolved_attention`; `speed=fast` sets it), `xformers`, one SDPA kernel forced (`sdpa_flash`, `sdpa_cudnn`,
  `sdpa_efficient`, through `torch.nn.attention.sdpa_kernel` for the call, so every model honours it), `sdpa_fa4`
  (FlashAttention-4 as PyTorch's flash kernel, mora.nodes.flash_attention_4; every model honours it, compiled or not,
  but a compiled model keeps the SDPA kernel of its first traced call: `TRACED_ATTENTION`) or a kernel from another
  package through diffusers' attention dispatcher (`flash_attn`, `flash_attn3`, `sage`: models whose attention goes
  through the dispatcher, i.e. the transformers such as Wan). A backend that cannot run is an error naming it,
  never a silent fallback.
- `step_cache` (keyed: it changes results): `none`, `first_block` (FirstBlockCache, skip the rest of
  the blocks while the first block's output barely changes, `step_cache_threshold`) or `taylorseer`
  (TaylorSeer, predict blocks' outputs between full steps every `step_cache_interval`), through
  diffusers' `enable_cache` on transformer denoisers, for the call only. What a cache skips and costs
  depends on trained weights; no threshold here was tuned (the defaults are diffusers').
- FP8 is a model quantization (`model.quantization=fp8`, mora.nodes.common.quantization_config), keyed
  through the model's identity. `fp8_attention` adds attention in FP8 (mora.nodes.fp8_attention: cuDNN's FP8 kernel
  in place of the flash one for the call, whatever `attention` says, which may only be sdpa or auto with it).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from mora.engine.graph.agent import Param, RunContext
from mora.nodes import flash_attention_4, fp8_attention
from mora.nodes.models import building_modules

log = logging.getLogger(__name__)

DENOISERS = ("unet", "transformer", "transformer_2")
SDPA_KERNELS = {"sdpa_flash": "FLASH_ATTENTION", "sdpa_cudnn": "CUDNN_ATTENTION",
                "sdpa_efficient": "EFFICIENT_ATTENTION"}
DISPATCHER = {"flash_attn": "flash", "flash_attn3": "_flash_3", "sage": "sage"}
FA4 = "sdpa_fa4"
FP8_ATTENTION = "fp8_attention"
"""Not an `attention` choice: the attention of a model quantized `fp8_attention` (keyed through the model)."""
ATTENTIONS = ("sdpa", "auto", "xformers", *SDPA_KERNELS, FA4, *DISPATCHER)
STEP_CACHES = ("none", "first_block", "taylorseer")
INDUCTOR_FLAGS = {"conv_1x1_as_mm": True}
"""Inductor settings from diffusers' torch.compile speed-up guide, set process-wide when Mora compiles.

The guide's others (coordinate-descent tuning, no epilogue fusion) go with max-autotune and lengthen compilation;
bench/gpu_speed.py measures them (`--flags-on`)."""

COMPILE_PARAM = Param("compile", str, "", "torch.compile the denoiser (empty: the preset's): off, on, or auto "
                      "(on CUDA)", choices=("", "off", "on", "auto"), run_only=True)
STEP_CACHE_PARAMS: tuple[Param, ...] = (
    Param("step_cache", str, "none", "denoising step cache for transformer models (Wan): none, first_block or "
          "taylorseer (changes results; quality untested on trained weights)", choices=STEP_CACHES),
    Param("step_cache_threshold", float, 0.05, "first_block: relative change of the first block below which the "
          "other blocks are skipped", min=0.0, max=1.0, only_with=("step_cache", "first_block")),
    Param("step_cache_interval", int, 5, "taylorseer: steps between full computations", min=1, max=100,
          only_with=("step_cache", "taylorseer")),
)


def compile_mode(ctx: RunContext, params: Mapping[str, Any]) -> str:
    """`off` or `on` for this node: its own `compile`, else its model reference's; `auto` is on for CUDA only."""
    mode = params.get("compile") or (ctx.model or {}).get("compile") or "off"
    if mode == "auto":
        return "on" if str(ctx.device).startswith("cuda") else "off"
    return mode


def attention_choice(ctx: RunContext, params: Mapping[str, Any]) -> str:
    """The node's attention backend: its own `attention`, else its model reference's, else sdpa."""
    return params.get("attention") or (ctx.model or {}).get("attention") or "sdpa"


def resolved_attention(ctx: RunContext, pipe: Any, choice: str) -> str:
    """`auto` where measured (bench/README.md, one H100): FlashAttention-4 for a Wan transformer where it can run
    (1.37x a compiled step against 1.23x without it, as close to bfloat16 on the trained world Wan as float32 is);
    PyTorch's SDPA for the rest (no faster on the SVD UNet eager; other transformers unmeasured). Any other choice is
    itself."""
    if choice != "auto":
        return choice
    wan = any(type(m).__name__.startswith("Wan") for m in denoisers(pipe))
    chosen = FA4 if wan and flash_attention_4.problem(str(ctx.device)) is None else "sdpa"
    log.info("%s: attention auto -> %s", ctx.node_id, chosen)
    return chosen


def denoisers(pipe: Any) -> list[Any]:
    return [m for m in (getattr(pipe, name, None) for name in DENOISERS) if m is not None]


def compile_denoisers(ctx: RunContext, pipe: Any) -> list[str]:
    """Compile every denoiser of `pipe` once (regional or whole, see the policy); return what was done per module."""
    use_compile_cache()
    done = []
    for module in denoisers(pipe):
        how = getattr(module, "_mora_compiled", None)
        if how is None:
            regional = _regional(module)
            with building_modules():  # fusing builds Linear layers: never inside a prefetch's load
                levers = _levers(module)
            how = "+".join(["regional" if regional else "whole", *levers])
            if regional:
                module.compile_repeated_blocks()
            else:
                module.compile()
            module._mora_compiled = how
            log.info("%s: compiled %s (%s)", ctx.node_id, type(module).__name__, how)
        done.append(f"{type(module).__name__}:{how}")
    return done


def _levers(module: Any) -> list[str]:
    """Apply the weight-independent levers to `module` before it is compiled; return their names."""
    import torch

    done = []
    quantized = any(type(p.data) is not torch.Tensor for p in module.parameters())  # FP8 weights: not concatenated
    if not quantized and _fuse_qkv(module):
        done.append("fused_qkv")
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    if convs:
        for conv in convs:  # only the 4-d weights: a 3-d convolution's 5-d weights have no channels-last layout
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
        done.append("channels_last")
    return done


def _fuse_qkv(module: Any) -> bool:
    """Fuse the attention's q, k, v projections (k, v for cross-attention) into one matrix product where it can be.

    The model's own `fuse_qkv_projections` first; where that leaves the classic `Attention` modules with SDPA
    processors unfused (the SVD UNet's only fuses the newer attention classes), the recipe of UNet2DConditionModel's:
    each module's projections fused and its processor the fused one. Other processors (IP-Adapter's added
    projections, xformers) are left as they are. The separate projections stay (another attention backend may read
    them) as views of the fused weights (`_share_fused_weights`), so fusing costs no memory.
    """
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0

    if hasattr(module, "fuse_qkv_projections"):
        try:
            module.fuse_qkv_projections()
        except ValueError as e:
            log.info("%s: qkv projections not fused: %s", type(module).__name__, e)
    classic = [m for m in module.modules() if isinstance(m, Attention) and not m.fused_projections]
    if classic and all(type(m.processor) is AttnProcessor2_0 for m in classic):
        for m in classic:
            m.fuse_projections(fuse=True)
            m.set_processor(FusedAttnProcessor2_0())
    fused = [m for m in module.modules() if getattr(m, "fused_projections", False)]
    for m in fused:
        _share_fused_weights(m)
    return bool(fused)


FUSED_PARTS = {"to_qkv": ("to_q", "to_k", "to_v"), "to_kv": ("to_k", "to_v"), "to_added_kv": ("add_k_proj", "add_v_proj")}
"""diffusers' fused projections and the layers each one concatenates, in order."""


def _share_fused_weights(attention: Any) -> None:
    """Make the layers a fused projection concatenates views of its rows. diffusers keeps them as copies beside it (a
    second set of q/k/v weights: gigabytes for a 14B Wan, two such sets for Wan 2.2's two transformers)."""
    for fused_name, names in FUSED_PARTS.items():
        fused = getattr(attention, fused_name, None)
        parts = [getattr(attention, n, None) for n in names]
        if fused is None or any(p is None for p in parts) or sum(p.out_features for p in parts) != fused.out_features:
            continue
        start = 0
        for part in parts:
            rows = slice(start, start + part.out_features)
            part.weight.data = fused.weight.data[rows]
            if part.bias is not None and fused.bias is not None:
                part.bias.data = fused.bias.data[rows]
            start += part.out_features


def _regional(module: Any) -> bool:
    """True when the model's own stack of layers is its declared repeated blocks (a transformer such as Wan's)."""
    import torch

    blocks = set(getattr(module, "_repeated_blocks", None) or ())
    return bool(blocks) and hasattr(module, "compile_repeated_blocks") and any(
        isinstance(child, torch.nn.ModuleList) and len(child) > 1 and all(type(m).__name__ in blocks for m in child)
        for child in module.children()
    )


def compile_cache_dir() -> Any:
    """`<cache>/compile`: beside the models directory, so it follows MORA_MODELS_DIR and the cache directory."""
    from mora.nodes.models import models_dir

    return models_dir().parent / "compile"


def use_compile_cache() -> None:
    """Point inductor's and Triton's on-disk caches into Mora's cache directory (kept if the user set them)."""
    root = compile_cache_dir()
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    import torch._inductor.config as inductor

    inductor.fx_graph_cache = True
    inductor.autotune_local_cache = True
    for name, value in INDUCTOR_FLAGS.items():
        setattr(inductor, name, value)


def _attention(ctx: RunContext, pipe: Any, choice: str) -> contextlib.AbstractContextManager[Any]:
    """Set `choice` for one call: a context that forces an SDPA kernel, or that sets and resets the dispatcher's."""
    from mora.nodes.common import use_attention

    use_attention(ctx, pipe, "xformers" if choice == "xformers" else "sdpa")
    if choice in SDPA_KERNELS:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(getattr(SDPBackend, SDPA_KERNELS[choice]))
    if choice in DISPATCHER:
        return _dispatcher(ctx, pipe, choice)
    if choice == FA4:
        return flash_attention_4.active(str(ctx.device))
    if choice == FP8_ATTENTION:
        return fp8_attention.active(str(ctx.device))
    return contextlib.nullcontext()


@contextlib.contextmanager
def _dispatcher(ctx: RunContext, pipe: Any, choice: str) -> Iterator[None]:
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _AttentionBackendRegistry,
        _check_attention_backend_requirements,
    )

    modules = [m for m in denoisers(pipe) if not hasattr(m, "up_blocks")]  # UNets call SDPA directly
    if not modules:
        raise ValueError(f"`attention` {choice!r} goes through diffusers' attention dispatcher, which "
                         f"{type(pipe).__name__}'s denoiser does not use; use sdpa, sdpa_flash, sdpa_cudnn or "
                         "sdpa_efficient")
    try:
        _check_attention_backend_requirements(AttentionBackendName(DISPATCHER[choice]))
    except (RuntimeError, ImportError) as e:
        raise RuntimeError(f"`attention` {choice!r} cannot run here: {e}") from None
    before = _AttentionBackendRegistry._active_backend  # set_attention_backend also sets it process-wide
    for m in modules:
        m.set_attention_backend(DISPATCHER[choice])
    try:
        yield
    finally:
        for m in modules:
            m.reset_attention_backend()
        _AttentionBackendRegistry.set_active_backend(before)  # reset_attention_backend leaves it: every model would use it


TAYLORSEER_ATTENTION = (r"^blocks\.\d+\.attn\d*$", r"^transformer_blocks\.\d+\.attn\d*$")
"""The modules TaylorSeer predicts between full steps: the transformer blocks' attention layers, as diffusers
intends. Its 0.42 defaults (`^blocks.*attn`) must match a module's whole name, so they miss Wan's `attn1`/`attn2`
and TaylorSeer silently did nothing on Wan (2026-11-26: the world's Wan made bit-identical videos with it on)."""


@contextlib.contextmanager
def _step_cache(pipe: Any, params: Mapping[str, Any]) -> Iterator[None]:
    kind = params.get("step_cache", "none")
    if kind == "none":
        yield
        return
    from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

    modules = [m for m in denoisers(pipe) if hasattr(m, "enable_cache") and not hasattr(m, "up_blocks")]
    if not modules:
        raise ValueError(f"`step_cache` {kind!r} needs a transformer denoiser (Wan); {type(pipe).__name__} "
                         "denoises with a UNet: use step_cache=none")
    for m in modules:
        m.enable_cache(FirstBlockCacheConfig(threshold=params["step_cache_threshold"]) if kind == "first_block"
                       else TaylorSeerCacheConfig(cache_interval=params["step_cache_interval"],
                                                  cache_identifiers=list(TAYLORSEER_ATTENTION)))
    try:
        yield
    finally:
        for m in modules:
            m.disable_cache()


FP8_CAPABILITY = (8, 9)
"""FP8 matrix products need Ada or Hopper (compute capability 8.9) or newer."""


def check_fp8(mode: str = "fp8") -> None:
    """Raise a clear error unless torchao is installed and the CUDA device can multiply in FP8 (for `fp8_attention`:
    unless cuDNN's FP8 attention can run too)."""
    import importlib.util

    import torch

    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < FP8_CAPABILITY:
        found = "no CUDA device" if not torch.cuda.is_available() else f"compute capability {torch.cuda.get_device_capability()}"
        raise RuntimeError(f"`quantization` {mode!r} needs a CUDA device of compute capability >= 8.9 (Ada, Hopper); "
                           f"found {found}. Use quantization=none")
    if importlib.util.find_spec("torchao") is None:
        raise RuntimeError(f"`quantization` {mode!r} needs torchao: pip install torchao (or the package's `fp8` extra)")
    if mode == "fp8_attention" and (reason := fp8_attention.problem(f"cuda:{torch.cuda.current_device()}")):
        raise RuntimeError(f"`quantization` 'fp8_attention' cannot run here: {reason}; use quantization=fp8")


def quantize_fp8(pipe: Any, ref: Mapping[str, Any]) -> Any:
    """With `ref['quantization']` `fp8` or `fp8_attention`, quantize the denoisers' linear layers to FP8 (torchao,
    rowwise dynamic); `fp8_attention`'s attention goes FP8 in each call (`speedup`).

    Weights and activations in FP8 with a scale per row, the recipe torchao recommends for inference
    on Hopper; it pays only compiled (bench/README.md), so `speed=fast` never turns it on alone.
    """
    if ref.get("quantization") not in ("fp8", "fp8_attention"):
        return pipe
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    for module in denoisers(pipe):
        quantize_(module, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=_fp8_layer)
    return pipe


def _fp8_layer(module: Any, fqn: str) -> bool:
    """The linear layers FP8 takes: bfloat16 ones (rowwise FP8 refuses others, e.g. Wan's float32 time embedder)
    outside the embedders. An embedder's input can hold all-zero rows (Wan's text embedder reads the prompt padded
    with zeros to 512 tokens), whose rowwise scale is 0: FP8 turned them into NaN and the trained world Wan's videos
    into noise (bench/README.md). Embedders are a sliver of the compute."""
    import torch

    return isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.bfloat16 and "embed" not in fqn


TRACED_ATTENTION: dict[type, str] = {}
"""The attention each compiled denoiser class was first run under. torch compiles per class (a second Wan reuses the
first one's compiled blocks) and its guards do not cover SDPA's kernel order, so the SDPA kernel chosen then stays."""


FLASH_FIRST = (None, FA4, FP8_ATTENTION, "sdpa_flash")
"""Attentions under which a traced graph calls SDPA's flash kernel, so a later FA4 or FP8 attention replaces it (not
`sdpa`: PyTorch's own choice may trace another kernel)."""


def _check_traced_attention(ctx: RunContext, pipe: Any, choice: str) -> None:
    """A compiled model keeps the SDPA kernel its first call traced. When that was not flash, FA4 (a replacement of the
    flash kernel) does not reach it: said in the log. Nor does `fp8_attention`'s FP8 kernel, whose results would then
    be bfloat16's cached under an FP8 key: refused."""
    for module in denoisers(pipe):
        traced = TRACED_ATTENTION.get(type(module))
        if getattr(module, "_mora_compiled", None) is None or traced in FLASH_FIRST:
            continue
        if choice == FA4:
            log.warning("%s: %s was compiled under attention=%s; its compiled graph keeps the SDPA kernel chosen "
                        "then, so sdpa_fa4 may not reach FlashAttention-4 (restart the process to trace it again)",
                        ctx.node_id, type(module).__name__, traced)
        elif choice == FP8_ATTENTION:
            raise RuntimeError(f"{type(module).__name__} was compiled in this process under attention={traced}; its "
                               "compiled graph keeps that SDPA kernel, so quantization=fp8_attention would not reach "
                               "the FP8 attention: run it in a new process or with compile=off")


def _note_traced_attention(pipe: Any, choice: str) -> None:
    """After a successful call: the attention compiled denoiser classes first ran under, if not known yet."""
    for module in denoisers(pipe):
        if getattr(module, "_mora_compiled", None) is not None:
            TRACED_ATTENTION.setdefault(type(module), choice)


@contextlib.contextmanager
def speedup(ctx: RunContext, pipe: Any, params: Mapping[str, Any]) -> Iterator[None]:
    """Run the pipeline call inside this block with the node's compile, attention and step cache settings."""
    choice = attention_choice(ctx, params)
    if choice not in ATTENTIONS:
        raise ValueError(f"`attention` must be one of {', '.join(ATTENTIONS)} but is {choice!r}")
    fp8 = (ctx.model or {}).get("quantization") == "fp8_attention"  # its attention is the FP8 kernel
    choice = FP8_ATTENTION if fp8 else resolved_attention(ctx, pipe, choice)
    if compile_mode(ctx, params) == "on":
        compile_denoisers(ctx, pipe)
    _check_traced_attention(ctx, pipe, choice)
    try:
        with _attention(ctx, pipe, choice), _step_cache(pipe, params):
            yield
        _note_traced_attention(pipe, choice)
    except RuntimeError as e:
        if choice in SDPA_KERNELS and any(says in str(e) for says in ("No available kernel", "No viable backend")):
            raise RuntimeError(f"`attention` {choice!r} has no kernel for this model's attention shapes on "
                               f"{ctx.device}; use attention=sdpa") from None
        raise
