"""Nothing a user names can hang Mora or exhaust its memory: graph files, templates and input files are read
with bounds (file type, size, YAML nesting and alias expansion, template depth, plan size)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml
from hostile_graphs import BOMB_LINES, NODE, filling

from mora.engine.cache.store import Store
from mora.engine.errors import GraphError
from mora.engine.frontends import api
from mora.engine.graph import yamlfile
from mora.engine.graph.spec import MAX_GRAPH_BYTES, read_graph_file
from mora.engine.graph.yamlfile import load_yaml

PICK = {"inputs": {"clip": {"type": "video"}},
        "nodes": {"pick": {"agent": "frame_pick", "in": {"video": {"input": "clip"}}}},
        "outputs": {"image": {"from": "pick.image"}}}
RESIZE = {"inputs": {"picture": {"type": "image"}},
          "nodes": {"fit": {"agent": "image_resize", "in": {"image": {"input": "picture"}}}},
          "outputs": {"image": {"from": "fit.image"}}}


def graph_problem(path: Path) -> str:
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    [problem] = info.value.problems
    assert problem.file == str(path)
    return problem.message


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unix_socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return path


def loop(path: Path) -> Path:
    path.symlink_to(path.with_name("other"))
    path.with_name("other").symlink_to(path)
    return path


SPECIAL = [
    (fifo, "is a named pipe (FIFO), not a regular file"),
    (unix_socket, "is a socket, not a regular file"),
    (lambda p: Path("/dev/zero"), "is a character device, not a regular file"),
    (lambda p: p.mkdir() or p, "is a directory, not a regular file"),
    (loop, "is a symbolic link loop"),
]
SPECIAL_IDS = ["fifo", "socket", "dev-zero", "directory", "symlink-loop"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("make, expected", SPECIAL, ids=SPECIAL_IDS)
def test_graph_file_of_another_type_is_refused_before_reading(tmp_path, make, expected):
    path = make(tmp_path / "graph.yaml")
    assert graph_problem(path) == f"graph path {expected}"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("make, expected", SPECIAL, ids=SPECIAL_IDS)
@pytest.mark.parametrize("graph, name", [(PICK, "clip"), (RESIZE, "picture")], ids=["video", "image"])
def test_input_file_of_another_type_is_refused_before_reading(write_graph, registry, cache_dir, tmp_path, make,
                                                              expected, graph, name):
    bad = make(tmp_path / "input")
    plan = api.load_plan(write_graph(graph), {name: str(bad)}, registry=registry)
    with pytest.raises(GraphError) as info:
        api.run(plan, store=Store(cache_dir), preset={"name": "t"}, run_dir=tmp_path / "run",
                runtime={"device": "cpu"}, quiet=True)
    [problem] = info.value.problems
    kind = "video" if name == "clip" else "image"
    assert problem.message == f"{bad}: {kind} path {expected}"


def test_graph_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("mora.engine.graph.spec.MAX_GRAPH_BYTES", 1000)
    path = tmp_path / "big.yaml"
    path.write_text("description: " + "x" * 1000 + "\n")
    assert graph_problem(path) == "graph file is 1014 bytes, larger than the 1000 bytes allowed"


@pytest.mark.timeout(10)
def test_alias_bomb_is_refused_while_parsing(tmp_path):
    """Nine levels of nine aliases each would expand to 387 million strings: refused before anything expands."""
    path = tmp_path / "bomb.yaml"
    path.write_text("nodes:\n  a: {agent: t_text, params: {text: *l9}}\n".join(["\n".join(BOMB_LINES) + "\n", ""]))
    assert graph_problem(path) == ("graph file too large to read: the document expands to more than 20000 values (each YAML "
                       "alias counts at the full size of what it names)")


TOO_MANY_VALUES = ("graph file too large to read: the document expands to more than 20000 values (each YAML alias "
                   "counts at the full size of what it names)")
TOO_LONG_A_NUMBER = "graph file too large to read: a number of {} characters, more than the 4300 allowed"
SEXAGESIMAL = filling("x: 1", ":59")  # 1:59:59:... as one int, by arithmetic that grows with the square of its length
HOSTILE = {  # name: (text, message); each took 1 to 60 s before graph YAML was parsed by libyaml within these bounds
    "one-flow-mapping": (filling("{", "k{i}: {i}, ", "}"), TOO_MANY_VALUES),
    "many-small-nodes": (filling("outputs: {o: {from: n0.text}}\nnodes:\n", NODE), TOO_MANY_VALUES),
    "flow-list-of-empty-lists": (filling("[", "[], ", "[]]"), TOO_MANY_VALUES),
    "legal-nesting-repeated": (filling("[", "[" * 60 + "]" * 60 + ", ", "1]"), TOO_MANY_VALUES),
    "many-anchors": (filling("", "a{i}: &a{i} {i}\n"), TOO_MANY_VALUES),
    "many-tagged-values": (filling("", "- !!str {i}\n"), TOO_MANY_VALUES),
    "many-tag-directives": (filling("", "%TAG !t{i}! tag:example.com,2000:\n", "--- {}\n"),
                            ("graph file too large to read: more than 64 YAML directives (lines that start with "
                             "'%' outside a value)")),
    "one-sexagesimal-number": (SEXAGESIMAL, TOO_LONG_A_NUMBER.format(len(SEXAGESIMAL) - 3)),
}


@pytest.mark.timeout(5)  # a guard against seconds, not a measurement: bench/yaml_bounds.py measures
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_graph_file_of_the_size_limit_is_refused_in_well_under_seconds(tmp_path, name):
    text, message = HOSTILE[name]
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    assert MAX_GRAPH_BYTES - 200 < path.stat().st_size <= MAX_GRAPH_BYTES
    assert graph_problem(path) == message


def test_a_graph_file_may_hold_20000_yaml_values(write_graph):
    """A thousand nodes written out one by one fit with room to spare; the value past 20,000 is refused."""
    nodes = {f"n{i}": {"agent": "text_template", "in": {"text": {"from": f"n{i - 1}.text"} if i else "hi"},
                       "params": {"step": i}} for i in range(1000)}
    path = write_graph({"nodes": nodes, "outputs": {"out": {"from": "n999.text"}}})
    assert len(read_graph_file(path).nodes) == 1000
    assert len(load_yaml("nodes:\n" + "- 1\n" * 19_997, "g.yaml")["nodes"]) == 19_997  # 3 more: mapping, key, list
    with pytest.raises(GraphError) as info:
        load_yaml("nodes:\n" + "- 1\n" * 19_998, "g.yaml")
    [problem] = info.value.problems
    assert (problem.message, problem.line) == (TOO_MANY_VALUES, 19_999)


def test_at_most_64_yaml_directives():
    """As a YAML directive must: a graph file needs none, or one `%YAML` line."""
    directives = "".join(f"%TAG !t{i}! tag:example.com,2000:\n" for i in range(64))
    assert load_yaml(directives + "--- {a: 1}\n", "g.yaml") == {"a": 1}
    with pytest.raises(GraphError) as info:
        load_yaml("a: 1\r\n" + directives + "%YAML 1.1\n--- {a: 1}\n", "g.yaml")
    [problem] = info.value.problems
    assert problem.line == 66
    assert problem.message == ("graph file too large to read: more than 64 YAML directives (lines that start with "
                               "'%' outside a value)")


@pytest.mark.parametrize("loader", ["libyaml", "pure"])
def test_lines_of_a_quoted_value_that_open_with_a_percent_sign_are_no_directives(monkeypatch, loader):
    """A prompt may go on over lines that open with `%`: they are the value's, not directives to bound."""
    if loader == "pure":
        monkeypatch.setattr(yamlfile, "LOADER", yamlfile._PyLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    text = 'prompt: "50\n' + "%d percent\n" * 70 + '"\nb: 1\n'
    assert load_yaml(text, "g.yaml") == {"prompt": "50" + " %d percent" * 70 + " ", "b": 1}


def test_aliases_and_merge_keys_within_bounds_still_work(write_graph):
    path = write_graph("""\
        nodes:
          a: &common {agent: t_source, params: {value: 1}}
          b: {<<: *common, params: {value: 2}}
        outputs: {out: {from: a.value}}
    """, "ok.yaml")
    assert set(read_graph_file(path).nodes) == {"a", "b"}


@pytest.mark.parametrize("text, line", [
    ("nodes: " + "[" * 5000 + "]" * 5000 + "\n", 1),
    ("nodes:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)), 64),
], ids=["flow", "block"])
def test_deep_nesting_is_a_clear_error_not_a_recursion_error(tmp_path, text, line):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(GraphError) as info:
        read_graph_file(path)
    [problem] = info.value.problems
    assert problem.message == "graph file too large to read: values nest deeper than 64 levels"
    assert problem.line == line


MISSPELLED = {  # name: (node, count, output, first ten, the rest); each problem's name was compared with every node's
    # or agent's: 1,990 links and 3,300 agents took 87 s and about 2 s to refuse (bench/README.md); more than 500 nodes
    # are not searched for a guess at all, fewer are for the first ten problems only
    "links": ("  step{i}: {{agent: text_template, in: {{text: {{from: stpe{i}.text}}}}}}\n", 1990, "step0",
              "link to unknown node 'stpe{i}'", "link to unknown node 'stpe{i}'"),
    "a few links": ("  step{i}: {{agent: text_template, in: {{text: {{from: stpe{i}.text}}}}}}\n", 200, "step0",
                    "link to unknown node 'stpe{i}'; did you mean step{i}", "link to unknown node 'stpe{i}'"),
    "agents": ("  n{i}: {{agent: text_templat{i}}}\n", 3300, "n0",
               "unknown agent type 'text_templat{i}'; did you mean text_template", "unknown agent type 'text_templat{i}'"),
}


@pytest.mark.timeout(5)
@pytest.mark.parametrize("name", MISSPELLED)
def test_thousands_of_misspelled_names_are_refused_in_well_under_seconds_the_first_ten_with_a_guess(
        write_graph, graph_problems, name):
    node, count, output, first_ten, rest = MISSPELLED[name]
    lines = [node.format(i=i) for i in range(count)]
    problems = graph_problems(write_graph("".join(["nodes:\n", *lines, f"outputs: {{o: {{from: {output}.text}}}}\n"])))
    assert len(problems) == count
    assert problems[9].message.startswith(first_ten.format(i=9))
    assert problems[10].message == rest.format(i=10)


def template_chain(write_graph, levels: int) -> Path:
    """graph.yaml -> t1.yaml -> ... -> t{levels}.yaml, the last one an agent node."""
    leaf = {"inputs": {"x": {"type": "number"}}, "nodes": {"add": {"agent": "t_add", "in": {"a": {"input": "x"},
                                                                                            "b": 1}}},
            "outputs": {"y": {"from": "add.value"}}}
    write_graph(leaf, f"t{levels}.yaml")
    for i in range(levels - 1, 0, -1):
        write_graph({"inputs": {"x": {"type": "number"}}, "nodes": {"n": {"graph": f"t{i + 1}", "in": {"x": {
            "input": "x"}}}}, "outputs": {"y": {"from": "n.y"}}}, f"t{i}.yaml")
    return write_graph({"nodes": {"n": {"graph": "t1", "in": {"x": 1}}}, "outputs": {"y": {"from": "n.y"}}})


def test_template_nesting_has_a_stated_maximum(write_graph, registry, graph_problems):
    from mora.engine.graph.expand import MAX_TEMPLATE_DEPTH

    assert MAX_TEMPLATE_DEPTH == 16
    plan = api.load_plan(template_chain(write_graph, 16), {}, registry=registry)
    assert list(plan.nodes) == ["n/" * 16 + "add"]
    [problem] = graph_problems(template_chain(write_graph, 17))
    assert problem.field == "graph" and problem.node == "n/" * 16 + "n"
    assert problem.message == ("templates nest more than 16 levels deep: graph.yaml -> "
                               + " -> ".join(f"t{i}.yaml" for i in range(1, 18)))


@pytest.mark.timeout(60)
def test_repeats_of_repeats_are_bounded_in_size(write_graph, graph_problems):
    step = {"inputs": {"x": {"type": "number"}}, "nodes": {"add": {"agent": "t_add", "in": {"a": {"input": "x"},
                                                                                            "b": 1}}},
            "outputs": {"x": {"from": "add.value"}}}
    write_graph(step, "step.yaml")
    write_graph({"inputs": {"x": {"type": "number"}},
                 "nodes": {"r": {"graph": "step", "in": {"x": {"input": "x"}}, "repeat": {"times": 1000,
                                                                                         "feed": {"x": "x"}}}},
                 "outputs": {"x": {"from": "r.x"}}}, "thousand.yaml")
    path = write_graph({"nodes": {"r": {"graph": "thousand", "in": {"x": 1}, "repeat": {"times": 1000,
                                                                                       "feed": {"x": "x"}}}},
                        "outputs": {"x": {"from": "r.x"}}})
    [problem] = graph_problems(path)  # a million nodes unbounded
    assert problem.message == ("the graph expands to more than 10000 nodes (templates and `repeat` multiply); split "
                               "the work into several runs")


SECRET = "root_password: hunter2\n"


@pytest.mark.parametrize("reference", ["../outside/secret.yaml", "../outside/secret", "{outside}/secret.yaml",
                                       "link.yaml", "link"],
                         ids=["dotdot-file", "dotdot-name", "absolute", "symlink-out", "symlink-name"])
def test_template_outside_graphs_and_the_including_folder_is_refused_without_its_content(
        tmp_path, write_graph, graph_problems, reference):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text(SECRET)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "link.yaml").symlink_to(outside / "secret.yaml")
    reference = reference.format(outside=outside)
    path = write_graph({"nodes": {"t": {"graph": reference}}, "outputs": {"out": {"from": "t.y"}}},
                       "project/graph.yaml")
    [problem] = graph_problems(path)
    assert (problem.node, problem.field) == ("t", "graph")
    assert problem.message == (f"template '{reference}' lies outside this file's folder and the built-in graphs; "
                               "templates are looked up only there")
    assert "hunter2" not in str(problem) and "root_password" not in str(problem)


def test_templates_in_subfolders_and_built_in_graphs_still_resolve(write_graph, registry):
    write_graph({"inputs": {"x": {"type": "number"}}, "nodes": {"add": {"agent": "t_add", "in": {
        "a": {"input": "x"}, "b": 1}}}, "outputs": {"y": {"from": "add.value"}}}, "parts/inc.yaml")
    path = write_graph({"nodes": {"a": {"graph": "parts/inc", "in": {"x": 1}},
                                  "b": {"graph": "parts/inc.yaml", "in": {"x": 2}}},
                        "outputs": {"a": {"from": "a.y"}, "b": {"from": "b.y"}}})
    assert sorted(api.load_plan(path, {}, registry=registry).nodes) == ["a/add", "b/add"]
    from mora.engine.graph.templates import TemplateLoader

    assert TemplateLoader([api.GRAPHS_DIR]).find("animate", str(path)) == (api.GRAPHS_DIR / "animate.yaml").resolve()


def test_template_symlink_loop_is_a_clear_error(tmp_path, write_graph, graph_problems):
    loop(tmp_path / "looped.yaml")
    path = write_graph({"nodes": {"t": {"graph": "looped"}}, "outputs": {"out": {"from": "t.y"}}})
    [problem] = graph_problems(path)
    assert problem.message == "graph path is a symbolic link loop"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make, expected", [SPECIAL[2], SPECIAL[4]], ids=["dev-zero", "symlink-loop"])
def test_the_command_line_refuses_such_a_graph_file_with_exit_2(tmp_path, cache_dir, make, expected):
    import subprocess
    import sys

    path = make(tmp_path / "graph.yaml")
    done = subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", f"graph_file={path}",
                           "runtime=local", "quiet=true"], cwd=tmp_path, capture_output=True, text=True, timeout=50)
    assert done.returncode == 2
    assert f"{path}: graph path {expected}" in done.stderr and "Traceback" not in done.stderr


