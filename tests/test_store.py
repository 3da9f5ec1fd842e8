"""The content-addressed store: atomic writes, verified lookups, a JSON-only index, shared use by processes."""
from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import diskcache
import pytest

from mora.engine.cache import maintenance
from mora.engine.cache.artifacts import Blob, CorruptArtifact
from mora.engine.cache.index import CorruptRow, open_index
from mora.engine.cache.key_leases import PREFIX, KeyLeases
from mora.engine.cache.media import read_text
from mora.engine.cache.store import Store, default_cache_dir
from mora.engine.errors import CacheError
from mora.engine.ports import PortType

BLOB = Blob(PortType.TEXT, "txt", b"hello, store")


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def record_blob(store: Store, key: str = "k" * 64, blob: Blob = BLOB) -> Path:
    ref = store.put(blob)
    store.record(key, {"node": "n", "agent": "t_text", "outputs": {"text": ref.to_json()}})
    return ref.path


def test_default_cache_dir_follows_the_environment(cache_dir):
    assert default_cache_dir() == cache_dir.resolve()


def test_put_stores_by_digest_and_is_idempotent(tmp_path):
    store = Store(tmp_path / "c")
    ref = store.put(BLOB)
    assert ref.path == tmp_path / "c" / "objects" / ref.digest[:2] / f"{ref.digest}.txt"
    assert ref.read_bytes() == BLOB.data and ref.size == len(BLOB.data)
    mtime = ref.path.stat().st_mtime_ns
    assert store.put(BLOB) == ref
    assert ref.path.stat().st_mtime_ns == mtime
    assert files_under(tmp_path / "c" / "objects") == [ref.path]
    assert store.put(Blob(PortType.TEXT, "json", BLOB.data)).digest != ref.digest


