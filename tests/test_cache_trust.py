"""The cache never serves bytes it did not store (issue #10, section 1).

Every artifact read for use, as an agent's input or as an exported output, is checked against
its digest in the pass that reads it; a mismatch quarantines the object, is reported once, and
recomputes the node that made it. Nothing is recorded from an input that failed verification.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mora.engine.cache import media
from mora.engine.cache.artifacts import CorruptArtifact
from mora.engine.cache.media import read_artifact_frames, read_image, read_number, read_text
from mora.engine.cache.store import Store
from mora.engine.execution.runner import execute_unit
from mora.engine.execution.settings import ExecutionSettings
from mora.engine.execution.task import NodeTask

CHAIN = {"nodes": {"a": {"agent": "t_source", "params": {"value": 4}},
                   "b": {"agent": "t_count", "in": {"x": {"from": "a.value"}}, "params": {"value": 1}}},
         "outputs": {"out": {"from": "b.value"}}}


def _object(cache: Path, content: bytes) -> Path:
    return next(p for p in (cache / "objects").glob("*/*") if p.read_bytes() == content)


def _quarantined(cache: Path) -> list[bytes]:
    return [p.read_bytes() for p in (cache / "quarantine").glob("*")] if (cache / "quarantine").exists() else []


def test_an_input_overwritten_with_bytes_of_the_same_size_is_recomputed_not_used(write_graph, run_graph, cache_dir,
                                                                                executions):
    run_graph(write_graph(CHAIN))
    victim = _object(cache_dir, b"4.0")
    victim.write_bytes(b"5.0")  # same size, other content: a size check cannot see it
    graph = {**CHAIN, "nodes": {**CHAIN["nodes"], "b": {**CHAIN["nodes"]["b"], "params": {"value": 2}}}}
    outcome = run_graph(write_graph(graph, "g2.yaml"))
    assert json.loads((outcome.run_dir / "out.json").read_text()) == 6.0  # 4 + 2, never 5 + 2
    assert executions()["a"] == 2  # recomputed because its output was corrupt (b started, read, stopped, reran)
    assert outcome.manifest["nodes"]["b"]["status"] == "done" and outcome.manifest["nodes"]["a"]["cached"] is False
    assert victim.read_bytes() == b"4.0" and _quarantined(cache_dir) == [b"5.0"]
    findings = outcome.manifest["cache_findings"]
    assert len(findings) == 1 and "content does not match its digest" in findings[0], findings
    again = run_graph(write_graph(graph, "g2.yaml"))  # what was recorded came from verified inputs only
    assert all(n["cached"] for n in again.manifest["nodes"].values())
    assert json.loads((again.run_dir / "out.json").read_text()) == 6.0 and not again.manifest["cache_findings"]


def test_a_corrupt_output_is_never_exported(write_graph, run_graph, cache_dir, executions):
    run_graph(write_graph(CHAIN))
    victim = _object(cache_dir, b"5.0")
    victim.write_bytes(b"9.0")
    outcome = run_graph(write_graph(CHAIN))
    assert json.loads((outcome.run_dir / "out.json").read_text()) == 5.0
    assert outcome.manifest["nodes"]["b"]["cached"] is False and outcome.manifest["nodes"]["a"]["cached"] is True
    assert executions() == {"a": 1, "b": 2}
    assert len(outcome.manifest["cache_findings"]) == 1 and _quarantined(cache_dir) == [b"9.0"]


def test_a_node_whose_input_fails_verification_records_nothing(tmp_path):
    store = Store(tmp_path / "cache")
    ref = store.put(media.number_blob(4.0))
    ref.path.write_bytes(b"7.0")
    task = NodeTask("b", "t_count", "engine_agents", {"value": 1.0, "path": "", "sleep": 0.0}, None, None,
                    {"x": ref.to_json()}, "k" * 64, True, ExecutionSettings.for_store(store))
    [result] = execute_unit(task, "cpu")
    assert result.corrupt == (ref.digest,) and "content does not match its digest" in (result.error or "")
    assert store.lookup("k" * 64) is None and len(store.index) == 0
    assert not ref.path.exists() and _quarantined(store.root) == [b"7.0"]


def test_every_decoder_reads_through_verification(tmp_path):
    store = Store(tmp_path / "cache")
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    refs = {"text": store.put(media.text_blob("a fox")), "number": store.put(media.number_blob(2.5)),
            "image": store.put(media.image_blob(Image.fromarray(frames[1]))),
            "video": store.put(media.frames_blob(frames, 12.0))}
    assert read_text(refs["text"]) == "a fox" and read_number(refs["number"]) == 2.5
    assert np.array_equal(np.asarray(read_image(refs["image"])), frames[1])
    video = read_artifact_frames(refs["video"])
    assert np.array_equal(video.array, frames) and video.fps == 12.0 and video.array.flags.writeable
    readers = {"text": read_text, "number": read_number, "image": read_image, "video": read_artifact_frames}
    for name, ref in refs.items():
        data = bytearray(ref.path.read_bytes())
        data[-1] ^= 0x01  # one bit, in the pixel data or the text, not in a header a decoder would reject
        ref.path.write_bytes(bytes(data))
        with pytest.raises(CorruptArtifact, match="does not match its digest"):
            readers[name](ref)
        with pytest.raises(CorruptArtifact):
            media.export(ref, tmp_path / name, "mp4")
    store.close()


def test_entries_of_the_sha256_cache_version_are_plain_misses(tmp_path):
    store = Store(tmp_path / "cache")
    ref = store.put(media.text_blob("old"))
    store.index.set("k" * 64, {"v": 1, "node": "n", "outputs": {"text": {**ref.to_json(), "digest": "0" * 64}}})
    assert store.lookup("k" * 64) is None and not store.findings  # not reported as corrupt: simply not used


@pytest.mark.parametrize("swap", ["fifo", "directory", "symlink"])
def test_an_object_replaced_by_something_else_is_refused_without_hanging(tmp_path, swap):
    store = Store(tmp_path / "cache")
    ref = store.put(media.text_blob("x" * 10))
    store.record("k" * 64, {"node": "n", "outputs": {"text": ref.to_json()}})
    ref.path.unlink()
    other = tmp_path / "other.txt"
    other.write_text("y" * 10)
    {"fifo": lambda: os.mkfifo(ref.path), "directory": ref.path.mkdir,
     "symlink": lambda: ref.path.symlink_to(other)}[swap]()
    with pytest.raises(CorruptArtifact):
        ref.read_bytes()  # a FIFO must not block the reader
    assert store.lookup("k" * 64) is None and len(store.findings.corrupt) == 1
    assert not ref.path.exists() and not ref.path.is_symlink()  # moved to quarantine/
    assert read_text(store.put(media.text_blob("x" * 10))) == "x" * 10  # and stored again when recomputed


def test_the_cli_reports_a_corrupt_object_once_and_finishes(tmp_path):
    import subprocess
    import sys

    import yaml
    from entry_points import agent_env

    env, log = agent_env(tmp_path), tmp_path / "log"

    def graph(tag: str) -> Path:
        nodes = {"first": {"agent": "p_count", "params": {"tag": "first", "log": str(log)}},
                 "second": {"agent": "p_count", "in": {"after": {"from": "first.text"}},
                            "params": {"tag": tag, "log": str(log)}}}
        path = tmp_path / f"{tag}.yaml"
        path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": {"out": {"from": "second.text"}}}))
        return path

    def mora(path: Path, run_dir: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", f"graph_file={path}",
                               "runtime=local", "runtime.device=cpu", f"hydra.run.dir={run_dir}"],
                              env=env, capture_output=True, text=True, timeout=300, check=False)

    assert mora(graph("a"), tmp_path / "r1").returncode == 0
    victim = _object(tmp_path / "cache", b"/first")
    victim.write_bytes(b"/FIRST")
    second = mora(graph("b"), tmp_path / "r2")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "r2" / "out.txt").read_text() == "/first/b"
    assert second.stderr.count(victim.name[:12]) == 1 and "Traceback" not in second.stderr, second.stderr


def test_worker_processes_quarantine_and_the_scheduler_repairs(tmp_path, monkeypatch):
    """The same repair when the reader runs in a pool worker process, not in the scheduler's."""
    import pool_agents
    import yaml

    from mora.engine.execution.executors.pool import PoolExecutor
    from mora.engine.frontends.api import load_plan, run

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "log"

    def go(tag: str):
        nodes = {"first": {"agent": "p_count", "params": {"tag": "first", "log": str(log)}},
                 "second": {"agent": "p_count", "in": {"after": {"from": "first.text"}},
                            "params": {"tag": tag, "log": str(log)}}}
        path = tmp_path / f"{tag}.yaml"
        path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": {"out": {"from": "second.text"}}}))
        executor = PoolExecutor(1, "cpu")
        try:
            return run(load_plan(path, {}, registry=pool_agents.registry()), store=Store(tmp_path / "cache"),
                       preset={}, run_dir=tmp_path / tag, runtime={"name": "pool"}, quiet=True, executor=executor)
        finally:
            executor.shutdown()

    go("a")
    _object(tmp_path / "cache", b"/first").write_bytes(b"/FIRST")
    outcome = go("b")
    assert (tmp_path / "b" / "out.txt").read_text() == "/first/b"
    assert outcome.manifest["nodes"]["first"]["cached"] is False and len(outcome.manifest["cache_findings"]) == 1
    assert _quarantined(tmp_path / "cache") == [b"/FIRST"]
