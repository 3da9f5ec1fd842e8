"""What a user sees while a run goes: node events as log records, and quiet libraries.

Every node event (running, cached, done, failed, skipped) is one record of the `mora.progress`
logger, at INFO (DEBUG with `quiet=true`), so Hydra's logging config decides where it goes: the
console, the job's log file (`mora.log`), or nowhere with `hydra/job_logging=disabled`; and
`hydra.verbose` shows what `quiet` hid. On a terminal a tqdm bar counts finished nodes, and
console log lines go through tqdm's logging redirect so they do not tear it.

Library chatter (loading bars, deprecation warnings, tokenizer and advisory warnings, HTTP request
lines) is quiet by default and shown when the `mora` logger is verbose (`hydra.verbose=true` or
`hydra.verbose=mora`).
The libraries read their own settings from the environment when first imported, in whichever
process loads a model (this one, a pool worker, a Ray actor), so `quiet_libraries` sets those
settings (`TQDM_DISABLE`, `TRANSFORMERS_VERBOSITY`, ...) unless the user already set them, before
any model library is imported or any worker started. Mora's own bars pass `disable` explicitly
and are not affected.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Any

log = logging.getLogger("mora.progress")

SYMBOLS = {"running": "…", "cached": "=", "done": "✓", "failed": "✗", "skipped": "-"}

QUIET_LIBRARIES = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
}
"""The libraries' own switches for their chatter, as environment variables (read by worker processes too)."""

QUIET_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2")
"""HTTP clients' loggers (huggingface_hub's), whose INFO records name every request a hub check sends: WARNING."""


def verbose() -> bool:
    """Whether the user asked for Mora's debug output (`hydra.verbose=true` or `hydra.verbose=mora`)."""
    return logging.getLogger("mora").isEnabledFor(logging.DEBUG)


def quiet_libraries(loud: bool) -> None:
    """Silence library chatter in this process and the workers it starts, unless `loud`.

    The `torch` logger starts at WARNING, as torch sets it at the end of its own import: an import that
    Ctrl-C cut short leaves it unset, and torch's exit hooks then log their INFO records (FakeTensor cache
    stats) through the root logger's console handler after Mora's last line.
    """
    torch_log = logging.getLogger("torch")
    if torch_log.level == logging.NOTSET:
        torch_log.setLevel(logging.WARNING)
    if loud:
        return
    for name in QUIET_LOGGERS:
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)
    if os.environ["PYTHONWARNINGS"] == QUIET_LIBRARIES["PYTHONWARNINGS"]:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


class ConsoleFormatter(logging.Formatter):
    """Info lines as they are; warnings and errors prefixed `mora: LEVEL:` so they stand out."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno <= logging.INFO else f"mora: {record.levelname.lower()}: {message}"


class Reporter:
    """Logs node events (running, cached, done, failed, skipped) and keeps the terminal bar."""

    def __init__(self, total: int, quiet: bool = False):
        self.total = total
        self.finished = 0
        self.level = logging.DEBUG if quiet else logging.INFO
        self._exit = contextlib.ExitStack()
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm.auto import tqdm  # only for a terminal: tqdm's import is most of a short run's progress cost
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = tqdm(total=total, unit="node", leave=False, disable=False)
            self._exit.enter_context(logging_redirect_tqdm())

    def event(self, rec: Any) -> None:
        if rec.status != "running":
            self.finished += 1
            if self.bar is not None:
                self.bar.update(1)
        detail = ""
        if rec.status == "done":
            detail = f" {rec.seconds:.2f}s" + (f" on {rec.device}" if rec.device else "")
        elif rec.status == "failed":
            detail = f" {rec.error}"
        log.log(self.level, "[%3d/%d] %s %-7s %s (%s)%s", self.finished, self.total,
                SYMBOLS.get(rec.status, "?"), rec.status, rec.id, rec.agent, detail)

    def close(self) -> None:
        self._exit.close()
        if self.bar is not None:
            self.bar.close()
