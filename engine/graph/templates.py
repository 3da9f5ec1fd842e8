"""Where `graph: NAME` templates come from: next to the including file, then the built-in graphs/.

Each file is read once per loader (by real path), so a template used many times, or by every
step of a `repeat`, is parsed once.
"""
from __future__ import annotations

import os
from pathlib import Path

from mora.engine.errors import InputError
from mora.engine.graph.spec import GraphSpec, read_graph_file


class TemplateLoader:
    """Finds `graph: NAME` templates next to the including file, then in the graphs directory.

    A template resolves only inside the including file's folder or a search directory (the
    built-in graphs/), judged after following symbolic links: `graph: ../../x.yaml`, an absolute
    path, or a link that leads out of them is refused before the file is opened, so no message
    can show a foreign file's content, nor whether it exists.
    """

    def __init__(self, search_dirs: list[Path]):
        self.search_dirs = search_dirs
        self._cache: dict[str, GraphSpec] = {}

    def find(self, name: str, including: str) -> Path | None:
        """The template's file, None if there is none, or InputError if `name` points outside the allowed folders."""
        if "\0" in name:
            raise InputError(f"template name {name!r} holds a NUL byte, which no file name can")
        base = Path(including).parent
        roots = [(base, base / name)] if name.endswith((".yaml", ".yml")) else \
            [(base, base / f"{name}.yaml")] + [(d, d / f"{name}.yaml") for d in self.search_dirs]
        for root, candidate in roots:
            real = Path(os.path.realpath(candidate))
            if not real.is_relative_to(os.path.realpath(root)):
                raise InputError(f"template '{name}' lies outside this file's folder and the built-in graphs; "
                                 "templates are looked up only there")
            if os.path.lexists(candidate):
                return real
        return None

    def known(self) -> list[str]:
        return sorted({p.stem for d in self.search_dirs if d.is_dir() for p in d.glob("*.yaml")})

    def load(self, path: Path) -> GraphSpec:
        key = os.path.realpath(path)
        if key not in self._cache:
            self._cache[key] = read_graph_file(path)
        return self._cache[key]
