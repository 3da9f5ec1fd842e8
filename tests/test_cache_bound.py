"""What this machine's cache holds on disk: `cache stats` counts it, `cache gc --max-size` bounds it.

Each test is a real cache in a temp dir; the artifact store shared by machines is a local path
(remote.py treats it as any fsspec store), a worker is an `ArtifactStore` of its own directory,
and concurrency is tested with real processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from entry_points import agent_env, count_graph, gc_to_nothing, mora_args

from mora.engine.cache import maintenance
from mora.engine.cache.artifacts import Blob
from mora.engine.cache.eviction import Eviction, LocalObject, Referrer, plan
from mora.engine.cache.index import select
from mora.engine.cache.objects import ArtifactStore
from mora.engine.cache.store import Store
from mora.engine.frontends import admin
from mora.engine.ports import PortType

DAY = 86400.0
LONG_AGO = time.time() - 30 * DAY


def _text(i: int, size: int = 1000) -> Blob:
    return Blob(PortType.TEXT, "txt", bytes([65 + i]) * size)


def _store_files(shared: Path) -> dict[str, bytes]:
    """The artifact store's objects, name to bytes."""
    return {p.name: p.read_bytes() for p in (shared / "objects").rglob("*") if p.is_file()}


def _local(store: Store) -> set[str]:
    """The object files in this machine's objects/."""
    return {p.name for p in (store.root / "objects").rglob("*") if p.is_file()}


def _record(store: Store, name: str, ref_json: dict, created: float) -> None:
    """An entry for node `name` (its key: the name 64 times), created at `created`."""
    store.record(name * 64, {"node": name, "agent": "t_text", "outputs": {"text": ref_json}, "created": created})


def _age(path: Path, used: float = LONG_AGO) -> None:
    """Date a file back past gc's grace period, last read at `used`."""
    os.utime(path, (used, LONG_AGO))


def _nodes(store: Store) -> set[str]:
    return {entry["node"] for _, entry in maintenance.entries(store)}


def _gc(capsys: pytest.CaptureFixture, store: Store, *flags: str) -> dict[str, int]:
    """`mora-admin cache gc` on the store's directory; its report, once `cache stats` agrees on this disk's bytes."""
    status = admin.main(["cache", "gc", "--dir", str(store.root), *flags])
    out = capsys.readouterr()
    assert status == 0, out.err
    report = json.loads(out.out)
    assert maintenance.stats(store)["object_bytes"] == report["kept_bytes"]
    return report


def _served(store: Store, names: str) -> bool:
    """Whether every entry named is a hit whose artifacts read back intact (fetched from the store if need be)."""
    for name in names:
        entry = store.lookup(name * 64)
        if entry is None:
            return False
        store.outputs(entry)["text"].read_bytes()
    return True


def test_stats_counts_this_machines_objects_and_the_whole_store_apart(tmp_path):
    shared = tmp_path / "store"
    worker = ArtifactStore(tmp_path / "worker", remote=str(shared))  # another machine: it wrote every object
    refs = [worker.put(_text(i)) for i in range(3)]
    driver = Store(tmp_path / "driver", artifacts=str(shared))
    for i, ref in enumerate(refs):
        driver.record(f"{i:064x}", {"node": f"n{i}", "agent": "t_text", "outputs": {"text": ref.to_json()}})
    assert maintenance.stats(driver) | {"dir": ""} == {
        "dir": "", "entries": 3, "objects": 0, "object_bytes": 0, "artifacts": str(shared), "store_objects": 3,
        "store_bytes": 3000, "agents": {"t_text": 3}, "tmp_files": 0, "quarantined": 0}
    driver.ref(refs[0].to_json()).read_bytes()  # read here: now this machine holds a copy
    assert (maintenance.stats(driver)["objects"], maintenance.stats(driver)["object_bytes"]) == (1, 1000)
    driver.close()


MOVER = textwrap.dedent("""\
    import os, sys, time
    paths = sys.argv[2:]
    open(sys.argv[1], "w").close()
    end = time.time() + 4
    while time.time() < end:
        for p in paths:  # as quarantine moves a file aside and a fetch brings it back
            os.rename(p, p + ".aside")
            os.rename(p + ".aside", p)
""")


def test_stats_beside_a_process_moving_objects_away_never_fails(tmp_path):
    store = Store(tmp_path / "c")
    refs = [store.put(_text(i % 26, 10 + i)) for i in range(300)]
    started = tmp_path / "started"
    mover = subprocess.Popen([sys.executable, "-c", MOVER, str(started), *(str(r.path) for r in refs)])
    try:
        while not started.exists():
            assert mover.poll() is None, "the mover died before it started"
            time.sleep(0.01)
        seen = [maintenance.stats(store)["objects"] for _ in range(30)]
    finally:
        mover.wait(timeout=60)
    assert all(n <= 300 for n in seen) and maintenance.stats(store)["objects"] == 300
    store.close()


