"""Template expansion: a validated GraphSpec and its input values become a flat, checked `Plan`.

Expansion inlines templates (namespacing their node ids as `outer/inner`, and `outer/2/inner`
for the third step of a `repeat`), resolves every binding to a `Source` (another node's output
port, or a literal value), and type-checks every edge; value checks are `mora.engine.graph.validate`'s.
A template input left out of `in:` takes the including graph's input of the same name, else its
own default (`default: null`: unset, so the agent's default applies). Every problem is
collected and raised together as one GraphError before anything runs. The flat graph is pruned to
the requested outputs. A file's nodes are put in dependency order by graphlib (ties in file
order); networkx, slow to import, is reached for only to report a cycle.
"""
from __future__ import annotations

import graphlib
import heapq
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from mora.engine.errors import GraphError, InputError, Problem, did_you_mean, shown
from mora.engine.graph.agent import Agent
from mora.engine.graph.plan import Plan, PlanNode, Source
from mora.engine.graph.registry import Registry
from mora.engine.graph.spec import MISSING, GraphSpec, Link, NodeSpec
from mora.engine.graph.templates import TemplateLoader
from mora.engine.graph.validate import (
    UNKNOWN,
    UNSET,
    bound_value_problem,
    graph_inputs,
    input_default,
    is_unset,
    list_text_problem,
    literal_source,
    output_problems,
    param_value,
)
from mora.engine.ports import PortType

MAX_REPEAT = 1000
MAX_TEMPLATE_DEPTH = 16
"""Templates may include templates this many levels deep (the graph file itself is level 0)."""
MAX_PLAN_NODES = 10_000
"""A plan expands to at most this many agent nodes (repeats of repeats multiply)."""
MAX_DETAILED_PROBLEMS = 10
"""Only this many problems list the names a link could have meant or guess the closest: each costs time in
proportion to those names, and 1,990 misspelled links in a 134 KiB file took 87 s to refuse (bench/README.md);
past this many, a problem names only what is wrong."""
MAX_PROBLEMS = 10_000
"""Problems one validation reports before it stops expanding: one for each node a plan may hold."""


