"""Planning: template expansion and namespacing, repeat chains, pruning, parameters from inputs."""
from __future__ import annotations

import graphlib
from collections import Counter

import pytest

from mora.engine.errors import GraphError
from mora.engine.frontends.api import GRAPHS_DIR, load_plan, plan_graph
from mora.engine.graph.plan import Source
from mora.engine.graph.spec import read_graph_file
from mora.engine.graph.templates import TemplateLoader
from mora.engine.ports import PortType

# A template: y = x + 1 (its own constant node), so each expansion adds two nodes.
INC = {
    "inputs": {"x": {"type": "number"}},
    "nodes": {"one": {"agent": "t_source", "params": {"value": 1}},
              "add": {"agent": "t_add", "in": {"a": {"input": "x"}, "b": {"from": "one.value"}}}},
    "outputs": {"y": {"from": "add.value"}},
}


def number(outcome, output):
    return float((outcome.run_dir / outcome.manifest["outputs"][output]).read_text())


def test_template_nodes_are_namespaced_and_wired(write_graph, registry, run_graph):
    write_graph(INC, "inc.yaml")
    path = write_graph({"nodes": {"src": {"agent": "t_source", "params": {"value": 10}},
                                  "t": {"graph": "inc", "in": {"x": {"from": "src.value"}}}},
                        "outputs": {"out": {"from": "t.y"}}})
    plan = load_plan(path, {}, registry=registry)
    assert sorted(plan.nodes) == ["src", "t/add", "t/one"]
    assert plan.nodes["t/add"].inputs == {"a": Source(PortType.NUMBER, node="src", port="value"),
                                          "b": Source(PortType.NUMBER, node="t/one", port="value")}
    assert plan.outputs == {"out": Source(PortType.NUMBER, node="t/add", port="value")}
    assert set(plan.dag.edges) == {("src", "t/add"), ("t/one", "t/add")}
    assert plan.nodes["t/add"].file.endswith("inc.yaml")
    assert number(run_graph(path), "out") == 11.0


def test_templates_nest_and_resolve_relative_to_the_including_file(write_graph, registry, run_graph):
    # lib/twice.yaml names `inc`: it must find lib/inc.yaml, not the decoy next to the main graph.
    write_graph(INC, "lib/inc.yaml")
    decoy = {**INC, "nodes": {**INC["nodes"], "one": {"agent": "t_source", "params": {"value": 100}}}}
    write_graph(decoy, "inc.yaml")
    write_graph({"inputs": {"x": {"type": "number"}},
                 "nodes": {"first": {"graph": "inc", "in": {"x": {"input": "x"}}},
                           "second": {"graph": "inc", "in": {"x": {"from": "first.y"}}}},
                 "outputs": {"y": {"from": "second.y"}}}, "lib/twice.yaml")
    path = write_graph({"nodes": {"src": {"agent": "t_source", "params": {"value": 5}},
                                  "outer": {"graph": "lib/twice.yaml", "in": {"x": {"from": "src.value"}}}},
                        "outputs": {"out": {"from": "outer.y"}}})
    plan = load_plan(path, {}, registry=registry)
    assert sorted(plan.nodes) == ["outer/first/add", "outer/first/one", "outer/second/add", "outer/second/one", "src"]
    assert plan.nodes["outer/second/add"].inputs["a"] == Source(PortType.NUMBER, node="outer/first/add", port="value")
    assert number(run_graph(path), "out") == 7.0


