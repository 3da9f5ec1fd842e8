"""Maintenance never destroys live or healthy data (issue #10, section 2).

`gc` running beside a live run keeps what the run has read or will read (leases, with real
concurrent processes); a killed run's lease pins nothing; a full disk while writing the index
is reported as a full disk and leaves the index as it was (on a real 4 MB tmpfs where this
machine lets the test mount one, else skipped; the injected-error test below covers the same
rule without a mount); the cache commands refuse a folder that holds no cache.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from entry_points import agent_env, count_graph, gc_to_nothing, mora_args

from mora.engine.cache import index, maintenance, media
from mora.engine.cache.store import Store
from mora.engine.errors import CacheError
from mora.engine.frontends import admin


def _wait_for(log: Path, line: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and line in log.read_text().split("\n"):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{line!r} never appeared in {log}")


def test_gc_beside_a_live_run_keeps_what_the_run_reads_and_exports(tmp_path):
    env, log = agent_env(tmp_path), tmp_path / "log"
    cache = tmp_path / "cache"
    assert subprocess.run(mora_args(count_graph(tmp_path / "g1.yaml", log), tmp_path / "r1"), env=env,
                          capture_output=True, timeout=300, check=False).returncode == 0
    run = subprocess.Popen(mora_args(count_graph(tmp_path / "g2.yaml", log, slow=3.0), tmp_path / "r2"), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(log, "slow slow", run)  # shared1 was a cache hit; its output is exported when the run ends
        during = gc_to_nothing(env, cache)  # evicts every entry that frees bytes, and every object no entry references
        _, err = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, err
    # shared1's entry stays: its object is leased by the run, so evicting the entry would free nothing
    assert during["removed_entries"] == 0 and during["kept_leased"] >= 1, during
    assert (tmp_path / "r2" / "early.txt").read_text() == "/shared1"
    assert (tmp_path / "r2" / "out.txt").read_text() == "/shared1/slow"
    assert list((cache / "leases").glob("*.lease")) == []  # released when the run ended
    after = gc_to_nothing(env, cache)  # nothing holds it now: the same gc frees it
    assert after["removed_objects"] >= 1 and after["kept_leased"] == 0, after


def test_a_killed_runs_lease_pins_nothing(tmp_path):
    env, log = agent_env(tmp_path), tmp_path / "log"
    cache = tmp_path / "cache"
    assert subprocess.run(mora_args(count_graph(tmp_path / "g1.yaml", log), tmp_path / "r1"), env=env,
                          capture_output=True, timeout=300, check=False).returncode == 0
    run = subprocess.Popen(mora_args(count_graph(tmp_path / "g2.yaml", log, slow=60.0), tmp_path / "r2"), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(log, "slow slow", run)
        leases = list((cache / "leases").glob("*.lease"))
        assert len(leases) == 1 and leases[0].read_text().split()  # the live run names what it uses
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        run.kill()
    result = gc_to_nothing(env, cache)
    assert result["kept_leased"] == 0 and result["removed_objects"] >= 1, result
    assert list((cache / "leases").glob("*.lease")) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MB tmpfs (needs root and mount rights; skipped where the machine does not allow it)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True,
                      check=False).returncode:
        pytest.skip("cannot mount a tmpfs here; test_an_io_error_is_not_corruption covers the rule by injection")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path) -> Path:
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    for size in (1 << 16, 4096, 512, 1):
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError:
            pass
    os.close(fd)
    return filler


def test_a_full_disk_while_writing_the_index_is_reported_and_loses_nothing(tmp_path, small_disk):
    env, log = agent_env(tmp_path), tmp_path / "log"
    env["MORA_CACHE_DIR"] = str(small_disk / "cache")
    first = count_graph(tmp_path / "g1.yaml", log)
    assert subprocess.run(mora_args(first, tmp_path / "r1"), env=env, capture_output=True, timeout=300,
                          check=False).returncode == 0
    filler = _fill(small_disk)
    # another key whose output is already stored: only the index has to be written
    full = subprocess.run(mora_args(count_graph(tmp_path / "g2.yaml", log, seconds=0.01), tmp_path / "r2"), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert full.returncode in (1, 2) and "disk full" in full.stderr, full.stderr
    assert "Traceback" not in full.stderr
    filler.unlink()
    again = subprocess.run(mora_args(first, tmp_path / "r3"), env=env, capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "r3" / "manifest.json").read_text())["nodes"]["shared1"]["cached"] is True
    assert not list((small_disk / "cache").glob("index.corrupt-*"))


@pytest.mark.parametrize("code, message", [(sqlite3.SQLITE_FULL, "database or disk is full"),
                                           (sqlite3.SQLITE_IOERR, "disk I/O error"),
                                           (sqlite3.SQLITE_READONLY, "attempt to write a readonly database")])
def test_an_io_error_is_not_corruption(tmp_path, monkeypatch, code, message):
    """Injected errors (as SQLite raises them) for the cases a tmpfs cannot produce: EIO, read-only."""
    store = Store(tmp_path / "cache")
    store.record("k" * 64, {"node": "n", "outputs": {"text": store.put(media.text_blob("kept")).to_json()}})
    store.close()

    def failing(path: Path):
        e = sqlite3.OperationalError(message)
        e.sqlite_errorcode = code
        raise e

    monkeypatch.setattr(index, "_open", failing)
    with pytest.raises(CacheError, match="the index is unchanged") as info:
        Store(tmp_path / "cache")
    assert ("disk full" in str(info.value)) == (code == sqlite3.SQLITE_FULL)
    monkeypatch.undo()
    assert not list((tmp_path / "cache").glob("index.corrupt-*"))
    assert Store(tmp_path / "cache").lookup("k" * 64) is not None


@pytest.mark.parametrize("action", ["stats", "list", "verify", "gc"])
@pytest.mark.parametrize("folder", ["absent", "empty", "other"])
def test_cache_commands_on_a_folder_without_a_cache_say_so_and_create_nothing(tmp_path, capsys, action, folder):
    path = tmp_path / "not-a-cache"
    if folder != "absent":
        path.mkdir()
    if folder == "other":
        (path / "objects").mkdir()
        (path / "objects" / "photo.png").write_bytes(b"not mine")
    before = sorted(tmp_path.rglob("*"))
    assert admin.main(["cache", action, "--dir", str(path)]) == 2
    assert "holds no Mora cache" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before


def test_verify_moves_a_corrupt_object_to_quarantine_and_keeps_healthy_ones(tmp_path):
    store = Store(tmp_path / "cache")
    good, bad = store.put(media.text_blob("good")), store.put(media.text_blob("bad!"))
    store.record("g" * 64, {"node": "g", "outputs": {"text": good.to_json()}})
    store.record("b" * 64, {"node": "b", "outputs": {"text": bad.to_json()}})
    bad.path.write_bytes(b"BAD!")
    report = maintenance.verify(store)
    assert len(report.bad_entries) == 1 and "b" * 16 in report.bad_entries[0]
    assert good.path.read_bytes() == b"good" and not bad.path.exists()
    assert [p.read_bytes() for p in (store.root / "quarantine").iterdir()] == [b"BAD!"]
    assert store.lookup("g" * 64) is not None and store.lookup("b" * 64) is None


def test_verify_leaves_a_temporary_file_that_is_being_written(tmp_path):
    store = Store(tmp_path / "cache")
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import fcntl, sys, time
        f = open({str(store.root / 'tmp' / '999999999-writing1')!r}, "wb")  # a pid not alive here: another host's
        fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)""")], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "locked"
        (store.root / "tmp" / "2-abandon1").write_bytes(b"left by a crash")
        os.utime(store.root / "tmp" / "2-abandon1", (0, 0))
        report = maintenance.verify(store)
        assert report.removed_tmp == ["2-abandon1"]
        assert (store.root / "tmp" / "999999999-writing1").exists()
    finally:
        writer.kill()
        writer.wait()
    assert maintenance.clean_tmp(store) == ["999999999-writing1"]  # its writer is gone now
