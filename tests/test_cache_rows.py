"""Index rows and objects that are not what the cache wrote: the cache reads and deletes only its own files, blames a
bad row and not the object it names, and tells an unreadable object from a corrupt one."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mora.engine.cache import maintenance
from mora.engine.cache.artifacts import Blob
from mora.engine.cache.store import Store
from mora.engine.ports import PortType

KEY = "k" * 64
BLOB = Blob(PortType.TEXT, "txt", b"hello, rows")


def stored(root: Path, key: str = KEY, blob: Blob = BLOB, **extra: object) -> Store:
    store = Store(root)
    ref = store.put(blob)
    store.record(key, {"node": "n", "agent": "t_text", "outputs": {"text": ref.to_json()}, **extra})
    return store


def edit_row(root: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(root / "index" / "cache.db") as db:
        db.execute(sql, params)


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute", "relative"])
@pytest.mark.parametrize("then", ["lookup_and_record", "verify", "gc"])
def test_a_row_naming_a_file_outside_the_index_never_has_it_read_or_deleted(tmp_path, absolute, then):
    victim = tmp_path / "home" / "thesis" / "chapter1.tex"
    victim.parent.mkdir(parents=True)
    victim.write_text("two years of work\n")
    root = tmp_path / "cache"
    stored(root).close()
    name = str(victim) if absolute else "../../home/thesis/chapter1.tex"
    edit_row(root, "UPDATE Cache SET mode = 2, value = NULL, filename = ? WHERE key = ?", name, KEY)
    store = Store(root)
    if then == "lookup_and_record":
        assert store.lookup(KEY) is None
        assert any("not one the index wrote" in f for f in store.findings.corrupt)
        store.record(KEY, {"node": "n", "agent": "t_text", "outputs": {}})  # a run recording over the bad row
    elif then == "verify":
        assert len(maintenance.verify(store).bad_entries) == 1
    else:
        assert maintenance.gc(store, max_age=0.0, grace=0.0)["removed_entries"] == 1
    assert victim.read_text() == "two years of work\n"
    if then != "lookup_and_record":
        assert KEY not in store.index


def test_a_value_the_index_keeps_in_a_file_of_its_own_still_reads_and_goes(tmp_path):
    big = "x" * 100_000  # over diskcache's 32 KB: the JSON value lies in a file of the index's
    store = stored(tmp_path / "c", note=big)
    files = list((tmp_path / "c" / "index").rglob("*.val"))
    assert len(files) == 1 and store.lookup(KEY)["note"] == big
    store.record(KEY, {"node": "n", "agent": "t_text", "outputs": {}})
    assert not files[0].exists()