def test_repeat_chains_steps_feeding_each_output_to_the_next_input(write_graph, registry, run_graph):
    write_graph(INC, "inc.yaml")
    path = write_graph({"nodes": {"src": {"agent": "t_source", "params": {"value": 10}},
                                  "chain": {"graph": "inc", "in": {"x": {"from": "src.value"}},
                                            "repeat": {"times": 3, "feed": {"x": "y"}}}},
                        "outputs": {"out": {"from": "chain.y"}}})
    plan = load_plan(path, {}, registry=registry)
    assert sorted(plan.nodes) == ["chain/0/add", "chain/0/one", "chain/1/add", "chain/1/one", "chain/2/add",
                                  "chain/2/one", "src"]
    feeds = {n: plan.nodes[f"chain/{n}/add"].inputs["a"].node for n in range(3)}
    assert feeds == {0: "src", 1: "chain/0/add", 2: "chain/1/add"}
    assert plan.outputs["out"].node == "chain/2/add"
    assert number(run_graph(path), "out") == 13.0


def test_repeat_times_from_an_input_and_the_step_number(write_graph, registry, run_graph):
    # y = x + step: chained four times from x = 0 gives 0 + 0 + 1 + 2 + 3.
    write_graph({"inputs": {"step": {"type": "number"}, "x": {"type": "number", "default": 0}},
                 "nodes": {"s": {"agent": "t_source", "params": {"value": {"input": "step"}}},
                           "add": {"agent": "t_add", "in": {"a": {"input": "x"}, "b": {"from": "s.value"}}}},
                 "outputs": {"y": {"from": "add.value"}}}, "stepper.yaml")
    path = write_graph({"inputs": {"n": {"type": "number", "default": 2}},
                        "nodes": {"r": {"graph": "stepper", "repeat": {"times": {"input": "n"}, "feed": {"x": "y"}}}},
                        "outputs": {"out": {"from": "r.y"}}})
    plan = load_plan(path, {"n": 4}, registry=registry)
    assert {n: node.params["value"] for n, node in plan.nodes.items() if n.endswith("/s")} == {
        "r/0/s": 0.0, "r/1/s": 1.0, "r/2/s": 2.0, "r/3/s": 3.0}
    assert plan.nodes["r/0/add"].inputs["a"] == Source(PortType.NUMBER, value=0)
    assert plan.outputs["out"].node == "r/3/add"
    assert number(run_graph(path, {"n": 4}), "out") == 6.0
    assert len(load_plan(path, {}, registry=registry).nodes) == 4


@pytest.mark.parametrize("times", [0, -1, 2.5, "3", 1001])
def test_repeat_times_must_be_a_whole_number_in_range(write_graph, graph_problems, times):
    write_graph(INC, "inc.yaml")
    path = write_graph({"nodes": {"chain": {"graph": "inc", "in": {"x": 1}, "repeat": {"times": times,
                                                                                       "feed": {"x": "y"}}}},
                        "outputs": {"out": {"from": "chain.y"}}})
    p = graph_problems(path)[0]
    assert (p.node, p.field) == ("chain", "repeat.times")
    assert "`repeat.times` must be a whole number from 1 to 1000" in p.message


def test_repeat_feed_must_name_template_ports(write_graph, graph_problems):
    write_graph(INC, "inc.yaml")
    path = write_graph({"nodes": {"chain": {"graph": "inc", "in": {"x": 1}, "repeat": {"times": 2,
                                                                                       "feed": {"x": "nope"}}}},
                        "outputs": {"out": {"from": "chain.y"}}})
    p = graph_problems(path)[0]
    assert (p.node, p.field) == ("chain", "repeat.feed")


def test_pruning_to_requested_outputs(write_graph, registry, run_graph, executions):
    path = write_graph({"nodes": {"a": {"agent": "t_source", "params": {"value": 1}},
                                  "b": {"agent": "t_source", "params": {"value": 2}},
                                  "sum": {"agent": "t_add",
                                          "in": {"a": {"from": "a.value"}, "b": {"from": "b.value"}}},
                                  "lone": {"agent": "t_source", "params": {"value": 3}}},
                        "outputs": {"sum": {"from": "sum.value"}, "lone": {"from": "lone.value"}}})
    full = load_plan(path, {}, registry=registry)
    assert set(full.nodes) == set(full.dag.nodes) == {"a", "b", "sum", "lone"}
    plan = load_plan(path, {}, ["lone"], registry=registry)
    assert set(plan.nodes) == set(plan.dag.nodes) == {"lone"}
    assert list(plan.outputs) == ["lone"]
    outcome = run_graph(path, outputs=["sum"])
    assert set(outcome.manifest["nodes"]) == {"a", "b", "sum"}
    assert outcome.manifest["outputs"] == {"sum": "sum.json"}
    assert set(executions()) == {"a", "b", "sum"}


