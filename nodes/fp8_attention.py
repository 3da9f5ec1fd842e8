"""FP8 attention on Hopper: cuDNN's FP8 flash-attention forward (the nvidia-cudnn-frontend package) as PyTorch's flash
SDPA kernel for one call, the attention half of `quantization=fp8_attention` (mora.nodes.speed).

Why: at Wan 2.1 1.3B's 32,760 tokens attention is 70% of an FP8-compiled step even with FlashAttention-4 (bench/README.md),
and Hopper multiplies FP8 at twice bfloat16's rate. Queries, keys and values are scaled per tensor into float8 e4m3
(`quantize`); the softmax probabilities, which lie in [0, 1], by 448. Hopper's cuDNN writes the output in FP8 only
(bfloat16 output is Blackwell's), scaled by 448 / (2 max |v|): a row of attention is a convex combination of value
rows, so |o| <= max |v|, and the factor 2 leaves room for the probabilities' rounding. The output comes back in the
query's dtype. Like FA4 it goes in through torch's flash-attention registry (mora.nodes.flash_registry), so eager and
compiled models both reach it. Inference only; it changes results, so it is a quantization (keyed), never a run-only
attention choice.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from mora.nodes import flash_registry

IMPL = "MORA_CUDNN_FP8"
FP8_MAX = 448.0
"""The largest float8 e4m3 (fn) value."""
OUTPUT_HEADROOM = 2.0
MIN_KEYS = 8192
"""Attention over fewer keys runs in the inputs' dtype through cuDNN's own kernel: there quantizing costs more than FP8
saves (one H100, 32,760 queries x 12 heads x 128, bench/fp8_attention.py, FP8 with its quantizing against bfloat16:
512 keys 0.83 against 0.18 ms, 4,096 keys 1.52 against 1.23, 8,192 keys 2.34 against 2.43, 16,384 keys 4.11 against
5.24, 32,760 keys 8.64 against 11.08, and 9.2 with FA4). Wan's text cross-attention (512 keys) stays in bfloat16."""
UNSUPPORTED = ("cu_seqlens_q", "cu_seqlens_k", "seqused_k", "page_table", "window_size_left", "window_size_right")


def problem(device: str) -> str | None:
    """Why cuDNN's FP8 attention cannot run for a node on `device`, or None when it can."""
    import importlib.util

    import torch

    if reason := flash_registry.problem():
        return reason
    if importlib.util.find_spec("cudnn") is None:
        return "the nvidia-cudnn-frontend package is not installed (pip install nvidia-cudnn-frontend)"
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return f"cuDNN's FP8 attention runs on CUDA devices (Hopper, Blackwell); this node runs on {device}"
    capability = torch.cuda.get_device_capability(torch.device(device))
    if capability[0] not in (9, 10):
        return f"cuDNN's FP8 attention runs on compute capability 9.0 or 10.x (Hopper, Blackwell); {device} has {capability}"
    version = torch.backends.cudnn.version() or 0
    if version < 90100 or 91000 <= version < 91100:
        return f"cuDNN {version} has no FP8 attention forward (needs >= 9.1, not 9.10)"
    return None


def quantize(x: Any, headroom: float = 1.0) -> tuple[Any, Any]:
    """`x` in float8 e4m3 with one scale for the tensor, and the float32 factor (shape 1x1x1x1) that restores it.

    The scale maps max |x| * headroom to 448; an all-zero tensor keeps scale 1. No host synchronisation."""
    import torch

    amax = torch.linalg.vector_norm(x, float("inf"), dtype=torch.float32).reshape(1, 1, 1, 1) * headroom
    descale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    return (x * (1.0 / descale).to(x.dtype)).to(torch.float8_e4m3fn), descale


def _bhsd(t: Any) -> tuple[list[int], list[int]]:
    """Dims and strides of a (batch, tokens, heads, head size) tensor in cuDNN's (batch, heads, tokens, head size)."""
    b, s, h, d = t.shape
    return [b, h, s, d], [t.stride(0), t.stride(2), t.stride(1), t.stride(3)]


