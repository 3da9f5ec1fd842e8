"""Hostile graph files, built in code: what tests/test_bounds.py refuses and bench/yaml_bounds.py times."""
from __future__ import annotations

from mora.engine.graph.spec import MAX_GRAPH_BYTES

BOMB_LINES = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] + \
    [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
"""Nine levels of nine aliases each: 387 million strings if expanded."""
NODE = "  n{i}: {{agent: text_template, in: {{text: hi}}, params: {{template: '{{text}}', step: {i}}}}}\n"
"""One small agent node, numbered by `{i}`."""


def filling(head: str, unit: str, tail: str = "") -> str:
    """`head`, `unit` numbered (`{i}`) as often as fits, and `tail`: a file of nearly the 1 MiB size limit."""
    parts, size, i = [head], len(head) + len(tail), 0
    while size + len(part := unit.format(i=i)) <= MAX_GRAPH_BYTES:
        parts.append(part)
        size, i = size + len(part), i + 1
    return "".join([*parts, tail])