def test_unused_template_nodes_are_pruned(write_graph, registry):
    write_graph({**INC, "nodes": {**INC["nodes"], "spare": {"agent": "t_source"}}}, "inc.yaml")
    path = write_graph({"nodes": {"t": {"graph": "inc", "in": {"x": 1}}}, "outputs": {"out": {"from": "t.y"}}})
    assert sorted(load_plan(path, {}, registry=registry).nodes) == ["t/add", "t/one"]


def test_params_from_graph_inputs(write_graph, registry):
    path = write_graph({"inputs": {"v": {"type": "number", "default": 3}, "word": {"type": "text", "default": "hi"}},
                        "nodes": {"a": {"agent": "t_source", "params": {"value": {"input": "v"}}},
                                  "b": {"agent": "t_text", "params": {"text": {"input": "word"}}}},
                        "outputs": {"a": {"from": "a.value"}, "b": {"from": "b.text"}}})
    plan = load_plan(path, {}, registry=registry)
    assert plan.nodes["a"].params == {"value": 3.0} and type(plan.nodes["a"].params["value"]) is float
    assert plan.nodes["b"].params == {"text": "hi"}
    plan = load_plan(path, {"v": 5, "word": "yo"}, registry=registry)
    assert (plan.nodes["a"].params, plan.nodes["b"].params) == ({"value": 5.0}, {"text": "yo"})


def test_param_from_an_input_is_checked_like_a_literal(write_graph, graph_problems):
    path = write_graph({"inputs": {"w": {"type": "number", "default": 500}},
                        "nodes": {"img": {"agent": "t_source"},
                                  "r": {"agent": "image_resize", "params": {"width": {"input": "w"}},
                                        "in": {"image": "pic.png"}}},
                        "outputs": {"out": {"from": "r.image"}}})
    p = graph_problems(path)[0]
    assert (p.node, p.field) == ("r", "params.width")
    assert "must be divisible by 8, got 500" in p.message


def test_template_param_from_an_input_fed_by_a_node_is_refused(write_graph, graph_problems):
    write_graph({"inputs": {"x": {"type": "number"}},
                 "nodes": {"s": {"agent": "t_source", "params": {"value": {"input": "x"}}}},
                 "outputs": {"y": {"from": "s.value"}}}, "bad.yaml")
    path = write_graph({"nodes": {"a": {"agent": "t_source"}, "t": {"graph": "bad", "in": {"x": {"from": "a.value"}}}},
                        "outputs": {"out": {"from": "t.y"}}})
    p = graph_problems(path)[0]
    assert (p.node, p.field) == ("t/s", "params.value")
    assert "comes from node 'a'; parameters must be known before the run" in p.message


def test_template_errors(write_graph, graph_problems):
    write_graph(INC, "inc.yaml")
    path = write_graph({"nodes": {"u": {"graph": "nosuch_template"},
                                  "m": {"graph": "inc"},
                                  "w": {"graph": "inc", "in": {"x": 1, "z": 2}},
                                  "p": {"graph": "inc", "in": {"x": 1}, "params": {"value": 1}}},
                        "outputs": {"out": {"from": "w.y"}}})
    found = {(p.node, p.field): p.message for p in graph_problems(path)}
    assert found[("u", "graph")].startswith("unknown template 'nosuch_template'; known templates: ")
    assert found[("m", "in.x")] == ("missing required input 'x' of template 'inc': bind it under `in:` or declare a "
                                    "graph input 'x' here")
    assert found[("w", "in.z")] == "template 'inc' has no input 'z'; its inputs are ['x']"
    assert "not `params:`" in found[("p", "params")]


