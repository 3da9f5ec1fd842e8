"""The flat graph a run executes: agent nodes with every input resolved to a `Source`.

A `Plan` is what expansion (`mora.engine.graph.expand`) makes of a graph file and its input values:
templates inlined and namespaced (`outer/inner`, `outer/2/inner` for a `repeat`'s third step),
parameters resolved against their agents, every value checked (`mora.engine.graph.validate`), pruned
to the requested outputs. The scheduler, the manifest and the sweep merge read it; nothing here
reads files or checks values. The nodes' inputs are the one record of the graph's edges: `edges`
lists them and `dag` is the same graph in networkx, built (and networkx imported, a fifth of a
second) only for a caller that needs a graph algorithm: a fully cached run never does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from mora.engine.graph.agent import Agent
from mora.engine.ports import PortType

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class Source:
    """Where an input comes from: a node's output port, or a literal value of a port type."""

    type: PortType
    node: str | None = None
    port: str | None = None
    value: Any = None
    origin: str = field(default="", compare=False)
    """Where a literal's value was written when not where it is used (a graph input's default), for messages."""

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
    """The flat graph to run: agent nodes by id (dependencies first), and the graph's outputs."""

    file: str
    nodes: dict[str, PlanNode]
    outputs: dict[str, Source]
    inputs: dict[str, Any] = field(default_factory=dict, kw_only=True)
    """The graph input values this plan was built with (given or defaulted), for the manifest (by keyword: a
    fourth positional argument was once the networkx graph, which the plan now builds itself)."""

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(upstream, node) for every dependency, in node order."""
        return [(dep, node.id) for node in self.nodes.values() for dep in sorted(node.upstream())]

    @cached_property
    def dag(self) -> nx.DiGraph:
        """The plan's DAG in networkx, for graph algorithms (the sweep merge, drawing with `mora-admin`)."""
        import networkx as nx

        dag = nx.DiGraph()
        dag.add_nodes_from(self.nodes)
        dag.add_edges_from(self.edges)
        return dag
