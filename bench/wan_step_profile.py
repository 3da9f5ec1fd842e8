"""Where a compiled Wan 2.1 1.3B-size step spends its GPU time (issue 14): torch.profiler over one CFG step (two
forwards) of the random-weight transformer, compiled regionally through Mora's path under FlashAttention-4, in bfloat16
or with FP8 (`--fp8`, Mora's `quantization=fp8`); the kernels' time against the step's wall clock says whether the
step is bound by the GPU or by launching, and which kernels hold it.

    MORA_MODELS_DIR=/tmp/m python bench/wan_step_profile.py --fp8 --json OUT.json   # on the GPU machine
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.append(str(Path(__file__).resolve().parent))
import gpu_speed as g  # the bench's Wan transformer, inputs, Mora's compile path and timing

from mora.nodes.flash_attention_4 import active


def profiled(fp8: bool) -> dict[str, Any]:
    model, cond, uncond = g.wan_transformer()

    def step() -> torch.Tensor:  # what the pipeline does: two forwards per step
        c, u = model(**cond)[0], model(**uncond)[0]
        return u + 5.0 * (c - u)

    with torch.no_grad():
        step()
        torch._dynamo.reset()
        model, how = g.compiled(model, fp8=fp8)
        with active("cuda"), g.uncached():  # traced under FA4, as the agents trace it
            step()
            step_ms = g.step_ms(step, 5)
            with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
                started = time.perf_counter()
                step()
                torch.cuda.synchronize()
                wall_ms = (time.perf_counter() - started) * 1e3
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_ms = sum(e.self_device_time_total for e in kernels) / 1e3
    top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:12]
    return {"compile": how, "step_ms": step_ms, "profiled_wall_ms": round(wall_ms, 1), "gpu_kernels_ms": round(gpu_ms, 1),
            "kernels": [{"name": e.key[:90], "ms": round(e.self_device_time_total / 1e3, 1), "calls": e.count,
                         "share": round(e.self_device_time_total / 1e3 / gpu_ms, 3)} for e in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp8", action="store_true", help="FP8 (torchao rowwise) before compiling")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, **profiled(args.fp8)}
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
