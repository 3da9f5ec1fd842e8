"""Checks on values before anything runs: literals against port types, parameters against agents.

The expander (`mora.engine.graph.expand`) binds every value a graph names and asks this module whether
it is allowed: a literal of the port's type (finite numbers, bounded text, non-empty paths), a
parameter within its agent's declared type, bounds and choices, a graph input given as text
(the command line) read by its declared type. Each check returns the problem as a short
message, or None; the expander adds file, node, field and line and reports them all at once.
Two sentinels stand for values not known here: `UNKNOWN` (a required input when a file is
validated on its own) and `UNSET` (an input declared `default: null` and not given).

A relative file path written in a graph file (an input's default, a literal under `in:`) means a
file beside that graph file, wherever Mora was started, as paths in a Compose or workflow file do;
a path given on the command line (or a model preset's `inputs`) keeps meaning one in the current
folder. Every literal becomes a Source through `literal_source`, so every consumer (a run, a sweep,
`mora-admin validate`/`draw`, help, templates at any depth) reads the same file.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mora.engine.errors import GraphError, Problem, did_you_mean, shown
from mora.engine.graph.agent import Agent, Port
from mora.engine.graph.plan import Source
from mora.engine.graph.spec import MISSING, GraphSpec, InputSpec
from mora.engine.graph.yamlfile import load_yaml
from mora.engine.ports import FILE_KINDS, PortType
from mora.engine.rundir import output_name_problems

MAX_TEXT = 100_000
MAX_LIST_TEXT = 1_000_000
"""The characters of a list's texts in all: YAML aliases repeat a text at no cost in the file (20,000 values of
100,000 characters would be 2 GB in the manifest and the cache key)."""
UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "<unknown>"})()
"""The value of a graph input with no default when a file is validated on its own."""
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "<unset>"})()
"""The value of a graph input declared `default: null` and not given: whatever it binds keeps the agent's default."""


@dataclass(frozen=True)
class Preset:
    """A graph input value set by a model preset's `inputs`: a refusal names the preset's file, where it was written."""

    value: Any
    file: str


def is_unset(src: Source | list[Source] | None) -> bool:
    """Whether a bound value is, or holds, an UNSET graph input."""
    if isinstance(src, list):
        return any(is_unset(s) for s in src)
    return src is not None and src.value is UNSET


def input_default(inp: InputSpec, file: str) -> Source | list[Source] | str:
    """A declared input's default in graph file `file` as a Source (`default: null` is UNSET), or why it is refused."""
    if inp.default is None:
        return Source(inp.type, value=UNSET)
    source = literal_source(inp.default, inp.type, file)
    return source if isinstance(source, str) else _noted(source, f"the default of input '{inp.name}' in {file}")


def _noted(source: Source | list[Source], origin: str) -> Source | list[Source]:
    """`source` saying where its value was written, for the message if its file cannot be read."""
    return [replace(s, origin=origin) for s in source] if isinstance(source, list) else replace(source, origin=origin)


def literal_source(value: Any, want: PortType, written_in: str | None = None) -> Source | list[Source] | str:
    """A literal as a Source (a list of item Sources for list types), or why it is not allowed.

    `written_in`: the graph file the literal was written in, whose folder a relative file path is
    read from (None: typed on the command line, read from the current folder).
    """
    if want.is_list and isinstance(value, list):
        if problem := list_text_problem(value):
            return problem
        items = [literal_source(v, want.item, written_in) for v in value]
        problem = next((i for i in items if isinstance(i, str)), None)
        return problem or items  # type: ignore[return-value]
    problem = _literal_problem(value, want)
    if problem:
        return problem
    if written_in is not None and want in FILE_KINDS and isinstance(value, str):
        value = beside(value, written_in)
    return Source(want, value=value)


def list_text_problem(value: list[Any]) -> str | None:
    """Why a literal list is too large to take (its texts over `MAX_LIST_TEXT` characters in all), or None."""
    chars = sum(len(v) for v in value if isinstance(v, str))
    return f"the list's texts are {chars} characters in all; at most {MAX_LIST_TEXT} are allowed" \
        if chars > MAX_LIST_TEXT else None


def beside(path: str, file: str) -> str:
    """A file path written in `file`: relative means in `file`'s folder (made absolute, so messages and the manifest
    name the file read); absolute and `~/...` paths stay as written."""
    if os.path.isabs(os.path.expanduser(path)):
        return path
    return os.path.join(os.path.abspath(os.path.dirname(file)), path)


def bound_value_problem(src: Source | list[Source], port: Port) -> str | None:
    """What the planner can tell is wrong with a value before the run: no items, or a blank required text."""
    if isinstance(src, list):
        return None if src else f"an empty list: '{port.name}' takes {port.type.value} and needs at least one item"
    if port.required and port.type == PortType.TEXT and isinstance(src.value, str) and not src.value.strip():
        return f"'{port.name}' is empty or only whitespace; give some text"
    return None


def param_value(agent: Agent, name: str, value: Any) -> tuple[Any, str | None]:
    """A literal parameter value as the agent's declared type takes it (3 for 3.0, 3.0 for 3), or why it is refused."""
    param = agent.param(name)
    assert param is not None
    if param.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if param.type is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    problem = param.check(value)
    return value, (f"parameter '{name}' {problem}" if problem else None)


