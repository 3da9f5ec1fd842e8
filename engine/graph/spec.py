"""Graph files: YAML in, a frozen `GraphSpec` out, with every structural problem located.

A graph file declares `inputs` (typed, optional defaults), `nodes` (each an `agent:` or a
`graph:` template, with `in:` port bindings, `params:` and, for templates, `repeat:`) and
`outputs`. A binding is a literal, or an explicit link: `{from: NODE.PORT}` (another node's
output) or `{input: NAME}` (a graph input). Any other mapping is an error, so a literal can
never be mistaken for a link, and `${...}` is not used.

Bounds, so that no file can hang Mora or exhaust its memory: a graph file is read through
`engine.userfiles` (regular files only, at most `MAX_GRAPH_BYTES`), and its YAML is loaded by
`engine.graph.yamlfile` (safe, duplicate keys refused, lines recorded, nesting and alias expansion bounded).

This module checks shape only (keys, names, kinds of values); `engine.expand` binds the graph
against the agent registry and its templates, with `engine.validate`'s checks on every value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mora.engine.errors import GraphError, InputError, Problem, shown
from mora.engine.graph.yamlfile import load_yaml
from mora.engine.ports import PortType
from mora.engine.userfiles import read_user_file

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
"""Node, input and output names: also file names of outputs, so no dots, slashes or spaces."""
NAME_RULE = "a letter or _ then letters, digits, _ or -, at most 64 in all"
FORMAT_VERSION = 1
TOP_KEYS = {"mora", "description", "inputs", "nodes", "outputs"}
NODE_KEYS = {"agent", "graph", "in", "params", "repeat", "description"}
INPUT_KEYS = {"type", "default", "description"}
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
MAX_GRAPH_BYTES = 1 << 20


@dataclass(frozen=True)
class Link:
    """A reference to another node's output port (`node` set) or to a graph input (`input` set)."""

    node: str | None = None
    port: str | None = None
    input: str | None = None

    def __str__(self) -> str:
        return f"{self.node}.{self.port}" if self.node else f"input '{self.input}'"


Binding = Any
"""A literal value, a `Link`, or a list mixing both (for list ports)."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: PortType
    default: Any = MISSING
    description: str = ""
    line: int | None = None


@dataclass(frozen=True)
class Repeat:
    """Chain a template `times` times, feeding output `feed[k]` of step i to input `k` of step i+1."""

    times: Binding
    feed: dict[str, str]


@dataclass(frozen=True)
class NodeSpec:
    id: str
    agent: str | None
    graph: str | None
    inputs: dict[str, Binding]
    params: dict[str, Binding]
    repeat: Repeat | None = None
    line: int | None = None
    lines: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphSpec:
    file: str
    description: str
    inputs: dict[str, InputSpec]
    nodes: dict[str, NodeSpec]
    outputs: dict[str, Link]
    output_lines: dict[str, int] = field(default_factory=dict)


def read_graph_file(path: Path) -> GraphSpec:
    """Read and parse a graph file, raising GraphError with every structural problem."""
    file = str(path)
    try:
        raw = read_user_file(path, "graph", MAX_GRAPH_BYTES, allow_empty=True)
    except InputError as e:
        raise GraphError([Problem(file, str(e).removeprefix(f"{file}: "))]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GraphError([Problem(file, f"graph file is not UTF-8 text (byte {e.start})")]) from None
    return parse_graph(load_yaml(text, file), file)


def _line(mapping: Any, key: Any) -> int | None:
    return getattr(mapping, "lines", {}).get(key) or getattr(mapping, "line", None)


def is_name(value: Any) -> bool:
    """Whether `value` may name a node, input, output or port."""
    return isinstance(value, str) and NAME_RE.match(value) is not None


def _interpolations(value: Any, file: str, where: tuple[str, ...], line: int | None) -> list[Problem]:
    """A problem for each `${...}` among the file's values, wherever it is: Hydra's syntax is never Mora's."""
    if isinstance(value, str):
        if "${" not in value:
            return []
        node, field_ = (where[1], ".".join(where[2:]) or None) if where[0] == "nodes" and len(where) > 1 else \
            (None, ".".join(where))
        return [Problem(file, "'${...}' is not Mora's link syntax; use {input: NAME} or {from: NODE.PORT}", node,
                        field_, line)]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _interpolations(item, file, where, line)]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _interpolations(item, file, (*where, str(key)),
                                                                          _line(value, key) or line)]
    return []


