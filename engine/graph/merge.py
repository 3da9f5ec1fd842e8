"""Merging the plans of a sweep's jobs into one DAG in which identical nodes appear once.

Two nodes are the same when they run the same agent type and version with the same resolved
parameters on the same inputs, where inputs are the same literal values or the outputs of
nodes that are themselves the same. That is the cache key's recipe taken at plan time (it is
what the key would be, before digests exist), so a node shared by several jobs runs once and
every job reads its result. Random nodes without a seed are never merged. The first job to use
a node names it; a later job's distinct node with a taken id gets `@jobN` appended.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from mora.engine.graph.keys import digest_of
from mora.engine.graph.plan import Plan, PlanNode, Source


@dataclass
class Merged:
    plan: Plan
    ids: list[dict[str, str]]
    """For each job, its node ids mapped to merged node ids."""
    users: dict[str, list[int]]
    """For each merged node, the jobs that use it."""


def _remap(src: Source | list[Source], mapping: dict[str, str]) -> Source | list[Source]:
    if isinstance(src, list):
        return [_remap(s, mapping) for s in src]  # type: ignore[misc]
    return src if src.is_literal else Source(src.type, node=mapping[src.node], port=src.port)  # type: ignore[index]


def _describe(src: Source | list[Source]) -> object:
    if isinstance(src, list):
        return [_describe(s) for s in src]
    return {"type": src.type.value, "value": src.value} if src.is_literal else {"node": src.node, "port": src.port}


def merge_plans(plans: list[Plan]) -> Merged:
    nodes: dict[str, PlanNode] = {}
    by_signature: dict[str, str] = {}
    ids: list[dict[str, str]] = []
    users: dict[str, list[int]] = {}
    for job, plan in enumerate(plans):
        mapping: dict[str, str] = {}
        for node_id in nx.lexicographical_topological_sort(plan.dag):
            node = plan.nodes[node_id]
            inputs = {port: _remap(src, mapping) for port, src in node.inputs.items()}
            unseeded = node.agent.random and node.params.get("seed") is None
            signature = digest_of({
                "agent": node.agent.type, "version": node.agent.version, "params": node.params,
                "inputs": {p: _describe(s) for p, s in inputs.items()},
                "unique": f"{job}/{node_id}" if unseeded else None,
            })
            merged_id = by_signature.get(signature)
            if merged_id is None:
                merged_id = node_id if node_id not in nodes else f"{node_id}@job{job}"
                nodes[merged_id] = PlanNode(merged_id, node.agent, node.file, inputs, node.params)
                by_signature[signature] = merged_id
            mapping[node_id] = merged_id
            users.setdefault(merged_id, [])
            if job not in users[merged_id]:
                users[merged_id].append(job)
        ids.append(mapping)
    outputs = {f"job{j}/{name}": _remap(src, ids[j]) for j, plan in enumerate(plans) for name, src in plan.outputs.items()}
    merged = Plan(plans[0].file if plans else "", nodes, outputs)  # type: ignore[arg-type]
    return Merged(merged, ids, users)
