"""What a user sees while a run goes: one plain line per node event, and no bars in logs."""
from __future__ import annotations

import logging
import os
import warnings

from mora.engine.execution.progress import QUIET_LIBRARIES, ConsoleFormatter, Reporter, quiet_libraries
from mora.engine.execution.runner import Context
from mora.engine.execution.scheduler import NodeRecord


def record(node_id: str, status: str, **fields) -> NodeRecord:
    return NodeRecord(node_id, "text_to_image", "g.yaml", {}, None, None, status=status, **fields)


def test_events_are_log_records_of_plain_lines(caplog):
    caplog.set_level(logging.DEBUG, logger="mora")
    reporter = Reporter(3)
    reporter.event(record("a", "running"))
    reporter.event(record("a", "done", seconds=1.5, device="cuda:0"))
    reporter.event(record("b", "cached"))
    reporter.event(record("c", "failed", error="ValueError: bad"))
    reporter.close()
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("mora.progress", logging.INFO, "[  0/3] … running a (text_to_image)"),
        ("mora.progress", logging.INFO, "[  1/3] ✓ done    a (text_to_image) 1.50s on cuda:0"),
        ("mora.progress", logging.INFO, "[  2/3] = cached  b (text_to_image)"),
        ("mora.progress", logging.INFO, "[  3/3] ✗ failed  c (text_to_image) ValueError: bad"),
    ]
    assert reporter.bar is None  # stderr is not a terminal under pytest: no bar, no carriage returns


def test_quiet_demotes_events_to_debug(caplog):
    caplog.set_level(logging.INFO, logger="mora")
    reporter = Reporter(1, quiet=True)
    reporter.event(record("a", "done", seconds=0.1))
    reporter.close()
    assert caplog.records == [] and reporter.finished == 1
    caplog.set_level(logging.DEBUG, logger="mora")
    Reporter(1, quiet=True).event(record("b", "cached"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.DEBUG, "[  1/1] = cached  b (text_to_image)")]


def test_console_lines_are_plain_and_warnings_stand_out():
    formatter = ConsoleFormatter("%(message)s")

    def line(level: int) -> str:
        return formatter.format(logging.LogRecord("mora", level, __file__, 1, "cache: gone", None, None))

    assert (line(logging.INFO), line(logging.WARNING), line(logging.ERROR)) == (
        "cache: gone", "mora: warning: cache: gone", "mora: error: cache: gone")


def test_libraries_are_quieted_through_their_own_switches_unless_verbose(monkeypatch):
    for name in QUIET_LIBRARIES:  # set, then unset: monkeypatch restores each variable's state after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # a user's own choice wins
    monkeypatch.setattr(warnings, "filters", list(warnings.filters))
    quiet_libraries(loud=True)
    assert "TQDM_DISABLE" not in os.environ
    quiet_libraries(loud=False)
    assert os.environ["TQDM_DISABLE"] == "1" and os.environ["DIFFUSERS_VERBOSITY"] == "error"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("`torch_dtype` is deprecated", FutureWarning)
    assert caught == []


def test_agent_step_bars_stay_out_of_logs(capsys):
    advance = Context("n", "cpu", 0, None).progress(3, "denoising")
    for _ in range(3):
        advance(1)
    assert capsys.readouterr().err == ""
