"""Graph files at the edges: values the validator must refuse with a located problem, and the schema agreeing."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from mora.engine.errors import GraphError, InputError, MoraError
from mora.engine.frontends import admin, api
from mora.engine.graph import expand, yamlfile
from mora.engine.graph.schema import graph_schema
from mora.engine.graph.spec import read_graph_file
from mora.engine.ports import PortType

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
TEXT_NODE = {"agent": "text_template", "in": {"text": "hi"}}
OK = {"nodes": {"a": TEXT_NODE}, "outputs": {"out": {"from": "a.text"}}}
STEP_TEMPLATE = """\
    inputs:
      step: {type: number, default: 1}
    nodes:
      x: {agent: text_template, in: {text: hi}, params: {step: {input: step}}}
    outputs:
      text: {from: x.text}
    """


def problems_of(path: Path, **kw) -> list:
    with pytest.raises(GraphError) as info:
        api.load_plan(path, kw.pop("inputs", {}), standalone=True, **kw)
    return info.value.problems


def one(problems: list):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# 1. outputs written as null ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["null", "~", "5", "[a.text]"])
def test_an_output_that_is_not_a_link_is_refused_by_name(write_graph, value):
    path = write_graph(f"nodes:\n  a: {{agent: text_template, in: {{text: hi}}}}\noutputs:\n  out: {value}\n")
    p = one(problems_of(path))
    assert (p.field, p.line) == ("outputs.out", 4)
    assert "an output must be a link" in p.message


# 2. `step` ----------------------------------------------------------------------------------------


def _steps(write_graph, node: str, outer_inputs: str = "") -> dict[str, int]:
    write_graph(STEP_TEMPLATE, "inner.yaml")
    path = write_graph(f"inputs:\n{outer_inputs or '  {}'}\nnodes:\n  i: {node}\noutputs:\n  out: {{from: i.text}}\n")
    plan = api.load_plan(path, {}, standalone=True)
    return {node_id: n.params["step"] for node_id, n in plan.nodes.items()}


def test_step_outside_a_repeat_follows_the_usual_rules(write_graph):
    assert _steps(write_graph, "{graph: inner}") == {"i/x": 1}  # the template's default
    assert _steps(write_graph, "{graph: inner}", "  step: {type: number, default: 5}") == {"i/x": 5}  # ours
    assert _steps(write_graph, "{graph: inner, in: {step: 3}}") == {"i/x": 3}


def test_a_repeat_numbers_its_steps_unless_step_is_bound(write_graph):
    # the run keeps the last step only, the one the output names
    assert _steps(write_graph, "{graph: inner, repeat: {times: 3}}", "  step: {type: number, default: 5}") == \
        {"i/2/x": 2}
    assert _steps(write_graph, "{graph: inner, in: {step: 7}, repeat: {times: 3}}") == {"i/2/x": 7}


def test_a_required_step_outside_a_repeat_must_be_given(write_graph):
    write_graph(STEP_TEMPLATE.replace(", default: 1", ""), "inner.yaml")
    path = write_graph("nodes:\n  i: {graph: inner}\noutputs:\n  out: {from: i.text}\n")
    p = one(problems_of(path))
    assert (p.node, p.field) == ("i", "in.step") and "missing required input 'step'" in p.message


# 3. unhashable keys, unconvertible values, NUL bytes -------------------------------------------------


@pytest.mark.parametrize("text, line", [
    ("nodes:\n  ? [a, b]\n  : {agent: text_template}\noutputs: {}\n", 2),
    ("{[a]: 1}\n", 1),
    ("nodes: {}\n? {x: 1}\n: 2\n", 2),
])
def test_a_list_or_mapping_as_a_key_is_a_located_error(write_graph, text, line):
    with pytest.raises(GraphError) as info:
        read_graph_file(write_graph(text))
    p = one(info.value.problems)
    assert p.line == line and "a mapping key must be a name or a number" in p.message


@pytest.mark.parametrize("value, kind", [
    ("2001-13-45", "timestamp"), ("!!timestamp soon", "timestamp"), ("!!int abc", "int"), ("0b_", "int"),
    ("!!bool maybe", "bool"), ("1" + ":59" * 200 + ".5", "float"),
])
def test_a_value_its_yaml_type_cannot_hold_is_a_located_error_not_an_internal_one(write_graph, value, kind):
    """PyYAML's constructors let ValueError, KeyError and others out of such values; `mora` called them internal errors."""
    path = write_graph(f"nodes:\n  a:\n    agent: text_template\n    params: {{step: {value}}}\noutputs: {{}}\n")
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = one(info.value.problems)
    shown = value.split(" ")[-1] if len(value) < 40 else value.split(" ")[-1][:40] + "..."
    assert (p.line, p.message) == (4, f"YAML value error: {shown!r} is not a valid {kind}")


