"""Graph-file validation: every kind of mistake is reported as a located Problem, all at once."""
from __future__ import annotations

import pytest

from mora.engine.errors import GraphError
from mora.engine.frontends.api import load_plan
from mora.engine.graph.spec import Link, read_graph_file

OK_OUTPUTS = {"out": {"from": "a.value"}}


def only(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# -- file-level shape ---------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(write_graph):
    path = write_graph("""\
        nodes:
          a: {agent: t_source
        outputs:
          out: {from: a.value}
        """)
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = only(info.value.problems)
    assert p.file == str(path)
    assert p.message.startswith("YAML syntax error")
    assert p.line == 3
    assert f"{path}:3" in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", "must be a mapping with `nodes:` and `outputs:`, got list"),
    ("just a string\n", "got str"),
    ("", "the graph file is empty"),
    ("# only a comment\n", "the graph file is empty"),
])
def test_file_that_is_not_a_graph_mapping(write_graph, text, expected):
    path = write_graph(text)
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    assert expected in only(info.value.problems).message


def test_graph_with_no_nodes(write_graph):
    path = write_graph("nodes: {}\noutputs:\n  out: {from: a.value}\n")
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = only(info.value.problems)
    assert (p.field, p.line, p.message) == ("nodes", 1, "the graph has no nodes")


def test_graph_with_no_outputs(write_graph):
    path = write_graph({"nodes": {"a": {"agent": "t_source"}}})
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    assert only(info.value.problems).message == "the graph declares no outputs"


def test_duplicate_node_ids_are_an_error_not_an_overwrite(write_graph):
    path = write_graph("""\
        nodes:
          a: {agent: t_source, params: {value: 1}}
          a: {agent: t_source, params: {value: 2}}
        outputs:
          out: {from: a.value}
        """)
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = only(info.value.problems)
    assert "duplicate key 'a' (first at line 2)" in p.message
    assert p.line == 3


def test_yaml_merge_keys_can_be_overridden(write_graph):
    path = write_graph("""\
        nodes:
          a: &base {agent: t_source, params: {value: 1}}
          b:
            <<: *base
            params: {value: 2}
        outputs:
          out: {from: b.value}
        """)
    assert read_graph_file(path).nodes["b"].params == {"value": 2}


def test_non_utf8_graph_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    text = "nodes:\n  a: {agent: t_text, params: {text: caf\xe9}}\n"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = only(info.value.problems)
    assert p.file == str(path)
    assert f"not UTF-8 text (byte {text.index('é')})" in p.message


def test_missing_graph_file(tmp_path):
    with pytest.raises(GraphError) as info:
        read_graph_file(tmp_path / "nope.yaml")
    assert only(info.value.problems).message == "graph file does not exist"


def test_unknown_keys_at_top_and_in_nodes(write_graph):
    path = write_graph("""\
        nodse: {}
        nodes:
          a: {agent: t_source, parms: {value: 1}}
        outputs:
          out: {from: a.value}
        """)
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    found = {(p.node, p.field, p.line) for p in info.value.problems}
    assert found == {(None, None, 1), ("a", "parms", 3)}
    assert any("unknown top-level key 'nodse'" in p.message for p in info.value.problems)


def test_node_needs_exactly_one_of_agent_and_graph(write_graph):
    path = write_graph({"nodes": {"a": {"agent": "t_source", "graph": "x"}, "b": {"params": {}}},
                       "outputs": OK_OUTPUTS})
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    assert sorted(p.node for p in info.value.problems) == ["a", "b"]
    assert all("exactly one of `agent:` or `graph:`" in p.message for p in info.value.problems)


# -- bindings -------------------------------------------------------------------------------------


