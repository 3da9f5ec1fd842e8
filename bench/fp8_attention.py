"""cuDNN's FP8 attention (Mora's `quantization=fp8_attention`) at Wan 2.1 1.3B's attention shapes, against the bfloat16
kernels (issue 14).

One attention call of the Wan step (1 x 32,760 tokens x 12 heads x 128, no mask; and its text cross-attention, 512
keys), timed with CUDA events: PyTorch's flash and cuDNN SDPA kernels in bfloat16, FlashAttention-4 where installed,
Mora's FP8 kernel call (quantizing q, k, v, cuDNN's FP8 kernel, the output back to bfloat16; at every length), the
quantizing alone, Mora's bfloat16 path for short attention (below `MIN_KEYS`), and Mora's whole path through
`scaled_dot_product_attention` as a model reaches it. Each output's relative
error against float32 attention on the first 1,024 queries, for queries and keys of unit spread (a flat softmax) and
of three times that (a peaked one).

    python bench/fp8_attention.py --json OUT.json     # on the GPU machine, nvidia-cudnn-frontend installed
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.append(str(Path(__file__).resolve().parent))
from fa4_tiles import timed  # CUDA-event timing, ms and TFLOP/s

SELF = (1, 32760, 12, 128)
"""Batch, tokens, heads, head size of a Wan 1.3B self-attention at 81 x 480 x 832."""
KEYS = (512, 4096, 8192, 16384)
"""Shorter attention (Wan's text cross-attention has 512 keys): where FP8 starts to pay (`fp8_attention.MIN_KEYS`)."""
REFERENCE_QUERIES = 1024


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """float32 attention of the first queries, (batch, heads, queries, head size)."""
    qf, kf, vf = (t.float() for t in (q[:, :, :REFERENCE_QUERIES], k, v))
    return F.scaled_dot_product_attention(qf, kf, vf)


def error(out: torch.Tensor, ref: torch.Tensor) -> float:
    rows = out[:, :, :REFERENCE_QUERIES].float()
    return round(((rows - ref).norm() / ref.norm()).item(), 5)


def case(keys: int, spread: float) -> dict[str, Any]:
    from mora.nodes import fp8_attention

    b, s, h, d = SELF
    g = torch.Generator("cuda").manual_seed(0)
    q = torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, generator=g) * spread
    k = torch.randn(b, h, keys, d, device="cuda", dtype=torch.bfloat16, generator=g) * spread
    v = torch.randn(b, h, keys, d, device="cuda", dtype=torch.bfloat16, generator=g)
    flops = 4 * b * h * s * keys * d
    ref = reference(q, k, v)
    results: dict[str, Any] = {}

    def run(name: str, fn: Any) -> None:
        try:
            results[name] = {**timed(fn, flops), "rel_error": error(fn(), ref)}
        except Exception as e:  # noqa: BLE001 - a kernel that cannot run here is a result too
            results[name] = {"failed": f"{type(e).__name__}: {str(e).strip()[:300]}"}
        print(json.dumps({f"{keys} keys x{spread}": {name: results[name]}}), flush=True)

    for name, backend in (("sdpa_flash_bf16", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn_bf16", SDPBackend.CUDNN_ATTENTION)):
        def sdpa(backend: Any = backend) -> torch.Tensor:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v)
        run(name, sdpa)
    try:
        from mora.nodes import flash_attention_4
        if flash_attention_4.problem("cuda") is None:
            def fa4() -> torch.Tensor:
                with flash_attention_4.active("cuda"):
                    return F.scaled_dot_product_attention(q, k, v)
            run("fa4_bf16", fa4)
    except ImportError:
        pass
    qs, ks, vs = (t.transpose(1, 2) for t in (q, k, v))  # the (batch, tokens, heads, head size) flash sees
    fp8_attention.MIN_KEYS, min_keys = 0, fp8_attention.MIN_KEYS  # the FP8 kernel at every length, for the figures
    run("mora_fp8_kernel_call", lambda: fp8_attention._flash_attn_fwd(qs, ks, vs)[0].transpose(1, 2))
    fp8_attention.MIN_KEYS = min_keys
    run("mora_below_min_keys_in_dtype", lambda: fp8_attention._in_dtype(qs, ks, vs, d ** -0.5, False, None)[0]
        .transpose(1, 2))

    def quantize_q_k_v() -> torch.Tensor:  # the quantizing alone (its "error" is q's rounding, not an attention's)
        quantized = [fp8_attention.quantize(t) for t in (q, k, v)]
        return quantized[0][0].to(q.dtype)
    run("quantize_q_k_v", quantize_q_k_v)
    results["quantize_q_k_v"].pop("rel_error", None)

    def mora_fp8() -> torch.Tensor:
        with fp8_attention.active("cuda"):
            return F.scaled_dot_product_attention(q, k, v)
    run("mora_fp8_sdpa", mora_fp8)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    from mora.nodes import fp8_attention

    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                               "cudnn": torch.backends.cudnn.version(), "shape": SELF,
                               "problem": fp8_attention.problem("cuda")}
    try:
        import cudnn
        results["cudnn_frontend"] = cudnn.__version__
        results["cudnn_backend"] = cudnn.backend_version()
    except Exception as e:  # noqa: BLE001
        results["cudnn_frontend"] = f"{type(e).__name__}: {e}"
    for keys, spread in ((SELF[1], 1.0), (SELF[1], 3.0), *((n, 1.0) for n in KEYS)):
        results[f"{keys} keys, spread {spread}"] = case(keys, spread)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
