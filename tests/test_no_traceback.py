"""Nothing a user can type prints a traceback: one line from Mora's one guard, and the status it means.

2 invalid input or configuration, 1 failed work (a node), 130 interrupted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from entry_points import agent_env
from mora_inproc import ECHO_GRAPH, run_admin, run_mora

GRAPH = ECHO_GRAPH
FAILING = {**GRAPH, "nodes": {"frame": {**GRAPH["nodes"]["frame"], "params": {"template": "no placeholder"}}}}


@pytest.fixture
def loop(tmp_path):
    """A symbolic link that points at itself."""
    path = tmp_path / "loop"
    path.symlink_to(path)
    return path


def test_a_graph_file_that_is_a_symlink_loop(capsys, loop, cache_dir):
    result = run_mora(capsys, f"graph_file={loop}", "runtime=local", "prompt=fox")
    assert (result.status, result.clean) == (2, True), result.err
    assert str(loop) in result.err
    result = run_admin(capsys, "validate", str(loop))
    assert (result.status, result.clean) == (2, True), result.err


def test_a_cache_directory_that_is_a_symlink_loop(capsys, write_graph, loop, tmp_path):
    result = run_mora(capsys, f"graph_file={write_graph(GRAPH)}", "runtime=local", "prompt=fox", f"cache.dir={loop}",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert (result.status, result.clean) == (2, True), result.err


@pytest.mark.parametrize("args", [
    ("draw", "GRAPH", "-o", "/nonexistent/folder/g.dot"),
    ("validate", "/nonexistent/folder/g.yaml"),
    ("validate", "GRAPH", "-i", "prompt"),
    ("cache", "gc", "--max-age", "-3d"),
    ("nosuchcommand",),
    (),
])
def test_mora_admin_arguments_out_of_range_or_naming_missing_paths(capsys, write_graph, cache_dir, args):
    args = tuple(str(write_graph(GRAPH)) if a == "GRAPH" else a for a in args)
    result = run_admin(capsys, *args)
    assert (result.status, result.clean) == (2, True), result.err


NO_USER = "~mora-no-such-user"
"""A `~USER` path whose user does not exist: pathlib's `expanduser` raises a bare RuntimeError for it."""
MODEL_GRAPH = {"inputs": {"prompt": {"type": "text"}, "model": {"type": "text", "default": ""}},
               "nodes": {"k": {"agent": "text_to_image", "in": {"prompt": {"input": "prompt"}},
                               "params": {"model": {"input": "model"}, "seed": 1, "steps": 1}}},
               "outputs": {"image": {"from": "k.image"}}}
"""A node whose model is the preset's role, or the graph input `model` when given."""
IMAGE_GRAPH = {"inputs": {"image": {"type": "image"}},
               "nodes": {"small": {"agent": "image_resize", "in": {"image": {"input": "image"}}}},
               "outputs": {"image": {"from": "small.image"}}}


