"""Faults with real processes: SIGKILL mid-run, 4 concurrent runs on one cache, corruption."""
from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from entry_points import agent_env

from mora.engine.cache import maintenance, media
from mora.engine.cache.store import Store
from mora.engine.errors import MoraError

ROOT = Path(__file__).resolve().parent.parent


def _mora(env: dict[str, str], graph: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", f"graph_file={graph}", "runtime=local",
         "runtime.device=cpu", f"hydra.run.dir={run_dir}", *extra],
        env=env, capture_output=True, text=True, timeout=300)


def test_crash_loop_keeps_finished_work_and_a_consistent_cache():
    # The bench script as its user runs it (a test never imports from bench/): one JSON line per iteration.
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "crash_loop.py"), "--iterations", "3", "--seed", "1"],
                          capture_output=True, text=True, timeout=600)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(results) == 3, done.stdout + done.stderr
    assert [r for r in results if not r["ok"]] == []
    assert any(r["mid_run"] for r in results), results  # else the kills tested nothing between nodes


def _overlapping_graph(path: Path, job: int, log: Path) -> None:
    nodes = {
        "shared1": {"agent": "p_count", "params": {"tag": "shared1", "seconds": 0.5, "log": str(log)}},
        "shared2": {"agent": "p_count", "in": {"after": {"from": "shared1.text"}},
                    "params": {"tag": "shared2", "seconds": 0.5, "log": str(log)}},
        "own": {"agent": "p_count", "in": {"after": {"from": "shared2.text"}},
                "params": {"tag": f"own{job}", "seconds": 0.2, "log": str(log)}},
    }
    path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": {"out": {"from": "own.text"}}}))


BARRIER_CLI = textwrap.dedent("""\
    import os, sys, time
    from pathlib import Path
    from mora.engine.frontends.cli import main

    barrier, me, peers = Path(os.environ["BARRIER"]), os.environ["JOB"], int(os.environ["PEERS"])
    (barrier / f"ready{me}").touch()
    deadline = time.time() + 30
    while len(list(barrier.glob("ready*"))) < peers and time.time() < deadline:  # start all runs together
        time.sleep(0.01)
    (barrier / f"start{me}").write_text(repr(time.time()))
    try:
        main()
    finally:
        (barrier / f"end{me}").write_text(repr(time.time()))
""")
"""`mora` behind a start barrier: each process imports first, then waits for all its peers."""