def parse_binding(value: Any, problems: list[Problem], file: str, node: str | None, field_: str,
                  line: int | None = None) -> Binding:
    """Turn YAML into a binding: literal, Link, or list of them."""
    if isinstance(value, dict):
        line = getattr(value, "line", None) or line
        if set(value) == {"from"} and isinstance(value["from"], str):
            target = value["from"]
            if target.count(".") != 1 or not all(is_name(p) for p in target.split(".")):
                problems.append(Problem(file, f"link '{target}' must look like NODE.PORT", node, field_, line))
                return None
            n, p = target.split(".")
            return Link(node=n, port=p)
        if set(value) == {"input"} and isinstance(value["input"], str):
            return Link(input=value["input"])
        problems.append(
            Problem(
                file,
                f"a mapping here must be a link, {{from: NODE.PORT}} or {{input: NAME}}; got keys {sorted(map(str, value))}",
                node,
                field_,
                line,
            )
        )
        return None
    if isinstance(value, list):
        return [parse_binding(v, problems, file, node, field_, line) for v in value]
    return value


def _mapping(data: Any, key: str, file: str, problems: list[Problem], what: str, node: str | None = None,
             field_: str | None = None) -> dict[Any, Any]:
    """`data[key]`, a mapping; left out or null is empty, anything else is a problem (and empty)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(Problem(file, f"`{key}` must be a mapping of {what}, got {type(value).__name__}", node,
                                field_ or key, _line(data, key)))
        return {}
    return value


def _text(data: Any, key: str, file: str, problems: list[Problem], node: str | None = None,
          field_: str | None = None) -> str:
    """`data[key]`, a description: text, or left out."""
    value = data.get(key, "")
    if not isinstance(value, str):
        problems.append(Problem(file, f"`{key}` must be text, got {type(value).__name__}", node, field_ or key,
                                _line(data, key)))
        return ""
    return value


def parse_graph(data: Any, file: str) -> GraphSpec:
    """Check the shape of a parsed graph file and build its GraphSpec."""
    problems: list[Problem] = []
    if data is None:
        raise GraphError([Problem(file, "the graph file is empty; it needs at least `nodes:` and `outputs:`")])
    if not isinstance(data, dict):
        raise GraphError([Problem(file, f"a graph file must be a mapping with `nodes:` and `outputs:`, got "
                                        f"{type(data).__name__}")])
    for key in data:
        if key not in TOP_KEYS:
            problems.append(Problem(file, f"unknown top-level key '{key}'; allowed: {sorted(TOP_KEYS)}",
                                    line=_line(data, key)))
    version = data.get("mora", FORMAT_VERSION)
    if type(version) is not int or version != FORMAT_VERSION:  # `true` and `1.0` equal 1 in Python, not in the format
        problems.append(Problem(file, f"unsupported format version {shown(data.get('mora'))}; this Mora reads mora: 1",
                                field="mora", line=_line(data, "mora")))
    problems.extend(_interpolations(data, file, (), None))
    inputs = _parse_inputs(_mapping(data, "inputs", file, problems, "NAME: {type: ..., default: ...}"), file,
                           problems)
    nodes = _parse_nodes(data.get("nodes"), file, problems, data)
    outputs, output_lines = _parse_outputs(data.get("outputs"), file, problems, data)
    description = _text(data, "description", file, problems)
    if problems:
        raise GraphError(problems)
    return GraphSpec(file, description, inputs, nodes, outputs, output_lines)


def _parse_inputs(raw: dict[Any, Any], file: str, problems: list[Problem]) -> dict[str, InputSpec]:
    types = [t.value for t in PortType]
    inputs: dict[str, InputSpec] = {}
    for name, spec in raw.items():
        line = _line(raw, name)
        if not is_name(name):
            problems.append(Problem(file, f"input name {shown(name)} must be {NAME_RULE}", field="inputs",
                                    line=line))
            continue
        if not isinstance(spec, dict):
            problems.append(Problem(file, f"an input must be a mapping {{type: T, default: V}}, got "
                                          f"{type(spec).__name__} {shown(spec)}", field=f"inputs.{name}", line=line))
            continue
        for key in spec:
            if key not in INPUT_KEYS:
                problems.append(Problem(file, f"unknown key '{key}'; allowed: {sorted(INPUT_KEYS)}",
                                        field=f"inputs.{name}", line=_line(spec, key)))
        description = _text(spec, "description", file, problems, field_=f"inputs.{name}.description")
        if spec.get("type") not in types:
            problems.append(Problem(file, f"type {shown(spec.get('type'))} is not one of {types}",
                                    field=f"inputs.{name}.type", line=_line(spec, "type") or line))
            continue
        inputs[name] = InputSpec(name, PortType(spec["type"]), spec.get("default", MISSING), description, line)
    return inputs


def _parse_nodes(raw: Any, file: str, problems: list[Problem], top: Any) -> dict[str, NodeSpec]:
    if raw is None or raw == {}:
        problems.append(Problem(file, "the graph has no nodes", field="nodes", line=_line(top, "nodes")))
        return {}
    if not isinstance(raw, dict):
        problems.append(Problem(file, "`nodes` must be a mapping of NODE_ID: {agent: TYPE, ...}", field="nodes",
                                line=_line(top, "nodes")))
        return {}
    nodes: dict[str, NodeSpec] = {}
    for node_id, spec in raw.items():
        line = _line(raw, node_id)
        if not is_name(node_id):
            problems.append(Problem(file, f"node id {shown(node_id)} must be {NAME_RULE}", str(node_id),
                                    line=line))
            continue
        if not isinstance(spec, dict):
            problems.append(Problem(file, "a node must be a mapping with `agent:` or `graph:`", node_id, line=line))
            continue
        for key in spec:
            if key not in NODE_KEYS:
                problems.append(Problem(file, f"unknown key '{key}'; allowed: {sorted(NODE_KEYS)}", node_id, str(key),
                                        _line(spec, key)))
        _text(spec, "description", file, problems, node_id)
        if ("agent" in spec) == ("graph" in spec):
            problems.append(Problem(file, "a node needs exactly one of `agent:` or `graph:`", node_id, line=line))
            continue
        kind = "agent" if "agent" in spec else "graph"
        if not isinstance(spec[kind], str):
            problems.append(Problem(file, f"`{kind}` must be a name", node_id, kind, _line(spec, kind)))
            continue
        bound: dict[str, dict[str, Binding]] = {}
        for section in ("in", "params"):
            values = _mapping(spec, section, file, problems, "NAME: VALUE", node_id)
            bound[section] = {str(k): parse_binding(v, problems, file, node_id, f"{section}.{k}", _line(values, k))
                              for k, v in values.items()}
        repeat = None
        if "repeat" in spec:
            if kind == "agent":
                problems.append(Problem(file, "`repeat` applies to `graph:` nodes only", node_id, "repeat",
                                        _line(spec, "repeat")))
            else:
                repeat = _parse_repeat(spec["repeat"], file, node_id, problems, _line(spec, "repeat"))
        lines = {f"{section}.{k}": ln for section in ("in", "params") for k, ln in
                 getattr(spec.get(section), "lines", {}).items()}
        if "repeat" in spec and _line(spec, "repeat"):
            lines["repeat"] = _line(spec, "repeat")  # type: ignore[assignment]
        nodes[node_id] = NodeSpec(node_id, spec.get("agent"), spec.get("graph"), bound["in"], bound["params"], repeat,
                                  line, lines)
    return nodes


def _parse_repeat(raw: Any, file: str, node_id: str, problems: list[Problem], line: int | None) -> Repeat | None:
    shape = "`repeat` must be {times: N or {input: NAME}, feed: {INPUT: OUTPUT}}"
    if not isinstance(raw, dict) or "times" not in raw:
        problems.append(Problem(file, shape, node_id, "repeat", line))
        return None
    extra = set(raw) - {"times", "feed"}
    if extra:
        problems.append(Problem(file, f"unknown keys {sorted(map(str, extra))} in `repeat`", node_id, "repeat",
                                _line(raw, min(extra, key=str))))
    feed = raw.get("feed", {})
    if not isinstance(feed, dict) or not all(is_name(k) and is_name(v) for k, v in feed.items()):
        problems.append(Problem(file, f"{shape}: `feed` maps input names to output names", node_id, "repeat.feed",
                                _line(raw, "feed")))
        feed = {}
    times = parse_binding(raw["times"], problems, file, node_id, "repeat.times", _line(raw, "times"))
    return Repeat(times, dict(feed))


def _parse_outputs(raw: Any, file: str, problems: list[Problem], top: Any) -> tuple[dict[str, Link], dict[str, int]]:
    if not raw:
        problems.append(Problem(file, "the graph declares no outputs", field="outputs", line=_line(top, "outputs")))
        return {}, {}
    if not isinstance(raw, dict):
        problems.append(Problem(file, "`outputs` must be a mapping of NAME: {from: NODE.PORT}", field="outputs",
                                line=_line(top, "outputs")))
        return {}, {}
    outputs: dict[str, Link] = {}
    for name, value in raw.items():
        line = _line(raw, name)
        if not is_name(name):
            problems.append(Problem(file, f"output name {shown(name)} must be {NAME_RULE} (it names a file in "
                                          "the run directory)", field="outputs", line=line))
            continue
        before = len(problems)
        link = parse_binding(value, problems, file, None, f"outputs.{name}", line)
        if not isinstance(link, Link):
            if len(problems) == before:  # a literal, a list or null: parse_binding accepted it as a value
                problems.append(Problem(file, "an output must be a link {from: NODE.PORT} or {input: NAME}, got "
                                              f"{type(value).__name__} {shown(value)}", field=f"outputs.{name}", line=line))
            continue
        outputs[name] = link
    return outputs, {k: v for k, v in getattr(raw, "lines", {}).items()}