@pytest.mark.parametrize(("args", "names"), [
    ((f'graph_file="{NO_USER}/g.yaml"',), "graph file"),
    (("GRAPH", f'cache.dir="{NO_USER}/c"'), "cache.dir"),
    (("GRAPH", "runtime=pool", "runtime.device=cpu", f'runtime.attach="{NO_USER}/w"'), "runtime.attach"),
    (("MODEL_GRAPH", f"inputs.model=path:{NO_USER}/x"), "model path (role text_to_image)"),
    (("MODEL_GRAPH", f"inputs.model={NO_USER}/x"), "model path (role text_to_image)"),
    (("MODEL_GRAPH", f"model.roles.text_to_image={{source: path, name: '{NO_USER}/x'}}"), "model path"),
])
def test_a_home_folder_of_no_such_user_is_bad_input_naming_the_setting(capsys, write_graph, tmp_path, cache_dir,
                                                                       args, names):
    graphs = {"GRAPH": GRAPH, "MODEL_GRAPH": MODEL_GRAPH}
    args = tuple(f"graph_file={write_graph(graphs[a])}" if a in graphs else a for a in args)
    result = run_mora(capsys, *args, "model=tiny", "prompt=fox", "quiet=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert (result.status, result.clean) == (2, True), result.err
    assert names in result.err and f"cannot expand '{NO_USER}': there is no user" in result.err


@pytest.mark.parametrize("args", [
    ("validate", f"{NO_USER}/g.yaml"),
    ("validate", "MODEL_GRAPH", "-m", "tiny", "-i", f"model=path:{NO_USER}/x"),
    ("cache", "stats", "--dir", f"{NO_USER}/c"),
    ("workers", "status", "--dir", f"{NO_USER}/w"),
    ("models", f'cache.dir="{NO_USER}/c"'),
])
def test_mora_admin_given_a_home_folder_of_no_such_user_exits_2(capsys, write_graph, cache_dir, args):
    args = tuple(str(write_graph(MODEL_GRAPH)) if a == "MODEL_GRAPH" else a for a in args)
    result = run_admin(capsys, *args)
    assert (result.status, result.clean) == (2, True), result.err
    assert f"cannot expand '{NO_USER}': there is no user" in result.err


def test_mora_admin_models_lists_a_role_in_a_home_folder_of_no_such_user_as_missing(capsys, cache_dir):
    result = run_admin(capsys, "models", "model=tiny", f"model.roles.text_to_image={{source: path, name: '{NO_USER}/x'}}")
    assert (result.status, result.clean) == (0, True), result.err
    line = next(x for x in result.out.splitlines() if x.strip().startswith("text_to_image"))
    assert "missing: model path (role text_to_image)" in line and f"cannot expand '{NO_USER}'" in line


def test_an_input_file_in_a_home_folder_of_no_such_user_is_bad_input(capsys, write_graph, tmp_path, cache_dir):
    path = write_graph(IMAGE_GRAPH)
    result = run_mora(capsys, f"graph_file={path}", f"inputs.image={NO_USER}/x.png", "quiet=true",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert (result.status, result.clean) == (2, True), result.err
    assert f"image input '{NO_USER}/x.png': cannot expand" in result.err
    result = run_admin(capsys, "validate", str(path), "-i", f"image={NO_USER}/x.png")
    assert (result.status, result.clean) == (2, True), result.err


def test_a_mora_cache_dir_in_a_home_folder_of_no_such_user_is_bad_input(capsys, write_graph, tmp_path, monkeypatch):
    monkeypatch.setenv("MORA_CACHE_DIR", f"{NO_USER}/c")
    result = run_mora(capsys, f"graph_file={write_graph(GRAPH)}", "prompt=fox", "quiet=true",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert (result.status, result.clean) == (2, True), result.err
    assert f"MORA_CACHE_DIR '{NO_USER}/c': cannot expand" in result.err


def test_a_failed_node_in_a_mora_launcher_sweep_exits_1(capsys, write_graph, tmp_path, cache_dir):
    result = run_mora(capsys, "-m", f"graph_file={write_graph(FAILING)}", "runtime=local", "runtime.device=cpu",
                      "quiet=true", "prompt=cat,dog", "hydra/launcher=mora", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert (result.status, result.clean) == (1, True), result.err
    assert "node 'frame' failed" in result.err


def test_an_invalid_job_in_a_mora_launcher_sweep_exits_2_before_anything_runs(capsys, write_graph, tmp_path,
                                                                              cache_dir):
    result = run_mora(capsys, "-m", f"graph_file={write_graph(GRAPH)}", "runtime=local", "runtime.device=cpu",
                      "quiet=true", "prompt=cat,'  '", "hydra/launcher=mora", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert (result.status, result.clean) == (2, True), result.err
    assert "'text' is empty or only whitespace" in result.err
    assert not list((tmp_path / "sweep").glob("*/manifest.json"))  # the valid job did not run either


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    env = agent_env(tmp_path)
    log = tmp_path / "started.log"
    graph = tmp_path / "slow.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"slow": {"agent": "p_count", "params": {
        "tag": "slow", "seconds": 60, "log": str(log)}}}, "outputs": {"out": {"from": "slow.text"}}}))
    # Ctrl-C as at a terminal: a test run started in the background of a non-interactive shell inherits
    # SIGINT ignored, and a Python started so never raises KeyboardInterrupt
    interruptible = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    proc = subprocess.Popen([sys.executable, "-c", interruptible + "from mora.engine.frontends.cli import main; main()",
                             f"graph_file={graph}",
                             "runtime=local", "runtime.device=cpu", "quiet=true", f"hydra.run.dir={tmp_path / 'run'}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not log.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert log.exists(), proc.communicate()[1]
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and err.strip().splitlines()[-1] == "mora: interrupted"
