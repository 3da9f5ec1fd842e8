"""Command-line checks shared by the world training scripts and the world bench scripts.

Policy: every value and path a user gives is checked while the command line is parsed, before a model is built or a
run starts, and a bad one is an argparse usage error (exit 2) naming the option and what was wanted: never a value a
run silently replaces with a default, a traceback from deep inside diffusers, numpy or the DataLoader, nor a
benchmark whose results are lost at the end because its output file cannot be written. Numbers an agent also takes
are checked by that agent's own declared bounds (`like`), so a script and a graph refuse the same values.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mora.engine.graph.agent import Param


def bounded(kind: Callable[[str], Any], low: float, high: float = math.inf,
            above: bool = False) -> Callable[[str], Any]:
    """An argparse type: `kind` of the text, finite, from `low` (or, with `above`, over it) to `high`; anything else
    is a usage error naming the option, never a value a run silently replaces or fails on deep inside."""
    def read(text: str) -> Any:
        value = kind(text)  # a ValueError is argparse's "invalid int value: 'x'"
        if not math.isfinite(value) or value < low or (above and value == low) or value > high:
            wanted = f"from {low} to {high}" if math.isfinite(high) else f"above {low}" if above else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{text} is not {wanted}")
        return value

    read.__name__ = getattr(kind, "__name__", "value")
    return read


def folder_problem(folder: Path, cls: str) -> str | None:
    """Why `folder` is not a saved `cls` (named in a pipeline's model_index.json or a model's config.json), or
    None: checked before a model is built, so a wrong folder is one line, not a traceback from deep in diffusers."""
    config = folder / ("model_index.json" if cls.endswith("Pipeline") else "config.json")
    if not folder.is_dir():
        return "not a folder" if folder.exists() else "no such folder"
    try:
        saved = json.loads(config.read_text())
    except FileNotFoundError:
        if (folder / "model_index.json").exists():  # every non-pipeline folder these scripts read is a VAE
            return f"holds a pipeline, not a {cls} (its VAE is {folder / 'vae'})"
        return f"holds no {config.name}, so no saved {cls}"
    except (OSError, ValueError) as e:
        return f"{config.name} cannot be read ({e})"
    saved = saved if isinstance(saved, dict) else {}
    named = saved.get("architectures")  # a transformers config names its classes here
    found = saved.get("_class_name") or (named[0] if isinstance(named, list) and named else None)
    return None if found == cls else f"holds a {found or 'folder of unknown kind'}, not a {cls}"


def like(param: Param) -> Callable[[str], Any]:
    """An argparse type reading a value as the agent parameter `param` is read: its type, then its bounds."""
    def read(text: str) -> Any:
        value = param.type(text)  # a ValueError is argparse's "invalid int value: 'x'"
        if problem := param.check(value):
            raise argparse.ArgumentTypeError(f"{problem} (the `{param.name}` parameter's bounds)")
        return value

    read.__name__ = param.type.__name__
    return read


def device(text: str) -> str:
    """An argparse type: a torch device this machine has (a CUDA one only where CUDA is, and only one it counts)."""
    import torch

    try:
        chosen = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:N, mps)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no CUDA device; use cpu")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: only cpu, cuda and mps are supported")
    return text


def output_path(text: str) -> str:
    """An argparse type for where a run writes: an empty path would quietly mean the current folder (a checkout's
    root, say), so it is a usage error. The text is kept as given (training logs record their arguments as JSON)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (it would write into the current folder)")
    return text


def writable_folder(folder: Path) -> str | None:
    """Why `folder` cannot take outputs, or None; made (with its parents) when it can. A folder holding a symlinked
    folder is refused: `save_pretrained` would write through it into another model (the world's `wan_flf/vae` is
    `wan_i2v`'s)."""
    if folder.is_dir() and (linked := sorted(p.name for p in folder.iterdir() if p.is_symlink() and p.is_dir())):
        return (f"its {', '.join(linked)} is a symlink to another folder: saving would write into that; use a fresh "
                "folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return e.strerror or str(e)
    return None if os.access(folder, os.W_OK | os.X_OK) else "not writable"


def writable_file(text: str) -> Path:
    """An argparse type: a file path results can be written to at the end of a run (checked now, so a long run's
    results are never lost to a missing folder or a directory in the way); nothing is created."""
    path = Path(text)
    parent = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text}: not writable")
    return path
