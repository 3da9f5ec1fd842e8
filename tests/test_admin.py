"""`mora-admin` as a user runs it: validate, agents, draw, schema and the cache commands."""
from __future__ import annotations

import json

import pytest

from mora.engine.frontends import admin

GRAPH = {
    "inputs": {"prompt": {"type": "text", "default": "fox"}},
    "nodes": {"frame": {"agent": "text_template", "in": {"text": {"input": "prompt"}},
                        "params": {"template": "A {text}"}},
              "styled": {"agent": "style_cue", "in": {"prompt": {"from": "frame.text"}}}},
    "outputs": {"out": {"from": "styled.text"}},
}


@pytest.fixture
def cached(write_graph, run_graph, cache_dir):
    """A cache holding one run of GRAPH (two entries, three objects: the input and two results)."""
    run_graph(write_graph(GRAPH))
    return cache_dir


def run_admin(capsys, *argv: str) -> tuple[int, str, str]:
    status = admin.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_validate_accepts_a_good_graph_and_refuses_a_bad_one(write_graph, capsys):
    status, out, _ = run_admin(capsys, "validate", str(write_graph(GRAPH)))
    assert status == 0 and "ok (2 agent nodes after expansion, outputs: out)" in out
    bad = write_graph({**GRAPH, "nodes": {**GRAPH["nodes"], "styled": {"agent": "style_cu"}}}, "bad.yaml")
    status, _, err = run_admin(capsys, "validate", str(bad))
    assert status == 2 and "node 'styled', field 'agent': unknown agent type 'style_cu'" in err


IMAGE_GRAPH = {
    "inputs": {"image": {"type": "image"}},
    "nodes": {"small": {"agent": "image_resize", "in": {"image": {"input": "image"}}}},
    "outputs": {"small": {"from": "small.image"}},
}
VIDEO_GRAPH = {
    "inputs": {"clip": {"type": "video"}},
    "nodes": {"last": {"agent": "frame_pick", "in": {"video": {"input": "clip"}}}},
    "outputs": {"last": {"from": "last.image"}},
}


def test_validate_names_the_inputs_a_run_still_needs(write_graph, capsys, tmp_path):
    """`validate` checks a file on its own (a required input may be left out), and says what `mora` would refuse."""
    status, out, _ = run_admin(capsys, "validate", str(write_graph(IMAGE_GRAPH)))
    assert status == 0 and out.rstrip().endswith("outputs: small; a run needs inputs.image=...)")
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    status, out, _ = run_admin(capsys, "validate", str(write_graph(IMAGE_GRAPH)), "-i", f"image={image}")
    assert status == 0 and "a run needs" not in out

@pytest.mark.parametrize("content, says", [
    (None, "image file does not exist"), (b"", "empty"), (b"not an image", "not a readable image")])
def test_validate_reads_input_files_as_a_run_does_and_stores_nothing(write_graph, capsys, tmp_path, cache_dir,
                                                                      content, says):
    from PIL import Image

    graph = str(write_graph(IMAGE_GRAPH))
    Image.new("RGB", (61, 37), "red").save(tmp_path / "good.png")
    status, out, _ = run_admin(capsys, "validate", graph, "-i", f"image={tmp_path / 'good.png'}")
    assert status == 0 and "ok" in out
    bad = tmp_path / "bad.png"
    if content is not None:
        bad.write_bytes(content)
    status, out, err = run_admin(capsys, "validate", graph, "-i", f"image={bad}")
    assert (status, out) == (2, "")
    assert f"node 'small', field 'in.image': {bad}" in err and says in err
    (tmp_path / "clip.mp4").write_bytes(b"garbage")
    status, _, err = run_admin(capsys, "validate", str(write_graph(VIDEO_GRAPH, "video.yaml")),
                               "-i", f"clip={tmp_path / 'clip.mp4'}")
    assert status == 2 and "node 'last', field 'in.video'" in err
    assert not cache_dir.exists()  # checking stores nothing in the cache


def test_agents_refuses_an_unknown_name_with_the_closest_ones(capsys):
    status, out, err = run_admin(capsys, "agents", "text_to_imag")
    assert (status, out) == (2, "")
    assert "unknown agent type 'text_to_imag'; did you mean text_to_image" in err


def test_agents_lists_ports_and_parameters(capsys):
    status, out, _ = run_admin(capsys, "agents", "text_to_image")
    assert status == 0
    assert out.startswith("text_to_image (v1, model role: text_to_image) - ")
    assert "    in  prompt: text  " in out and "    out image: image  " in out
    assert "    param steps: int = 25 min=1 max=1000  denoising steps" in out
    assert "prompt_select" not in out


def test_draw_writes_dot_with_the_edges(write_graph, tmp_path, capsys):
    dot = tmp_path / "g.dot"
    assert run_admin(capsys, "draw", str(write_graph(GRAPH)), "-o", str(dot))[0] == 0
    text = dot.read_text()
    assert text.startswith("digraph") and '"frame" -> "styled"' in text


def test_schema_is_json(capsys):
    status, out, _ = run_admin(capsys, "schema")
    assert status == 0 and json.loads(out)["title"] == "Mora graph file"


def test_cache_stats_and_list_describe_the_entries(cached, capsys):
    status, out, _ = run_admin(capsys, "cache", "stats", "--dir", str(cached))
    stats = json.loads(out)
    assert status == 0 and (stats["entries"], stats["agents"]) == (2, {"style_cue": 1, "text_template": 1})
    assert stats["objects"] >= 2
    status, out, _ = run_admin(capsys, "cache", "list", "--dir", str(cached))
    lines = out.splitlines()
    assert status == 0 and len(lines) == 2
    assert {line.split()[1] for line in lines} == {"style_cue", "text_template"}
    assert {line.split()[2] for line in lines} == {"frame", "styled"}


