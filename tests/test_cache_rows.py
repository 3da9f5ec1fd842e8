"""Index rows and objects that are not what the cache wrote: the cache reads and deletes only its own files, blames a
bad row and not the object it names, and tells an unreadable object from a corrupt one."""
from __future__ import annotations

import dataclasses
import io
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mora.engine.cache import maintenance, media
from mora.engine.cache.artifacts import Blob, CorruptArtifact
from mora.engine.cache.objects import ArtifactStore
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


@pytest.mark.parametrize("size", [-1, 12, 1 << 50, True], ids=["negative", "one_short", "a_petabyte", "bool"])
def test_a_row_with_a_wrong_size_is_the_row_s_fault_not_the_shared_object_s(tmp_path, size):
    root = tmp_path / "c"
    store = stored(root, key="g" * 64)
    ref = store.put(BLOB)
    store.record(KEY, {"node": "bad", "agent": "t_text", "outputs": {"text": {**ref.to_json(), "size": size}}})
    assert store.lookup(KEY) is None
    assert ref.path.read_bytes() == BLOB.data and not (root / "quarantine").exists()
    assert store.lookup("g" * 64) is not None  # the good entry still has its object
    report = maintenance.verify(store)  # no MemoryError from a buffer of the claimed size
    assert [b[:16] for b in report.bad_entries] == ["k" * 16]
    assert ref.path.read_bytes() == BLOB.data and store.lookup("g" * 64) is not None


def test_a_truncated_object_is_still_the_object_s_fault(tmp_path):
    store = stored(tmp_path / "c")
    ref = store.put(BLOB)
    ref.path.write_bytes(BLOB.data[:-1])
    assert store.lookup(KEY) is None
    assert [p.read_bytes() for p in (tmp_path / "c" / "quarantine").iterdir()] == [BLOB.data[:-1]]


@pytest.mark.parametrize("how", ["put", "put_file"])
def test_a_folder_in_an_object_s_place_is_moved_aside_and_the_object_written(tmp_path, how):
    store = Store(tmp_path / "c")
    path = store.object_path(BLOB.digest, BLOB.fmt)
    (path / "inside").mkdir(parents=True)
    if how == "put":
        ref = store.put(BLOB)
    else:
        file = tmp_path / "c" / "tmp" / "staged.txt"
        file.write_bytes(BLOB.data)
        ref = store.put_file(BLOB.kind, BLOB.fmt, file)
    assert ref.path.read_bytes() == BLOB.data
    assert [p.is_dir() for p in (tmp_path / "c" / "quarantine").iterdir()] == [True]


def test_an_artifact_fetched_then_gone_is_missing_not_an_os_error(tmp_path):
    store = Store(tmp_path / "c")
    ref = dataclasses.replace(store.put(BLOB), fetch=lambda r: True)  # "fetched", but another reader moved it
    ref.path.unlink()
    with pytest.raises(CorruptArtifact, match="unreadable"):
        ref.read_bytes()


def test_a_download_is_on_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    data = bytes(range(256)) * 4  # under the write buffer's 8 KB: left there, it reached the file after the rename
    Store(tmp_path / "a", artifacts=str(tmp_path / "shared")).put(Blob(PortType.TEXT, "txt", data)).path.unlink()
    store = Store(tmp_path / "b", artifacts=str(tmp_path / "shared"))
    seen, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: seen.append(Path(src).read_bytes()) or replace(src, dst))
    ref = store.ref({"digest": Blob(PortType.TEXT, "txt", data).digest, "kind": "text", "fmt": "txt", "size": len(data)})
    assert bytes(ref.read_bytes()) == data and seen == [data]


def test_running_out_of_descriptors_blames_no_object(tmp_path):
    script = tmp_path / "emfile.py"
    script.write_text(textwrap.dedent("""\
        import os, resource, sys
        from mora.engine.cache.store import Store
        from mora.engine.errors import CacheError
        store = Store(sys.argv[1])
        ref = store.ref(store.lookup("k" * 64)["outputs"]["text"])
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            ref.read_bytes()
        except CacheError as e:
            print(type(e).__name__, e)
    """))
    stored(tmp_path / "c").close()
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "c")], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.startswith("CacheError cannot read artifact") and "Too many open files" in out.stdout, out
    assert not (tmp_path / "c" / "quarantine").exists()
    assert Store(tmp_path / "c").lookup(KEY) is not None