def test_template_including_itself(write_graph, graph_problems):
    loop = write_graph({"inputs": {"x": {"type": "number"}},
                        "nodes": {"again": {"graph": "loop", "in": {"x": {"input": "x"}}}},
                        "outputs": {"y": {"from": "again.y"}}}, "loop.yaml")
    path = write_graph({"nodes": {"t": {"graph": "loop", "in": {"x": 1}}}, "outputs": {"out": {"from": "t.y"}}},
                       "main.yaml")
    p = graph_problems(path)[0]
    assert (p.file, p.node, p.field) == (str(loop), "t/again", "graph")
    assert p.message == "template recursion: main.yaml -> loop.yaml -> loop.yaml"


def test_cycle_through_a_template_is_reported(write_graph, graph_problems):
    write_graph(INC, "inc.yaml")
    path = write_graph({"nodes": {"t": {"graph": "inc", "in": {"x": {"from": "back.value"}}},
                                  "back": {"agent": "t_add", "in": {"a": {"from": "t.y"}, "b": 1}}},
                        "outputs": {"out": {"from": "back.value"}}})
    messages = [p.message for p in graph_problems(path)]
    assert len(messages) == 1 and messages[0].startswith("cycle: ")
    assert "back" in messages[0] and "t" in messages[0]


def test_graph_including_itself(write_graph, graph_problems):
    path = write_graph({"nodes": {"me": {"graph": "main"}}, "outputs": {"out": {"from": "me.out"}}}, "main.yaml")
    assert graph_problems(path)[0].message == "template recursion: main.yaml -> main.yaml"


def test_broken_template_file_is_reported_with_its_own_name(write_graph, graph_problems):
    bad = write_graph("nodes: [\n", "broken.yaml")
    path = write_graph({"nodes": {"t": {"graph": "broken"}}, "outputs": {"out": {"from": "t.y"}}})
    p = graph_problems(path)[0]
    assert p.file == str(bad) and p.message.startswith("YAML syntax error")


def test_no_cascading_problems_below_a_node_that_failed(write_graph, graph_problems):
    path = write_graph({"nodes": {"a": {"agent": "t_nosuch"}, "b": {"agent": "t_add", "in": {"a": {"from": "a.value"},
                                                                                          "b": 1}}},
                        "outputs": {"out": {"from": "b.value"}}})
    assert [(p.node, p.field) for p in graph_problems(path)] == [("a", "agent")]


def test_step_input_outside_repeat_binds_every_required_port(write_graph, registry):
    write_graph({"inputs": {"step": {"type": "number"}},
                 "nodes": {"add": {"agent": "t_add", "in": {"a": {"input": "step"}, "b": 1}}},
                 "outputs": {"y": {"from": "add.value"}}}, "stepper.yaml")
    path = write_graph({"nodes": {"t": {"graph": "stepper"}}, "outputs": {"out": {"from": "t.y"}}})
    try:
        plan = load_plan(path, {}, registry=registry)
    except GraphError:
        return
    assert set(plan.nodes["t/add"].inputs) == {"a", "b"}


def test_standalone_validation_accepts_missing_inputs(write_graph, registry):
    path = write_graph({"inputs": {"x": {"type": "number"}, "n": {"type": "number"}},
                        "nodes": {"s": {"agent": "t_source", "params": {"value": {"input": "x"}}}},
                        "outputs": {"out": {"from": "s.value"}}})
    with pytest.raises(GraphError):
        load_plan(path, {}, registry=registry)
    plan = load_plan(path, {}, registry=registry, standalone=True)
    assert plan.nodes["s"].params == {"value": 0.0}


