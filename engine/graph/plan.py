"""The flat graph a run executes: agent nodes with every input resolved to a `Source`.

A `Plan` is what expansion (`mora.engine.graph.expand`) makes of a graph file and its input values:
templates inlined and namespaced (`outer/inner`, `outer/2/inner` for a `repeat`'s third step),
parameters resolved against their agents, every value checked (`mora.engine.graph.validate`), the DAG
in networkx, pruned to the requested outputs. The scheduler, the manifest and the sweep merge
read it; nothing here reads files or checks values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from mora.engine.graph.agent import Agent
from mora.engine.ports import PortType


@dataclass(frozen=True)
class Source:
    """Where an input comes from: a node's output port, or a literal value of a port type."""

    type: PortType
    node: str | None = None
    port: str | None = None
    value: Any = None

    @property
    def is_literal(self) -> bool:
        return self.node is None


@dataclass(frozen=True)
class PlanNode:
    id: str
    agent: Agent
    file: str
    inputs: dict[str, Source | list[Source]]
    params: dict[str, Any]

    def upstream(self) -> set[str]:
        deps: set[str] = set()
        for src in self.inputs.values():
            for s in src if isinstance(src, list) else [src]:
                if s.node:
                    deps.add(s.node)
        return deps


@dataclass
class Plan:
    """The flat graph to run: agent nodes by id, the graph's outputs, and the networkx DAG."""

    file: str
    nodes: dict[str, PlanNode]
    outputs: dict[str, Source]
    dag: nx.DiGraph = field(default_factory=nx.DiGraph)
    inputs: dict[str, Any] = field(default_factory=dict)
    """The graph input values this plan was built with (given or defaulted), for the manifest."""
