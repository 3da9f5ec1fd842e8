"""Which torch device a worker runs on: `auto` is the first CUDA device if there is one, else CPU."""
from __future__ import annotations


def resolve(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
