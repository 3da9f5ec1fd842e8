"""Mora's error types: every user-facing failure is a MoraError that names where it happened.

A `Problem` is one finding (file, node, field, message); validation collects all of them before
raising a single `GraphError`, so the user sees every mistake at once.
"""
from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class MoraError(Exception):
    """Base class for errors Mora reports to the user (no traceback, non-zero exit)."""

    exit_status = 2
    """2: invalid input or configuration; subclasses that mean "the work failed" use 1."""


@dataclass(frozen=True)
class Problem:
    """One validation finding, located as precisely as the input allows."""

    file: str
    message: str
    node: str | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        if self.node:
            where += f": node '{self.node}'"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class GraphError(MoraError):
    """A graph (or its inputs) failed validation; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        if len(self.problems) == 1:  # one line, as every other error is
            super().__init__(str(self.problems[0]))
            return
        lines = [f"{len(self.problems)} problem(s) found:"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class InputError(MoraError):
    """A file or folder the user names (a graph input, a graph file, a cache folder) is missing, empty, unreadable, or
    its path cannot be used (a `~USER` of no such user)."""


class ModelNotFoundError(MoraError):
    """A model id or path could not be found offline."""


class NodesFailed(MoraError):
    """A run finished with failed nodes (each already reported); the other branches completed."""

    exit_status = 1


class CacheError(MoraError):
    """The cache directory is unusable (read-only, disk full, corrupt beyond repair)."""


MAX_GUESS_CANDIDATES = 500
"""More names than this are not searched for the closest: a search compares the name with each, at up to 40 us apiece."""


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict, _SHOWN.maxset = 3, 6, 6, 6, 6
_SHOWN.maxstring = _SHOWN.maxother = 80


def shown(value: Any) -> str:
    """`repr(value)` cut short: a message shows a value, never megabytes of one (YAML aliases in a 200-character
    command-line list once made a 58 MB message)."""
    return _SHOWN.repr(value)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`; did you mean X?` naming the candidates closest to a misspelled name, or '' when none is close (or there are
    more than `MAX_GUESS_CANDIDATES`)."""
    names = list(candidates)
    if len(names) > MAX_GUESS_CANDIDATES:
        return ""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""