def test_a_message_shows_a_value_cut_short_however_far_aliases_repeat_it(write_graph):
    """A 104 KB file once made a 100 MB message: 1,000 aliases of a 100,000-character text, shown whole."""
    path = write_graph('description: &a "' + "x" * 100_000 + '"\ninputs: {x: [' + ", ".join(["*a"] * 1000) + "]}\n"
                       "nodes: {a: {agent: t_source}}\noutputs: {out: {from: a.value}}\n")
    message = graph_problem(path)
    assert message.startswith("an input must be a mapping {type: T, default: V}, got list ['xxxx") and "..." in message
    assert len(message) < 1000


def test_a_template_s_literal_list_is_bounded_as_an_input_s(write_graph, registry):
    """The texts of a list bound to a template's input hold at most 1,000,000 characters in all, as a default's."""
    write_graph({"inputs": {"names": {"type": "list[text]"}, "a": {"type": "number", "default": 1}},
                 "nodes": {"s": {"agent": "t_add", "in": {"a": {"input": "a"}, "b": {"input": "a"}}}},
                 "outputs": {"out": {"from": "s.value"}}}, "inner.yaml")
    outer = write_graph('description: &t "' + "x" * 90_000 + '"\nnodes:\n  i: {graph: inner.yaml, in: {names: ['
                        + ", ".join(["*t"] * 12) + "]}}\noutputs:\n  out: {from: i.out}\n", "outer.yaml")
    with pytest.raises(GraphError) as info:
        api.load_plan(outer, {}, registry=registry)
    [problem] = info.value.problems
    assert (problem.node, problem.field) == ("i", "in.names")
    assert problem.message == "the list's texts are 1080000 characters in all; at most 1000000 are allowed"