@pytest.mark.parametrize("node, field", [
    ('{graph: "x\\0y"}', "graph"),
    ('{agent: frame_pick, in: {video: "a\\0b.mp4"}}', "in.video"),
])
def test_a_nul_byte_in_a_template_or_file_path_is_a_located_error(write_graph, node, field):
    path = write_graph(f"nodes:\n  a: {node}\noutputs:\n  out: {{from: a.image}}\n")
    p = one(problems_of(path))
    assert (p.node, p.field, p.line) == ("a", field, 2) and "NUL byte" in p.message


def test_a_nul_byte_in_an_input_default_is_a_located_error(write_graph):
    path = write_graph('inputs:\n  v: {type: video, default: "a\\0b.mp4"}\n'
                       "nodes:\n  a: {agent: frame_pick, in: {video: {input: v}}}\noutputs:\n  out: {from: a.image}\n")
    p = one(problems_of(path))
    assert (p.field, p.line) == ("inputs.v", 2) and "NUL byte" in p.message


def test_ingest_refuses_a_nul_path_as_bad_input(tmp_path):
    from mora.engine.cache.ingest import Ingest
    from mora.engine.cache.store import Store

    store = Store(tmp_path / "cache")
    try:
        with pytest.raises(InputError):
            Ingest(store).read(PortType.VIDEO, "a\0b.mp4")
    finally:
        store.close()


# 4. one resolution of a symlinked graph ---------------------------------------------------------------


def test_validate_resolves_a_symlinked_graph_as_mora_does(tmp_path, capsys):
    real, elsewhere = tmp_path / "real", tmp_path / "elsewhere"
    real.mkdir()
    elsewhere.mkdir()
    (real / "inner.yaml").write_text(STEP_TEMPLATE.replace("    ", ""))
    (real / "g.yaml").write_text("nodes:\n  i: {graph: inner}\noutputs:\n  out: {from: i.text}\n")
    link = elsewhere / "g.yaml"
    link.symlink_to(real / "g.yaml")
    assert api.graph_path(None, str(link)) == real / "g.yaml"
    assert admin.main(["validate", str(link)]) == 0, capsys.readouterr().err  # inner.yaml lies beside the target


# 5. the model preset's inputs --------------------------------------------------------------------------


def test_validate_applies_the_preset_inputs_and_names_the_preset_when_one_clashes(write_graph, capsys):
    path = write_graph({"inputs": {"frames": {"type": "text", "default": "many"}},
                        "nodes": {"a": {"agent": "text_template", "in": {"text": {"input": "frames"}}}},
                        "outputs": {"out": {"from": "a.text"}}})
    assert admin.main(["validate", str(path)]) == 2  # world.yaml sets frames: 17, as `mora` applies it
    err = capsys.readouterr().err
    assert "conf/model/world.yaml" in err and "inputs.frames" in err and "17" in err
    assert admin.main(["validate", str(path), "-i", "frames=many"]) == 0  # the command line wins, as in `mora`
    assert admin.main(["validate", str(path), "--model", "no_such_preset"]) != 0


# 6. the value limit trips while composing --------------------------------------------------------------


def test_the_value_limit_trips_at_the_value_that_crosses_it(monkeypatch):
    monkeypatch.setattr(yamlfile, "MAX_YAML_VALUES", 1000)
    text = "nodes:\n" + "".join("- 1\n" for _ in range(5000))
    with pytest.raises(GraphError) as info:
        yamlfile.load_yaml(text, "g.yaml")
    p = one(info.value.problems)
    assert "too large" in p.message and 990 <= p.line <= 1010  # not at the list's start, after the whole list


def test_an_alias_inside_its_own_value_is_an_error():
    with pytest.raises(GraphError) as info:
        yamlfile.load_yaml("a: &x [1, *x]\n", "g.yaml")
    assert "an alias may not refer to a value that contains it" in one(info.value.problems).message


