"""How long Mora takes to refuse hostile graph files (alias bombs, deep nesting, shapes that fill 1 MiB) or read a big one.

Each file is written to a temporary folder and planned with `load_plan`, as `mora` plans it (read, YAML,
shape, expansion); the time is the best of `--repeat` plans, the message the first problem's. The
machine, the date, PyYAML's version and whether it parses with libyaml are printed first; `--json`
also writes every figure to a file.

    python bench/yaml_bounds.py [--repeat 5] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mora.engine.errors import GraphError
from mora.engine.frontends.api import load_plan
from mora.engine.graph.spec import MAX_GRAPH_BYTES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hostile_graphs import BOMB_LINES, NODE, filling  # tests/ is not a package

LIMIT = MAX_GRAPH_BYTES
BOMB = "\n".join(BOMB_LINES) + "\n"
CASES = {
    "alias bomb (9 levels of 9 aliases: 387 million strings)": BOMB,
    "flow nesting, 5,000 levels": "nodes: " + "[" * 5000 + "]" * 5000 + "\n",
    "flow nesting filling the 1 MiB limit": "[" * (LIMIT - 1),
    "one flow mapping, 1 MiB": filling("{", "k{i}: {i}, ", "}"),
    "small nodes, 1 MiB": filling("outputs: {o: {from: n0.text}}\nnodes:\n", NODE),
    "list of empty lists, 1 MiB": filling("[", "[], ", "[]]"),
    "nesting 60 deep, repeated, 1 MiB": filling("[", "[" * 60 + "]" * 60 + ", ", "1]"),
    "anchors, 1 MiB": filling("", "a{i}: &a{i} {i}\n"),
    "tagged values, 1 MiB": filling("", "- !!str {i}\n"),
    "%TAG directives, 1 MiB": filling("", "%TAG !t{i}! tag:example.com,2000:\n", "--- {}\n"),
    "one sexagesimal number (1:59:59:...), 1 MiB": filling("x: 1", ":59"),
    "one plain scalar with spaces, 1 MiB": filling("description: ", "x "),
    "comment lines, 1 MiB": filling("", "# {i}\n"),
    "a thousand nodes in a chain, written out (81 KiB; accepted)": "".join(
        ["nodes:\n  n0: {agent: text_template, in: {text: hi}}\n",
         *(f"  n{i}: {{agent: text_template, in: {{text: {{from: n{i - 1}.text}}}}, params: {{step: {i}}}}}\n"
           for i in range(1, 1000)), "outputs: {out: {from: n999.text}}\n"]),
    "1,990 links to misspelled nodes (134 KiB)": "".join(
        ["nodes:\n", *(f"  step{i}: {{agent: text_template, in: {{text: {{from: stpe{i}.text}}}}}}\n"
                       for i in range(1990)), "outputs: {o: {from: step0.text}}\n"]),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    head = {"machine": f"{platform.node()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "pyyaml": yaml.__version__, "libyaml": yaml.__with_libyaml__, "load_average": os.getloadavg()}
    print(json.dumps(head))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in CASES.items():
            path = Path(tmp) / "graph.yaml"
            path.write_text(text)
            best, message = float("inf"), "accepted"
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                try:
                    load_plan(path, {})
                except GraphError as e:
                    message = e.problems[0].message
                best = min(best, time.perf_counter() - t0)
            rows.append({"file": name, "bytes": len(text.encode()), "ms": round(best * 1000, 1), "message": message})
            print(f"{name}: {best * 1000:.1f} ms: {message[:120]}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({**head, "repeat": args.repeat, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
