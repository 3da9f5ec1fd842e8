"""Which torch device a worker runs on (`auto`: the first CUDA device if there is one, else CPU), and its warm-up.

The engine imports torch here only inside these functions, in the process that runs nodes (a pool worker, a
Ray actor, or the in-process executor), never at import.
"""
from __future__ import annotations


def choose_device(name: str) -> str:
    """The device a worker configured with `name` runs on (`auto`: CUDA if there is one)."""
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def warm_up(device: str) -> None:
    """Import torch and create the CUDA context now (seconds), before the first node needs them.

    CPU workers skip it: they may run agents that never import torch.
    """
    if not device.startswith("cuda"):
        return
    import torch

    torch.zeros(1, device=device)