def from_text(value: Any, want: PortType) -> Any:
    """A value typed as text (the command line, `mora-admin -i`) read as the declared input type.

    Text, image, video and latent inputs take the text as it is; a number input reads it as a
    number and a list input as a YAML flow list (`[a fox, a cat]`). Text that does not read as
    the type is returned unchanged, so the usual type error names it.
    """
    if not isinstance(value, str) or want in (PortType.TEXT, *FILE_KINDS):
        return value
    if want == PortType.NUMBER:
        for number in (int, float):
            try:
                return number(value.strip())
            except ValueError:
                pass
        return value
    try:
        parsed = load_yaml(value, "the command line")  # within a graph file's bounds: a typed alias bomb is refused
    except GraphError:
        return value
    return parsed if isinstance(parsed, list) else value


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _literal_problem(value: Any, want: PortType) -> str | None:
    if value is UNKNOWN:
        return None
    if want.is_list:
        return f"this port takes {want.value}: give a YAML list or a link, got {type(value).__name__}"
    if want == PortType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {type(value).__name__} {shown(value)}"
        try:
            finite = math.isfinite(value)
        except OverflowError:  # a whole number past the largest float
            finite = False
        if not finite:
            return f"expected a finite number, got {shown(value)}"
        return None
    if not isinstance(value, str):
        return f"expected {'text' if want == PortType.TEXT else 'a file path'}, got {type(value).__name__} {shown(value)}"
    if not value.isascii() and not _is_unicode(value):  # the OS's undecodable bytes (surrogate escapes) in argv
        what = "text" if want == PortType.TEXT else "file path"
        return (f"the {what} {shown(value)} holds bytes that are not UTF-8, which manifests and the cache cannot record; "
                f"{'retype the text' if want == PortType.TEXT else 'rename the file'}")
    if want == PortType.TEXT and len(value) > MAX_TEXT:
        return f"text is {len(value)} characters long; at most {MAX_TEXT} are allowed"
    if want in FILE_KINDS and not value:
        return "expected a file path, got an empty string"
    if want in FILE_KINDS and "\0" in value:
        return f"the file path {shown(value)} holds a NUL byte, which no file name can"
    return None


def graph_inputs(spec: GraphSpec, values: Mapping[str, Any],
                 standalone: bool) -> tuple[dict[str, Source], dict[str, Any], list[Problem]]:
    """The graph's input values as Sources, the values used (for the manifest), and every problem with them.

    `standalone` (a file validated on its own): a required input with no value is UNKNOWN, not a problem.
    """
    problems: list[Problem] = []
    env: dict[str, Source] = {}
    used: dict[str, Any] = {}
    for name in values:
        if name not in spec.inputs:
            problems.append(Problem(spec.file, f"unknown graph input '{name}'; inputs are {sorted(spec.inputs)}"
                                               f"{did_you_mean(name, spec.inputs)}", field=f"inputs.{name}"))
    for name, inp in spec.inputs.items():
        given = name in values
        value = values.get(name, inp.default)
        preset = value if isinstance(value, Preset) else None
        if preset is not None:
            value = preset.value
        if value is None and inp.default is None:
            env[name] = Source(inp.type, value=UNSET)
            used[name] = None
            continue
        if value is MISSING:
            if not standalone:
                problems.append(Problem(spec.file, f"missing required graph input '{name}' ({inp.type.value}); set "
                                                   f"it with inputs.{name}=...", field=f"inputs.{name}", line=inp.line))
                continue
            value = UNKNOWN
        if given:  # text from the command line (a default is YAML, already typed: "3" is text there)
            value = from_text(value, inp.type)
        if isinstance(value, float) and inp.type == PortType.NUMBER and value.is_integer():
            value = int(value)
        source = literal_source(value, inp.type, None if given else spec.file)
        if isinstance(source, str):
            if preset is not None:
                problems.append(Problem(preset.file, f"inputs.{name} = {shown(value)} (the model preset's) does not fit "
                                                     f"graph input '{name}' ({inp.type.value}) of {spec.file}: "
                                                     f"{source}", field=f"inputs.{name}"))
            else:
                problems.append(Problem(spec.file, f"graph input '{name}': {source}", field=f"inputs.{name}",
                                        line=inp.line))
            continue
        if not given:
            source = _noted(source, f"the default of input '{name}' in {spec.file}")
        env[name] = source  # type: ignore[assignment]
        used[name] = [s.value for s in source] if isinstance(source, list) else source.value
    return env, used, problems


def output_problems(spec: GraphSpec, outputs: dict[str, Source], wanted: list[str]) -> list[Problem]:
    """What is wrong with the graph's outputs (dropping those that cannot be outputs from `outputs`)."""
    problems: list[Problem] = []
    for name, src in list(outputs.items()):
        if is_unset(src):
            problems.append(Problem(spec.file, "an output must have a value, but this graph input has none "
                                               "(`default: null`)", field=f"outputs.{name}",
                                    line=spec.output_lines.get(name)))
            del outputs[name]
        elif isinstance(src, list):
            problems.append(Problem(spec.file, "an output must be one artifact (a node's output port), not a list",
                                    field=f"outputs.{name}"))
            del outputs[name]
    for name, problem in output_name_problems({n: src.type for n, src in outputs.items()}).items():
        problems.append(Problem(spec.file, problem, field=f"outputs.{name}", line=spec.output_lines.get(name)))
    if not wanted and spec.outputs:  # `outputs=[]`: a run that would do nothing and report success
        problems.append(Problem(spec.file, f"no outputs requested; outputs are {sorted(spec.outputs)}",
                                field="outputs"))
    for name in wanted:
        if name not in spec.outputs:
            problems.append(Problem(spec.file, f"unknown output '{name}'; outputs are {sorted(spec.outputs)}"
                                               f"{did_you_mean(name, spec.outputs)}", field="outputs"))
    return problems
