"""Edges of the cache that a review reproduced: each test is a real cache on a temp dir (real processes where locks matter).

Shared artifact stores (puts, corrupt local copies, errors, gc), maintenance that deletes only what
Mora named and never follows a symlink, staged files locked like every writer's, leases/ holding
non-lease files, the maintenance lock's bounded wait, `cache.artifacts` validated before it is
recorded, index entries that do not match their node's ports, `gc --max-age 0`, model folders whose
weights change in place, and `cache list` on malformed rows.
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import PRESET

from mora.engine.cache import maintenance, media
from mora.engine.cache.artifacts import Blob
from mora.engine.cache.ingest import Ingest, Staged
from mora.engine.cache.objects import ArtifactStore
from mora.engine.cache.store import Store
from mora.engine.errors import CacheError
from mora.engine.execution.models import weights_digest
from mora.engine.frontends import admin, api
from mora.engine.ports import PortType

ADMIN = [sys.executable, "-c", "from mora.engine.frontends.admin import entry; entry()"]
BLOB = Blob(PortType.TEXT, "txt", b"a red circle moving right")
OLD = time.time() - 3600


def _entry(*refs: dict) -> dict:
    return {"node": "n", "agent": "t_text", "outputs": {"text": refs[0]}}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))


def _old(*paths: Path) -> None:
    for p in paths:
        os.utime(p, (OLD, OLD), follow_symlinks=False)


# 1. a put of an object the shared store already has ---------------------------------------
def test_a_put_of_an_object_only_the_shared_store_holds_succeeds(tmp_path):
    shared = str(tmp_path / "store")
    ArtifactStore(tmp_path / "a", remote=shared).put(BLOB)  # machine A uploads it
    b = ArtifactStore(tmp_path / "b", remote=shared)  # machine B: no local copy
    ref = b.put(BLOB)
    assert ref.path.read_bytes() == BLOB.data
    staged = tmp_path / "b" / "tmp" / "1-abcdefgh"
    staged.write_bytes(BLOB.data)
    ref.path.unlink()
    assert b.put_file(PortType.TEXT, "txt", staged).path.read_bytes() == BLOB.data


# 2. maintenance deletes only what Mora named, never through a symlink -----------------------
def test_maintenance_deletes_only_files_mora_named_and_nothing_without_repair(tmp_path):
    store = Store(tmp_path / "c")
    kept, dropped = store.put(BLOB), store.put(Blob(PortType.TEXT, "txt", b"unreferenced"))
    store.record("k" * 64, _entry(kept.to_json()))
    tmp, shard = store.root / "tmp", dropped.path.parent
    user = [tmp / "notes.md", tmp / "2024-report.pdf", shard / "thesis.tex", shard / f"{'0' * 64}.txt",
            store.root / "objects" / "docs.txt"]
    for p in user:
        p.write_text("mine")
    dead = tmp / "999999-zzzzzzzz"  # a Mora temp file whose writer is gone
    dead.write_text("left by a crash")
    _old(*user, dead, dropped.path)

    report = maintenance.verify(store, repair=False)
    assert report.removed_tmp == [] and dead.exists()
    assert maintenance.verify(store).removed_tmp == [dead.name]
    result = maintenance.gc(store, max_size=None, grace=0)
    assert result["removed_objects"] == 1 and not dropped.path.exists() and kept.path.exists()
    maintenance.gc(store, max_size=0, grace=0)
    assert all(p.read_text() == "mine" for p in user)
    store.close()


def test_maintenance_never_follows_a_symlinked_tmp_objects_or_shard(tmp_path):
    victim = tmp_path / "victim"
    (victim / "tmp").mkdir(parents=True)
    (victim / "ab").mkdir()
    mora_named = [victim / "tmp" / "999999-zzzzzzzz", victim / "ab" / f"ab{'0' * 62}.png"]
    for p in mora_named:
        p.write_text("not the cache's")
    _old(*mora_named)
    store = Store(tmp_path / "c")
    os.rmdir(store.root / "tmp")
    (store.root / "tmp").symlink_to(victim / "tmp")
    (store.root / "objects" / "ab").symlink_to(victim / "ab")
    maintenance.verify(store)
    maintenance.gc(store, max_size=0, grace=0)
    assert all(p.exists() for p in mora_named)
    (store.root / "objects" / "ab").unlink()
    os.rename(store.root / "objects", tmp_path / "real-objects")
    (store.root / "objects").symlink_to(victim)
    maintenance.gc(store, max_size=0, grace=0)
    assert all(p.exists() for p in mora_named)
    store.close()


# 3. a staged input is locked like every writer's file ------------------------------------
def test_a_staged_input_video_survives_a_concurrent_verify(tmp_path):
    video = tmp_path / "in.mp4"
    media.write_mp4(media.Frames(np.zeros((2, 16, 16, 3), np.uint8), 8.0), video)
    store = Store(tmp_path / "c")
    ingest = Ingest(store)
    staged = ingest.read(PortType.VIDEO, str(video))
    assert isinstance(staged, Staged)
    _old(staged.path)  # as if the run had spent an hour decoding its other inputs
    done = subprocess.run([*ADMIN, "cache", "verify", "--dir", str(store.root)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert staged.path.exists(), done.stdout
    ref = ingest.keep(staged)
    assert ingest.keep(staged) == ref  # a second source naming the same file
    ingest.discard()
    assert ref.path.exists() and maintenance.clean_tmp(store, min_age=0) == []
    store.close()


MANY_VIDEOS = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    import numpy as np
    from mora.engine.cache import media
    from mora.engine.cache.ingest import Ingest
    from mora.engine.cache.store import Store
    from mora.engine.ports import PortType

    tmp = Path(sys.argv[1])
    store = Store(tmp / "c")
    videos = []
    for i in range(80):
        videos.append(tmp / f"v{i}.mp4")
        media.write_mp4(media.Frames(np.full((2, 16, 16, 3), 3 * i, np.uint8), 8.0), videos[-1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    ingest = Ingest(store)
    try:
        staged = [ingest.read(PortType.VIDEO, str(v)) for v in videos]  # all read before any is kept, as a run does
        print(len({ingest.keep(s).digest for s in staged}))
    finally:
        ingest.discard()
""")


