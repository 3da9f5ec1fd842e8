"""Mora's command line as Hydra users expect it: help, job name and log file, logging switches, chdir,
suggestions, printed output paths, the manifest's layout, and Mora-launcher sweeps under Hydra's contract."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest
from PIL import Image

GRAPH = {
    "description": "A caption and a thumbnail.",
    "inputs": {"prompt": {"type": "text", "description": "what to caption"},
               "picture": {"type": "image", "default": "pic.png"}},
    "nodes": {"frame": {"agent": "text_template", "in": {"text": {"input": "prompt"}},
                        "params": {"template": "A {text}"}},
              "styled": {"agent": "style_cue", "in": {"prompt": {"from": "frame.text"}}},
              "thumb": {"agent": "image_resize", "in": {"image": {"input": "picture"}},
                        "params": {"width": 16, "height": 16}}},
    "outputs": {"caption": {"from": "styled.text"}, "thumb": {"from": "thumb.image"}},
}


@pytest.fixture
def mora(tmp_path, cache_dir):
    """mora(*args, quiet=True): the `mora` app in a real process, started in tmp_path (which holds pic.png)."""
    Image.new("RGB", (32, 24), (200, 30, 30)).save(tmp_path / "pic.png")

    def run(*args: str, quiet: bool = True) -> subprocess.CompletedProcess:
        flags = [a for a in args if a.startswith("-")]
        overrides = [a for a in args if not a.startswith("-")]
        return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", *flags, "runtime=local",
                               "runtime.device=cpu", f"quiet={str(quiet).lower()}", *overrides],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)

    return run


def test_help_is_moras_own(mora, write_graph, tmp_path):
    result = mora("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("mora: run a declarative graph")
    assert "== Graph: text_to_video ==" in text
    assert re.search(r"^  prompt +text +default 'a red fox running through fresh snow at sunrise'$", text, re.MULTILINE)
    assert re.search(r"^  width +number +default 64$", text, re.MULTILINE)
    assert re.search(r"^  motion_bucket_id +number +default: the agent's$", text, re.MULTILINE)  # default: null
    assert "graph: connect_videos, digital_world" in text and "model: random, recipe" in text
    assert "_schema" not in text and "is powered by Hydra" not in text
    other = mora("--help", f"graph_file={write_graph(GRAPH)}").stdout
    assert "== Graph: graph.yaml ==\nA caption and a thumbnail." in other
    assert "  prompt   text    required  what to caption" in other
    assert f"  picture  image   default '{tmp_path / 'pic.png'}'" in other  # a relative default is beside the graph


def test_job_name_is_mora_and_its_log_file_has_the_node_events(mora, write_graph, tmp_path):
    result = mora(f"graph_file={write_graph(GRAPH)}", "prompt=fox", f"hydra.run.dir={tmp_path / 'run'}", quiet=False)
    assert result.returncode == 0, result.stderr
    assert "✓ done    styled (style_cue)" in result.stderr and "3 nodes, 0 cached, 0 failed" in result.stderr
    log = (tmp_path / "run" / "mora.log").read_text()
    assert "[mora.progress][INFO] - [  0/3] … running" in log
    assert "✓ done    styled (style_cue)" in log and "3 nodes, 0 cached, 0 failed" in log
    assert "  name: mora\n" in (tmp_path / "run" / ".hydra" / "hydra.yaml").read_text()


def test_job_logging_disabled_silences_node_events_and_verbose_shows_quiet_ones(mora, write_graph, tmp_path):
    graph = write_graph(GRAPH)
    silent = mora(f"graph_file={graph}", "prompt=fox", "hydra/job_logging=disabled",
                  f"hydra.run.dir={tmp_path / 'a'}", quiet=False)
    assert silent.returncode == 0, silent.stderr
    assert "styled (style_cue)" not in silent.stderr and not (tmp_path / "a" / "mora.log").exists()
    loud = mora(f"graph_file={graph}", "prompt=fox", "hydra.verbose=mora", f"hydra.run.dir={tmp_path / 'b'}")
    assert "= cached  styled (style_cue)" in loud.stderr  # quiet=true events are DEBUG records


def test_each_output_is_printed_by_its_path_main_output_first(mora, write_graph, tmp_path):
    result = mora(f"graph_file={write_graph(GRAPH)}", "prompt=fox", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.stdout.splitlines() == [f"caption: {tmp_path / 'run' / 'caption.txt'}",
                                          f"thumb: {tmp_path / 'run' / 'thumb.png'}",
                                          f"mora: run directory: {tmp_path / 'run'}"]


def test_chdir_keeps_relative_paths_meaning_the_starting_directory(mora, write_graph, tmp_path):
    write_graph(GRAPH)
    result = mora("graph_file=graph.yaml", "prompt=fox", "inputs.picture=pic.png", "hydra.job.chdir=true",
                  "hydra.run.dir=out/run")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "run" / "thumb.png").size == (16, 16)


def test_a_misspelled_input_suggests_the_closest(mora, write_graph, tmp_path):
    result = mora(f"graph_file={write_graph(GRAPH)}", "inputs.promt=fox", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "unknown graph input 'promt'; inputs are ['picture', 'prompt']; did you mean prompt?" in result.stderr


def test_manifest_reads_top_down_with_iso_times_and_the_outputs_file_mode(mora, write_graph, tmp_path):
    result = mora(f"graph_file={write_graph(GRAPH)}", "prompt=fox", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "run" / "manifest.json").read_text()
    data = json.loads(text)
    assert list(data)[:9] == ["mora_manifest", "status", "ok", "graph", "inputs", "versions", "started", "finished",
                              "seconds"]
    assert list(data)[-1] == "nodes"
    assert data["status"] == "ok" and data["inputs"] == {"prompt": "fox", "picture": str(tmp_path / "pic.png")}
    assert {"python", "mora", "torch", "diffusers", "transformers", "hydra-core"} <= set(data["versions"])
    assert data["versions"]["hydra-core"]
    from datetime import datetime

    started = [datetime.fromisoformat(n["started"]) for n in data["nodes"].values()]
    assert started == sorted(started) and datetime.fromisoformat(data["started"]) <= started[0]
    assert list(data["nodes"]).index("frame") < list(data["nodes"]).index("styled")
    mode = stat.S_IMODE((tmp_path / "run" / "manifest.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "run" / "caption.txt").stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_mora_launcher_sweep_keeps_hydras_contract(mora, write_graph, tmp_path):
    """Launching lines, job names, ${hydra.job.override_dirname} subdirs, chdir, per-job seconds."""
    write_graph(GRAPH)
    result = mora("-m", "hydra/launcher=mora", "graph_file=graph.yaml", "inputs.prompt=cat,dog",
                  "inputs.picture=pic.png", "hydra.job.chdir=true", "hydra.job.name=thumbs", "hydra.sweep.dir=sweep",
                  "hydra.sweep.subdir=${hydra.job.num}_${hydra.job.override_dirname}",
                  "hydra.job.config.override_dirname.exclude_keys=[inputs.picture,graph_file,runtime,runtime.device,quiet]", quiet=False)
    assert result.returncode == 0, result.stderr
    assert "[HYDRA] Launching 2 jobs locally" in result.stdout
    for i, animal in enumerate(["cat", "dog"]):
        assert (f"[HYDRA] \t#{i} : runtime=local runtime.device=cpu quiet=False graph_file=graph.yaml "
                f"++inputs.prompt={animal} ++inputs.picture=pic.png") in result.stdout
    runs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["0_++inputs.prompt=cat", "1_++inputs.prompt=dog"]
    for run, animal in zip(runs, ["cat", "dog"]):
        assert (run / "caption.txt").read_text() == f"A {animal}, in digital world style, Minecraft"
        assert Image.open(run / "thumb.png").size == (16, 16)
        assert (run / "thumbs.log").read_text().count("nodes, ") == 1
        data = json.loads((run / "manifest.json").read_text())
        assert data["launcher"] == "mora" and data["sweep_jobs"] == 2
        own = sum(n["seconds"] for n in data["nodes"].values() if not n["cached"])
        assert data["seconds"] == pytest.approx(own, abs=1e-5) and data["seconds"] <= data["sweep_seconds"]
    second = json.loads((runs[1] / "manifest.json").read_text())
    assert second["nodes"]["thumb"]["shared_from"] == "job0:thumb" and second["nodes"]["thumb"]["cached"]


@pytest.mark.parametrize("line, shell, expected", [
    ("mora graph=image_to_video inputs.p", "bash", "inputs.prompt= inputs.prompt_mode="),
    ("mora inputs.motion", "fish", "inputs.motion_bucket_id="),
    ("mora graph_file=graph.yaml inputs.", "bash", "inputs.prompt= inputs.picture="),
])
def test_shell_completion_offers_the_graphs_inputs(tmp_path, write_graph, line, shell, expected):
    write_graph(GRAPH)
    result = subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "-sc", f"query={shell}"],
                            cwd=tmp_path, env={**os.environ, "COMP_LINE": line}, capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


def test_shell_completion_of_other_words_stays_hydras(tmp_path):
    result = subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "-sc", "query=bash"],
                            cwd=tmp_path, env={**os.environ, "COMP_LINE": "mora grap"}, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["graph.", "graph=", "graph_file="]