# 7. `${...}` anywhere, typed defaults ------------------------------------------------------------------


@pytest.mark.parametrize("inputs, field, line", [
    ({"p": {"type": "text", "default": "${oc.env:HOME}"}}, "inputs.p.default", 4),
    ({"p": {"type": "text", "default": "x", "description": "see ${x}"}}, "inputs.p.description", 5),
])
def test_interpolation_is_refused_in_inputs(write_graph, inputs, field, line):
    p = one(problems_of(write_graph({"inputs": inputs, **OK})))
    assert p.field == field and p.line == line and "'${...}' is not Mora's link syntax" in p.message


def test_a_quoted_number_is_text_in_a_graph_file_but_a_number_on_the_command_line(write_graph):
    path = write_graph({"inputs": {"n": {"type": "number", "default": "3"}}, **OK})
    p = one(problems_of(path))
    assert (p.field, p.line) == ("inputs.n", 2) and "expected a number, got str '3'" in p.message
    api.load_plan(path, {"n": "3"}, standalone=True)


# 9. lines --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("node, field, line", [
    ("{graph: inner, repeat: {times: 2, extra: 1}}", "repeat", 4),
    ("{graph: inner, repeat: {times: 0}}", "repeat.times", 3),
    ("{graph: inner, repeat: [1]}", "repeat", 3),
    ("{agent: text_template, in: {text: hi}, repeat: {times: 2}}", "repeat", 3),
    ("{agent: text_template, in: {text: '${x}'}}", "in.text", 3),
])
def test_node_problems_carry_their_line(write_graph, node, field, line):
    write_graph(STEP_TEMPLATE, "inner.yaml")
    node = node.replace("extra: 1}", "\n      extra: 1}")
    path = write_graph(f"nodes:\n  pad: {{agent: text_template, in: {{text: hi}}}}\n  i: {node}\n"
                       "outputs:\n  out: {from: pad.text}\n")
    p = one(problems_of(path))
    assert (p.field, p.line) == (field, line), str(p)


def test_a_description_that_is_not_text_has_its_line(write_graph):
    p = one(problems_of(write_graph({"description": ["a"], **OK})))
    assert (p.field, p.line) == ("description", 1)


# 8. the schema and the validator agree -----------------------------------------------------------------