def test_plan_evicts_no_entry_for_bytes_it_cannot_free_now():
    def obj(d: str, mtime: float = LONG_AGO) -> LocalObject:
        return LocalObject(Path(f"/c/objects/{d * 2}/{d * 64}.txt"), 100, mtime, mtime)

    now = time.time()
    objects = {o.path.name: o for o in (obj("1"), obj("2", now), obj("3"), obj("4"), obj("5", now), obj("6", now),
                                        obj("7"))}
    entries = {"leased": Referrer(1.0, frozenset({"1" * 64})), "young": Referrer(2.0, frozenset({"2" * 64})),
               "leased copy": Referrer(3.0, frozenset({"4" * 64})), "young copy": Referrer(4.0, frozenset({"6" * 64})),
               "owned": Referrer(5.0, frozenset({"3" * 64})), "copy": Referrer(6.0, frozenset({"7" * 64}))}
    eviction = plan(objects, entries, 0, stored={f"{d * 64}.txt": 100 for d in "467"}, leased={"1" * 64, "4" * 64},
                    young_after=now - 600)
    # 1 and 4 are leased, 2 and 6 young, 5 unreferenced but young: only the copy 7 and the entry owning 3 can go now
    assert eviction == Eviction(["owned"], frozenset({"7" * 64 + ".txt"}))


def test_gc_max_size_drops_copies_the_store_holds_first_then_only_entries_that_own_bytes_here(tmp_path, capsys):
    shared = tmp_path / "store"
    driver = Store(tmp_path / "driver")  # a cache that had objects before it was bound to the store: only it has them
    owned = {name: driver.put(_text(i)) for i, name in ((0, "a"), (10, "f"))}
    driver.close()
    driver = Store(tmp_path / "driver", artifacts=str(shared))
    worker = ArtifactStore(tmp_path / "worker", remote=str(shared))  # the other machine that computed the rest
    remote = {name: worker.put(_text(i)) for i, name in enumerate("bcdegh", start=1)}
    for name, ref in (owned | remote).items():
        _record(driver, name, ref.to_json(), created=LONG_AGO + ord(name))  # a is the oldest entry, h the newest
    for name in "gh":  # this machine read g long ago and h yesterday: its copies of them
        driver.ref(remote[name].to_json()).read_bytes()
    for path in (driver.root / "objects").rglob("*.txt"):
        _age(path)
    _age(driver.object_path(remote["h"].digest, "txt"), used=time.time() - DAY)
    in_store = _store_files(shared)
    assert maintenance.stats(driver)["object_bytes"] == 4000 and len(in_store) == 6

    report = _gc(capsys, driver, "--max-size", "2500")
    assert report == {"removed_entries": 0, "removed_objects": 2, "removed_copies": 2, "freed_bytes": 2000,
                      "kept_bytes": 2000, "kept_leased": 0, "kept_young": 0}
    assert _nodes(driver) == set("abcdefgh") and _local(driver) == {owned["a"].path.name, owned["f"].path.name}

    report = _gc(capsys, driver, "--max-size", "1000")  # no copy left: the oldest entry that owns bytes here goes
    assert (report["removed_entries"], report["removed_objects"], report["kept_bytes"]) == (1, 1, 1000)
    assert _nodes(driver) == set("bcdefgh")

    report = _gc(capsys, driver, "--max-size", "0")
    assert (report["removed_entries"], report["removed_objects"], report["kept_bytes"]) == (1, 1, 0)
    assert _nodes(driver) == set("bcdegh") and _local(driver) == set()
    assert _store_files(shared) == in_store  # never the store's objects
    assert _served(driver, "bcdegh")  # every entry left is still a hit, read back from the store
    driver.close()


def test_gc_max_size_on_a_machine_without_copies_keeps_every_entry(tmp_path, capsys):
    shared = tmp_path / "store"
    worker = ArtifactStore(tmp_path / "worker", remote=str(shared))
    driver = Store(tmp_path / "driver", artifacts=str(shared))
    for i, name in enumerate("abc"):
        _record(driver, name, worker.put(_text(i)).to_json(), created=LONG_AGO)
    in_store = _store_files(shared)
    report = _gc(capsys, driver, "--max-size", "0", "--grace", "0")
    assert report == {"removed_entries": 0, "removed_objects": 0, "removed_copies": 0, "freed_bytes": 0,
                      "kept_bytes": 0, "kept_leased": 0, "kept_young": 0}
    assert _nodes(driver) == set("abc") and _store_files(shared) == in_store and _served(driver, "abc")
    driver.close()


