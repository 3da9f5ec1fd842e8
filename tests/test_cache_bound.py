"""What this machine's cache holds on disk: `cache stats` counts it, `cache gc --max-size` bounds it.

Each test is a real cache in a temp dir; the artifact store shared by machines is a local path
(remote.py treats it as any fsspec store), a worker is an `ArtifactStore` of its own directory,
and concurrency is tested with real processes.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mora.engine.cache import maintenance
from mora.engine.cache.artifacts import Blob
from mora.engine.cache.objects import ArtifactStore
from mora.engine.cache.store import Store
from mora.engine.ports import PortType


def _text(i: int, size: int = 1000) -> Blob:
    return Blob(PortType.TEXT, "txt", bytes([65 + i]) * size)


def _store_files(shared: Path) -> dict[str, bytes]:
    """The artifact store's objects, name to bytes."""
    return {p.name: p.read_bytes() for p in (shared / "objects").rglob("*") if p.is_file()}


def test_stats_counts_this_machines_objects_and_the_whole_store_apart(tmp_path):
    shared = tmp_path / "store"
    worker = ArtifactStore(tmp_path / "worker", remote=str(shared))  # another machine: it wrote every object
    refs = [worker.put(_text(i)) for i in range(3)]
    driver = Store(tmp_path / "driver", artifacts=str(shared))
    for i, ref in enumerate(refs):
        driver.record(f"{i:064x}", {"node": f"n{i}", "agent": "t_text", "outputs": {"text": ref.to_json()}})
    assert maintenance.stats(driver) | {"dir": ""} == {
        "dir": "", "entries": 3, "objects": 0, "object_bytes": 0, "artifacts": str(shared), "store_objects": 3,
        "store_bytes": 3000, "agents": {"t_text": 3}, "tmp_files": 0, "quarantined": 0}
    driver.ref(refs[0].to_json()).read_bytes()  # read here: now this machine holds a copy
    assert (maintenance.stats(driver)["objects"], maintenance.stats(driver)["object_bytes"]) == (1, 1000)
    driver.close()


MOVER = textwrap.dedent("""\
    import os, sys, time
    paths = sys.argv[2:]
    open(sys.argv[1], "w").close()
    end = time.time() + 4
    while time.time() < end:
        for p in paths:  # as quarantine moves a file aside and a fetch brings it back
            os.rename(p, p + ".aside")
            os.rename(p + ".aside", p)
""")


def test_stats_beside_a_process_moving_objects_away_never_fails(tmp_path):
    store = Store(tmp_path / "c")
    refs = [store.put(_text(i % 26, 10 + i)) for i in range(300)]
    started = tmp_path / "started"
    mover = subprocess.Popen([sys.executable, "-c", MOVER, str(started), *(str(r.path) for r in refs)])
    try:
        while not started.exists():
            time.sleep(0.01)
        seen = [maintenance.stats(store)["objects"] for _ in range(30)]
    finally:
        mover.wait(timeout=60)
    assert all(n <= 300 for n in seen) and maintenance.stats(store)["objects"] == 300
    store.close()