def test_plan_nodes_keep_file_order_and_dag_matches_links(write_graph, registry):
    path = write_graph({"nodes": {"z": {"agent": "t_source"}, "y": {"agent": "t_add", "in": {"a": {"from": "z.value"},
                                                                                          "b": {"from": "x.value"}}},
                                  "x": {"agent": "t_source"}},
                        "outputs": {"out": {"from": "y.value"}}})
    plan = load_plan(path, {}, registry=registry)
    assert list(plan.nodes) == ["z", "x", "y"]
    assert set(plan.dag.edges) == {("z", "y"), ("x", "y")}


# A template: y = x + offset, where `offset` defaults to nothing, so the agent's own default (0) applies.
SHIFT = {
    "inputs": {"x": {"type": "number"}, "offset": {"type": "number", "default": None}},
    "nodes": {"zero": {"agent": "t_source"},
              "add": {"agent": "t_add", "in": {"a": {"input": "x"}, "b": {"from": "zero.value"}},
                      "params": {"offset": {"input": "offset"}}}},
    "outputs": {"y": {"from": "add.value"}},
}


def test_template_inputs_default_to_the_callers_inputs_of_the_same_name(write_graph, registry, run_graph):
    write_graph(SHIFT, "shift.yaml")
    write_graph({"inputs": {"x": {"type": "number"}, "offset": {"type": "number", "default": None}},
                 "nodes": {"inner": {"graph": "shift"}},
                 "outputs": {"y": {"from": "inner.y"}}}, "middle.yaml")  # forwards nothing by hand
    path = write_graph({"inputs": {"x": {"type": "number", "default": 4}, "offset": {"type": "number", "default": 10}},
                        "nodes": {"same": {"graph": "middle"},
                                  "bound": {"graph": "shift", "in": {"x": 1}}},
                        "outputs": {"same": {"from": "same.y"}, "bound": {"from": "bound.y"}}})
    plan = load_plan(path, {}, registry=registry)
    assert plan.nodes["same/inner/add"].inputs["a"] == Source(PortType.NUMBER, value=4)
    assert plan.nodes["same/inner/add"].params == {"offset": 10.0}
    assert plan.nodes["bound/add"].inputs["a"] == Source(PortType.NUMBER, value=1)  # an explicit binding wins
    outcome = run_graph(path, {"x": 6})
    assert (number(outcome, "same"), number(outcome, "bound")) == (16.0, 11.0)


def test_an_input_with_a_null_default_leaves_the_agents_default(write_graph, registry, run_graph):
    path = write_graph(SHIFT)
    assert load_plan(path, {"x": 2}, registry=registry).nodes["add"].params == {"offset": 0.0}
    assert load_plan(path, {"x": 2, "offset": 3}, registry=registry).nodes["add"].params == {"offset": 3.0}
    assert load_plan(path, {"x": 2}, registry=registry).inputs == {"x": 2, "offset": None}
    assert number(run_graph(path, {"x": 2}), "y") == 2.0


def test_a_callers_input_of_another_type_is_refused_by_name(write_graph, graph_problems):
    write_graph(SHIFT, "shift.yaml")
    path = write_graph({"inputs": {"x": {"type": "text", "default": "four"}},
                        "nodes": {"s": {"graph": "shift"}}, "outputs": {"y": {"from": "s.y"}}})
    (p,) = graph_problems(path)
    assert (p.node, p.field) == ("s", "in.x")
    assert p.message == ("template 'shift' input 'x' takes number, so it cannot default to this graph's input 'x' "
                         "(text); bind it under `in:`")


