"""The object-store artifact backend against a real S3-compatible server (moto's, on 127.0.0.1)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import PRESET, subprocess_env

from mora.engine.cache import maintenance
from mora.engine.cache.artifacts import Blob, CorruptArtifact
from mora.engine.cache.store import Store
from mora.engine.errors import CacheError
from mora.engine.frontends import api
from mora.engine.ports import PortType

BUCKET = "mora-test"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server on a free local port; its endpoint URL."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_url(s3_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh prefix in a bucket of the server, with the AWS variables a child process inherits."""
    import s3fs

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return f"s3://{BUCKET}/{re.sub(r'[^A-Za-z0-9_-]', '-', request.node.name)}"  # parametrized ids: `[...]`


def _fs():
    import s3fs

    return s3fs.S3FileSystem()


def _entry(ref_json: dict) -> dict:
    return {"node": "n", "agent": "t_text", "outputs": {"text": ref_json}}


def test_artifacts_live_in_the_object_store_and_another_machine_reads_them(tmp_path: Path, s3_url: str):
    driver = Store(tmp_path / "driver", artifacts=s3_url)
    ref = driver.put(Blob(PortType.TEXT, "txt", b"made on the driver"))
    driver.record("k" * 64, _entry(ref.to_json()))
    key = f"{s3_url[5:]}/objects/{ref.digest[:2]}/{ref.digest}.txt"
    assert _fs().cat_file(key) == b"made on the driver"
    assert _fs().find(f"{s3_url[5:]}/tmp") == []  # the upload's temporary object is gone

    other = Store(tmp_path / "worker", artifacts=s3_url)  # another machine: its own local copy, no index entry
    assert bytes(other.ref(ref.to_json()).read_bytes()) == b"made on the driver"
    assert other.object_path(ref.digest, "txt").is_file()

    ref.path.unlink()  # the driver's local copy is gone: the store still has it, so it is a hit, read back
    entry = driver.lookup("k" * 64)
    assert entry is not None
    assert bytes(driver.outputs(entry)["text"].read_bytes()) == b"made on the driver"
    for s in (driver, other):
        s.close()


def test_a_cache_keeps_its_artifact_store(tmp_path: Path, s3_url: str):
    Store(tmp_path / "c", artifacts=s3_url).close()
    reopened = Store(tmp_path / "c")  # a worker or mora-admin opening the directory finds the same store
    assert reopened.remote is not None and reopened.remote.url == s3_url
    reopened.close()
    with pytest.raises(CacheError, match="keeps its artifacts in s3://"):
        Store(tmp_path / "c", artifacts=s3_url + "-other")


def test_a_store_that_takes_no_object_is_never_recorded_as_the_cache_s(tmp_path: Path, s3_url: str):
    with pytest.raises(CacheError, match="cannot write to the artifact store s3://no-such-bucket-mora"):
        Store(tmp_path / "c", artifacts="s3://no-such-bucket-mora/prefix")  # a misspelt bucket: reads pass
    assert not (tmp_path / "c" / "artifacts").exists()
    store = Store(tmp_path / "c", artifacts=s3_url)  # the right one still binds
    assert store.remote is not None and store.remote.url == s3_url and _fs().find(f"{s3_url[5:]}/tmp") == []
    store.close()


def test_a_corrupt_object_in_the_store_is_a_miss_and_moved_aside(tmp_path: Path, s3_url: str):
    store = Store(tmp_path / "c", artifacts=s3_url)
    ref = store.put(Blob(PortType.TEXT, "txt", b"good bytes"))
    key = f"{s3_url[5:]}/objects/{ref.digest[:2]}/{ref.digest}.txt"
    _fs().pipe_file(key, b"evil bytes")  # same size, other content
    ref.path.unlink()
    with pytest.raises(CorruptArtifact, match="does not match its digest") as info:
        store.ref(ref.to_json()).read_bytes()
    store.quarantine(info.value.ref, info.value.why, info.value.inode)
    assert not _fs().exists(key)
    assert len(_fs().ls(f"{s3_url[5:]}/quarantine")) == 1
    store.close()


