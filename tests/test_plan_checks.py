"""What can be checked before a run is checked: blank required texts, empty lists, model folders of the wrong kind."""
from __future__ import annotations

import json

import pytest

from mora.engine.errors import GraphError
from mora.engine.execution.model_kinds import folder_problem
from mora.engine.frontends.api import load_plan

TEMPLATE = {"inputs": {"prompt": {"type": "text"}, "style": {"type": "text", "default": ""}},
            "nodes": {"cue": {"agent": "style_cue", "in": {"prompt": {"input": "prompt"}}},
                      "frame": {"agent": "text_template", "in": {"text": {"input": "style"}},
                                "params": {"template": "A {text}"}}},
            "outputs": {"out": {"from": "cue.text"}}}


@pytest.mark.parametrize("prompt", ["", " ", "\t\n", "\u3000"])
def test_a_blank_prompt_is_refused_naming_the_node_and_port(write_graph, graph_problems, prompt):
    problems = graph_problems(write_graph(TEMPLATE), {"prompt": prompt}, outputs=["out"])
    assert [(p.node, p.field, p.message) for p in problems] == [
        ("cue", "in.prompt", "'prompt' is empty or only whitespace; give some text")]


def test_an_optional_text_may_be_empty(write_graph, registry):
    path = write_graph({"inputs": {"style": {"type": "text", "default": ""}},
                        "nodes": {"i2v": {"agent": "text_to_image", "in": {"prompt": "a fox",
                                                                          "negative_prompt": {"input": "style"}}}},
                        "outputs": {"out": {"from": "i2v.image"}}})
    assert set(load_plan(path, {}, registry=registry).nodes) == {"i2v"}


def test_an_empty_list_for_a_list_port_is_refused_literal_or_from_an_input(write_graph, graph_problems):
    path = write_graph({"inputs": {"clips": {"type": "list[video]"}},
                        "nodes": {"lit": {"agent": "video_concat", "in": {"videos": []}},
                                  "inp": {"agent": "video_concat", "in": {"videos": {"input": "clips"}}}},
                        "outputs": {"a": {"from": "lit.video"}, "b": {"from": "inp.video"}}})
    problems = graph_problems(path, {"clips": "[]"})
    assert sorted((p.node, p.field) for p in problems) == [("inp", "in.videos"), ("lit", "in.videos")]
    assert all("an empty list: 'videos' takes list[video] and needs at least one item" in p.message for p in problems)


def _folder(tmp_path, name: str, file: str, data: dict):
    folder = tmp_path / name
    folder.mkdir()
    (folder / file).write_text(json.dumps(data))
    return folder


def test_a_model_folder_of_another_kind_is_refused_before_anything_runs(write_graph, run_graph, tmp_path,
                                                                        executions):
    svd = _folder(tmp_path, "svd", "model_index.json", {"_class_name": "StableVideoDiffusionPipeline"})
    lm = _folder(tmp_path, "lm", "config.json", {"architectures": ["Qwen2ForCausalLM"]})
    empty = tmp_path / "empty"
    empty.mkdir()
    path = write_graph({"nodes": {
        "count": {"agent": "t_count", "params": {"value": 1}},
        "a": {"agent": "text_to_image", "in": {"prompt": "a fox"}, "params": {"model": f"path:{svd}"}},
        "b": {"agent": "image_to_video", "in": {"image": {"from": "a.image"}}, "params": {"model": f"path:{lm}"}},
        "c": {"agent": "prompt_select", "in": {"prompt": "a fox"}, "params": {"model": f"path:{empty}"}}},
        "outputs": {"n": {"from": "count.value"}, "v": {"from": "b.latent"}, "p": {"from": "c.text"}}})
    with pytest.raises(GraphError) as info:
        run_graph(path)
    found = {p.node: p.message for p in info.value.problems}
    assert found["a"] == (f"model folder '{svd}' holds StableVideoDiffusionPipeline, not a model for role "
                          "text_to_image (it takes *Pipeline)")
    assert f"model folder '{lm}' holds Qwen2ForCausalLM, not a model for role image_to_video" in found["b"]
    assert f"model folder '{empty}' has no config.json, so it is not a model for role prompt" in found["c"]
    assert not executions()  # refused before any node ran


@pytest.mark.parametrize("role, file, data", [
    ("text_to_image", "model_index.json", {"_class_name": "StableDiffusionXLPipeline"}),
    ("image_edit", "model_index.json", {"_class_name": "StableDiffusionInstructPix2PixPipeline"}),
    ("image_to_video", "model_index.json", {"_class_name": "WanImageToVideoPipeline"}),
    ("prompt", "config.json", {"architectures": ["GPT2LMHeadModel"]}),
    ("someone_elses_role", "x.json", {}),
])
def test_model_folders_of_the_right_kind_pass(tmp_path, role, file, data):
    assert folder_problem(role, _folder(tmp_path, "m", file, data)) is None