def test_cache_directories_are_owner_only(tmp_path):
    store = Store(tmp_path / "fresh" / "cache")
    ref = store.put(BLOB)
    for path in (store.root, store.root / "objects", store.root / "leases", store.root / "tmp", store.root / "index",
                 ref.path.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_cache_dir_is_a_cache_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(CacheError, match="not writable"):
        Store(ro)


def test_an_object_appears_only_when_complete(tmp_path, monkeypatch):
    store = Store(tmp_path / "c")
    seen_while_writing: list[list[Path]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        seen_while_writing.append(files_under(store.root / "objects"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    ref = store.put(BLOB)
    assert seen_while_writing == [[]]
    assert files_under(store.root / "objects") == [ref.path]
    assert files_under(store.root / "tmp") == []


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC, errno.EROFS])
def test_failed_write_leaves_no_object_and_no_temp_file(tmp_path, monkeypatch, err):
    store = Store(tmp_path / "c")

    def fsync(fd: int) -> None:
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CacheError) as info:  # a clear message, never a traceback
        store.put(BLOB)
    if err == errno.ENOSPC:
        assert "disk full" in str(info.value)
    assert files_under(store.root / "objects") == []
    assert files_under(store.root / "tmp") == []
    monkeypatch.undo()
    assert store.put(BLOB).read_bytes() == BLOB.data


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    store = Store(tmp_path / "c")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store.put(BLOB)
    assert files_under(store.root) == files_under(store.root / "index") + [store.root / "leases" / "maintenance.lock"]


def test_lookup_round_trip(tmp_path):
    store = Store(tmp_path / "c")
    assert store.lookup("k" * 64) is None
    record_blob(store)
    entry = store.lookup("k" * 64)
    assert entry is not None and entry["node"] == "n" and entry["v"] == 2
    assert read_text(store.outputs(entry)["text"]) == "hello, store"
    assert not store.findings


def test_corrupt_artifact_of_the_same_size_is_refused_when_read(tmp_path):
    store = Store(tmp_path / "c")
    path = record_blob(store)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    entry = store.lookup("k" * 64)  # the lookup looks at sizes only; the bytes are checked as they are read
    assert entry is not None
    with pytest.raises(CorruptArtifact, match="content does not match its digest"):
        read_text(store.outputs(entry)["text"])
    assert store.check(store.outputs(entry)["text"], full=True) == "content does not match its digest"


def test_truncated_artifact_is_a_miss(tmp_path):
    store = Store(tmp_path / "c")
    path = record_blob(store)
    path.write_bytes(path.read_bytes()[:3])
    assert store.lookup("k" * 64) is None
    assert store.findings.corrupt == [f"{path.name} (node n): 3 bytes, not the {len(BLOB.data)} recorded"]
    assert not path.exists() and len(list((store.root / "quarantine").iterdir())) == 1


def test_missing_artifact_is_a_miss_and_recorded(tmp_path):
    store = Store(tmp_path / "c")
    path = record_blob(store)
    path.unlink()
    assert store.lookup("k" * 64) is None
    assert store.findings.missing == [f"{path.name} (node n): missing"]
    assert bool(store.findings)


def test_recomputing_repairs_a_corrupt_object(tmp_path):
    store = Store(tmp_path / "c")
    path = record_blob(store)
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    ref = store.put(BLOB)
    assert store.check(ref, full=True) is None


@pytest.mark.parametrize("entry", [
    {"node": "n"},
    {"node": "n", "outputs": {"text": {"digest": "../../etc/passwd", "kind": "text", "fmt": "txt", "size": 1}}},
    {"node": "n", "outputs": {"text": {"digest": "a" * 64, "kind": "text", "fmt": "exe", "size": 1}}},
    {"node": "n", "outputs": {"text": {"digest": "a" * 64, "kind": "nope", "fmt": "txt", "size": 1}}},
    {"node": "n", "outputs": {"text": "a" * 64}},
    ["not", "a", "mapping"],
    "text",
    42,
])
def test_malformed_index_entries_are_misses(tmp_path, entry):
    store = Store(tmp_path / "c")
    store.index.set("k" * 64, entry)
    assert store.lookup("k" * 64) is None
    assert len(store.findings.corrupt) == 1


@pytest.mark.parametrize("outputs", [["x"], "x"])
def test_entry_whose_outputs_is_not_a_mapping_is_a_miss(tmp_path, outputs):
    store = Store(tmp_path / "c")
    store.record("k" * 64, {"node": "n", "outputs": outputs})
    assert store.lookup("k" * 64) is None


class Exploit:
    """Unpickling this creates the marker file: proof that a pickled row was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_index_rows_are_refused_not_unpickled(tmp_path):
    store = Store(tmp_path / "c")
    record_blob(store, "good" * 16)
    marker = tmp_path / "pwned"
    intruder = diskcache.Cache(str(store.root / "index"))  # diskcache's default Disk pickles values
    intruder.set("k" * 64, {"node": "n", "outputs": Exploit(marker)})
    intruder.set("t" * 64, "a str value is stored in diskcache's text mode")
    intruder.close()
    assert not marker.exists()
    for key in ("k" * 64, "t" * 64):
        assert store.lookup(key) is None
    with pytest.raises(CorruptRow, match="refusing to read it"):
        store.index.get("k" * 64)
    with pytest.raises(CorruptRow, match="not JSON"):
        store.index.get("t" * 64)
    fresh = Store(store.root)
    assert fresh.lookup("k" * 64) is None
    assert not marker.exists()
    assert len(store.findings.corrupt) == 2 and "refusing" in store.findings.corrupt[0]
    assert fresh.lookup("good" * 16) is not None


def test_unreadable_index_database_is_moved_aside(tmp_path, caplog):
    store = Store(tmp_path / "c")
    record_blob(store)
    store.close()
    (store.root / "index" / "cache.db").write_bytes(b"this is not SQLite " * 100)
    with caplog.at_level(logging.WARNING, logger="mora.cache"):
        store = Store(tmp_path / "c")
    assert store.lookup("k" * 64) is None
    aside = [p.name for p in store.root.iterdir() if p.name.startswith("index.corrupt-")]
    assert len(aside) == 1
    assert (store.root / aside[0] / "cache.db").read_bytes().startswith(b"this is not SQLite")
    assert "unreadable" in caplog.text and aside[0] in caplog.text
    record_blob(store)
    assert store.lookup("k" * 64) is not None


def test_a_run_on_a_cache_with_an_unreadable_index_recomputes(tmp_path, cache_dir, write_graph, run_graph, caplog):
    Store(cache_dir).close()
    (cache_dir / "index" / "cache.db").write_bytes(b"\x00garbage" * 512)
    path = write_graph({"nodes": {"a": {"agent": "t_source", "params": {"value": 2}}},
                        "outputs": {"out": {"from": "a.value"}}})
    outcome = run_graph(path)
    assert outcome.manifest["nodes"]["a"]["status"] == "done"
    assert run_graph(path).manifest["nodes"]["a"]["status"] == "cached"
    assert "moved it to" in caplog.text


def test_index_with_corrupt_pages_gives_misses_not_exceptions(tmp_path):
    store = Store(tmp_path / "c")
    for i in range(1500):
        store.record(f"{i:064d}", {"node": "x" * 200, "outputs": {}})
    store.close()
    db = store.root / "index" / "cache.db"
    data = bytearray(db.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8192] = b"\x55" * 8192
    db.write_bytes(bytes(data))
    store = Store(tmp_path / "c")
    results = [store.lookup(f"{i:064d}") for i in range(1500)]
    assert all(r is None or r["node"] == "x" * 200 for r in results)
    assert store.findings.corrupt


def test_index_values_are_json(tmp_path):
    store = Store(tmp_path / "c")
    record_blob(store)
    store.close()
    import sqlite3

    rows = sqlite3.connect(store.root / "index" / "cache.db").execute("SELECT key, mode, value FROM Cache").fetchall()
    assert len(rows) == 1
    key, mode, value = rows[0]
    assert key == "k" * 64 and mode == 1  # diskcache MODE_RAW: bytes we wrote, never pickle
    assert json.loads(bytes(value))["outputs"]["text"]["fmt"] == "txt"


SHARED_RUN = textwrap.dedent("""\
    import json, sys, time
    from pathlib import Path
    import engine_agents
    from mora.engine.frontends.api import load_plan, run
    from mora.engine.cache.store import Store

    graph, cache, run_dir, me, other = map(Path, sys.argv[1:6])
    plan = load_plan(graph, {}, registry=engine_agents.registry())
    store = Store(cache)
    me.touch()
    deadline = time.time() + 30
    while not other.exists() and time.time() < deadline:  # start both runs together
        time.sleep(0.01)
    outcome = run(plan, store=store, preset={"name": "test"}, run_dir=run_dir,
                  runtime={"name": "local", "device": "cpu"}, quiet=True)
    print(json.dumps({n: r["cached"] for n, r in outcome.manifest["nodes"].items()}))
""")


LOCK_HOLDER = textwrap.dedent("""\
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
    print("holding", flush=True)
    while True:  # another process writing the index: its write lock held 90% of the time
        con.execute("BEGIN IMMEDIATE"); time.sleep(0.02); con.execute("COMMIT"); time.sleep(0.002)
""")


def test_opening_an_index_waits_out_another_process_s_write_lock(tmp_path):
    """Two processes creating one fresh index meet where diskcache creates its tag index: that
    statement ran with no busy wait, and one process failed with "database is locked". Staged
    here: the schema short of its tag index, another process writing, twenty openings."""
    path = tmp_path / "index"
    open_index(path).close()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(path / "cache.db")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        for _ in range(20):
            with sqlite3.connect(path / "cache.db", timeout=60, isolation_level=None) as con:
                con.execute("DROP INDEX IF EXISTS Cache_tag_rowid")
            index = open_index(path)
            names = [n for (n,) in index._sql("SELECT name FROM sqlite_master WHERE type = 'index'")]
            index.close()
            assert "Cache_tag_rowid" in names
    finally:
        holder.kill()
        holder.wait()


def test_two_processes_share_one_cache_and_compute_each_node_once(tmp_path, write_graph, child_env):
    count = tmp_path / "count.log"
    path = write_graph({"nodes": {
        "slow": {"agent": "t_count", "params": {"value": 1, "path": str(count), "sleep": 1.0}},
        "next": {"agent": "t_count", "in": {"x": {"from": "slow.value"}}, "params": {"value": 2, "path": str(count)}},
        "side": {"agent": "t_count", "params": {"value": 5, "path": str(count), "sleep": 0.3}},
    }, "outputs": {"out": {"from": "next.value"}, "side": {"from": "side.value"}}})
    script = tmp_path / "shared_run.py"
    script.write_text(SHARED_RUN)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(cache), str(tmp_path / f"run{i}"),
                               str(tmp_path / f"ready{i}"), str(tmp_path / f"ready{1 - i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
             for i in (0, 1)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    lines = count.read_text().split("\n")[:-1]
    assert sorted(line.split()[0] for line in lines) == ["next", "side", "slow"], lines
    cached = [json.loads(out) for out, _ in results]
    for node in ("slow", "next", "side"):
        assert sorted(c[node] for c in cached) == [False, True], cached  # one computed it, the other reused it
    for name in ("out.json", "side.json"):
        assert (tmp_path / "run0" / name).read_bytes() == (tmp_path / "run1" / name).read_bytes()
    assert json.loads((tmp_path / "run0" / "out.json").read_text()) == 3.0
    manifests = [json.loads((tmp_path / f"run{i}" / "manifest.json").read_text()) for i in (0, 1)]
    assert manifests[0]["output_digests"] == manifests[1]["output_digests"]
    assert files_under(cache / "tmp") == []


def test_a_key_lease_is_per_key_exclusive_renewed_and_lapses(tmp_path):
    store, other = Store(tmp_path / "c"), Store(tmp_path / "c")
    mine, theirs = KeyLeases(store.index, 1.0), KeyLeases(other.index, 1.0)
    try:
        assert mine.take("a" * 64) and mine.take("a" * 64)  # held: taking it again is a no-op
        assert not theirs.take("a" * 64) and theirs.take("b" * 64)
        time.sleep(2.5)  # over twice the expiry: renewed meanwhile by the holder's thread
        assert not theirs.take("a" * 64)
        theirs.release("a" * 64)  # not theirs to release
        assert not theirs.take("a" * 64)
        mine.release("a" * 64)
        assert theirs.take("a" * 64)
        other.index.add(f"{PREFIX}{'c' * 64}", "a driver that died", expire=0.3)  # never renewed
        assert not mine.take("c" * 64)
        time.sleep(0.5)
        assert mine.take("c" * 64)
    finally:
        mine.close()
        theirs.close()
    assert not [k for k in store.index.iterkeys() if k.startswith(PREFIX)]  # close releases what is still held


def test_maintenance_ignores_key_leases(tmp_path):
    store = Store(tmp_path / "c")
    ref = store.put(BLOB)
    store.record("e" * 64, {"node": "n", "agent": "t_text", "outputs": {"text": ref.to_json()}})
    store.index.add(f"{PREFIX}{'a' * 64}", "live driver", expire=3600)
    store.index.add(f"{PREFIX}{'b' * 64}", "dead driver", expire=0.01)
    time.sleep(0.05)
    assert maintenance.stats(store)["entries"] == 1 and maintenance.stats(store)["agents"] == {"t_text": 1}
    assert [k for k, _ in maintenance.entries(store)] == ["e" * 64]
    report = maintenance.verify(store)
    assert report.ok and report.entries == 1
    assert maintenance.gc(store, max_age=3600, grace=0)["removed_entries"] == 0
    assert store.index.get(f"{PREFIX}{'a' * 64}") == "live driver" and store.lookup("e" * 64) is not None
    assert [k for k in store.index.iterkeys() if k.startswith(PREFIX)] == [f"{PREFIX}{'a' * 64}"]  # the dead one went