def test_links_are_explicit_and_literal_lists_stay_literal(write_graph):
    path = write_graph("""\
        nodes:
          a: {agent: t_text, params: {text: "[a, 0]"}}
          b: {agent: video_concat, in: {videos: [{from: x.video}, "clip.mp4"]}}
        outputs:
          out: {from: a.text}
          raw: {input: prompt}
        """)
    spec = read_graph_file(path)
    assert spec.nodes["a"].params == {"text": "[a, 0]"}
    assert spec.nodes["b"].inputs == {"videos": [Link(node="x", port="video"), "clip.mp4"]}
    assert spec.outputs == {"out": Link(node="a", port="text"), "raw": Link(input="prompt")}


def test_interpolation_syntax_is_rejected(write_graph):
    path = write_graph({"nodes": {"a": {"agent": "t_text", "params": {"text": "${inputs.prompt}"}}},
                       "outputs": {"out": {"from": "a.text"}}})
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = only(info.value.problems)
    assert (p.file, p.node, p.field) == (str(path), "a", "params.text")
    assert "'${...}' is not Mora's link syntax" in p.message


@pytest.mark.parametrize("binding, expected", [
    ({"fron": "a.value"}, "a mapping here must be a link, {from: NODE.PORT} or {input: NAME}; got keys ['fron']"),
    ({"from": "a.value", "input": "x"}, "a mapping here must be a link"),
    ({"from": "a"}, "link 'a' must look like NODE.PORT"),
    ({"from": "a.b.c"}, "link 'a.b.c' must look like NODE.PORT"),
    ({"from": "../a.value"}, "must look like NODE.PORT"),
])
def test_a_mapping_that_is_not_a_link(write_graph, binding, expected):
    path = write_graph({"nodes": {"a": {"agent": "t_source"}, "b": {"agent": "t_add", "in": {"a": binding}}},
                        "outputs": OK_OUTPUTS})
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = only(info.value.problems)
    assert (p.node, p.field) == ("b", "in.a")
    assert expected in p.message


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "out.mp4", "..", "with space", ""])
def test_output_names_must_be_plain_file_names(write_graph, name):
    path = write_graph({"nodes": {"a": {"agent": "t_source"}}, "outputs": {name: {"from": "a.value"}}})
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = only(info.value.problems)
    assert p.field == "outputs"
    assert repr(name) in p.message and "names a file in the run directory" in p.message


@pytest.mark.parametrize("node_id", ["../a", "a.b", "1a"])
def test_node_ids_must_be_names(write_graph, node_id):
    path = write_graph({"nodes": {node_id: {"agent": "t_source"}}, "outputs": OK_OUTPUTS})
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    assert f"node id {node_id!r} must be" in only(info.value.problems).message


# -- against the registry ------------------------------------------------------------------------


def test_unknown_agent_type_suggests_closest_names(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_sourse"}}, "outputs": OK_OUTPUTS})
    problems = graph_problems(path)
    p = problems[0]
    assert (p.file, p.node, p.field, p.line) == (str(path), "a", "agent", 2)
    assert p.message.startswith("unknown agent type 't_sourse'; did you mean t_source")


def test_unknown_agent_type_without_close_match_lists_agents(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "zzzzzzzz"}}, "outputs": OK_OUTPUTS})
    assert "known agents: " in graph_problems(path)[0].message
    assert "text_template" in graph_problems(path)[0].message


