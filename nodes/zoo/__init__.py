"""Tiny and random-weight models, built in code and saved once so they load like any model.

`build(source, name, root)` returns a directory that `from_pretrained` can load. `tiny` models
are real diffusers/transformers classes with tiny configs (CPU, seconds); `random` ones are the
full-size published architectures with random weights (for GPU benchmarks: a denoising step
costs the same whatever the weights). Both are seeded, so a build is reproducible; a file lock
and an atomic rename make concurrent builds from several processes safe.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from mora.engine.errors import ModelNotFoundError

Builder = Callable[[Path], None]
"""Writes a model (pipeline folder or transformers model + tokenizer) into the given directory."""

BUILD_VERSION = 3
"""Bumped when any builder changes what it writes (it is part of the folder name)."""


def builders() -> dict[tuple[str, str], Builder]:
    """All builders by (source, name); imported lazily because they need torch."""
    from mora.nodes.zoo import image_models, metric_models, text_models, video_models

    table: dict[tuple[str, str], Builder] = {}
    for module in (text_models, image_models, video_models, metric_models):
        for key, fn in module.BUILDERS.items():
            if key in table:
                raise RuntimeError(f"model builder {key} is defined twice")
            table[key] = fn
    return table


def folder(source: str, name: str, root: Path) -> Path:
    """Where the (source, name) model is built under `root` (it is complete once `.complete` exists there)."""
    return root / source / f"{name}-v{BUILD_VERSION}"


def build(source: str, name: str, root: Path) -> Path:
    """Return the folder of the (source, name) model, building it first if needed."""
    table = builders()
    if (source, name) not in table:
        known = sorted(f"{s}:{n}" for s, n in table)
        raise ModelNotFoundError(f"no {source} model named '{name}'; known: {', '.join(known)}")
    dest = folder(source, name, root)
    if (dest / ".complete").exists():
        return dest
    from filelock import FileLock  # only to build: a run that finds its models built never imports it

    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with FileLock(str(root / f".{source}-{name}.lock"), timeout=1800):
        if (dest / ".complete").exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
        try:
            table[(source, name)](tmp)
            (tmp / ".complete").write_text("ok\n")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
