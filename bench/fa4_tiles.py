"""FlashAttention-4's Hopper forward kernel at Wan 2.1 1.3B's self-attention shape, tile by tile (issue 14).

One attention call of the Wan step (1 x 32,760 tokens x 12 heads x 128, bfloat16, no mask), timed with CUDA events
for FA4's default tile (flash-attn-4 picks 128 x 128 for head size 128 on SM90), for PyTorch's own flash and cuDNN
SDPA kernels, and for other tiles of FA4's `_flash_attn_fwd` (`tile_mn`, `mma_pv_is_rs`, `intra_wg_overlap`), each with
its relative error against the default. Whether a tile other than the default would make Mora's FA4 faster.

    python bench/fa4_tiles.py --json OUT.json     # on the GPU machine, flash-attn-4 installed (Mora's `fa4` extra)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

SHAPE = (1, 32760, 12, 128)
"""Batch, tokens, heads, head size of a Wan 1.3B self-attention at 81 x 480 x 832."""
TILES = [(128, 176, True, True), (128, 192, True, True), (128, 160, True, True), (128, 144, True, True),
         (128, 112, True, True), (128, 96, True, True), (128, 128, False, True), (128, 176, False, True),
         (192, 128, False, True), (192, 112, False, True), (128, 128, True, False), (64, 128, True, True),
         (128, 208, True, True), (128, 224, True, True), (128, 256, True, True)]
"""(tile_m, tile_n, mma_pv_is_rs, intra_wg_overlap) tried besides the default."""


def timed(fn: Any, flops: float, reps: int = 20) -> dict[str, float]:
    """Milliseconds a call and TFLOP/s, after three warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / reps
    return {"ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}


def sweep() -> dict[str, Any]:
    from flash_attn.cute.interface import _flash_attn_fwd

    torch.manual_seed(0)
    q, k, v = (torch.randn(*SHAPE, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    b, s, h, d = SHAPE
    flops = 4 * b * h * s * s * d
    results: dict[str, Any] = {"fa4_default": timed(lambda: _flash_attn_fwd(q, k, v), flops)}
    ref = _flash_attn_fwd(q, k, v)[0].float()
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    for name, backend in (("sdpa_flash", torch.nn.attention.SDPBackend.FLASH_ATTENTION),
                          ("sdpa_cudnn", torch.nn.attention.SDPBackend.CUDNN_ATTENTION)):
        with torch.nn.attention.sdpa_kernel(backend):
            results[name] = timed(lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt), flops)
    for tm, tn, rs, overlap in TILES:
        def call(tm: int = tm, tn: int = tn, rs: bool = rs, overlap: bool = overlap) -> Any:
            return _flash_attn_fwd(q, k, v, tile_mn=(tm, tn), mma_pv_is_rs=rs, intra_wg_overlap=overlap)

        name = f"{tm}x{tn} rs={rs} overlap={overlap}"
        try:
            out = call()[0].float()
            results[name] = {**timed(call, flops), "rel_error": round(((out - ref).norm() / ref.norm()).item(), 6)}
        except Exception as e:  # noqa: BLE001 - a tile the kernel cannot launch is a result too
            results[name] = {"failed": f"{type(e).__name__}: {str(e).strip()[:150]}"}
        print(json.dumps({name: results[name]}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "shape": SHAPE, **sweep()}
    args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