NODE = {"agent": "text_template", "in": {"text": "hi"}}
TEMPLATE = {"graph": "evaluate", "in": {"video": {"input": "v"}}}
GOOD = {
    "minimal": OK,
    "null sections": {"inputs": None, "nodes": {"a": {**NODE, "params": None}}, "outputs": OK["outputs"]},
    "empty sections": {"inputs": {}, "nodes": {"a": {**NODE, "params": {}}}, "outputs": OK["outputs"]},
    "an input link": {"inputs": {"p": {"type": "text", "default": "x", "description": "words"}},
                      "nodes": {"a": {"agent": "text_template", "in": {"text": {"input": "p"}},
                                      "params": {"step": 3}}}, "outputs": OK["outputs"]},
    "a null default": {"inputs": {"n": {"type": "number", "default": None}},
                       "nodes": {"a": {**NODE, "params": {"step": {"input": "n"}}}}, "outputs": OK["outputs"]},
    "an integral float": {"nodes": {"a": {**NODE, "params": {"step": 3.0}}}, "outputs": OK["outputs"]},
    "a template": {"inputs": {"v": {"type": "video", "default": "clip.mp4"}}, "nodes": {"e": TEMPLATE},
                   "outputs": {"o": {"from": "e.dynamic_degree"}}},
}
BAD = {
    "a node id with a dot": {"nodes": {"a.b": NODE}, "outputs": OK["outputs"]},
    "an empty node id": {"nodes": {"": NODE, "a": NODE}, "outputs": OK["outputs"]},
    "a non-ASCII node id": {"nodes": {"\u00fc": NODE, "a": NODE}, "outputs": OK["outputs"]},
    "a node id with a space": {"nodes": {"a b": NODE, "a": NODE}, "outputs": OK["outputs"]},
    "a 65-character node id": {"nodes": {"a" * 65: NODE, "a": NODE}, "outputs": OK["outputs"]},
    "a node id ending in a newline": {"nodes": {"b\n": NODE, "a": NODE}, "outputs": OK["outputs"]},
    "a bad input name": {**OK, "inputs": {"a.b": {"type": "text"}}},
    "mora 2": {**OK, "mora": 2},
    "mora true": {**OK, "mora": True},
    "a param bound to a node": {"nodes": {"a": {**NODE, "params": {"step": {"from": "a.text"}}}},
                                "outputs": OK["outputs"]},
    "repeat on an agent": {"nodes": {"a": {**NODE, "repeat": {"times": 2}}}, "outputs": OK["outputs"]},
    "an extra key in repeat": {**GOOD["a template"], "nodes": {"e": {**TEMPLATE, "repeat": {"times": 2, "x": 1}}}},
    "repeat times 0": {**GOOD["a template"], "nodes": {"e": {**TEMPLATE, "repeat": {"times": 0}}}},
    "params on a template": {**GOOD["a template"], "nodes": {"e": {**TEMPLATE, "params": {"x": 1}}}},
    "a reserved output": {**OK, "outputs": {"Manifest": {"from": "a.text"}}},
    "a report output": {**OK, "outputs": {"report": {"from": "a.text"}}},
    "a number to a text port": {"nodes": {"a": {"agent": "text_template", "in": {"text": 5}}},
                                "outputs": OK["outputs"]},
    "blank text to a required port": {"nodes": {"a": {"agent": "text_template", "in": {"text": " "}}},
                                      "outputs": OK["outputs"]},
    "text as a number default": {**OK, "inputs": {"n": {"type": "number", "default": "abc"}}},
    "a quoted number default": {**OK, "inputs": {"n": {"type": "number", "default": "3"}}},
    "a NaN default": {**OK, "inputs": {"n": {"type": "number", "default": float("nan")}}},
    "an infinite default": {**OK, "inputs": {"n": {"type": "number", "default": float("-inf")}}},
    "a NaN to a number port": {**GOOD["a template"], "nodes": {"e": {"graph": "evaluate", "in": {"video": float("nan")}}}},
    "a non-ASCII link": {"nodes": {"a": NODE, "b": {"agent": "text_template", "in": {"text": {"from": "a.t\u00e9xt"}}}},
                         "outputs": OK["outputs"]},
    "inputs as a list": {**OK, "inputs": []},
    "in as a list": {"nodes": {"a": {"agent": "text_template", "in": []}}, "outputs": OK["outputs"]},
    "params 0": {"nodes": {"a": {**NODE, "params": 0}}, "outputs": OK["outputs"]},
    "an input shorthand": {**OK, "inputs": {"p": "text"}},
    "a description list": {**OK, "description": ["a"]},
    "an input description mapping": {**OK, "inputs": {"p": {"type": "text", "description": {"a": 1}}}},
    "a node description number": {"nodes": {"a": {**NODE, "description": 5}}, "outputs": OK["outputs"]},
    "interpolation in a description": {**OK, "description": "${oc.env:HOME}"},
    "interpolation in a default": {**OK, "inputs": {"p": {"type": "text", "default": "${x}"}}},
    "a null output": {**OK, "outputs": {"out": None}},
    "a null param": {"nodes": {"a": {**NODE, "params": {"template": None}}}, "outputs": OK["outputs"]},
    "a NUL in a path": {"nodes": {"a": {"agent": "frame_pick", "in": {"video": "a\0b"}}},
                        "outputs": {"o": {"from": "a.image"}}},
    "agent null beside graph": {"nodes": {"e": {**TEMPLATE, "agent": None}}, "outputs": {"o": {"from": "e.dynamic_degree"}},
                                "inputs": GOOD["a template"]["inputs"]},
    "feed to a non-name": {**GOOD["a template"], "nodes": {"e": {**TEMPLATE, "repeat": {"times": 2,
                                                                                       "feed": {"video": 5}}}}},
}