@functools.lru_cache(maxsize=64)
def _graph(device: int, shapes: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...], scale: float, causal: bool,
           stats: bool) -> tuple[Any, dict[str, Any]]:
    """One built cuDNN graph per device, layout, softmax scale and mask: building picks and compiles its kernel."""
    import cudnn

    graph = cudnn.pygraph(io_data_type=cudnn.data_type.FP8_E4M3, intermediate_data_type=cudnn.data_type.FLOAT,
                          compute_data_type=cudnn.data_type.FLOAT, handle=_handle(device))
    q, k, v = (graph.tensor(name=n, dim=list(d), stride=list(s), data_type=cudnn.data_type.FP8_E4M3)
               for n, (d, s) in zip("qkv", shapes))
    scalars = {n: graph.tensor(name=n, dim=[1, 1, 1, 1], stride=[1, 1, 1, 1], data_type=cudnn.data_type.FLOAT)
               for n in ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")}
    out, lse, amax_s, amax_o = graph.sdpa_fp8(q=q, k=k, v=v, **scalars, generate_stats=stats, attn_scale=scale,
                                              use_causal_mask=causal)
    b, h, s, _ = shapes[0][0]
    out.set_output(True).set_dim(list(shapes[3][0])).set_stride(list(shapes[3][1])).set_data_type(
        cudnn.data_type.FP8_E4M3)
    for amax in (amax_s, amax_o):
        amax.set_output(True).set_dim([1, 1, 1, 1]).set_stride([1, 1, 1, 1]).set_data_type(cudnn.data_type.FLOAT)
    if stats:
        lse.set_output(True).set_dim([b, h, s, 1]).set_stride([h * s, s, 1, 1]).set_data_type(cudnn.data_type.FLOAT)
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    graph.check_support()
    graph.build_plans()
    return graph, {"q": q, "k": k, "v": v, "o": out, "lse": lse if stats else None, "amax_s": amax_s,
                   "amax_o": amax_o, **scalars}


@functools.cache
def _handle(device: int) -> Any:
    import cudnn
    import torch

    with torch.cuda.device(device):
        return cudnn.create_handle()


def _flash_attn_fwd(q: Any, k: Any, v: Any, softmax_scale: float | None = None, causal: bool = False,
                    return_lse: bool = True, out: Any = None, **rest: Any) -> tuple[Any, Any]:
    """PyTorch's flash forward for (batch, tokens, heads, head size) inputs: output and log-sum-exp (batch, heads, tokens)."""
    import torch

    asked = [name for name in UNSUPPORTED if rest.get(name) is not None] + (
        ["num_splits"] if (rest.get("num_splits") or 1) != 1 else [])
    if asked:
        raise RuntimeError(f"cuDNN FP8 attention: {', '.join(asked)} not supported (dense attention only)")
    if q.shape[2] != k.shape[2]:
        raise RuntimeError("cuDNN FP8 attention: grouped-query attention (fewer key heads) not supported")
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    if k.shape[1] < MIN_KEYS:
        return _in_dtype(q, k, v, scale, causal, out)
    (q8, dq), (k8, dk), (v8, dv) = quantize(q), quantize(k), quantize(v, OUTPUT_HEADROOM)
    o8 = torch.empty(q.shape, dtype=torch.float8_e4m3fn, device=q.device)
    device = q.device.index if q.device.index is not None else torch.cuda.current_device()
    graph, t = _graph(device, tuple((tuple(d), tuple(s)) for d, s in map(_bhsd, (q8, k8, v8, o8))), float(scale),
                      bool(causal), bool(return_lse))
    b, s, h, _ = q.shape
    lse = torch.empty(b, h, s, 1, dtype=torch.float32, device=q.device) if return_lse else None
    one = torch.ones(1, 1, 1, 1, dtype=torch.float32, device=q.device)
    pack = {t["q"]: q8, t["k"]: k8, t["v"]: v8, t["o"]: o8, t["descale_q"]: dq, t["descale_k"]: dk,
            t["descale_v"]: dv, t["descale_s"]: one / FP8_MAX, t["scale_s"]: one * FP8_MAX, t["scale_o"]: 1.0 / dv,
            t["amax_s"]: torch.empty_like(one), t["amax_o"]: torch.empty_like(one)}
    if lse is not None:
        pack[t["lse"]] = lse
    import cudnn

    cudnn.set_stream(handle=_handle(device), stream=torch.cuda.current_stream(q.device).cuda_stream)
    workspace = torch.empty(graph.get_workspace_size(), dtype=torch.uint8, device=q.device)
    graph.execute(pack, workspace, handle=_handle(device))
    result = o8.to(q.dtype) * dv.to(q.dtype)
    if out is not None:
        out.copy_(result)
        result = out
    return result, (lse.view(b, h, s) if lse is not None else torch.empty(0, device=q.device))


def _in_dtype(q: Any, k: Any, v: Any, scale: float, causal: bool, out: Any) -> tuple[Any, Any]:
    """Short attention through cuDNN's kernel in the inputs' dtype: output (batch, tokens, heads, head size) and
    log-sum-exp (batch, heads, tokens)."""
    import torch

    b, s, h, _ = q.shape
    result, lse, *_ = torch.ops.aten._scaled_dot_product_cudnn_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None, True, 0.0, causal, False, scale=scale)
    result = result.transpose(1, 2)
    if out is not None:
        out.copy_(result)
        result = out
    return result, lse.reshape(b, h, s)


def _flash_attn_bwd(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    raise RuntimeError("cuDNN FP8 attention is inference-only (quantization=fp8_attention); no gradients")


@contextlib.contextmanager
def active(device: str) -> Iterator[None]:
    """cuDNN's FP8 attention as the flash SDPA kernel, flash first in SDPA's order, for this block."""
    if reason := problem(device):
        raise RuntimeError(f"`quantization` 'fp8_attention' cannot run here: {reason}; use quantization=fp8")
    with flash_registry.as_flash_kernel(IMPL, __name__):
        yield
