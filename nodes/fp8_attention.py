"""FP8 attention on Hopper: cuDNN's FP8 flash-attention forward (the nvidia-cudnn-frontend package) as PyTorch's flash
SDPA kernel for one call, the attention half of `quantization=fp8_attention` (mora.nodes.speed).

Why: at Wan 2.1 1.3B's 32,760 tokens attention is 70% of an FP8-compiled step even with FlashAttention-4
(bench/README.md), and Hopper multiplies FP8 at twice bfloat16's rate. Queries, keys and values are scaled per tensor
into float8 e4m3 (`quantize`); the softmax probabilities, which lie in [0, 1], by 448. Hopper's cuDNN writes the output
in FP8 only (bfloat16 output is Blackwell's), with the values' scale taken for 2 max |v|: a row of attention is a
convex combination of value rows, so |o| <= max |v|, and the factor 2 leaves room for the probabilities' rounding. The
output comes back in the query's dtype. Like FA4 it goes in through torch's flash-attention registry
(mora.nodes.flash_registry), so eager and compiled models both reach it. Inference only; it changes results, so it is
a quantization (keyed), never a run-only attention choice.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterator
from typing import Any

from mora.nodes import flash_registry

log = logging.getLogger(__name__)

IMPL = "MORA_CUDNN_FP8"
FP8_MAX = 448.0
"""The largest float8 e4m3 (fn) value."""
OUTPUT_HEADROOM = 2.0
MIN_KEYS = 12288
"""Attention over fewer keys runs in the inputs' dtype through cuDNN's own kernel: there quantizing costs as much as
FP8 saves or more (one H100, 32,760 queries x 12 heads x 128, bench/fp8_attention.py, through SDPA, FP8 with its
quantizing against cuDNN in bfloat16: 512 keys 0.83 against 0.18 ms, 4,096 keys 1.52 against 1.22, 8,192 keys 2.51
against 2.52, break-even; 16,384 keys 4.21 against 5.29, 32,760 keys 8.80 against 11.08, and 9.2 with FA4). Wan's
text cross-attention (512 keys) stays in bfloat16."""
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
        return (f"cuDNN's FP8 attention runs on compute capability 9.0 or 10.x (Hopper, Blackwell); {device} has "
                f"{capability}")
    version = torch.backends.cudnn.version() or 0
    if version < 90100 or 91000 <= version < 91100:
        return f"cuDNN {version} has no FP8 attention forward (needs >= 9.1, not 9.10)"
    return None


def quantize(x: Any, headroom: float = 1.0) -> tuple[Any, Any]:
    """`x` in float8 e4m3 with one scale for the tensor, and the float32 factor (shape 1x1x1x1) that restores it.

    The scale is the power of two that maps max |x| * headroom into (224, 448]: a power of two multiplies exactly in
    `x`'s own dtype, so the restoring factor is its exact inverse (no bias; an arbitrary scale rounded to bfloat16 is
    up to 0.4% off, and overflows float16 for small tensors). Within the dtype's range: a float16 tensor whose max is
    below 2**-5 sits lower in e4m3's range (its scale stops at 2**14). An all-zero tensor stays zero. No host
    synchronisation."""
    import torch

    amax = torch.linalg.vector_norm(x, float("inf"), dtype=torch.float32).reshape(1, 1, 1, 1) * headroom
    largest = int(math.log2(torch.finfo(x.dtype).max)) - 1  # the largest power of two x's dtype holds, less one
    exponent = torch.floor(torch.log2(FP8_MAX / amax)).clamp(-largest, largest)  # amax 0: log2(inf), clamped
    scale = torch.exp2(exponent)
    return (x * scale.to(x.dtype)).to(torch.float8_e4m3fn), 1.0 / scale


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
    """PyTorch's flash forward for (batch, tokens, heads, head size) inputs: output, log-sum-exp (batch, heads,
    tokens)."""
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
    layout = tuple((tuple(d), tuple(s)) for d, s in map(_bhsd, (q8, k8, v8, o8)))
    try:
        graph, t = _graph(device, layout, float(scale), bool(causal), bool(return_lse))
    except Exception as e:  # noqa: BLE001 - cuDNN has no FP8 kernel for this shape: the inputs' dtype instead
        _say_once(f"cuDNN has no FP8 attention for {tuple(q.shape)} x {tuple(k.shape)} keys ({str(e)[:200]}); that "
                  "attention runs in its own dtype")
        return _in_dtype(q, k, v, scale, causal, out)
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
    result = torch.mul(o8.to(q.dtype), dv.to(q.dtype), out=out)  # dv is a power of two: exact in q's dtype
    return result, (lse.view(b, h, s) if lse is not None else torch.empty(0, device=q.device))


def _in_dtype(q: Any, k: Any, v: Any, scale: float, causal: bool, out: Any) -> tuple[Any, Any]:
    """Attention in the inputs' dtype through cuDNN's kernel, or PyTorch's memory-efficient one where cuDNN has none
    (this replaces the flash kernel for every model in the call, encoders and VAEs too): output (batch, tokens, heads,
    head size) and log-sum-exp (batch, heads, tokens)."""
    import torch

    b, s, h, _ = q.shape
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    try:
        result, lse, *_ = torch.ops.aten._scaled_dot_product_cudnn_attention(qt, kt, vt, None, True, 0.0, causal,
                                                                              False, scale=scale)
    except RuntimeError as e:
        _say_once(f"cuDNN has no attention for {tuple(q.shape)} x {tuple(k.shape)} keys ({str(e)[:200]}); "
                  "PyTorch's memory-efficient kernel runs it")
        result, lse, *_ = torch.ops.aten._scaled_dot_product_efficient_attention(qt, kt, vt, None, True, 0.0, causal,
                                                                                 scale=scale)
        lse = lse[:, :, :s]  # padded to a multiple of 32 tokens
    result = result.transpose(1, 2)
    if out is not None:
        out.copy_(result)
        result = out
    return result, lse.reshape(b, h, s)


@functools.cache
def _say_once(message: str) -> None:
    log.warning(message)


def _flash_attn_bwd(*args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    raise RuntimeError("cuDNN FP8 attention is inference-only (quantization=fp8_attention); no gradients")


@contextlib.contextmanager
def active(device: str) -> Iterator[None]:
    """cuDNN's FP8 attention as the flash SDPA kernel, flash first in SDPA's order, for this block."""
    if reason := problem(device):
        raise RuntimeError(f"`quantization` 'fp8_attention' cannot run here: {reason}; use quantization=fp8")
    with flash_registry.as_flash_kernel(IMPL, __name__):
        yield