def test_unknown_param_suggests_closest_names(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_source", "params": {"valeu": 1}}}, "outputs": OK_OUTPUTS})
    p = only(graph_problems(path))
    assert (p.node, p.field, p.line) == ("a", "params.valeu", 5)
    assert "agent 't_source' has no parameter 'valeu'; did you mean value?" in p.message


@pytest.mark.parametrize("agent, params, field, expected", [
    ("t_source", {"value": "abc"}, "params.value", "must be of type float, got str 'abc'"),
    ("t_source", {"value": True}, "params.value", "must be of type float, got bool True"),
    ("t_source", {"value": None}, "params.value", "must not be null"),
    ("t_source", {"value": float("inf")}, "params.value", "must be a finite number"),
    ("t_source", {"value": 2e9}, "params.value", "must be <= 1000000000.0"),
    ("image_resize", {"width": 500}, "params.width", "must be divisible by 8, got 500"),
    ("image_resize", {"width": 0}, "params.width", "must be >= 8, got 0"),
    ("image_resize", {"height": 64.5}, "params.height", "must be of type int, got float 64.5"),
    ("image_resize", {"crop": "yes"}, "params.crop", "must be of type bool, got str 'yes'"),
    ("text_template", {"step": -1}, "params.step", "must be >= 0, got -1"),
])
def test_wrong_param_types_and_values(write_graph, graph_problems, agent, params, field, expected):
    path = write_graph({"nodes": {"a": {"agent": agent, "params": params}}, "outputs": OK_OUTPUTS})
    p = next(p for p in graph_problems(path) if p.field == field)
    assert p.node == "a"
    assert expected in p.message


def test_whole_floats_are_accepted_for_int_params(write_graph, registry):
    path = write_graph({"nodes": {"a": {"agent": "t_text"}, "r": {"agent": "text_template",
                                                                  "in": {"text": {"from": "a.text"}},
                                                                  "params": {"step": 2.0}}},
                        "outputs": {"out": {"from": "r.text"}}})
    params = load_plan(path, {}, registry=registry).nodes["r"].params
    assert params == {"template": "{text}", "step": 2} and type(params["step"]) is int


def test_missing_required_input_port(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_source"},
                                  "s": {"agent": "t_add", "in": {"a": {"from": "a.value"}}}},
                        "outputs": {"out": {"from": "s.value"}}})
    p = only(graph_problems(path))
    assert (p.node, p.field) == ("s", "in.b")
    assert p.message == "missing required input 'b' (number)"


def test_unknown_input_port(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_source"},
                                  "s": {"agent": "t_add", "in": {"a": {"from": "a.value"}, "b": {"from": "a.value"},
                                                                 "c": {"from": "a.value"}}}},
                        "outputs": {"out": {"from": "s.value"}}})
    p = only(graph_problems(path))
    assert (p.node, p.field) == ("s", "in.c")
    assert "agent 't_add' has no input port 'c'; its inputs are ['a', 'b']" in p.message


def test_link_to_missing_node(write_graph, graph_problems):
    path = write_graph({"nodes": {"src": {"agent": "t_source"},
                                  "s": {"agent": "t_add",
                                        "in": {"a": {"from": "srx.value"}, "b": {"from": "src.value"}}}},
                        "outputs": {"out": {"from": "s.value"}}})
    p = only(graph_problems(path))
    assert (p.node, p.field) == ("s", "in.a")
    assert "link to unknown node 'srx'" in p.message


def test_link_to_missing_port(write_graph, graph_problems):
    path = write_graph({"nodes": {"src": {"agent": "t_source"},
                                  "s": {"agent": "t_add",
                                        "in": {"a": {"from": "src.val"}, "b": {"from": "src.value"}}}},
                        "outputs": {"out": {"from": "s.value"}}})
    p = only(graph_problems(path))
    assert (p.node, p.field) == ("s", "in.a")
    assert "node 'src' has no output port 'val'; its outputs are ['value']" in p.message


