"""Where a training step of the world's Wan VAE spends its time (issue 16): it trained at ~100 clips/s, too slow to
reach the ceiling the video targets need. Step time by batch, bf16 autocast or not, channels-last 3D convolutions or
not, and the top kernels of one profiled configuration. Needs a GPU.

    python bench/wan_vae_step.py results.json
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from training.world import loader
from training.world_video import ClipStream, draw_clips, vae_loss, vae_model


def train_step(vae: Any, opt: torch.optim.Optimizer, x: torch.Tensor, bf16: bool) -> None:
    """One step of `training.world_video vae`'s loss (its clipping and schedule aside)."""
    loss = vae_loss(vae, x, torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def fresh(channels_last: bool) -> tuple[Any, torch.optim.Optimizer]:
    vae = vae_model().cuda().train()
    if channels_last:
        for m in vae.modules():
            if isinstance(m, torch.nn.Conv3d):
                m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d)
    return vae, torch.optim.AdamW(vae.parameters(), lr=1e-4)


def time_step(params: torch.Tensor, batch: int, bf16: bool, channels_last: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"batch": batch, "bf16": bf16, "channels_last": channels_last}
    try:
        vae, opt = fresh(channels_last)
        x = draw_clips(params.repeat(batch // len(params), 1, 1).cuda())
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for _ in range(3):
            train_step(vae, opt, x, bf16)
        torch.cuda.synchronize()
        start, n = time.time(), 5
        for _ in range(n):
            train_step(vae, opt, x, bf16)
        torch.cuda.synchronize()
        ms = (time.time() - start) / n * 1000
        row.update(ms=round(ms, 1), clips_per_s=round(batch / ms * 1000, 1),
                   max_mem_gb=round(torch.cuda.max_memory_allocated() / 2**30, 1))
    except torch.OutOfMemoryError:
        row["oom"] = True
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return row


def main() -> None:
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    params = next(loader("vae", 0, 32, 4, ClipStream))
    rows = []
    for batch in (32, 128, 256):
        for bf16 in (True, False):
            for channels_last in (False, True):
                rows.append(time_step(params, batch, bf16, channels_last))
                print(json.dumps(rows[-1]), flush=True)
    vae, opt = fresh(False)
    x = draw_clips(params.repeat(4, 1, 1).cuda())
    for _ in range(3):
        train_step(vae, opt, x, True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            train_step(vae, opt, x, True)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12))
    with open(sys.argv[1], "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "steps": rows}, f, indent=1)


if __name__ == "__main__":
    main()
