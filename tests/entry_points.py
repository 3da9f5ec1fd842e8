"""Register the test agents through a real `mora.agents` entry point, for `mora` subprocesses.

`agent_env(tmp)` writes a minimal installed-distribution folder (dist-info with an
entry_points.txt) and returns an environment whose PYTHONPATH holds it and tests/, so a `mora`
process discovers the agents exactly as it would a third-party package's. `count_graph`,
`mora_args` and `gc_to_nothing` are the graph and commands the cache tests run them with.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TESTS = Path(__file__).parent
AGENTS = {"p_sleep": "SLEEP", "p_modelled": "MODELLED", "p_die": "DIE", "p_count": "COUNT"}
MORA = [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()"]
ADMIN = [sys.executable, "-c", "from mora.engine.frontends.admin import entry; entry()"]


def agent_env(tmp: Path) -> dict[str, str]:
    site = tmp / "site"
    dist = site / "mora_test_agents-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mora-test-agents\nVersion: 0.1\n")
    lines = ["[mora.agents]"] + [f"{name} = pool_agents:{attr}" for name, attr in AGENTS.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    path = os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, MORA_CACHE_DIR=str(tmp / "cache"))


def count_graph(path: Path, log: Path, slow: float | None = None, tag: str = "shared1", seconds: float = 0.0) -> Path:
    """A graph of one `p_count` node (output `early`) and, with `slow`, a second one after it that takes that long."""
    nodes = {"shared1": {"agent": "p_count", "params": {"tag": tag, "seconds": seconds, "log": str(log)}}}
    outputs = {"early": {"from": "shared1.text"}}
    if slow is not None:
        nodes["slow"] = {"agent": "p_count", "in": {"after": {"from": "shared1.text"}},
                         "params": {"tag": "slow", "seconds": slow, "log": str(log)}}
        outputs["out"] = {"from": "slow.text"}
    path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": outputs}))
    return path


def mora_args(graph: Path, run_dir: Path, *extra: str) -> list[str]:
    return [*MORA, f"graph_file={graph}", "runtime=local", "runtime.device=cpu", f"hydra.run.dir={run_dir}", *extra]


def gc_to_nothing(env: dict[str, str], cache: Path) -> dict[str, int]:
    """`mora-admin cache gc --max-size 0 --grace 0` in its own process; its report."""
    out = subprocess.run([*ADMIN, "cache", "gc", "--dir", str(cache), "--max-size", "0", "--grace", "0"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
