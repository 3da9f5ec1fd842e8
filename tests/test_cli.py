"""The `mora` Hydra app as a user runs it: a real process, exit codes, messages, run directories."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mora.engine.cache.media import load_video_file
from mora.engine.graph.registry import default_registry
from mora.nodes.world import captions, detect

GRAPH = {
    "inputs": {"prompt": {"type": "text"}},
    "nodes": {"frame": {"agent": "text_template", "in": {"text": {"input": "prompt"}},
                        "params": {"template": "A {text}"}},
              "styled": {"agent": "style_cue", "in": {"prompt": {"from": "frame.text"}}}},
    "outputs": {"out": {"from": "styled.text"}},
}


@pytest.fixture
def mora(tmp_path, cache_dir):
    def run(*args: str) -> subprocess.CompletedProcess:
        flags = [a for a in args if a.startswith("-")]
        overrides = [a for a in args if not a.startswith("-")]
        return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", *flags, "runtime=local",
                               "runtime.device=cpu", "quiet=true", *overrides],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    return run


def test_run_writes_outputs_and_manifest_then_hits_the_cache(mora, write_graph, tmp_path, cache_dir):
    path = write_graph(GRAPH)
    first = mora(f"graph_file={path}", "prompt=fox", f"hydra.run.dir={tmp_path / 'run1'}")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"out: {tmp_path / 'run1' / 'out.txt'}",
                                         f"mora: run directory: {tmp_path / 'run1'}"]
    assert "2 nodes, 0 cached, 0 failed" in first.stderr
    manifest = json.loads((tmp_path / "run1" / "manifest.json").read_text())
    assert manifest["outputs"] == {"out": "out.txt"}
    assert (tmp_path / "run1" / "out.txt").read_text() == "A fox, in digital world style, Minecraft"
    assert set(manifest["nodes"]) == {"frame", "styled"}
    for rec in manifest["nodes"].values():
        assert {"agent", "key", "cached", "seconds", "params", "seed"} <= set(rec)
        assert rec["cached"] is False and rec["seed"] is None and len(rec["key"]) == 64
    assert manifest["nodes"]["frame"]["params"] == {"template": "A {text}", "step": 0}
    assert manifest["cache_dir"] == str(cache_dir)
    assert any((cache_dir / "objects").rglob("*.txt"))

    second = mora(f"graph_file={path}", "prompt=fox", f"hydra.run.dir={tmp_path / 'run2'}")
    assert second.returncode == 0, second.stderr
    assert "2 nodes, 2 cached, 0 failed" in second.stderr
    again = json.loads((tmp_path / "run2" / "manifest.json").read_text())
    assert all(rec["cached"] for rec in again["nodes"].values())
    assert {n: r["key"] for n, r in again["nodes"].items()} == {n: r["key"] for n, r in manifest["nodes"].items()}
    assert (tmp_path / "run2" / "out.txt").read_text() == "A fox, in digital world style, Minecraft"


def test_invalid_graph_exits_2_with_located_problems(mora, write_graph, tmp_path):
    path = write_graph({**GRAPH, "nodes": {**GRAPH["nodes"], "styled": {"agent": "style_cue", "params": {"cue": 3},
                                                                       "in": {"prompt": {"from": "frame.txt"}}}}})
    result = mora(f"graph_file={path}", "prompt=fox", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "mora: invalid graph or inputs: 2 problem(s) found:" in result.stderr
    assert f"{path}:" in result.stderr
    assert "node 'styled', field 'params.cue': parameter 'cue' must be of type str, got int 3" in result.stderr
    assert "node 'styled', field 'in.prompt': node 'frame' has no output port 'txt'" in result.stderr
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_unknown_graph_input_exits_2_naming_it(mora, write_graph, tmp_path):
    result = mora(f"graph_file={write_graph(GRAPH)}", "prompt=fox", "inputs.nosuch=1",
                  f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "unknown graph input 'nosuch'; inputs are ['prompt']" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_graph_input_and_unknown_graph_name_exit_2(mora, write_graph, tmp_path):
    result = mora(f"graph_file={write_graph(GRAPH)}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "missing required graph input 'prompt' (text); set it with inputs.prompt=..." in result.stderr
    result = mora("graph=no_such_graph", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no_such_graph" in result.stderr


@pytest.mark.parametrize("override, says", [
    ("seed=abc", "seed"),
    ("runtime.nosuch=1", "nosuch"),
    ("runtime.batch_size=many", "batch_size"),
    ("model=no_such_preset", "no_such_preset"),
])
def test_bad_overrides_exit_2_naming_the_key(mora, write_graph, tmp_path, override, says):
    result = mora(f"graph_file={write_graph(GRAPH)}", "prompt=fox", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_failed_node_exits_1_and_names_the_node(mora, write_graph, tmp_path):
    graph = {**GRAPH, "nodes": {**GRAPH["nodes"], "frame": {**GRAPH["nodes"]["frame"],
                                                            "params": {"template": "no placeholder"}}}}
    result = mora(f"graph_file={write_graph(graph)}", "prompt=fox", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert "mora: error: node 'frame' failed: ValueError: `template` must contain '{text}'" in result.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert (manifest["ok"], manifest["failed"], manifest["skipped"]) == (False, ["frame"], ["styled"])


def test_multirun_with_the_basic_launcher(mora, write_graph, tmp_path):
    sweep = tmp_path / "sweep"
    result = mora("-m", f"graph_file={write_graph(GRAPH)}", "inputs.prompt=cat,dog", f"hydra.sweep.dir={sweep}",
                  "hydra/launcher=basic")
    assert result.returncode == 0, result.stderr
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "manifest.json").exists())
    assert [p.name for p in runs] == ["0", "1"]
    assert [(p / "out.txt").read_text() for p in runs] == ["A cat, in digital world style, Minecraft",
                                                           "A dog, in digital world style, Minecraft"]


def test_inputs_dot_name_override(mora, write_graph, tmp_path):
    result = mora(f"graph_file={write_graph(GRAPH)}", "inputs.prompt=owl", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "out.txt").read_text() == "A owl, in digital world style, Minecraft"


@pytest.mark.usefixtures("tiny_models")
def test_bare_mora_makes_the_default_video_on_the_world_preset(tmp_path, cache_dir):
    """The README's first command: `mora` with no overrides, from any directory, on the trained offline world: the
    prompt agent writes one of the world's captions and the keyframe draws what that caption says."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "user-cache"))  # where the report keeps its previews
    result = subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    video, *_, last = result.stdout.splitlines()
    run_dir = Path(last.removeprefix("mora: run directory: "))
    assert video == f"video: {run_dir / 'video.mp4'}"  # the main output first, by its own path
    for chatter in ("Loading pipeline components", "Loading weights", "Writing model shards", "it/s]", "Warning",
                    "[transformers]", "truncated"):  # library chatter is quiet unless hydra.verbose
        assert chatter not in result.stderr
    assert run_dir.is_relative_to(tmp_path / "outputs")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["preset"], manifest["outputs"]["video"]) == ("world", "video.mp4")
    scene = captions.parse((run_dir / "prompt.txt").read_text())
    reading = detect.read(np.asarray(Image.open(run_dir / "keyframe.png").convert("RGB")))
    assert reading.background == scene.background
    assert [(f.colour, f.shape) for f in reading.things] == [(t.colour, t.shape) for t in scene.things]
    assert set(manifest["nodes"]) == {"t2v/enrich", "t2v/keyframe", "t2v/animate/motion", "t2v/animate/decode",
                                      "evaluate/quality"}
    assert "t2v/animate/motion" in (run_dir / "report.html").read_text()
    assert load_video_file(run_dir / "video.mp4").count == 17  # the world preset's clip: Wan's 4k + 1 frames

    # the same command again, every node a hit: no model library, no decoder, no agent the graph does not name
    report = ("import atexit, json, sys; atexit.register(lambda: print('IMPORTED', json.dumps(sorted(sys.modules)), "
              "file=sys.stderr)); from mora.engine.frontends.cli import main; main()")
    assert len(list((tmp_path / "user-cache" / "mora" / "report-previews").glob("*.json"))) == 1
    again = subprocess.run([sys.executable, "-c", report], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env=env)
    assert again.returncode == 0, again.stderr
    assert "5 nodes, 5 cached, 0 failed" in again.stderr
    imported = set(json.loads(again.stderr.split("IMPORTED ")[-1]))
    assert imported & {"torch", "diffusers", "transformers", "av", "numpy", "PIL", "cv2", "scipy", "tqdm"} == set()
    agents = {rec["agent"] for rec in manifest["nodes"].values()}
    assert {m.removeprefix("mora.nodes.") for m in imported if m.count(".") == 2 and m.startswith("mora.nodes.")
            and m.removeprefix("mora.nodes.") in default_registry().names()} == agents
