"""Register the test agents through a real `mora.agents` entry point, for `mora` subprocesses.

`agent_env(tmp)` writes a minimal installed-distribution folder (dist-info with an
entry_points.txt) and returns an environment whose PYTHONPATH holds it and tests/, so a `mora`
process discovers the agents exactly as it would a third-party package's.
"""
from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).parent
AGENTS = {"p_sleep": "SLEEP", "p_modelled": "MODELLED", "p_die": "DIE", "p_count": "COUNT"}


def agent_env(tmp: Path) -> dict[str, str]:
    site = tmp / "site"
    dist = site / "mora_test_agents-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mora-test-agents\nVersion: 0.1\n")
    lines = ["[mora.agents]"] + [f"{name} = pool_agents:{attr}" for name, attr in AGENTS.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    path = os.pathsep.join([str(site), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, MORA_CACHE_DIR=str(tmp / "cache"))