class _Expander:
    def __init__(self, registry: Registry, loader: TemplateLoader):
        self.registry = registry
        self.loader = loader
        self.problems: list[Problem] = []
        self.value_problems: list[Problem] = []
        """Values the run would refuse (blank text, empty list): reported only for nodes the run keeps."""
        self.nodes: dict[str, PlanNode] = {}
        self.too_many = False

    def fail(self, file: str, message: str, node: str | None = None, field_: str | None = None,
             line: int | None = None) -> None:
        """Record a problem; past `MAX_PROBLEMS` stop expanding (`too_many`): templates and `repeat` multiply a
        failing node as they multiply working ones, and a million problems is no report."""
        if len(self.problems) >= MAX_PROBLEMS:
            if not self.too_many:
                self.too_many = True
                self.problems.append(Problem(file, f"more than {MAX_PROBLEMS} problems (templates and `repeat` "
                                                   "multiply them); stopped looking", node, field_, line))
            return
        self.problems.append(Problem(file, message, node, field_, line))

    def detailed(self) -> bool:
        """Whether the next problem may list the alternatives and guess the closest (`MAX_DETAILED_PROBLEMS`)."""
        return len(self.problems) < MAX_DETAILED_PROBLEMS

    def expand(self, spec: GraphSpec, env: Mapping[str, Source], prefix: str, stack: tuple[str, ...]) -> dict[str, Source]:
        """Expand one graph with its inputs bound; return its outputs as Sources."""
        order = self._file_order(spec)
        if order is None:
            return {}
        produced: dict[str, dict[str, Source] | None] = {}
        for node_id in order:
            node = spec.nodes[node_id]
            flat = f"{prefix}{node_id}"
            before = len(self.problems)
            if node.agent is not None:
                ports = self._agent_node(spec, node, flat, env, produced)
            else:
                ports = self._template_node(spec, node, flat, env, produced, stack)
            failed_here = node.agent is None and len(self.problems) > before
            produced[node_id] = None if failed_here or ports is None else ports
        outputs: dict[str, Source] = {}
        for name, link in spec.outputs.items():
            src = self._resolve_link(spec, link, env, produced, None, f"outputs.{name}", spec.output_lines.get(name))
            if src is not None:
                outputs[name] = src
        return outputs

    def _file_order(self, spec: GraphSpec) -> tuple[str, ...] | None:
        order = _file_order(_Same(spec))
        if isinstance(order, _Cycle):
            self.fail(spec.file, f"cycle: {order.path}", order.node, line=spec.nodes[order.node].line)
            return None
        return order

    def _resolve_link(self, spec: GraphSpec, link: Link, env: Mapping[str, Source],
                      produced: Mapping[str, Mapping[str, Source]], node: str | None, field_: str,
                      line: int | None) -> Source | None:
        if link.input is not None:
            if link.input not in spec.inputs:
                known = f"; inputs are {sorted(spec.inputs)}{did_you_mean(link.input, spec.inputs)}" \
                    if self.detailed() else ""
                self.fail(spec.file, f"link to unknown graph input '{link.input}'{known}", node, field_, line)
                return None
            return env.get(link.input)
        if link.node not in spec.nodes:
            hint = did_you_mean(link.node, spec.nodes) if link.node and self.detailed() else ""
            self.fail(spec.file, f"link to unknown node '{link.node}'{hint}", node, field_, line)
            return None
        ports = produced.get(link.node)
        if ports is None:
            return None
        if link.port not in ports:
            known = f"; its outputs are {sorted(ports)}{did_you_mean(link.port, ports)}" if self.detailed() else ""
            self.fail(spec.file, f"node '{link.node}' has no output port '{link.port}'{known}", node, field_, line)
            return None
        return ports[link.port]

    def _bind(self, spec: GraphSpec, value: Any, want: PortType, env: Mapping[str, Source],
              produced: Mapping[str, Mapping[str, Source]], node: str, field_: str,
              line: int | None) -> Source | list[Source] | None:
        """Resolve an `in:` binding for a port of type `want`, checking types."""
        if isinstance(value, list) and want.is_list:
            if problem := list_text_problem(value):
                self.fail(spec.file, problem, node, field_, line)
                return None
            items = [self._bind(spec, v, want.item, env, produced, node, f"{field_}[{i}]", line)
                     for i, v in enumerate(value)]
            return None if any(i is None for i in items) else items  # type: ignore[return-value]
        if isinstance(value, Link):
            src = self._resolve_link(spec, value, env, produced, node, field_, line)
            if src is None:
                return None
            if isinstance(src, list):
                if want.is_list and all(want.item.accepts(s.type) for s in src):
                    return src
                self.fail(spec.file, f"type mismatch: {value} is a list, but this port takes {want.value}", node,
                          field_, line)
                return None
            if not want.accepts(src.type):
                self.fail(spec.file, f"type mismatch: {value} is {src.type.value}, but this port takes "
                                     f"{want.value}", node, field_, line)
                return None
            return src
        result = literal_source(value, want, spec.file)
        if isinstance(result, str):
            self.fail(spec.file, result, node, field_, line)
            return None
        return result

    def _agent_node(self, spec: GraphSpec, node: NodeSpec, flat: str, env: Mapping[str, Source],
                    produced: Mapping[str, Mapping[str, Source] | None]) -> dict[str, Source] | None:
        if len(self.nodes) >= MAX_PLAN_NODES:
            if not self.too_many:
                self.too_many = True
                self.fail(spec.file, f"the graph expands to more than {MAX_PLAN_NODES} nodes (templates and "
                                     "`repeat` multiply); split the work into several runs", flat, line=node.line)
            return None
        agent = self.registry.get(node.agent or "")
        if agent is None:
            hint = ""
            if self.detailed():
                close = self.registry.closest(node.agent or "")
                hint = f"; did you mean {', '.join(close)}?" if close else f"; known agents: {', '.join(self.registry.names())}"
            self.fail(spec.file, f"unknown agent type '{node.agent}'{hint}", flat, "agent", node.line)
            return None
        inputs: dict[str, Source | list[Source]] = {}
        for port_name, value in node.inputs.items():
            port = agent.input(port_name)
            line = node.lines.get(f"in.{port_name}", node.line)
            if port is None:
                self.fail(spec.file, f"agent '{agent.type}' has no input port '{port_name}'; its inputs are "
                                     f"{[p.name for p in agent.inputs]}", flat, f"in.{port_name}", line)
                continue
            src = self._bind(spec, value, port.type, env, produced, flat, f"in.{port_name}", line)
            if is_unset(src):
                if port.required or isinstance(src, list):
                    self.fail(spec.file, f"{value} has no value (declared `default: null`), but '{port_name}' "
                                         "needs one", flat, f"in.{port_name}", line)
                continue
            if src is not None:
                problem = bound_value_problem(src, port)
                if problem:
                    self.value_problems.append(Problem(spec.file, problem, flat, f"in.{port_name}", line))
                inputs[port_name] = src
        for port in agent.inputs:
            if port.required and port.name not in node.inputs:
                self.fail(spec.file, f"missing required input '{port.name}' ({port.type.value})", flat,
                          f"in.{port.name}", node.line)
        params = self._params(spec, node, agent, flat, env)
        self.nodes[flat] = PlanNode(flat, agent, spec.file, inputs, params)
        return {p.name: Source(p.type, node=flat, port=p.name) for p in agent.outputs}

    def _params(self, spec: GraphSpec, node: NodeSpec, agent: Agent, flat: str,
                env: Mapping[str, Source]) -> dict[str, Any]:
        given: dict[str, Any] = {}
        for name, value in node.params.items():
            line = node.lines.get(f"params.{name}", node.line)
            param = agent.param(name)
            if param is None:
                hint = did_you_mean(name, [p.name for p in agent.params]) if self.detailed() else ""
                self.fail(spec.file, f"agent '{agent.type}' has no parameter '{name}'{hint} (parameters: "
                                     f"{[p.name for p in agent.params]})", flat, f"params.{name}", line)
                continue
            if isinstance(value, Link):
                src = self._resolve_link(spec, value, env, {}, flat, f"params.{name}", line) if value.input is not None else None
                if value.node is not None:
                    self.fail(spec.file, "a parameter must be known before the run: use a literal or {input: NAME}, "
                                         "not a node output", flat, f"params.{name}", line)
                    continue
                if src is None:
                    continue
                if isinstance(src, list):
                    self.fail(spec.file, f"parameter bound to {value}, a list; parameters are single values", flat,
                              f"params.{name}", line)
                    continue
                if not src.is_literal:
                    self.fail(spec.file, f"parameter bound to {value}, which comes from node '{src.node}'; "
                                         "parameters must be known before the run", flat, f"params.{name}", line)
                    continue
                value = src.value
            if value is UNKNOWN or value is UNSET:
                continue
            value, problem = param_value(agent, name, value)
            if problem:
                self.fail(spec.file, problem, flat, f"params.{name}", line)
                continue
            given[name] = value
        return agent.resolve_params(given)

    def _template_node(self, spec: GraphSpec, node: NodeSpec, flat: str, env: Mapping[str, Source],
                       produced: Mapping[str, Mapping[str, Source] | None],
                       stack: tuple[str, ...]) -> dict[str, Source]:
        if self.too_many:
            return {}
        try:
            path = self.loader.find(node.graph or "", spec.file)
        except InputError as e:
            self.fail(spec.file, str(e), flat, "graph", node.line)
            return {}
        if path is None:
            self.fail(spec.file, f"unknown template '{node.graph}'; known templates: {', '.join(self.loader.known())}",
                      flat, "graph", node.line)
            return {}
        if str(path) in stack:
            chain = " -> ".join([Path(s).name for s in stack] + [path.name])
            self.fail(spec.file, f"template recursion: {chain}", flat, "graph", node.line)
            return {}
        if len(stack) > MAX_TEMPLATE_DEPTH:
            chain = " -> ".join([Path(s).name for s in stack] + [path.name])
            self.fail(spec.file, f"templates nest more than {MAX_TEMPLATE_DEPTH} levels deep: {chain}", flat, "graph",
                      node.line)
            return {}
        try:
            template = self.loader.load(path)
        except GraphError as e:
            self.problems.extend(e.problems)
            return {}
        if node.params:
            self.fail(spec.file, "a `graph:` node takes its values through `in:` (the template's inputs), not "
                                 "`params:`", flat, "params", node.line)
        child_env: dict[str, Source] = {}
        for name, value in node.inputs.items():
            line = node.lines.get(f"in.{name}", node.line)
            if name not in template.inputs:
                known = f"; its inputs are {sorted(template.inputs)}" if self.detailed() else ""
                self.fail(spec.file, f"template '{node.graph}' has no input '{name}'{known}", flat, f"in.{name}", line)
                continue
            src = self._bind(spec, value, template.inputs[name].type, env, produced, flat, f"in.{name}", line)
            if src is not None:
                child_env[name] = src  # type: ignore[assignment]
        for name, inp in template.inputs.items():
            if name in child_env or name in node.inputs or (name == "step" and _counts_steps(node, template)):
                continue
            if name in spec.inputs:  # the caller's input of the same name, unless bound otherwise
                outer = spec.inputs[name]
                if not inp.type.accepts(outer.type):
                    self.fail(spec.file, f"template '{node.graph}' input '{name}' takes {inp.type.value}, so it "
                                         f"cannot default to this graph's input '{name}' ({outer.type.value}); "
                                         "bind it under `in:`", flat, f"in.{name}", node.line)
                elif name in env:
                    child_env[name] = env[name]
            elif inp.default is MISSING:
                self.fail(spec.file, f"missing required input '{name}' of template '{node.graph}': bind it under "
                                     f"`in:` or declare a graph input '{name}' here", flat, f"in.{name}", node.line)
            else:
                default = input_default(inp, template.file)
                if isinstance(default, str):
                    self.fail(template.file, f"default of input '{name}': {default}", field_=f"inputs.{name}",
                              line=inp.line)
                else:
                    child_env[name] = default  # type: ignore[assignment]
        stack = (*stack, str(path))
        if node.repeat is None:
            return self.expand(template, child_env, f"{flat}/", stack)
        return self._repeat(spec, node, flat, template, child_env, env, stack)

    def _repeat(self, spec: GraphSpec, node: NodeSpec, flat: str, template: GraphSpec, child_env: dict[str, Source],
                env: Mapping[str, Source], stack: tuple[str, ...]) -> dict[str, Source]:
        assert node.repeat is not None
        times = node.repeat.times
        line = node.lines.get("repeat", node.line)
        if isinstance(times, Link):
            src = self._resolve_link(spec, times, env, {}, flat, "repeat.times", line) if times.input is not None else None
            times = src.value if isinstance(src, Source) and src.is_literal else None
        if times is UNKNOWN:
            times = 1
        if isinstance(times, float) and times.is_integer():
            times = int(times)
        if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= MAX_REPEAT:
            self.fail(spec.file, f"`repeat.times` must be a whole number from 1 to {MAX_REPEAT} known before the "
                                 f"run, got {shown(times)}", flat, "repeat.times", line)
            return {}
        for inp, out in node.repeat.feed.items():
            if inp not in template.inputs or out not in template.outputs:
                self.fail(spec.file, f"`repeat.feed` maps {inp} <- {out}, but the template needs input '{inp}' and "
                                     f"output '{out}'", flat, "repeat.feed", line)
                return {}
        outputs: dict[str, Source] = {}
        for step in range(times):
            step_env = dict(child_env)
            if _counts_steps(node, template):
                step_env["step"] = Source(PortType.NUMBER, value=step)
            for inp, out in node.repeat.feed.items():
                if step and out in outputs:
                    step_env[inp] = outputs[out]
            outputs = self.expand(template, step_env, f"{flat}/{step}/", stack)
            if not outputs or self.too_many:
                break
        return outputs


