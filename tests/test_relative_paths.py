"""A relative file path written in a graph file means a file beside that graph file, wherever Mora is started.

Input defaults, literals under `in:` and a template's own defaults are read from the folder of the file
that writes them (as Compose and workflow files resolve theirs); a value typed on the command line
still means a file in the current folder.
"""
from __future__ import annotations

import json

import pytest
from mora_inproc import run_admin, run_mora
from PIL import Image

from mora.engine.frontends import api

GRAPH = """\
inputs:
  picture: {type: image, default: frames/first.png}
nodes:
  thumb: {agent: image_resize, in: {image: {input: picture}}, params: {width: 16, height: 16}}
  written: {agent: image_resize, in: {image: frames/first.png}, params: {width: 24, height: 24}}
  part: {graph: parts/shrink.yaml}
outputs:
  thumb: {from: thumb.image}
  written: {from: written.image}
  part: {from: part.small}
"""
TEMPLATE = """\
inputs:
  still: {type: image, default: still.png}
nodes:
  shrink: {agent: image_resize, in: {image: {input: still}}, params: {width: 8, height: 8}}
outputs:
  small: {from: shrink.image}
"""


@pytest.fixture
def project(tmp_path, write_graph, monkeypatch):
    """project/graph.yaml with frames/first.png beside it and parts/shrink.yaml with parts/still.png; cwd elsewhere."""
    graph = write_graph(GRAPH, "project/graph.yaml")
    write_graph(TEMPLATE, "project/parts/shrink.yaml")
    (tmp_path / "project" / "frames").mkdir()
    Image.new("RGB", (20, 10), "red").save(tmp_path / "project" / "frames" / "first.png")
    Image.new("RGB", (30, 30), "blue").save(tmp_path / "project" / "parts" / "still.png")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return graph


def test_paths_written_in_graph_files_resolve_beside_them(project, registry, tmp_path):
    plan = api.load_plan(project, {}, registry=registry)
    folder = tmp_path / "project"
    assert plan.nodes["thumb"].inputs["image"].value == str(folder / "frames" / "first.png")
    assert plan.nodes["written"].inputs["image"].value == str(folder / "frames" / "first.png")
    assert plan.nodes["part/shrink"].inputs["image"].value == str(folder / "parts" / "still.png")
    assert plan.inputs == {"picture": str(folder / "frames" / "first.png")}


def test_a_path_typed_on_the_command_line_still_means_the_current_folder(project, registry, tmp_path):
    plan = api.load_plan(project, {"picture": "frames/first.png"}, registry=registry)
    assert plan.nodes["thumb"].inputs["image"].value == "frames/first.png"


def test_mora_runs_a_graph_with_relative_defaults_from_another_folder(capsys, project, cache_dir, tmp_path):
    result = run_mora(capsys, f"graph_file={project}", "runtime=local", "runtime.device=cpu", "quiet=true",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 0, result.err
    assert Image.open(tmp_path / "run" / "part.png").size == (8, 8)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["inputs"] == {"picture": str(tmp_path / "project" / "frames" / "first.png")}
    assert run_admin(capsys, "validate", "../project/graph.yaml").status == 0


def test_a_missing_default_file_names_the_graph_file_the_input_and_the_resolved_path(capsys, project, tmp_path):
    (tmp_path / "project" / "parts" / "still.png").unlink()
    result = run_admin(capsys, "validate", str(project))
    assert (result.status, result.clean) == (2, True), result.err
    template = tmp_path / "project" / "parts" / "shrink.yaml"
    assert (f"{tmp_path}/project/parts/still.png: image file does not exist (the default of input 'still' in "
            f"{template})") in result.err


def test_a_sweep_reads_defaults_beside_the_graph_file_whatever_the_jobs_working_directory(capsys, project, cache_dir,
                                                                                          tmp_path):
    result = run_mora(capsys, "-m", f"graph_file={project}", "runtime=local", "runtime.device=cpu", "quiet=true",
                      "hydra/launcher=mora", "hydra.job.chdir=true", "video_format=mp4,frames",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.status == 0, result.err
    for job in ("0", "1"):
        assert Image.open(tmp_path / "sweep" / job / "thumb.png").size == (16, 16)
