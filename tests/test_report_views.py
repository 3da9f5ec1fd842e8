"""Run views read from a run directory (mora.engine.frontends.report.views): kept per manifest file."""
from __future__ import annotations

import json

from mora.engine.frontends.report import views
from mora.engine.rundir import write_atomic


def manifest(status: str) -> str:
    return json.dumps({"ok": status == "done", "graph": "g.yaml", "outputs": {"caption": "caption.txt"},
                       "nodes": {"a": {"agent": "text_template", "status": status, "cached": True}}})


def test_a_run_is_read_once_until_its_manifest_is_replaced(tmp_path, monkeypatch):
    reads = []
    load = views.load_manifest
    monkeypatch.setattr(views, "load_manifest", lambda d: reads.append(d) or load(d))
    (tmp_path / "caption.txt").write_text("A fox")
    write_atomic(tmp_path / "manifest.json", manifest("done"))
    first = views.read_run(tmp_path)
    assert views.read_run(tmp_path) is first and len(reads) == 1  # the index reads what the report just read
    assert first.outputs[0].value == "A fox" and first.nodes[0].status == "cached"
    write_atomic(tmp_path / "manifest.json", manifest("failed"))  # a rebuilt or rerun manifest: read anew
    again = views.read_run(tmp_path)
    assert len(reads) == 2 and again.nodes[0].status == "failed" and again.ok is False
