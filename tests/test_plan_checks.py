"""What the planner can check before a run is checked: blank required texts, empty lists."""
from __future__ import annotations

import pytest

from mora.engine.api import load_plan

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
