"""A JSON Schema of graph files, generated from the registry, for editor completion.

It describes the file's shape, the link forms, and for each agent type its input ports and
parameters (types, bounds, choices, descriptions). Validation proper is Mora's own (it also
checks links, types across edges, templates and cycles); the schema is for editors.
"""
from __future__ import annotations

from typing import Any

from mora.engine.graph.registry import Registry, default_registry
from mora.engine.ports import PortType

LINK = {
    "oneOf": [
        {"type": "object", "properties": {"from": {"type": "string", "pattern": r"^[A-Za-z_][\w-]*\.[A-Za-z_][\w-]*$"}},
         "required": ["from"], "additionalProperties": False, "description": "another node's output: NODE.PORT"},
        {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"],
         "additionalProperties": False, "description": "a graph input"},
    ]
}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _param_schema(p: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"description": p.description, "default": p.default}
    literal: dict[str, Any] = {"type": JSON_TYPES.get(p.type, "string")}
    if p.min is not None:
        literal["minimum"] = p.min
    if p.max is not None:
        literal["maximum"] = p.max
    if p.choices:
        literal["enum"] = list(p.choices)
    if p.multiple_of:
        literal["multipleOf"] = p.multiple_of
    if p.default is None:
        literal = {"anyOf": [literal, {"type": "null"}]}
    s["anyOf"] = [literal, {"$ref": "#/$defs/link"}]
    return s


def graph_schema(registry: Registry | None = None) -> dict[str, Any]:
    registry = registry or default_registry()
    agent_nodes = []
    for agent in registry:
        agent_nodes.append({
            "if": {"properties": {"agent": {"const": agent.type}}, "required": ["agent"]},
            "then": {"properties": {
                "in": {"type": "object", "additionalProperties": False,
                       "properties": {p.name: {"description": f"{p.type.value}: {p.description}"} for p in agent.inputs}},
                "params": {"type": "object", "additionalProperties": False,
                           "properties": {p.name: _param_schema(p) for p in agent.params}},
            }},
        })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Mora graph file",
        "type": "object",
        "additionalProperties": False,
        "required": ["nodes", "outputs"],
        "$defs": {"link": LINK},
        "properties": {
            "mora": {"const": 1, "description": "format version"},
            "description": {"type": "string"},
            "inputs": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["type"],
                "properties": {"type": {"enum": [t.value for t in PortType]}, "default": {},
                               "description": {"type": "string"}}}},
            "nodes": {"type": "object", "minProperties": 1, "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "agent": {"enum": registry.names(), "description": "an agent type (mora-admin agents)"},
                    "graph": {"type": "string", "description": "a template: graphs/NAME.yaml or a relative file"},
                    "in": {"type": "object"}, "params": {"type": "object"}, "description": {"type": "string"},
                    "repeat": {"type": "object", "required": ["times"],
                               "properties": {"times": {}, "feed": {"type": "object"}}},
                },
                "oneOf": [{"required": ["agent"]}, {"required": ["graph"]}],
                "allOf": agent_nodes,
            }},
            "outputs": {"type": "object", "minProperties": 1,
                        "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"},
                        "additionalProperties": {"$ref": "#/$defs/link"}},
        },
    }