def test_four_processes_share_one_cache_and_compute_shared_nodes_once(tmp_path):
    env = agent_env(tmp_path)
    log = tmp_path / "executions.log"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = []
    for job in range(4):
        graph = tmp_path / f"g{job}.yaml"
        _overlapping_graph(graph, job, log)
        procs.append(subprocess.Popen(
            [sys.executable, "-c", BARRIER_CLI, f"graph_file={graph}", "runtime=local", "runtime.device=cpu",
             f"hydra.run.dir={tmp_path / f'run{job}'}"],
            env=dict(env, BARRIER=str(barrier), JOB=str(job), PEERS="4"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    starts = [float((barrier / f"start{j}").read_text()) for j in range(4)]
    ends = [float((barrier / f"end{j}").read_text()) for j in range(4)]
    assert max(starts) < min(ends), (starts, ends)  # all four were running at one moment
    executions = [line.split()[1] for line in log.read_text().splitlines()]
    assert executions.count("shared1") == 1 and executions.count("shared2") == 1
    assert sorted(e for e in executions if e.startswith("own")) == ["own0", "own1", "own2", "own3"]
    manifests = [json.loads((tmp_path / f"run{j}" / "manifest.json").read_text()) for j in range(4)]
    for node in ("shared1", "shared2"):
        assert sorted(m["nodes"][node]["cached"] for m in manifests) == [False, True, True, True], node
    outputs = {(tmp_path / f"run{j}" / "out.txt").read_text() for j in range(4)}
    assert outputs == {f"/shared1/shared2/own{j}" for j in range(4)}
    store = Store(tmp_path / "cache")
    report = maintenance.verify(store)
    store.close()
    assert report.ok and report.orphans == [], report


def test_corrupt_artifacts_are_detected_recomputed_and_reported(tmp_path):
    env = agent_env(tmp_path)
    log = tmp_path / "executions.log"
    graph = tmp_path / "g.yaml"
    _overlapping_graph(graph, 0, log)
    assert _mora(env, graph, tmp_path / "r1").returncode == 0
    objects = sorted((tmp_path / "cache" / "objects").glob("*/*.txt"))
    victim = next(p for p in objects if p.read_text() == "/shared1")
    victim.write_text("/shared1" + "x")  # wrong size
    second = _mora(env, graph, tmp_path / "r2")
    assert second.returncode == 0
    assert "treated as a miss and recomputed" in second.stderr
    manifest = json.loads((tmp_path / "r2" / "manifest.json").read_text())
    assert manifest["nodes"]["shared1"]["cached"] is False
    assert manifest["cache_findings"]
    assert victim.read_text() == "/shared1"
    assert (tmp_path / "r2" / "out.txt").read_text() == "/shared1/shared2/own0"


def test_flipped_bytes_are_found_by_verify(tmp_path):
    env = agent_env(tmp_path)
    graph = tmp_path / "g.yaml"
    _overlapping_graph(graph, 0, tmp_path / "log")
    assert _mora(env, graph, tmp_path / "r1").returncode == 0
    victim = next(p for p in (tmp_path / "cache" / "objects").glob("*/*.txt") if p.read_text() == "/shared1")
    victim.write_text("/sharedX")  # same size, other content
    out = subprocess.run([sys.executable, "-c", "from mora.engine.frontends.admin import entry; entry()", "cache", "verify", "--dir",
                          str(tmp_path / "cache")],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "content does not match its digest" in out.stdout
    rerun = _mora(env, graph, tmp_path / "r2")
    assert rerun.returncode == 0
    assert json.loads((tmp_path / "r2" / "manifest.json").read_text())["nodes"]["shared1"]["cached"] is False


def test_corrupt_index_is_moved_aside_without_a_traceback(tmp_path):
    env = agent_env(tmp_path)
    graph = tmp_path / "g.yaml"
    _overlapping_graph(graph, 0, tmp_path / "log")
    assert _mora(env, graph, tmp_path / "r1").returncode == 0
    db = tmp_path / "cache" / "index" / "cache.db"
    db.write_bytes(b"this is not a database" * 100)
    for extra in ("cache.db-wal", "cache.db-shm"):
        (db.parent / extra).unlink(missing_ok=True)
    rerun = _mora(env, graph, tmp_path / "r2")
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert "unreadable" in rerun.stderr and "moved it to" in rerun.stderr
    assert list((tmp_path / "cache").glob("index.corrupt-*"))


def test_read_only_cache_is_a_clear_error_and_keeps_outputs(tmp_path):
    # Tests run as root here, which ignores permission bits, so the unwritable cache is a path under a file.
    env = agent_env(tmp_path)
    graph = tmp_path / "g.yaml"
    _overlapping_graph(graph, 0, tmp_path / "log")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory should be")
    run_dir = tmp_path / "r1"
    result = _mora(env, graph, run_dir, f"cache.dir={blocked / 'cache'}")
    assert result.returncode == 2
    assert "cannot create cache directory" in result.stderr and "Traceback" not in result.stderr
    assert not (run_dir / "manifest.json").exists()
    assert blocked.read_text() == "a file where the cache directory should be"
    # a folder holding a user's files is refused before anything runs, and its files are kept
    taken = tmp_path / "r2"
    taken.mkdir()
    (taken / "keep.txt").write_text("earlier output")
    result = _mora(env, graph, taken, f"cache.dir={blocked / 'cache'}")
    assert result.returncode == 2 and "is not empty" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in taken.iterdir()] == ["keep.txt"] and (taken / "keep.txt").read_text() == "earlier output"


def test_disk_full_while_writing_outputs_is_a_clear_error_and_keeps_earlier_outputs(write_graph, run_graph, tmp_path,
                                                                                   monkeypatch):
    path = write_graph({"nodes": {"a": {"agent": "t_source", "params": {"value": 4}}},
                        "outputs": {"out": {"from": "a.value"}}})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "earlier.txt").write_text("keep me")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(media, "export", full)
    with pytest.raises(MoraError, match=r"cannot write the outputs into the run directory .*No space left on device"):
        run_graph(path, run_dir=run_dir)
    assert (run_dir / "earlier.txt").read_text() == "keep me"
    assert sorted(p.name for p in run_dir.iterdir()) == ["earlier.txt"]  # no temporary files left behind
    monkeypatch.undo()
    again = run_graph(path, run_dir=run_dir)  # the result was cached before the export failed
    assert again.manifest["nodes"]["a"]["cached"] and (run_dir / "out.json").exists()
