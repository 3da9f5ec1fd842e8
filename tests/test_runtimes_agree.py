"""One real graph, three runtimes: in-process, the CPU pool and Ray give the same artifacts.

text_to_video runs on the tiny preset (real diffusers/transformers classes, random weights) with
template prompts, once per runtime, each with its own fresh cache directory so that no result
can be shared through the store. Every node's cache key and output digests, the graph outputs'
digests and the exported files' bytes (video.mp4 included) must be identical. CPU numerics
depend on torch's intra-op thread count, so this also checks that pool workers and Ray actors run
with the driver's (Ray alone gives its actors one thread, and different digests from the SVD node
on). The tiny models are built once, in MORA_MODELS_DIR, shared with the other real-model tests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_file

from mora.engine.execution.executors.inprocess import InProcessExecutor
from mora.engine.execution.executors.pool import PoolExecutor
from mora.engine.frontends.api import RunOutcome, graph_path

INPUTS = {"prompt_mode": "template"}
RUNTIMES = ("local", "pool", "ray")


pytestmark = pytest.mark.usefixtures("tiny_models")


def _run(executor: Any, runtime: str, tmp: Path) -> RunOutcome:
    try:
        return run_file(graph_path("text_to_video", None), INPUTS, cache=tmp / runtime / "cache",
                        run_dir=tmp / runtime / "run", runtime={"name": runtime}, executor=executor)
    finally:
        executor.shutdown()


@pytest.fixture(scope="module")
def outcomes(ray_cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunOutcome]:
    from mora.engine.execution.executors.ray import RayExecutor

    tmp = tmp_path_factory.mktemp("agree")
    # in-process first: it builds any tiny model still missing, so the workers only load them
    return {"local": _run(InProcessExecutor("cpu"), "local", tmp),
            "pool": _run(PoolExecutor(2, "cpu"), "pool", tmp),
            "ray": _run(RayExecutor({"device": "cpu", "devices": "all"}), "ray", tmp)}


def _digests(outputs: dict[str, Any]) -> dict[str, Any]:
    return {port: [m["digest"] for m in meta] if isinstance(meta, list) else meta["digest"]
            for port, meta in outputs.items()}


def test_every_runtime_ran_every_node_itself(outcomes):
    devices = {}
    for name, outcome in outcomes.items():
        nodes = outcome.manifest["nodes"]
        assert outcome.manifest["ok"], (name, outcome.manifest["failed"])
        assert not any(n["cached"] for n in nodes.values()), f"{name} reused a cached result"
        devices[name] = {n["device"] for n in nodes.values()}
    assert devices["local"] == {"cpu"}
    assert devices["pool"] <= {"cpu:0", "cpu:1"}
    assert devices["ray"] <= {"cpu:0", "cpu:1"}
    assert len({str(o.manifest["cache_dir"]) for o in outcomes.values()}) == len(RUNTIMES)


def test_every_node_gives_the_same_digests_under_every_runtime(outcomes):
    per_node = {name: {node: (rec["key"], _digests(rec["outputs"])) for node, rec in o.manifest["nodes"].items()}
                for name, o in outcomes.items()}
    reference = per_node["local"]
    assert len(reference) == 5
    for name in RUNTIMES[1:]:
        differ = sorted(n for n in reference if per_node[name].get(n) != reference[n])
        assert not differ, f"{name} differs from in-process at {differ}: " + "; ".join(
            f"{n}: {per_node[name].get(n)} != {reference[n]}" for n in differ)
        assert outcomes[name].manifest["output_digests"] == outcomes["local"].manifest["output_digests"]


def test_exported_files_are_byte_identical(outcomes):
    # video.mp4 too: with x264's macroblock-tree rate control on, the same frames encoded to
    # different bytes from one export to the next (6 of 30 differed); write_mp4 turns it off.
    reference = outcomes["local"]
    files = reference.manifest["outputs"]
    assert set(files) == {"video", "keyframe", "prompt", "dynamic_degree", "motion_smoothness", "subject_consistency",
                          "background_consistency", "temporal_flicker", "imaging_quality"}
    for name in RUNTIMES[1:]:
        assert outcomes[name].manifest["outputs"] == files
        for output, file in files.items():
            ours = (outcomes[name].run_dir / file).read_bytes()
            assert ours == (reference.run_dir / file).read_bytes(), f"{name}: {file} ({output}) differs"