def test_gc_deletes_unreferenced_local_copies_and_leaves_the_shared_store_alone(tmp_path: Path, s3_url: str):
    store = Store(tmp_path / "c", artifacts=s3_url)
    kept = store.put(Blob(PortType.TEXT, "txt", b"kept"))
    dropped = store.put(Blob(PortType.TEXT, "txt", b"dropped"))
    store.record("a" * 64, _entry(kept.to_json()))
    assert maintenance.stats(store)["objects"] == 2
    maintenance.gc(store, grace=0)
    assert kept.path.is_file() and not dropped.path.exists()
    names = sorted(p.rsplit("/", 1)[-1] for p in _fs().find(f"{s3_url[5:]}/objects"))
    assert names == sorted([kept.path.name, dropped.path.name])  # another cache's index may reference it
    assert maintenance.stats(store) | {"dir": ""} == {  # this machine's objects/, then the whole store
        "dir": "", "entries": 1, "objects": 1, "object_bytes": 4, "artifacts": s3_url, "store_objects": 2,
        "store_bytes": 11, "agents": {"t_text": 1}, "tmp_files": 0, "quarantined": 0}
    store.close()


def test_gc_max_size_deletes_local_copies_the_store_holds_and_keeps_their_entries(tmp_path: Path, s3_url: str):
    store = Store(tmp_path / "c", artifacts=s3_url)
    refs = [store.put(Blob(PortType.TEXT, "txt", text)) for text in (b"first", b"second")]
    for i, ref in enumerate(refs):
        store.record(f"{i}" * 64, _entry(ref.to_json()))
    assert maintenance.gc(store, max_size=0)["kept_young"] == 2  # within the grace period, even copies stay
    report = maintenance.gc(store, max_size=0, grace=0)
    assert (report["removed_entries"], report["removed_copies"], report["freed_bytes"], report["kept_bytes"]) == \
        (0, 2, 11, 0)
    assert not any(ref.path.exists() for ref in refs) and len(_fs().find(f"{s3_url[5:]}/objects")) == 2
    entry = store.lookup("1" * 64)  # still a hit: the store holds its artifact, fetched back when read
    assert entry is not None and bytes(store.outputs(entry)["text"].read_bytes()) == b"second"
    store.close()


@pytest.mark.parametrize("flags", [["--max-size", "0"], ["--max-age", "1s"]])
def test_gc_with_the_store_unreachable_changes_nothing_and_says_so(tmp_path: Path, s3_url: str, flags: list[str]):
    """The store is reached before anything here is deleted: the entry is old enough to go and its copy is past
    --grace, so a gc that reached the store only at its end would have deleted both."""
    store = Store(tmp_path / "c", artifacts=s3_url)
    ref = store.put(Blob(PortType.TEXT, "txt", b"only a copy here"))
    store.record("k" * 64, _entry(ref.to_json()))
    store.close()
    month_ago = time.time() - 30 * 86400
    os.utime(ref.path, (month_ago, month_ago))
    time.sleep(1.1)  # the entry is older than --max-age 1s
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = subprocess_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed}", AWS_MAX_ATTEMPTS="1")
    done = subprocess.run([sys.executable, "-c", "from mora.engine.frontends.admin import entry; entry()", "cache",
                           "gc", "--dir", str(tmp_path / "c"), *flags], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode != 0 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done
    assert s3_url in done.stderr and "cache.artifacts" in done.stderr and "Traceback" not in done.stderr
    store = Store(tmp_path / "c")
    assert ref.path.is_file() and store.lookup("k" * 64) is not None  # the copy and its entry are both still here
    store.close()


KILLED_MID_UPLOAD = textwrap.dedent("""\
    import os, sys, time
    from pathlib import Path
    import engine_agents
    from conftest import PRESET
    from mora.engine.frontends import api
    from mora.engine.cache.remote import Remote
    from mora.engine.cache.store import Store

    graph, cache, url, marker = sys.argv[1:5]
    real_mv = Remote.upload

    def upload(self, file, ref):
        real_put = self.fs.put_file
        def put_then_die(src, dst, **kw):  # the bytes are in tmp/; the process dies before they reach their key
            real_put(src, dst, **kw)
            Path(marker).touch()
            time.sleep(60)
        self.fs.put_file = put_then_die
        return real_mv(self, file, ref)

    Remote.upload = upload
    plan = api.load_plan(Path(graph), {}, None, registry=engine_agents.registry())
    store = Store(Path(cache), artifacts=url)
    api.run(plan, store=store, preset=PRESET, run_dir=Path(cache).parent / "run-killed",
            runtime={"name": "local", "device": "cpu"}, quiet=True)
""")


def test_a_worker_killed_mid_upload_leaves_no_object_and_the_node_is_recomputed(tmp_path: Path, s3_url: str,
                                                                                 executions):
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"say": {"agent": "t_text", "params": {"text": "hello store"}}},
                                     "outputs": {"out": {"from": "say.text"}}}))
    cache, marker = tmp_path / "cache", tmp_path / "uploaded"
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_UPLOAD, str(graph), str(cache), s3_url, str(marker)],
                             env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), child.communicate()[0].decode()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    prefix = s3_url[5:]
    assert not _fs().exists(f"{prefix}/objects"), "a partial or uncommitted object is visible under objects/"
    import engine_agents

    plan = api.load_plan(graph, {}, None, registry=engine_agents.registry())
    for run in range(2):
        store = Store(cache)
        try:
            outcome = api.run(plan, store=store, preset=PRESET, run_dir=tmp_path / f"run{run}",
                              runtime={"name": "local", "device": "cpu"}, quiet=True)
        finally:
            store.close()
        assert outcome.manifest["nodes"]["say"]["status"] == ("done" if run == 0 else "cached"), outcome.manifest
    assert executions()["say"] == 2  # the killed run and the recomputation; the third run reused it
    assert len(_fs().find(f"{prefix}/objects")) == 1


