"""The agent registry: the only way a graph's `agent:` name becomes code.

Every agent, Mora's own included, registers through the `mora.agents` entry-point group (in
the installed package's metadata), each entry pointing at an `Agent` or a module with `AGENT`:
the engine never imports the agents' package by name. A duplicate type name is an error,
never a silent overwrite. Agent modules import without torch, so building the registry is cheap.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib.metadata import entry_points
from types import ModuleType

from mora.engine.errors import MoraError
from mora.engine.graph.agent import Agent

ENTRY_POINT_GROUP = "mora.agents"


class Registry:
    """Agent types by name."""

    def __init__(self, agents: Iterable[Agent] = ()):
        self._agents: dict[str, Agent] = {}
        for agent in agents:
            self.register(agent)

    def register(self, agent: Agent) -> None:
        if not isinstance(agent, Agent):
            raise MoraError(f"cannot register {agent!r}: not a mora.engine.graph.agent.Agent")
        if agent.type in self._agents:
            raise MoraError(f"agent type '{agent.type}' is registered twice")
        self._agents[agent.type] = agent

    def get(self, name: str) -> Agent | None:
        return self._agents.get(name)

    def names(self) -> list[str]:
        return sorted(self._agents)

    def closest(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def __iter__(self):
        return iter(self._agents[n] for n in self.names())


def _agent_of(obj: object, origin: str) -> Agent:
    if isinstance(obj, ModuleType):
        obj = getattr(obj, "AGENT", None)
    if not isinstance(obj, Agent):
        raise MoraError(f"{origin} does not define an Agent (module-level AGENT)")
    return obj


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The agents of every `mora.agents` entry point, loaded once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        registry = Registry()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            registry.register(_agent_of(ep.load(), f"entry point '{ep.name}' ({ep.value})"))
        _DEFAULT = registry
    return _DEFAULT