def test_cache_verify_passes_on_a_sound_cache(cached, capsys):
    status, out, _ = run_admin(capsys, "cache", "verify", "--dir", str(cached))
    # the one unreferenced object is the graph input "fox": inputs are stored but have no entry of their own
    assert status == 0 and "verified 2 entries, 3 artifacts: 0 bad, 1 unreferenced objects" in out


def test_cache_gc_by_size_empties_and_by_age_keeps_fresh_entries(cached, capsys):
    status, out, _ = run_admin(capsys, "cache", "gc", "--dir", str(cached), "--max-age", "1d")
    assert status == 0 and json.loads(out)["removed_entries"] == 0
    status, out, _ = run_admin(capsys, "cache", "gc", "--dir", str(cached), "--max-size", "0")
    result = json.loads(out)
    # every object is inside the grace period: evicting an entry would free nothing now, so none is evicted
    assert status == 0 and result["removed_entries"] == 0 and result["kept_young"] == 4 and result["kept_bytes"] > 0
    status, out, _ = run_admin(capsys, "cache", "gc", "--dir", str(cached), "--max-size", "0", "--grace", "0")
    result = json.loads(out)
    assert status == 0 and result["removed_objects"] == 4 and result["freed_bytes"] > 0
    stats = json.loads(run_admin(capsys, "cache", "stats", "--dir", str(cached))[1])
    assert (stats["entries"], stats["objects"]) == (0, 0)


@pytest.mark.parametrize("flag, value", [("--max-size", "lots"), ("--max-age", "soon"), ("--max-size", "-1G"),
                                         ("--max-size", "inf"), ("--max-age", "nan"), ("--max-age", "1e400d")])
def test_cache_gc_refuses_bad_sizes_and_ages(cached, capsys, flag, value):
    assert admin.main(["cache", "gc", "--dir", str(cached), f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert value in err and "Traceback" not in err


def test_cache_stats_counts_every_kind_of_row(cached, capsys):
    """Tagged entries from the tag index; untagged (older) and large (file-held) entries and bad rows from their JSON."""
    from mora.engine.cache.store import Store

    store = Store(cached)
    entry = {"v": 2, "node": "n", "agent": "old_agent", "outputs": {}}
    store.index.set("a" * 64, entry)  # as written before entries were tagged
    store.index.set("b" * 64, {**entry, "agent": "big_agent", "pad": "x" * 40_000})  # held in a value file
    store.index.set("c" * 64, {"not": "an entry"})
    store.index.set("weights:" + "d" * 56, {"digest": "e" * 64})  # a weights memo: not a node entry
    store.close()
    status, out, _ = run_admin(capsys, "cache", "stats", "--dir", str(cached))
    assert status == 0 and json.loads(out)["agents"] == {"<corrupt>": 1, "big_agent": 1, "old_agent": 1,
                                                         "style_cue": 1, "text_template": 1}


def test_models_refuses_a_role_that_is_no_mapping(capsys, cache_dir):
    status, _, err = run_admin(capsys, "models", "model.roles.text_to_image=5")
    assert status == 2 and "model.roles.text_to_image: a role is a mapping such as {source: tiny" in err, err


def test_models_lists_the_roles_a_run_refuses_as_invalid_with_the_run_s_message(capsys, cache_dir):
    status, out, err = run_admin(capsys, "models", "model=tiny", "model.roles.text_to_image={source: bogus, name: x}",
                                 "model.roles.prompt={source: tiny, name: nope}")
    lines = {x.split()[0]: x for x in out.splitlines()[1:]}
    assert "invalid: model reference {'source': 'bogus', 'name': 'x'" in lines["text_to_image"], out
    assert "invalid: no tiny model named 'nope' (role prompt); known: " in lines["prompt"], out
    assert "not built yet" in lines["image_to_video"], out  # the valid roles are listed as before
    assert status == 2 and "invalid model role(s) prompt, text_to_image" in err, err


def test_validate_resolves_each_node_s_model_as_a_run_does(write_graph, capsys, cache_dir):
    graph = write_graph({"nodes": {"k": {"agent": "text_to_image", "in": {"prompt": "a fox"},
                                         "params": {"model": "path:/nonexistent", "seed": 1, "steps": 1}}},
                         "outputs": {"image": {"from": "k.image"}}})
    status, out, err = run_admin(capsys, "validate", str(graph), "-m", "tiny")
    assert status == 2 and "ok" not in out, out
    assert "node 'k', field 'params.model': model path '/nonexistent' does not exist or is not a directory" in err
    status, _, err = run_admin(capsys, "validate", str(graph), "-m", "tiny", "-i", "x=1")
    assert status == 2 and "unknown graph input 'x'" in err, err  # the graph's own problems still come first


@pytest.mark.parametrize("args", [("cache", "gc"), ("cache", "stats"), ("workers", "status")])
def test_an_empty_dir_is_refused_never_the_default_cache(capsys, cached, args):
    before = sorted(p.name for p in (cached / "objects").rglob("*"))
    status, _, err = run_admin(capsys, *args, "--dir", "")
    assert status == 2 and "argument --dir: is empty (an unset shell variable?)" in err, err
    assert sorted(p.name for p in (cached / "objects").rglob("*")) == before


def test_draw_reads_the_output_s_extension_in_any_case(write_graph, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no graphviz: only an image would need it
    out = tmp_path / "g.DOT"
    assert run_admin(capsys, "draw", str(write_graph(GRAPH)), "-o", str(out))[0] == 0
    assert out.read_text().startswith("digraph mora {")
