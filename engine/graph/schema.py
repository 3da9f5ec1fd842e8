"""A JSON Schema of graph files, generated from the registry, for editor completion.

It describes the file's shape, the link forms, and for each agent type its input ports and
parameters (types, bounds, choices, descriptions). Policy: whatever the schema can judge from the
file alone, it judges as `mora-admin validate` does (names, link forms, literal types, `${...}`,
reserved output names), so a file an editor passes is refused only for what needs more than the
file: links to other nodes and inputs, types across edges, templates, cycles and input files. One
exception is out of any JSON Schema's reach: `mora: 1.0`, which JSON cannot tell from 1.
"""
from __future__ import annotations

from typing import Any

from mora.engine.graph.expand import MAX_REPEAT
from mora.engine.graph.registry import Registry, default_registry
from mora.engine.graph.spec import FORMAT_VERSION
from mora.engine.graph.validate import MAX_TEXT
from mora.engine.ports import FILE_KINDS, PortType
from mora.engine.rundir import RESERVED

_NAME = r"[A-Za-z_][A-Za-z0-9_-]{0,63}"
NAME = {"type": "string", "pattern": f"^{_NAME}$(?!\\n)"}
"""A node, input, output or port name (`(?!\\n)`: Python's `$` would also match before a final newline)."""
_BIGGEST = 1.7976931348623157e308
FINITE = {"type": "number", "not": {"anyOf": [
    {"minimum": 1, "maximum": 0},  # only NaN is both: it fails every comparison
    {"exclusiveMinimum": _BIGGEST}, {"exclusiveMaximum": -_BIGGEST}]},
    "description": "a finite number (not .nan or .inf)"}
STRING = {"type": "string", "not": {"pattern": r"\$\{"},
          "description": "text (`${...}` is Hydra's syntax, not Mora's, and is refused)"}
TEXT = {**STRING, "maxLength": MAX_TEXT}
"""Text a port takes."""
PATH = {"type": "string", "minLength": 1, "not": {"anyOf": [{"pattern": r"\$\{"}, {"pattern": "\u0000"}]},
        "description": "a file path, relative to this file's folder"}
INPUT_LINK = {"type": "object", "properties": {"input": NAME}, "required": ["input"], "additionalProperties": False,
              "description": "a graph input"}
LINK = {"oneOf": [
    {"type": "object", "properties": {"from": {"type": "string", "pattern": f"^{_NAME}\\.{_NAME}$(?!\\n)"}},
     "required": ["from"], "additionalProperties": False, "description": "another node's output: NODE.PORT"},
    INPUT_LINK,
]}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
_REF = {"link": {"$ref": "#/$defs/link"}, "input_link": {"$ref": "#/$defs/input_link"}}


def literal(t: PortType, required: bool = False) -> dict[str, Any]:
    """A literal of port type `t` (a required text port refuses blank text, a list port an empty list)."""
    if t.is_list:
        return {"type": "array", "minItems": 1 if required else 0,
                "items": {"anyOf": [literal(t.item), _REF["link"]]}}
    if t == PortType.NUMBER:
        return FINITE
    if t in FILE_KINDS:
        return PATH
    return {**TEXT, "pattern": r"\S"} if required else TEXT


def _param_schema(p: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"description": p.description, "default": p.default}
    literal_ = dict(FINITE if p.type is float else STRING if p.type is str else {"type": JSON_TYPES.get(p.type)})
    if p.min is not None:
        literal_["minimum"] = p.min
    if p.max is not None:
        literal_["maximum"] = p.max
    if p.choices:
        literal_["enum"] = list(p.choices)
    if p.multiple_of:
        literal_["multipleOf"] = p.multiple_of
    if p.default is None:
        literal_ = {"anyOf": [literal_, {"type": "null"}]}
    s["anyOf"] = [literal_, _REF["input_link"]]
    return s


def _agent_node(agent: Any) -> dict[str, Any]:
    required = [p.name for p in agent.inputs if p.required]
    ports = {p.name: {"description": f"{p.type.value}: {p.description}",
                      "anyOf": [literal(p.type, p.required), _REF["link"]]} for p in agent.inputs}
    then: dict[str, Any] = {"properties": {
        "in": {"type": "object" if required else ["object", "null"], "additionalProperties": False,
               "properties": ports, "required": required},
        "params": {"type": ["object", "null"], "additionalProperties": False,
                   "properties": {p.name: _param_schema(p) for p in agent.params}},
    }}
    if required:
        then["required"] = ["in"]
    return {"if": {"properties": {"agent": {"const": agent.type}}, "required": ["agent"]}, "then": then}


def _input() -> dict[str, Any]:
    by_type = [{"if": {"properties": {"type": {"const": t.value}}},
                "then": {"properties": {"default": {"anyOf": [{"type": "null"}, literal(t)]}}}} for t in PortType]
    return {"type": "object", "additionalProperties": False, "required": ["type"],
            "properties": {"type": {"enum": [t.value for t in PortType]}, "default": {},
                           "description": STRING},
            "allOf": by_type}


def graph_schema(registry: Registry | None = None) -> dict[str, Any]:
    registry = registry or default_registry()
    value = {"anyOf": [TEXT, FINITE, _REF["link"]]}
    template_node = {
        "if": {"required": ["graph"]},
        "then": {"properties": {
            "in": {"type": ["object", "null"], "propertyNames": NAME,
                   "additionalProperties": {"anyOf": [value, {"type": "array", "items": value}]}},
            "params": {"type": ["object", "null"], "maxProperties": 0,
                       "description": "a template takes its values through `in:`"},
        }},
        "else": {"not": {"required": ["repeat"]}},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Mora graph file",
        "type": "object",
        "additionalProperties": False,
        "required": ["nodes", "outputs"],
        "$defs": {"link": LINK, "input_link": INPUT_LINK},
        "properties": {
            "mora": {"const": FORMAT_VERSION, "description": "format version (the integer 1)"},
            "description": STRING,
            "inputs": {"type": ["object", "null"], "propertyNames": NAME, "additionalProperties": _input()},
            "nodes": {"type": "object", "minProperties": 1, "propertyNames": NAME, "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "agent": {"enum": registry.names(), "description": "an agent type (mora-admin agents)"},
                    "graph": {**PATH, "description": "a template: graphs/NAME.yaml or a relative file"},
                    "in": {"description": "input ports (a template's inputs): literals or links"},
                    "params": {"description": "parameters: literals or {input: NAME}"},
                    "description": STRING,
                    "repeat": {"type": "object", "required": ["times"], "additionalProperties": False,
                               "properties": {
                                   "times": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_REPEAT},
                                                       _REF["input_link"]]},
                                   "feed": {"type": "object", "propertyNames": NAME, "additionalProperties": NAME}}},
                },
                "oneOf": [{"required": ["agent"]}, {"required": ["graph"]}],
                "allOf": [template_node, *(_agent_node(agent) for agent in registry)],
            }},
            "outputs": {"type": "object", "minProperties": 1,
                        "propertyNames": {**NAME, "not": {"pattern": _reserved()}},
                        "additionalProperties": {"$ref": "#/$defs/link"},
                        "description": "graph outputs, files in the run directory (some names are Mora's own)"},
        },
    }


def _reserved() -> str:
    """A pattern of the reserved output names, in any case (JSON Schema patterns take no flags)."""
    spelt = ["".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in name) for name in sorted(RESERVED)]
    return f"^({'|'.join(spelt)})$(?!\\n)"