def _verdicts(path: Path) -> tuple[bool, bool]:
    """(the schema accepts it, the validator accepts it), the validator as `mora-admin validate` checks a file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    by_schema = jsonschema.Draft202012Validator(graph_schema()).is_valid(data)
    try:
        api.load_plan(path, {}, standalone=True)
    except GraphError:
        return by_schema, False
    return by_schema, True


@pytest.mark.parametrize("path", sorted(GRAPHS.glob("*.yaml")), ids=lambda p: p.stem)
def test_schema_and_validator_accept_every_shipped_graph(path):
    assert _verdicts(path) == (True, True)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_schema_and_validator_accept_the_same_good_graphs(write_graph, name):
    assert _verdicts(write_graph(GOOD[name])) == (True, True)


@pytest.mark.parametrize("name", sorted(BAD))
def test_schema_and_validator_refuse_the_same_bad_graphs(write_graph, name):
    path = write_graph(json.dumps(BAD[name], allow_nan=True).replace("NaN", ".nan").replace("-Infinity", "-.inf"))
    assert _verdicts(path) == (False, False)


@pytest.mark.parametrize("value", ["0x" + "F" * 3600, "1" + "0" * 400, "-0b1" + "0" * 1100])
def test_an_int_beyond_a_float_s_range_is_a_located_error_not_an_internal_one(write_graph, value):
    """A 3,600-digit hex int has ~4,300 decimal digits, which Python refuses to print, and one over 1e308 fails the
    finiteness check of a number input: both were internal errors."""
    path = write_graph(f"nodes:\n  a:\n    agent: text_template\n    params: {{step: {value}}}\noutputs: {{}}\n")
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = one(info.value.problems)
    assert p.line == 4 and "more than a number may hold (1024)" in p.message


@pytest.mark.parametrize("prefix", ["", "# é, ü\nnodes: {}\n\n"])
def test_a_character_yaml_forbids_is_a_one_line_error_with_its_line(write_graph, prefix):
    path = write_graph(f"{prefix}outputs:\n  v: x\x01\n")
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    p = one(info.value.problems)
    assert p.line == prefix.count("\n") + 2 and "\n" not in p.message
    assert p.message == "YAML error: control characters are not allowed (character U+0001)"


# 10. from a review (2026-11-28) ------------------------------------------------------------------------


def test_a_failing_node_repeated_a_million_times_stops_at_the_problem_limit(write_graph):
    """Repeats of repeats multiply a failing node as they multiply working ones; only working ones were counted, so
    three levels of 1,000 hung validation and two printed a million problems."""
    leaf = "inputs: {x: {type: text, default: a}}\nnodes:\n  leaf: {agent: nosuch_agent}\noutputs: {y: {input: x}}\n"
    write_graph(leaf, "t2.yaml")
    for i in (1, 0):
        write_graph(f"inputs: {{x: {{type: text, default: a}}}}\nnodes:\n  r: {{graph: t{i + 1}, repeat: {{times: 1000}}}}"
                    f"\noutputs: {{y: {{input: x}}}}\n", f"t{i}.yaml")
    path = write_graph("nodes:\n  r: {graph: t0, repeat: {times: 1000}}\noutputs: {y: {from: r.y}}\n")
    found = problems_of(path)
    assert len(found) == expand.MAX_PROBLEMS + 1
    assert "unknown agent" in found[0].message or "nosuch_agent" in found[0].message
    assert f"more than {expand.MAX_PROBLEMS} problems" in found[-1].message


def test_a_whole_number_past_the_largest_float_is_refused_for_a_number_input(write_graph):
    path = write_graph({"inputs": {"n": {"type": "number", "default": 0}}, **OK})
    p = one(problems_of(path, inputs={"n": "1" * 400}))
    assert p.field == "inputs.n" and "expected a finite number" in p.message
    path = write_graph({"inputs": {"n": {"type": "number", "default": 2 ** 1024 - 1}}, **OK})
    assert "expected a finite number" in one(problems_of(path)).message


@pytest.mark.parametrize("node, field", [
    ("{agent: text_template, in: {text: hi}, params: {step: {input: ''}}}", "params.step"),
    ("{graph: inner, repeat: {times: {input: ''}}}", "repeat.times"),
])
def test_a_link_to_an_empty_input_name_is_refused_not_dropped(write_graph, node, field):
    write_graph(STEP_TEMPLATE, "inner.yaml")
    path = write_graph(f"nodes:\n  i: {node}\noutputs: {{out: {{from: i.text}}}}\n")
    p = problems_of(path)[0]  # as for {input: nosuch}: a times it cannot know follows
    assert p.field == field and "unknown graph input ''" in p.message


@pytest.mark.parametrize("file", ["", "  "])
def test_an_empty_graph_file_is_refused_not_the_default_graph(file):
    with pytest.raises(MoraError, match="graph_file is empty"):
        api.graph_path("text_to_video", file)