def test_a_local_path_serves_as_the_artifact_store(tmp_path: Path):
    shared = tmp_path / "shared"
    driver = Store(tmp_path / "driver", artifacts=str(shared))
    ref = driver.put(Blob(PortType.TEXT, "txt", b"on a shared path"))
    assert (shared / "objects" / ref.digest[:2] / f"{ref.digest}.txt").read_bytes() == b"on a shared path"
    assert list((shared / "tmp").iterdir()) == []
    other = Store(tmp_path / "worker", artifacts=str(shared))
    assert bytes(other.ref(ref.to_json()).read_bytes()) == b"on a shared path"
    for s in (driver, other):
        s.close()


CLI_GRAPH = {"inputs": {"prompt": {"type": "text", "default": "fox"}},
             "nodes": {"frame": {"agent": "text_template", "in": {"text": {"input": "prompt"}},
                                 "params": {"template": "A {text}"}}},
             "outputs": {"out": {"from": "frame.text"}}}


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "runtime=local",
                           "runtime.device=cpu", "quiet=true", *overrides],
                          check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_mora_takes_cache_artifacts_from_the_config(tmp_path: Path, s3_url: str):
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump(CLI_GRAPH))
    cache = tmp_path / "cache"
    done = _cli(tmp_path, f"graph_file={graph}", f"cache.dir={cache}", f"cache.artifacts={s3_url}",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "out.txt").read_text() == "A fox"
    assert len(_fs().find(f"{s3_url[5:]}/objects")) == 2  # the input and the result
    bad = _cli(tmp_path, f"graph_file={graph}", f"cache.dir={tmp_path / 'other'}", "cache.artifacts=nosuch://x/y",
               f"hydra.run.dir={tmp_path / 'run2'}")
    assert bad.returncode == 2 and "cache.artifacts=nosuch://x/y" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def test_pool_workers_write_to_the_object_store_the_run_names(tmp_path: Path, s3_url: str,
                                                              monkeypatch: pytest.MonkeyPatch):
    import pool_agents

    from mora.engine.execution.executors.pool import PoolExecutor

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({
        "nodes": {"a": {"agent": "p_sleep", "params": {"seconds": 0, "value": 3}},
                  "b": {"agent": "p_count", "params": {"tag": "b", "log": str(tmp_path / "b.log")}}},
        "outputs": {"a": {"from": "a.value"}, "b": {"from": "b.text"}}}))
    plan = api.load_plan(graph, {}, None, registry=pool_agents.registry())
    store = Store(tmp_path / "cache", artifacts=s3_url)
    executor = PoolExecutor(2, "cpu")  # the workers get the store's URL with the run's settings
    try:
        first = api.run(plan, store=store, preset={}, run_dir=tmp_path / "run0", runtime={}, quiet=True,
                        executor=executor)
        assert {n["status"] for n in first.manifest["nodes"].values()} == {"done"}
        assert len(_fs().find(f"{s3_url[5:]}/objects")) == 2
        for copy in (tmp_path / "cache" / "objects").rglob("*.*"):
            copy.unlink()  # only the object store holds them now
        again = api.run(plan, store=store, preset={}, run_dir=tmp_path / "run1", runtime={}, quiet=True,
                        executor=executor)
    finally:
        executor.shutdown()
        store.close()
    assert all(n["cached"] for n in again.manifest["nodes"].values())
    assert (tmp_path / "run1" / "b.txt").read_text() == "/b" and json.loads((tmp_path / "run1" / "a.json").read_text()) == 3