def test_gc_max_age_with_a_store_drops_old_entries_and_only_this_machines_copies(tmp_path, capsys):
    shared = tmp_path / "store"
    worker = ArtifactStore(tmp_path / "worker", remote=str(shared))
    driver = Store(tmp_path / "driver", artifacts=str(shared))
    refs = {name: worker.put(_text(i)) for i, name in enumerate("abc")}
    for name, created in (("a", LONG_AGO), ("b", LONG_AGO), ("c", time.time())):
        _record(driver, name, refs[name].to_json(), created)
    for name in "bc":
        driver.ref(refs[name].to_json()).read_bytes()
        _age(driver.object_path(refs[name].digest, "txt"))
    in_store = _store_files(shared)
    report = _gc(capsys, driver, "--max-age", "7d")
    assert report == {"removed_entries": 2, "removed_objects": 1, "removed_copies": 0, "freed_bytes": 1000,
                      "kept_bytes": 1000, "kept_leased": 0, "kept_young": 0}
    assert _nodes(driver) == {"c"} and _local(driver) == {refs["c"].path.name}
    assert _store_files(shared) == in_store
    driver.close()


def test_gc_beside_a_live_run_keeps_its_copies_and_after_it_every_entry_is_served_from_the_store(tmp_path):
    env, log = agent_env(tmp_path), tmp_path / "log"
    cache, shared = tmp_path / "cache", tmp_path / "store"
    first = subprocess.run(mora_args(count_graph(tmp_path / "g1.yaml", log), tmp_path / "r1", f"cache.artifacts={shared}"),
                           env=env, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    run = subprocess.Popen(mora_args(count_graph(tmp_path / "g2.yaml", log, slow=3.0), tmp_path / "r2"), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while "slow slow" not in (log.read_text().splitlines() if log.exists() else []):
            assert run.poll() is None and time.time() < deadline, run.communicate()
            time.sleep(0.05)
        during = gc_to_nothing(env, cache)  # shared1 was a hit: the run leases its copy and reads it when slow is done
        _, err = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert (during["removed_entries"], during["removed_objects"], during["kept_leased"]) == (0, 0, 1), during
    assert (tmp_path / "r2" / "out.txt").read_text() == "/shared1/slow"
    after = gc_to_nothing(env, cache)  # the run is over: both copies go, both entries stay
    assert (after["removed_entries"], after["removed_copies"], after["kept_bytes"]) == (0, 2, 0), after
    assert not [p for p in (cache / "objects").rglob("*") if p.is_file()] and len(_store_files(shared)) == 2
    again = subprocess.run(mora_args(tmp_path / "g2.yaml", tmp_path / "r3"), env=env, capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert log.read_text().splitlines() == ["shared1 shared1", "slow slow"]  # the third run computed nothing
    assert (tmp_path / "r3" / "out.txt").read_text() == "/shared1/slow"


@pytest.mark.parametrize("argv", [["stats", "--max-size", "5G"], ["list", "--max-age", "1d"],
                                  ["verify", "--grace", "0"], ["gc", "--no-repair"], ["stats", "--no-repair"]])
def test_a_cache_option_the_action_does_not_take_is_refused_in_one_line(tmp_path, capsys, argv):
    Store(tmp_path / "c").close()
    status = admin.main(["cache", *argv, "--dir", str(tmp_path / "c")])
    out = capsys.readouterr()
    assert status == 2 and out.out == "" and len(out.err.strip().splitlines()) == 1, out
    assert argv[1] in out.err and f"not `cache {argv[0]}`" in out.err and "Traceback" not in out.err


def test_gc_says_what_keeps_the_cache_over_max_size(tmp_path, capsys):
    store = Store(tmp_path / "c")
    _record(store, "a", store.put(_text(0)).to_json(), created=LONG_AGO)  # its object is a second old: in the grace
    status = admin.main(["cache", "gc", "--dir", str(store.root), "--max-size", "10"])
    out = capsys.readouterr()
    assert status == 0 and json.loads(out.out)["kept_young"] == 1 and _nodes(store) == {"a"}
    assert out.err == (f"note: {store.root / 'objects'} still holds 1000 bytes, over --max-size 10: 0 objects are "
                       "leased by live runs, 1 are younger than --grace\n")
    store.close()


RECORD = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from mora.engine.cache.artifacts import Blob
    from mora.engine.cache.store import Store
    from mora.engine.ports import PortType

    store = Store(Path(sys.argv[1]))
    ref = store.put(Blob(PortType.TEXT, "txt", b"recomputed"))
    store.record("a" * 64, {"node": "a", "agent": "t_text", "outputs": {"text": ref.to_json()}, "note": sys.argv[2]})
    store.close()
""")


@pytest.mark.parametrize("note", ["", "x" * 40_000], ids=["in the database", "in a value file"])
@pytest.mark.parametrize("flags", [("--max-age", "7d"), ("--max-size", "0")])
def test_gc_never_deletes_an_entry_another_driver_records_while_it_runs(tmp_path, capsys, monkeypatch, flags, note):
    store = Store(tmp_path / "c")
    store.record("a" * 64, {"node": "a", "agent": "t_text", "outputs": {"text": store.put(_text(0)).to_json()},
                            "created": LONG_AGO, "note": note})  # old, and (below) its object past the grace
    assert select(store.index, "SELECT filename IS NOT NULL FROM Cache") == [(bool(note),)]
    for path in (store.root / "objects").rglob("*.txt"):
        _age(path)
    def recorded_meanwhile(real):
        def chosen(cache_or_store, rows, *args, **kwargs):  # gc has chosen the entry; a driver records its key anew
            if rows:
                subprocess.run([sys.executable, "-c", RECORD, str(store.root), note], check=True, timeout=120)
            return real(cache_or_store, rows, *args, **kwargs)
        return chosen

    monkeypatch.setattr(maintenance, "delete_rows", recorded_meanwhile(maintenance.delete_rows))
    monkeypatch.setattr(maintenance, "_delete_keys", recorded_meanwhile(maintenance._delete_keys))
    report = _gc(capsys, store, *flags)
    entry = store.lookup("a" * 64)
    assert report["removed_entries"] == 0 and entry is not None, report
    assert bytes(store.outputs(entry)["text"].read_bytes()) == b"recomputed"
    store.close()


def test_verify_reads_the_stores_objects_where_they_lie_and_fills_no_disk(tmp_path, capsys):
    shared = tmp_path / "store"
    worker = ArtifactStore(tmp_path / "worker", remote=str(shared))
    driver = Store(tmp_path / "driver", artifacts=str(shared))
    refs = {name: worker.put(_text(i)) for i, name in enumerate("ab")}
    for name, ref in refs.items():
        _record(driver, name, ref.to_json(), created=time.time())
    rotted = shared / "objects" / refs["b"].digest[:2] / refs["b"].path.name
    rotted.write_bytes(b"Z" * 1000)  # the store's object rotted, at its size
    assert admin.main(["cache", "verify", "--no-repair", "--dir", str(driver.root)]) == 1
    assert f"does not match its digest in {shared}" in capsys.readouterr().out
    assert _local(driver) == set() and rotted.exists() and _nodes(driver) == set("ab")  # --no-repair changed nothing
    assert admin.main(["cache", "verify", "--dir", str(driver.root)]) == 1
    assert _nodes(driver) == {"a"} and not rotted.exists() and len(list((shared / "quarantine").iterdir())) == 1
    assert _local(driver) == set()
    driver.close()


PUT = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from mora.engine.cache.artifacts import Blob
    from mora.engine.cache.objects import ArtifactStore
    from mora.engine.ports import PortType

    ArtifactStore(Path(sys.argv[1]), remote=sys.argv[2]).put(Blob(PortType.TEXT, "txt", b"A" * 1000))
""")


def test_gc_keeps_a_copy_a_worker_finds_stored_after_gc_chose_it(tmp_path, capsys, monkeypatch):
    shared = tmp_path / "store"
    driver = Store(tmp_path / "driver", artifacts=str(shared))
    ref = driver.put(_text(0))  # b"A" * 1000, as the worker below puts it
    _record(driver, "a", ref.to_json(), created=LONG_AGO)
    _age(ref.path)
    planned = maintenance.plan

    def then_a_worker_puts_it(*args, **kwargs):  # a worker (no lease) finds the object stored: it refreshes it
        eviction = planned(*args, **kwargs)
        assert eviction.copies == {ref.path.name}
        subprocess.run([sys.executable, "-c", PUT, str(driver.root), str(shared)], check=True, timeout=120)
        return eviction

    monkeypatch.setattr(maintenance, "plan", then_a_worker_puts_it)
    report = _gc(capsys, driver, "--max-size", "0")
    assert (report["removed_copies"], report["kept_young"], report["kept_bytes"]) == (0, 1, 1000), report
    assert ref.path.is_file() and _nodes(driver) == {"a"}
    driver.close()
