"""The agent registry: the only way a graph's `agent:` name becomes code.

Every agent, Mora's own included, registers through the `mora.agents` entry-point group (in
the installed package's metadata), each entry named after its agent's type and pointing at an
`Agent` or a module with `AGENT`: the engine never imports the agents' package by name. An
entry's module is imported only when its type is first asked for, so a run imports the agents
its graph names and no others (listing every agent imports them all). A duplicate type name is
an error, never a silent overwrite; so is an entry whose agent has another type than its name.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType

from mora.engine.errors import MoraError
from mora.engine.graph.agent import Agent

ENTRY_POINT_GROUP = "mora.agents"


class Registry:
    """Agent types by name: agents given, and entry points loaded on first use."""

    def __init__(self, agents: Iterable[Agent] = (), entry_points: Iterable[EntryPoint] = ()):
        self._agents: dict[str, Agent] = {}
        self._entry_points: dict[str, EntryPoint] = {}
        for ep in entry_points:
            self._claim(ep.name)
            self._entry_points[ep.name] = ep
        for agent in agents:
            self.register(agent)

    def _claim(self, name: str) -> None:
        if name in self:
            raise MoraError(f"agent type '{name}' is registered twice")

    def register(self, agent: Agent) -> None:
        if not isinstance(agent, Agent):
            raise MoraError(f"cannot register {agent!r}: not a mora.engine.graph.agent.Agent")
        self._claim(agent.type)
        self._agents[agent.type] = agent

    def get(self, name: str) -> Agent | None:
        agent = self._agents.get(name)
        ep = self._entry_points.get(name)
        if agent is None and ep is not None:
            agent = _agent_of(ep.load(), f"entry point '{ep.name}' ({ep.value})")
            if agent.type != name:
                raise MoraError(f"entry point '{ep.name}' ({ep.value}) defines agent type '{agent.type}'; "
                                "a `mora.agents` entry point is named after its agent's type")
            self._agents[name] = agent
        return agent

    def names(self) -> list[str]:
        return sorted(self._agents.keys() | self._entry_points.keys())

    def closest(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)

    def __contains__(self, name: object) -> bool:
        return name in self._agents or name in self._entry_points

    def __iter__(self) -> Iterator[Agent]:
        return (agent for agent in map(self.get, self.names()) if agent is not None)


def _agent_of(obj: object, origin: str) -> Agent:
    if isinstance(obj, ModuleType):
        obj = getattr(obj, "AGENT", None)
    if not isinstance(obj, Agent):
        raise MoraError(f"{origin} does not define an Agent (module-level AGENT)")
    return obj


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The agents of every `mora.agents` entry point, each imported when first asked for."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Registry(entry_points=entry_points(group=ENTRY_POINT_GROUP))
    return _DEFAULT
