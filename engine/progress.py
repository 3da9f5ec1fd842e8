"""Terminal progress: one line per node event, and a bar over the nodes when stderr is a terminal.

Lines go through tqdm.write so they do not tear the bar; when output is not a terminal (CI,
logs) there is no bar and every event is a plain, greppable line.
"""
from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

SYMBOLS = {"running": "…", "cached": "=", "done": "✓", "failed": "✗", "skipped": "-"}


class Reporter:
    """Reports node events (running, cached, done, failed, skipped)."""

    def __init__(self, total: int, stream: Any = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.finished = 0
        self.total = total
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, unit="node", file=self.stream, leave=False) if tty and not quiet else None

    def event(self, rec: Any) -> None:
        if rec.status != "running":
            self.finished += 1
            if self.bar is not None:
                self.bar.update(1)
        if self.quiet:
            return
        detail = ""
        if rec.status == "done":
            detail = f" {rec.seconds:.2f}s" + (f" on {rec.device}" if rec.device else "")
        elif rec.status == "failed":
            detail = f" {rec.error}"
        line = f"[{self.finished:>3}/{self.total}] {SYMBOLS.get(rec.status, '?')} {rec.status:<7} {rec.id} ({rec.agent}){detail}"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
