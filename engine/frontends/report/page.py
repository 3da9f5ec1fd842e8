"""Rendering pages: one Jinja2 environment over the templates next to this module, autoescaping on.

Every value reaches the HTML through Jinja2's escaping (node ids, prompts and errors are user
text); only the SVG this package draws itself, already escaped, is marked safe. A relative link
to a file is URL-encoded first, segment by segment (`href`): folder and file names may hold `#`,
`?`, `%` or spaces, which a browser would otherwise read as URL syntax.
"""
from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import quote

from mora.engine.frontends.report.drawing import COLOURS


def format_number(value: Any) -> str:
    """Four significant decimals for everyday magnitudes, scientific notation for the rest."""
    if not isinstance(value, (int, float)):
        return ""
    x = float(value)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.4g}"
    return f"{x:.4f}".rstrip("0").rstrip(".") or "0"


def href(path: str) -> str:
    """A relative `/`-separated path as a URL path: each segment percent-encoded, the separators kept."""
    return "/".join(quote(segment, safe="") for segment in path.split("/"))


@cache
def _environment() -> Any:
    import jinja2

    # the bytecode cache (jinja2's own, in a per-user temporary folder it checks) spares every run compiling the
    # templates again: most of the page's cost in a fully cached run; the templates are the package's own and do not
    # change under a running process (auto_reload would stat them on every page: a sweep renders thousands)
    env = jinja2.Environment(loader=jinja2.PackageLoader("mora.engine.frontends.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             bytecode_cache=jinja2.FileSystemBytecodeCache(), auto_reload=False)
    env.filters["num"] = format_number
    env.filters["href"] = href
    return env


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(colours=COLOURS, **context)


__all__ = ["format_number", "href", "render"]
