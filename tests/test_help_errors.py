"""`mora --help` about something that cannot be read or used fails as the run would: one line, status 2, no help text.

Help names a graph and the values on its command line; if `mora` without `--help` would refuse them as
invalid input, help says so instead of printing a page that describes nothing.
"""
from __future__ import annotations

import pytest
from mora_inproc import ECHO_GRAPH, run_admin, run_mora
from PIL import Image

PICTURE_GRAPH = {
    "inputs": {"prompt": {"type": "text"}, "picture": {"type": "image", "default": "pic.png"}},
    "nodes": {"frame": {"agent": "text_template", "in": {"text": {"input": "prompt"}},
                        "params": {"template": "A {text}"}},
              "thumb": {"agent": "image_resize", "in": {"image": {"input": "picture"}},
                        "params": {"width": 16, "height": 16}}},
    "outputs": {"caption": {"from": "frame.text"}, "thumb": {"from": "thumb.image"}},
}


@pytest.mark.parametrize("args, named", [
    (("graph_file=MISSING",), "MISSING: graph file does not exist"),
    (("graph_file=TMP",), "TMP: graph path is a directory"),
    (("graph_file=BROKEN",), "BROKEN:2: YAML syntax error"),
    (("graph_file=ECHO", "inputs.promt=fox"), "unknown graph input 'promt'"),
    (("graph_file=ECHO", "outputs=[nope]"), "unknown output 'nope'"),
    (("graph_file=PICTURE", "inputs.picture=TMP/gone.png"), "TMP/gone.png: image file does not exist"),
    (("graph_file=PICTURE", "inputs.picture=BROKEN"), "BROKEN: not a readable image"),
])
def test_help_about_a_graph_or_value_that_cannot_be_used_exits_2(capsys, write_graph, tmp_path, args, named):
    (tmp_path / "broken.yaml").write_text("nodes: [\n")
    places = {"MISSING": str(tmp_path / "missing.yaml"), "TMP": str(tmp_path), "BROKEN": str(tmp_path / "broken.yaml"),
              "ECHO": str(write_graph(ECHO_GRAPH)), "PICTURE": str(write_graph(PICTURE_GRAPH, "picture.yaml"))}

    def filled(text: str) -> str:
        for key, value in places.items():
            text = text.replace(key, value)
        return text

    result = run_mora(capsys, "--help", *map(filled, args))
    assert (result.status, result.clean, result.out) == (2, True, ""), result.err
    assert len(result.err.strip().splitlines()) == 1 and filled(named) in result.err


def test_help_about_a_usable_graph_still_lists_it(capsys, write_graph, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "mine.png")
    result = run_mora(capsys, "--help", f"graph_file={write_graph(PICTURE_GRAPH)}",
                      f"inputs.picture={tmp_path}/mine.png")
    assert result.status == 0, result.err
    assert "== Graph: graph.yaml ==" in result.out and "  prompt   text    required" in result.out


def test_validate_leaves_a_required_file_input_unread(capsys, write_graph):
    """A required image input has no value when a file is checked on its own: nothing to read, not a missing file."""
    graph = {**PICTURE_GRAPH, "inputs": {**PICTURE_GRAPH["inputs"], "picture": {"type": "image"}}}
    result = run_admin(capsys, "validate", str(write_graph(graph)))
    assert result.status == 0, result.err


@pytest.mark.parametrize("args, says", [
    (("--resolve",), "invalid command line: The --resolve flag can only be used"),
    (("-sc",), "invalid command line: Expecting one subcommand"),
    (("-sc", "install=nosh"), "invalid command line: No completion plugin for 'nosh'"),
    (("-sc", "query=bash"), "sets COMP_LINE"),
])
def test_a_command_line_hydra_or_completion_refuses_is_invalid_input_not_an_internal_error(capsys, monkeypatch,
                                                                                          args, says):
    monkeypatch.delenv("COMP_LINE", raising=False)
    result = run_mora(capsys, *args)
    assert (result.status, result.clean) == (2, True), result.err
    assert says in result.err


def test_a_prompts_file_that_cannot_be_used_for_a_sweep_is_one_line_and_status_2(tmp_path):
    import subprocess
    import sys

    (tmp_path / "empty.txt").write_text(" \n\n")
    for name, says in [("missing.txt", "prompts file does not exist"),
                       ("empty.txt", "prompts file has no prompts (one per line)")]:
        result = subprocess.run([sys.executable, "-m", "mora.engine.frontends.overrides", str(tmp_path / name)],
                                capture_output=True, text=True, timeout=60)
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert result.stderr == f"mora: error: {tmp_path / name}: {says}\n"