def test_an_input_without_a_value_cannot_feed_a_required_port_or_an_output(write_graph, graph_problems):
    path = write_graph({"inputs": {"n": {"type": "number", "default": None}},
                        "nodes": {"zero": {"agent": "t_source"},
                                  "add": {"agent": "t_add", "in": {"a": {"input": "n"}, "b": {"from": "zero.value"}}}},
                        "outputs": {"sum": {"from": "add.value"}, "n": {"input": "n"}}})
    found = {(p.node, p.field): p.message for p in graph_problems(path)}
    assert found[("add", "in.a")] == "input 'n' has no value (declared `default: null`), but 'a' needs one"
    assert "has none (`default: null`)" in found[(None, "outputs.n")]


def _shape(plan):
    return plan.file, plan.nodes, plan.outputs, list(plan.dag.nodes), list(plan.dag.edges), plan.inputs


def test_a_sweeps_plans_from_one_shared_spec_equal_fresh_builds_errors_included(write_graph, registry, monkeypatch):
    # A sweep reads its graph file once and plans every job from that spec with its own input values: each plan,
    # and each bad input's problems, must be what a build from a fresh read of the file gives.
    write_graph({"inputs": {"step": {"type": "number"}, "x": {"type": "number", "default": 0}},
                 "nodes": {"s": {"agent": "t_source", "params": {"value": {"input": "step"}}},
                           "add": {"agent": "t_add", "in": {"a": {"input": "x"}, "b": {"from": "s.value"}}}},
                 "outputs": {"y": {"from": "add.value"}}}, "stepper.yaml")
    path = write_graph({"inputs": {"n": {"type": "number", "default": 2}, "x": {"type": "number", "default": 0}},
                        "nodes": {"r": {"graph": "stepper", "in": {"x": {"input": "x"}},
                                        "repeat": {"times": {"input": "n"}, "feed": {"x": "y"}}},
                                  "spare": {"agent": "t_source", "params": {"value": 1}}},
                        "outputs": {"out": {"from": "r.y"}, "one": {"from": "spare.value"}}})
    sorts = Counter()
    sorter = graphlib.TopologicalSorter
    monkeypatch.setattr(graphlib, "TopologicalSorter", lambda g: (sorts.update([len(g)]), sorter(g))[1])
    spec, loader = read_graph_file(path), TemplateLoader([GRAPHS_DIR])
    jobs = [({"n": 1}, None), ({"n": 3, "x": 2}, ["out"]), ({"n": 0}, None), ({"n": 2.5}, ["out"]),
            ({"n": 4}, ["out", "one"])]
    for inputs, outputs in jobs:
        try:
            shared = _shape(plan_graph(spec, inputs, outputs, registry=registry, loader=loader))
        except GraphError as e:
            shared = e.problems
        try:
            fresh = _shape(load_plan(path, inputs, outputs, registry=registry))
        except GraphError as e:
            fresh = e.problems
        assert shared == fresh, inputs
    assert isinstance(shared, tuple) and list(shared[1]) == ["r/0/s", "r/0/add", "r/1/s", "r/1/add", "r/2/s",
                                                            "r/2/add", "r/3/s", "r/3/add", "spare"]
    # each distinct spec is put in order once: the shared spec and its template once in all, the fresh reads each time
    fresh_sorts = len(jobs) + sum(1 for inputs, _ in jobs if inputs["n"] in (1, 3, 4))
    assert sum(sorts.values()) == 2 + fresh_sorts


def test_a_cycle_is_reported_alike_each_time_a_spec_is_planned(write_graph, registry):
    write_graph(INC, "inc.yaml")
    path = write_graph({"nodes": {"t": {"graph": "inc", "in": {"x": {"from": "back.value"}}},
                                  "back": {"agent": "t_add", "in": {"a": {"from": "t.y"}, "b": 1}}},
                        "outputs": {"out": {"from": "back.value"}}})
    spec = read_graph_file(path)
    problems = []
    for _ in range(2):
        with pytest.raises(GraphError) as info:
            plan_graph(spec, {}, registry=registry)
        problems.append(info.value.problems)
    assert problems[0] == problems[1] and problems[0][0].message.startswith("cycle: ")
