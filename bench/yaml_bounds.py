"""How long Mora takes to refuse hostile graph files: an alias bomb, deep nesting, a 1 MiB flow-nesting file.

Each file is written to a temporary folder and read with `read_graph_file`, which must refuse it
with a GraphError; the time is the best of `--repeat` reads.

    python bench/yaml_bounds.py
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mora.engine.errors import GraphError
from mora.engine.graph.spec import read_graph_file

BOMB = "\n".join(['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
                 + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]) + "\n"
CASES = {
    "alias bomb (9 levels of 9 aliases: 387 million strings)": BOMB,
    "flow nesting, 5,000 levels": "nodes: " + "[" * 5000 + "]" * 5000 + "\n",
    "flow nesting filling the 1 MiB limit": "[" * ((1 << 20) - 1),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in CASES.items():
            path = Path(tmp) / "graph.yaml"
            path.write_text(text)
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                try:
                    read_graph_file(path)
                    raise SystemExit(f"{name}: accepted")
                except GraphError as e:
                    message = e.problems[0].message
                best = min(best, time.perf_counter() - t0)
            print(f"{name}: refused in {best * 1000:.1f} ms: {message}")


if __name__ == "__main__":
    main()