def test_verify_keeps_an_entry_a_run_records_while_it_runs(tmp_path, monkeypatch):
    store = stored(tmp_path / "c")
    ref = store.put(BLOB)
    store.record("b" * 64, {"node": "b", "agent": "t_text", "outputs": {"text": ref.to_json()}})
    run = Store(tmp_path / "c")
    check = maintenance._check

    def and_a_run_records_meanwhile(*args):  # the run finds b's object bad, computes it again and records b
        verdict = check(*args)
        run.record("b" * 64, {"node": "b", "agent": "t_text", "outputs": {"text": run.put(BLOB).to_json()}})
        return verdict

    ref.path.write_bytes(BLOB.data.upper())
    monkeypatch.setattr(maintenance, "_check", and_a_run_records_meanwhile)
    maintenance.verify(store)
    assert KEY not in store.index and run.lookup("b" * 64) is not None
    assert ref.path.read_bytes() == BLOB.data


def test_an_export_copies_the_bytes_it_verified(tmp_path, monkeypatch):
    store = Store(tmp_path / "c")
    ref = store.put(BLOB)
    written = []

    class Spy(io.BytesIO):
        def write(self, b):
            written.append(bytes(b))
            return super().write(b)

    ref.copy_to(Spy())
    assert b"".join(written) == BLOB.data
    ref.path.write_bytes(BLOB.data.upper())
    with pytest.raises(CorruptArtifact):
        ref.copy_to(io.BytesIO())


def test_frames_written_in_place_while_an_agent_maps_them_store_nothing(tmp_path, monkeypatch):
    from mora.engine.execution.runner import execute_unit
    from mora.engine.execution.settings import ExecutionSettings
    from mora.engine.execution.task import NodeTask
    from mora.nodes import frame_pick

    store = Store(tmp_path / "c")
    ref = store.put(media.frames_blob(np.zeros((4, 8, 8, 3), np.uint8), 8.0))
    mapped = frame_pick.read_artifact_frames

    def and_someone_writes_into_the_file(r):  # another hand, in place, after the verified open
        frames = mapped(r)
        with open(r.path, "r+b") as f:
            f.seek(-12, os.SEEK_END)
            f.write(b"\xff" * 12)
        return frames

    monkeypatch.setattr(frame_pick, "read_artifact_frames", and_someone_writes_into_the_file)
    task = NodeTask("pick", "frame_pick", "mora.nodes.frame_pick", {"index": -1}, None, None, {"video": ref.to_json()},
                    "p" * 64, True, ExecutionSettings.for_store(store))
    [result] = execute_unit(task, "cpu")
    assert result.corrupt == (ref.digest,) and "written in place" in (result.error or "")
    assert store.lookup("p" * 64) is None and not ref.path.exists()  # moved aside: its bytes are not the artifact's


def test_another_writer_storing_the_same_frames_is_no_write_in_place(tmp_path):
    store = Store(tmp_path / "c")
    blob = media.frames_blob(np.zeros((4, 8, 8, 3), np.uint8), 8.0)
    ref = store.put(blob)
    with media.mapped_inputs_checked():
        frames = media.read_artifact_frames(ref)
        time.sleep(0.01)
        ArtifactStore(tmp_path / "c").put(blob)  # a worker's put of the same bytes refreshes the file's times
        assert int(frames.array.sum()) == 0
    assert ref.path.exists() and not (tmp_path / "c" / "quarantine").exists()


def test_an_mp4_encoded_from_frames_written_in_place_is_neither_kept_nor_given(tmp_path, monkeypatch):
    from mora.engine.cache import encoded

    store = Store(tmp_path / "c")
    ref = store.put(media.frames_blob(np.zeros((4, 8, 8, 3), np.uint8), 8.0))
    write_mp4 = media.write_mp4

    def and_someone_writes_into_the_video(frames, path):
        with open(ref.path, "r+b") as f:
            f.seek(-12, os.SEEK_END)
            f.write(b"\xff" * 12)
        write_mp4(frames, path)

    monkeypatch.setattr(media, "write_mp4", and_someone_writes_into_the_video)
    with pytest.raises(CorruptArtifact, match="written in place"):
        encoded.export_mp4(store, ref, tmp_path / "out.mp4")
    assert store.lookup(encoded.export_key(ref, None)) is None
