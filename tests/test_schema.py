"""The shipped JSON Schema for graph files: current with the registry, and true to the shipped graphs."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from mora.engine.graph.schema import graph_schema

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
SCHEMA_FILE = GRAPHS / "mora-graph.schema.json"


def test_shipped_schema_is_what_mora_admin_schema_prints():
    assert json.loads(SCHEMA_FILE.read_text()) == graph_schema(), (
        "graphs/mora-graph.schema.json is stale: mora-admin schema > graphs/mora-graph.schema.json")


@pytest.mark.parametrize("path", sorted(GRAPHS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_graph_satisfies_the_schema(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), graph_schema())


def test_schema_refuses_an_unknown_agent_and_a_misspelt_key():
    schema = graph_schema()
    good = {"nodes": {"a": {"agent": "style_cue", "in": {"prompt": "x"}}}, "outputs": {"o": {"from": "a.text"}}}
    jsonschema.validate(good, schema)
    for bad in ({**good, "nodes": {"a": {"agent": "no_such_agent"}}},
                {**good, "nodez": {}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
