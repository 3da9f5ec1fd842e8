"""What a user sees while a run goes: one plain line per node event, and no bars in logs."""
from __future__ import annotations

import io

from mora.engine.progress import Reporter
from mora.engine.runner import Context
from mora.engine.scheduler import NodeRecord


def record(node_id: str, status: str, **fields) -> NodeRecord:
    return NodeRecord(node_id, "text_to_image", "g.yaml", {}, None, None, status=status, **fields)


def test_events_are_plain_lines_when_output_is_not_a_terminal():
    out = io.StringIO()
    reporter = Reporter(3, stream=out)
    reporter.event(record("a", "running"))
    reporter.event(record("a", "done", seconds=1.5, device="cuda:0"))
    reporter.event(record("b", "cached"))
    reporter.event(record("c", "failed", error="ValueError: bad"))
    reporter.close()
    assert out.getvalue().splitlines() == [
        "[  0/3] … running a (text_to_image)",
        "[  1/3] ✓ done    a (text_to_image) 1.50s on cuda:0",
        "[  2/3] = cached  b (text_to_image)",
        "[  3/3] ✗ failed  c (text_to_image) ValueError: bad",
    ]
    assert "\r" not in out.getvalue()


def test_quiet_prints_nothing():
    out = io.StringIO()
    reporter = Reporter(1, stream=out, quiet=True)
    reporter.event(record("a", "done", seconds=0.1))
    reporter.close()
    assert out.getvalue() == "" and reporter.finished == 1


def test_agent_step_bars_stay_out_of_logs(capsys):
    advance = Context("n", "cpu", 0, None).progress(3, "denoising")
    for _ in range(3):
        advance(1)
    assert capsys.readouterr().err == ""
