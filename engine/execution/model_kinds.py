"""Whether a local model folder holds a model of the kind an agent loads, read from its config files.

Policy: a `path:` model is checked before the run, from the file `save_pretrained` writes: a
diffusers pipeline's `model_index.json` (`_class_name`), a transformers model's `config.json`
(`architectures`). Each model role lists the classes its agents load as fnmatch patterns (and
the classes it must not be mistaken for); a folder without that file, with unreadable JSON, or
holding another class is refused naming what it holds and what the role takes; so is a pipeline class the
installed diffusers does not have (`_class_name: NoSuchPipeline` would fail only as the node loads it). Diffusers'
classes are read from its lazy import table in its `__init__.py`, not by importing it (that imports torch, seconds
of every run's planning), or from the module itself where it is already imported. Roles not listed here
(third-party agents) are not checked; hub ids are checked by the agents as they load.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import json
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path


@dataclass(frozen=True)
class Kind:
    file: str
    """model_index.json (a diffusers pipeline) or config.json (a transformers model)."""
    accept: tuple[str, ...]
    reject: tuple[str, ...] = ()

    def takes(self, name: str) -> bool:
        return any(fnmatchcase(name, p) for p in self.accept) and not any(fnmatchcase(name, p) for p in self.reject)


CONFIG_FILES = ("model_index.json", "config.json")

KINDS: dict[str, Kind] = {
    # AutoPipelineForText2Image maps any image pipeline family to its text-to-image class
    "text_to_image": Kind("model_index.json", ("*Pipeline",),
                          ("*Video*", "Wan*", "*InstructPix2Pix*", "*Audio*", "*Upscale*")),
    "image_edit": Kind("model_index.json", ("*InstructPix2Pix*Pipeline",)),
    "image_to_video": Kind("model_index.json", ("StableVideoDiffusionPipeline", "WanImageToVideoPipeline")),
    "connect": Kind("model_index.json", ("WanImageToVideoPipeline",)),
    "prompt": Kind("config.json", ("*ForCausalLM", "*LMHeadModel")),
}


def _classes(config: Path) -> list[str]:
    data = json.loads(config.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return []
    names = data.get("architectures") or [data.get("_class_name")]
    return [n for n in names if isinstance(n, str)]


def diffusers_classes() -> frozenset[str] | None:
    """The names diffusers exports (its pipelines among them), or None where that cannot be read (not installed)."""
    module = sys.modules.get("diffusers")
    if module is not None:
        return frozenset(dir(module))  # its lazy module lists every name it can import
    return _import_table()


@functools.cache
def _import_table() -> frozenset[str] | None:
    """Every name in diffusers' `_import_structure`, read from the source of its `__init__.py` (the string literals
    that are identifiers: the table's names, and a few other words that are no class name)."""
    try:
        spec = importlib.util.find_spec("diffusers")
        if spec is None or spec.origin is None:
            return None
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (ImportError, ValueError, OSError, SyntaxError):
        return None
    names = frozenset(n.value for n in ast.walk(tree)
                      if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier())
    return names if "DiffusionPipeline" in names else None  # a layout this reading does not know: nothing checked


def folder_problem(role: str, folder: Path) -> str | None:
    """Why `folder` cannot serve `role` (None if it can, or if the role is not known here)."""
    kind = KINDS.get(role)
    if kind is None:
        return None
    found = [folder / f for f in dict.fromkeys((kind.file, *CONFIG_FILES)) if (folder / f).is_file()]
    if not found:
        return (f"model folder '{folder}' has no {kind.file}, so it is not a model for role {role} (a folder "
                f"written by save_pretrained of {' or '.join(kind.accept)})")
    try:
        names = _classes(found[0])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"model folder '{folder}': cannot read {found[0].name} ({e})"
    if found[0].name != kind.file or not any(kind.takes(n) for n in names):
        holds = ", ".join(names) or "no class name"
        return (f"model folder '{folder}' holds {holds}, not a model for role {role} "
                f"(it takes {' or '.join(kind.accept)})")
    known = diffusers_classes() if kind.file == "model_index.json" else None
    if known is not None and not any(n in known for n in names):
        return (f"model folder '{folder}': its model_index.json names the pipeline class {', '.join(names)}, which "
                f"the installed diffusers does not have (role {role})")
    return None