def test_a_run_with_more_input_videos_than_descriptors_reads_them_all(tmp_path):
    """Every staged video shares its run's one locked folder: 80 videos under a limit of 64 descriptors."""
    done = subprocess.run([sys.executable, "-c", MANY_VIDEOS, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "80", done.stderr[-2000:]
    assert list((tmp_path / "c" / "tmp").iterdir()) == []  # the staging folder is gone with the run's reads


def test_a_dead_runs_staging_folder_is_cleaned_and_a_live_ones_kept(tmp_path):
    video = tmp_path / "in.mp4"
    media.write_mp4(media.Frames(np.zeros((2, 16, 16, 3), np.uint8), 8.0), video)
    store = Store(tmp_path / "c")
    live = Ingest(store)
    live.read(PortType.VIDEO, str(video))
    dead = store.root / "tmp" / "999999999-input-abcdefgh"  # a staging folder whose process is gone
    dead.mkdir()
    (dead / "tmpxyz").write_bytes(b"half a video")
    user = store.root / "tmp" / "notes"
    user.mkdir()
    assert maintenance.clean_tmp(store, min_age=0) == [dead.name]
    assert not dead.exists() and user.is_dir() and len(list((store.root / "tmp").iterdir())) == 2
    live.discard()
    store.close()

# 4. leases/ holding a FIFO; the maintenance lock's wait is bounded --------------------------
def test_a_fifo_in_leases_does_not_hang_gc(tmp_path):
    store = Store(tmp_path / "c")
    store.record("k" * 64, _entry(store.put(BLOB).to_json()))
    store.close()
    for name in ("x.lease", f"123-{'a' * 32}.lease"):
        os.mkfifo(store.root / "leases" / name)
    gc = multiprocessing.get_context("fork").Process(target=_gc, args=(store.root,))
    gc.start()
    gc.join(20)
    if gc.is_alive():
        gc.kill()
    assert gc.exitcode == 0, "gc hung on a FIFO in leases/ (or failed)"
    assert (store.root / "leases" / "x.lease").exists()


def _gc(root: Path) -> None:
    store = Store(root, create=False)
    maintenance.gc(store, grace=0)
    store.close()


def test_waiting_for_the_maintenance_lock_is_bounded_and_names_the_lock(tmp_path):
    store = Store(tmp_path / "c", lock_timeout=0.5)
    lock = store.root / "leases" / "maintenance.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import fcntl, time
        f = open({str(lock)!r}, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        print("held", flush=True)
        time.sleep(30)""")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        with pytest.raises(CacheError, match="maintenance lock .*maintenance.lock.*cache.lock_timeout"):
            store.put(BLOB)
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()
    store.put(BLOB)
    store.close()


# 5. cache.artifacts is validated before it is recorded ----------------------------------------
def test_a_bad_artifact_store_is_refused_and_not_recorded(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    with pytest.raises(CacheError, match="cache.artifacts=s4://bucket/p"):
        Store(cache, artifacts="s4://bucket/p")
    assert not (cache / "artifacts").exists()
    store = Store(cache)  # the typo is gone: the cache works as before
    assert store.remote is None
    store.close()
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "c2", artifacts="relstore")
    assert (tmp_path / "c2" / "artifacts").read_text().strip() == str(tmp_path / "relstore")
    store.close()
    monkeypatch.chdir(tmp_path / "c")
    store = Store(tmp_path / "c2")
    assert store.remote is not None and store.remote.url == str(tmp_path / "relstore")
    store.close()
    (tmp_path / "c2" / "artifacts").write_text("relstore\n")  # as recorded before paths were made absolute
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "c2", artifacts="relstore")  # the same store named the same way: still this cache's
    store.close()


# 6. a corrupt local copy does not condemn the store's healthy object --------------------------
def test_a_corrupt_local_copy_is_fetched_again_and_the_store_copy_kept(tmp_path):
    shared = tmp_path / "store"
    store = Store(tmp_path / "c", artifacts=str(shared))
    ref = store.put(BLOB)
    store.record("k" * 64, _entry(ref.to_json()))
    in_store = shared / "objects" / ref.digest[:2] / ref.path.name
    _flip(ref.path)
    report = maintenance.verify(store)
    assert report.ok, report.bad_entries
    assert in_store.read_bytes() == BLOB.data and ref.path.read_bytes() == BLOB.data
    assert not (shared / "quarantine").exists()
    _flip(ref.path)
    _flip(in_store)  # both bad: the store's copy goes to a quarantine/ the store did not have
    report = maintenance.verify(store)
    assert len(report.bad_entries) == 1 and not in_store.exists()
    assert len(list((shared / "quarantine").iterdir())) == 1
    store.close()


# 7. an entry whose outputs are not the node's ports is a miss ---------------------------------
def _ports_of(agent_type: str) -> dict[str, PortType] | None:
    import engine_agents

    agent = engine_agents.registry().get(agent_type)
    return None if agent is None else {p.name: p.type for p in agent.outputs}


def test_an_entry_not_matching_the_nodes_ports_is_a_miss_and_verify_reports_it(tmp_path):
    import engine_agents

    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"say": {"agent": "t_text", "params": {"text": "hi"}}},
                                     "outputs": {"out": {"from": "say.text"}}}))
    plan = api.load_plan(graph, {}, None, registry=engine_agents.registry())
    store = Store(tmp_path / "c")
    try:
        first = api.run(plan, store=store, preset=PRESET, run_dir=tmp_path / "r0", runtime={"name": "local"},
                        quiet=True)
        key = first.manifest["nodes"]["say"]["key"]
        entry = store.index.get(key)
        variants = ({"renamed": entry["outputs"]["text"]}, {}, {"text": [entry["outputs"]["text"]]})
        for n, outputs in enumerate(variants, 1):
            store.index.set(key, {**entry, "outputs": outputs})
            assert store.lookup(key, ports={"text": PortType.TEXT}) is None
            report = maintenance.verify(store, repair=False, ports_of=_ports_of)
            assert len(report.bad_entries) == 1 and "not its agent's outputs" in report.bad_entries[0]
            again = api.run(plan, store=store, preset=PRESET, run_dir=tmp_path / f"r{n}", runtime={"name": "local"},
                            quiet=True)
            assert again.manifest["nodes"]["say"]["status"] == "done"
            assert (tmp_path / f"r{n}" / "out.txt").read_text() == "hi"
    finally:
        store.close()


# 8. gc --max-age 0 ------------------------------------------------------------------------
def test_gc_max_age_zero_removes_every_entry(tmp_path):
    store = Store(tmp_path / "c")
    store.record("k" * 64, _entry(store.put(BLOB).to_json()))
    time.sleep(0.01)
    assert maintenance.gc(store, max_age=0, grace=0)["removed_entries"] == 1
    assert maintenance.stats(store)["entries"] == 0
    store.close()


# 9. model weights replaced in place, same size and mtime -------------------------------------
def test_weights_changed_in_place_with_the_same_size_and_mtime_are_noticed(tmp_path):
    store = Store(tmp_path / "c")
    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x01" * 4096)
    stamp = (315532800 * 10**9, 315532800 * 10**9)
    os.utime(weights, ns=stamp)
    before = weights_digest(folder, store)
    with open(weights, "r+b") as f:  # in place: same inode, size and (restored) mtime
        f.write(b"\x02" * 4096)
    os.utime(weights, ns=stamp)
    assert weights_digest(folder, store) != before
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "model.safetensors").write_bytes(b"\x01" * 4096)
    os.utime(twin / "model.safetensors", ns=stamp)
    assert weights_digest(twin, store) == before  # same bytes elsewhere: the same digest, not the memo's
    store.close()


def test_a_file_behind_a_symlinked_folder_is_in_the_weights_digest_and_a_link_loop_ends(tmp_path):
    store = Store(tmp_path / "c")
    shared, folder = tmp_path / "shared", tmp_path / "model"
    shared.mkdir()
    folder.mkdir()
    (shared / "vae.safetensors").write_bytes(b"\x01" * 64)
    (folder / "model.safetensors").write_bytes(b"\x02" * 64)
    (folder / "vae").symlink_to(shared, target_is_directory=True)
    (shared / "loop").symlink_to(folder, target_is_directory=True)
    before = weights_digest(folder, store)
    (shared / "vae.safetensors").write_bytes(b"\x03" * 64)  # the shared component retrained
    assert weights_digest(folder, store) != before
    store.close()


# 10. the store's own errors; `cache list` on malformed rows -------------------------------------
def test_an_artifact_store_error_of_any_type_is_the_caches_error_naming_the_store(tmp_path, monkeypatch):
    class NoCredentialsError(Exception):  # botocore's is no OSError
        pass

    shared = str(tmp_path / "store")
    store = Store(tmp_path / "c", artifacts=shared)

    def refuse(*args, **kwargs):
        raise NoCredentialsError("Unable to locate credentials")

    monkeypatch.setattr(store.remote.fs, "info", refuse)  # fsspec shares the instance: undo it after the test
    with pytest.raises(CacheError, match=f"artifact store {shared} .*NoCredentialsError"):
        store.put(BLOB)
    store.close()


@pytest.mark.parametrize("outputs", [[], {"text": {"kind": "text"}}, {"text": [5]}, {"text": "abc"},
                                     {"text": {"digest": 5, "kind": "text", "fmt": "txt", "size": 1}},
                                     {"text": []}])
def test_cache_list_and_the_other_commands_cope_with_malformed_rows(tmp_path, capsys, outputs):
    store = Store(tmp_path / "c")
    store.record("g" * 64, _entry(store.put(BLOB).to_json()))
    store.index.set("m" * 64, {"v": 2, "agent": None, "created": "yesterday", "outputs": outputs})
    store.close()
    for action in (["list"], ["stats"], ["verify", "--no-repair"], ["gc", "--max-age", "1d"]):
        status = admin.main(["cache", *action, "--dir", str(tmp_path / "c")])
        out, err = capsys.readouterr()
        assert status in (0, 1) and "internal error" not in err, (action, err)
        if action == ["list"]:
            assert len(out.splitlines()) == 2 and out.count("t_text") == 1, out


# also: gc leaves a shared store's objects alone -------------------------------------------
def test_gc_in_one_cache_never_deletes_objects_another_cache_references(tmp_path):
    shared = str(tmp_path / "store")
    a, b = Store(tmp_path / "a", artifacts=shared), Store(tmp_path / "b", artifacts=shared)
    ref = a.put(BLOB)
    a.record("k" * 64, _entry(ref.to_json()))
    mine = b.put(Blob(PortType.TEXT, "txt", b"b's own"))
    _old(mine.path)
    maintenance.gc(b, max_size=0, grace=0)
    assert not mine.path.exists()  # b's local copy: gone
    ref.path.unlink()  # a, on a machine without its local copy, reads it from the store
    assert bytes(a.ref(ref.to_json()).read_bytes()) == BLOB.data
    for s in (a, b):
        s.close()