def test_output_linking_to_missing_port(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_source"}}, "outputs": {"out": {"from": "a.nope"}}})
    p = only(graph_problems(path))
    assert (p.node, p.field) == (None, "outputs.out")


@pytest.mark.parametrize("producer, consumer, port, types", [
    ("t_text", "frame_pick", "video", ("text", "video")),
    ("t_source", "text_template", "text", ("number", "text")),
    ("t_text", "video_concat", "videos", ("text", "list[video]")),
])
def test_port_type_mismatch(write_graph, graph_problems, producer, consumer, port, types):
    out = "text" if producer == "t_text" else "value"
    path = write_graph({"nodes": {"p": {"agent": producer},
                                  "c": {"agent": consumer, "in": {port: {"from": f"p.{out}"}}}},
                        "outputs": {"out": {"from": "p." + out}}})
    p = only(graph_problems(path))
    assert (p.node, p.field) == ("c", f"in.{port}")
    assert p.message == f"type mismatch: p.{out} is {types[0]}, but this port takes {types[1]}"


def test_literal_of_the_wrong_type_for_a_port(write_graph, graph_problems):
    path = write_graph({"nodes": {"s": {"agent": "t_add", "in": {"a": "three", "b": True}}},
                        "outputs": {"out": {"from": "s.value"}}})
    found = {p.field: p.message for p in graph_problems(path)}
    assert found == {"in.a": "expected a number, got str 'three'", "in.b": "expected a number, got bool True"}


def test_param_bound_to_a_node_output_is_refused(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_source"},
                                  "b": {"agent": "t_source", "params": {"value": {"from": "a.value"}}}},
                        "outputs": {"out": {"from": "b.value"}}})
    p = only(graph_problems(path))
    assert (p.node, p.field) == ("b", "params.value")
    assert "a parameter must be known before the run" in p.message


def test_self_loop_is_a_cycle(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_add", "in": {"a": {"from": "a.value"}, "b": 1}}},
                        "outputs": OK_OUTPUTS})
    p = graph_problems(path)[0]
    assert p.message == "cycle: a -> a"
    assert p.node == "a"


def test_three_cycle_prints_the_cycle(write_graph, graph_problems):
    path = write_graph({"nodes": {
        "a": {"agent": "t_add", "in": {"a": {"from": "c.value"}, "b": 1}},
        "b": {"agent": "t_add", "in": {"a": {"from": "a.value"}, "b": 1}},
        "c": {"agent": "t_add", "in": {"a": {"from": "b.value"}, "b": 1}},
        "d": {"agent": "t_source"},
    }, "outputs": {"out": {"from": "d.value"}}})
    problems = graph_problems(path)
    assert [p.message for p in problems] == ["cycle: a -> b -> c -> a"]
    assert (problems[0].file, problems[0].node, problems[0].line) == (str(path), "a", 2)


def test_several_problems_are_reported_together(write_graph, graph_problems, registry):
    path = write_graph("""\
        nodes:
          a: {agent: t_sourcee}
          b: {agent: t_source, params: {value: nope}}
          c: {agent: image_resize, in: {image: {from: b.value}}, params: {width: 500}}
        outputs:
          out: {from: c.image}
        """)
    problems = graph_problems(path)
    located = {(p.node, p.field, p.line) for p in problems}
    assert {("a", "agent", 2), ("b", "params.value", 3), ("c", "in.image", 4), ("c", "params.width", 4)} <= located
    assert all(p.file == str(path) for p in problems)
    with pytest.raises(GraphError) as info:
        load_plan(path, {}, registry=registry)
    text = str(info.value)
    assert text.startswith(f"{len(info.value.problems)} problem(s) found:")
    assert f"{path}:3: node 'b', field 'params.value'" in text


@pytest.mark.parametrize("version", [2, "1", True, 1.0, None])
def test_a_format_version_other_than_the_integer_1_is_refused(write_graph, graph_problems, version):
    path = write_graph({"mora": version, "nodes": {"a": {"agent": "t_source"}}, "outputs": OK_OUTPUTS})
    p = only(graph_problems(path))
    assert (p.field, p.message) == ("mora", f"unsupported format version {version!r}; this Mora reads mora: 1")


def test_an_empty_list_of_requested_outputs_is_refused_not_a_run_that_does_nothing(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_source"}}, "outputs": OK_OUTPUTS})
    p = only(graph_problems(path, outputs=[]))
    assert (p.field, p.message) == ("outputs", "no outputs requested; outputs are ['out']")


def test_unknown_requested_output(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_source"}}, "outputs": OK_OUTPUTS})
    p = only(graph_problems(path, outputs=["nope"]))
    assert p.message == "unknown output 'nope'; outputs are ['out']"