def _counts_steps(node: NodeSpec, template: GraphSpec) -> bool:
    """Whether a repeat gives the template's number input `step` its step index (0, 1, ...): only a `repeat`
    node does, and only where `in:` does not bind `step` itself; anywhere else `step` is an input like any other."""
    step = template.inputs.get("step")
    return node.repeat is not None and step is not None and step.type == PortType.NUMBER and "step" not in node.inputs


@dataclass(frozen=True)
class _Same:
    """A spec compared by identity: specs hold dicts (unhashable), and a spec read once is never changed."""

    spec: GraphSpec

    def __hash__(self) -> int:
        return id(self.spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.spec is self.spec


@dataclass(frozen=True)
class _Cycle:
    path: str
    node: str


@lru_cache(maxsize=256)
def _file_order(same: _Same) -> tuple[str, ...] | _Cycle:
    """A graph file's nodes in dependency order (ties in file order), or its first cycle.

    It depends on the file alone, so a sweep's jobs, which share their spec and differ in input
    values, sort it once; the cache keeps the spec alive while it holds its order.
    """
    spec = same.spec
    needs = {node.id: list(dict.fromkeys(link.node for link in _links([*node.inputs.values(), *node.params.values()])
                                         if link.node is not None and link.node in spec.nodes))
             for node in spec.nodes.values()}
    position = {node_id: i for i, node_id in enumerate(spec.nodes)}
    sorter = graphlib.TopologicalSorter(needs)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return _first_cycle(needs)
    order: list[str] = []
    ready: list[tuple[int, str]] = []
    while sorter.is_active():
        for node_id in sorter.get_ready():
            heapq.heappush(ready, (position[node_id], node_id))
        node_id = heapq.heappop(ready)[1]  # of the nodes ready, the first in the file
        order.append(node_id)
        sorter.done(node_id)
    return tuple(order)


def _first_cycle(needs: dict[str, list[str]]) -> _Cycle:
    """The cycle networkx finds first, its edges added in file order (the one every report of this file names)."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(needs)
    g.add_edges_from((dep, node_id) for node_id, deps in needs.items() for dep in deps)
    cycle = nx.find_cycle(g)
    return _Cycle(" -> ".join([u for u, _ in cycle] + [cycle[0][0]]), cycle[0][0])


def _links(values: list[Any]) -> list[Link]:
    found: list[Link] = []
    for v in values:
        if isinstance(v, Link):
            found.append(v)
        elif isinstance(v, list):
            found.extend(_links(v))
    return found



def build_plan(spec: GraphSpec, values: Mapping[str, Any], registry: Registry, loader: TemplateLoader,
               requested: list[str] | None = None, standalone: bool = False) -> Plan:
    """Expand `spec` with graph input `values` into a flat, pruned, checked Plan."""
    ex = _Expander(registry, loader)
    env, used, problems = graph_inputs(spec, values, standalone)
    ex.problems.extend(problems)
    outputs = ex.expand(spec, env, "", (os.path.realpath(spec.file),))
    wanted = requested if requested is not None else list(spec.outputs)
    ex.problems.extend(output_problems(spec, outputs, wanted))
    if ex.problems:
        raise GraphError(ex.problems)
    keep = {src.node for src in (outputs[name] for name in wanted) if src.node}
    for node in reversed(ex.nodes.values()):  # expansion adds a node after its inputs: one pass, last to first
        if node.id in keep:
            keep |= node.upstream()
    refused = [p for p in ex.value_problems if p.node in keep]
    if refused:
        raise GraphError(refused)
    return Plan(spec.file, {n: ex.nodes[n] for n in ex.nodes if n in keep},
                {n: outputs[n] for n in wanted}, inputs={k: v for k, v in used.items() if v is not UNKNOWN})
