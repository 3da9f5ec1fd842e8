"""Standing workers (mora.engine.execution.standing): started by `mora-admin workers start` as real processes, used by
runs in this process and by `mora` commands, killed, interrupted, stopped. The agents are tests/pool_agents.py's."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pool_agents
import pytest
import yaml
from conftest import run_file
from mora_inproc import ECHO_GRAPH, run_admin, run_mora

from mora.engine.execution import standing
from mora.engine.execution.executors.pool import PoolExecutor

TESTS = Path(__file__).parent


def admin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from mora.engine.frontends.admin import entry; entry()", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def workers(monkeypatch):
    """Two standing CPU workers in a short folder (a socket's path is limited to 107 bytes); their pids."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    folder = Path(tempfile.mkdtemp(prefix="mw-", dir="/tmp"))
    started = admin("workers", "start", "--device", "cpu", "--devices", "2", "--dir", str(folder))
    assert started.returncode == 0, started.stderr
    pids = [standing.look(p)["pid"] for p in standing.sockets(folder)]
    yield folder, pids
    admin("workers", "stop", "--dir", str(folder))
    shutil.rmtree(folder, ignore_errors=True)
    assert not any(standing.running(pid) for pid in pids), "a standing worker outlived `workers stop`"


def _graph(tmp: Path, nodes: dict) -> Path:
    path = tmp / f"graph-{len(list(tmp.glob('graph-*')))}.yaml"
    path.write_text(yaml.safe_dump({"nodes": nodes, "outputs": {n: {"from": f"{n}.{port}"} for n, port in
                                                                 ((n, "value" if spec["agent"] in ("p_sleep", "p_die")
                                                                   else "text") for n, spec in nodes.items())}}))
    return path


def _echo(tmp: Path) -> Path:
    path = tmp / "echo.yaml"
    path.write_text(yaml.safe_dump(ECHO_GRAPH))
    return path


def _preset(tmp: Path) -> dict:
    model = tmp / "standin-model"
    model.mkdir(exist_ok=True)
    (model / "weights.bin").write_bytes(b"stand-in weights")
    return {"name": "test", "roles": {"standin": {"source": "path", "name": str(model)}}}


def _run(tmp: Path, graph: Path, folder: Path, name: str):
    executor = PoolExecutor(attach=str(folder))
    try:
        return run_file(graph, cache=tmp / "cache", run_dir=tmp / name, preset=_preset(tmp),
                        registry=pool_agents.registry(), runtime={"name": "pool"}, executor=executor), executor
    finally:
        executor.shutdown()


def test_standing_workers_keep_their_models_between_runs(workers, tmp_path, capsys):
    folder, pids = workers
    first, _ = _run(tmp_path, _graph(tmp_path, {"a": {"agent": "p_modelled", "params": {"tag": "one"}}}), folder, "r1")
    second, _ = _run(tmp_path, _graph(tmp_path, {"a": {"agent": "p_modelled", "params": {"tag": "two"}}}), folder, "r2")
    assert first.manifest["model_loads"] == 1 and second.manifest["model_loads"] == 0  # still resident
    for outcome in (first, second):
        assert {w["pid"] for w in outcome.manifest["workers"]} == set(pids)
        assert all(w["standing"] for w in outcome.manifest["workers"])
    made_by = int((tmp_path / "r2" / "a.txt").read_text().split(" by ")[1])
    assert made_by in pids and all(standing.running(pid) for pid in pids)  # the runs ended, the workers did not
    status = run_admin(capsys, "workers", "status", "--dir", str(folder))
    assert status.status == 0 and status.out.count("idle") == 2, status.out
    assert "resident models: path:" in status.out


def test_sockets_are_the_owners_alone(workers):
    folder, _ = workers
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in standing.sockets(folder))


def test_a_run_is_refused_while_another_holds_the_workers_and_served_once_it_leaves(workers, tmp_path):
    folder, _ = workers
    holder = PoolExecutor(attach=str(folder))
    try:
        with pytest.raises(standing.WorkersError, match=r"still held by another run of this process"):
            PoolExecutor(attach=str(folder))  # after a short wait: this process may be leaving it
    finally:
        holder.shutdown()
    outcome, _ = _run(tmp_path, _graph(tmp_path, {"a": {"agent": "p_sleep", "params": {"seconds": 0, "value": 7}}}),
                      folder, "r")  # the same process again, at once: the workers are free for it
    assert outcome.manifest["nodes"]["a"]["status"] == "done"


def test_a_busy_worker_refuses_another_command_at_once_with_one_line(workers, tmp_path):
    folder, _ = workers
    holder = PoolExecutor(attach=str(folder))
    try:
        result = subprocess.run(
            [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", f"graph_file={_echo(tmp_path)}",
             "prompt=fox", "runtime=pool", f"runtime.attach={folder}", f"hydra.run.dir={tmp_path / 'run'}"],
            env=dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache")), capture_output=True, text=True, timeout=120)
    finally:
        holder.shutdown()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"serving another run (pid {os.getpid()})" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_workers_of_another_mora_are_refused(workers, monkeypatch):
    folder, _ = workers
    mine = standing.identity()
    monkeypatch.setattr(standing, "identity", lambda: {**mine, "code": "edited"})
    with pytest.raises(standing.WorkersError, match=r"started with another Mora code \(a file of it changed since the "
                                                    r"workers started\) than this run's: restart them"):
        PoolExecutor(attach=str(folder))
    monkeypatch.setattr(standing, "identity", lambda: {**mine, "version": "9.9", "package": "/elsewhere/mora/engine"})
    with pytest.raises(standing.WorkersError, match=r"started with another Mora version, Mora installation than this "
                                                    r"run's: restart them"):
        PoolExecutor(attach=str(folder))


def test_a_killed_standing_worker_fails_its_node_and_the_run_goes_on(workers, tmp_path, capsys):
    folder, pids = workers
    graph = _graph(tmp_path, {"doomed": {"agent": "p_die"},
                              "fine": {"agent": "p_sleep", "params": {"seconds": 0.3, "value": 3}},
                              "after": {"agent": "p_sleep", "params": {"seconds": 0.1, "value": 4}}})
    outcome, executor = _run(tmp_path, graph, folder, "run")
    nodes = outcome.manifest["nodes"]
    assert nodes["doomed"]["status"] == "failed" and "standing worker stopped or died" in nodes["doomed"]["error"]
    assert nodes["fine"]["status"] == nodes["after"]["status"] == "done"
    assert executor.restarts.count == 1
    assert sum(standing.running(pid) for pid in pids) == 1
    status = run_admin(capsys, "workers", "status", "--dir", str(folder))
    assert "not running (its socket outlived it" in status.out
    stopped = run_admin(capsys, "workers", "stop", "--dir", str(folder))
    assert stopped.status == 0 and "removed" in stopped.out and not standing.sockets(folder)


ATTACHED_SCRIPT = textwrap.dedent("""
    import sys, yaml
    from pathlib import Path
    import pool_agents
    from mora.engine.frontends.api import load_plan, run
    from mora.engine.execution.executors.pool import PoolExecutor
    from mora.engine.cache.store import Store
    tmp, folder = Path(sys.argv[1]), sys.argv[2]
    gated = {"agent": "p_gated", "params": {"log": str(tmp / "started.log"), "gate": str(tmp / "gate")}}
    graph = tmp / "gated.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"a": {**gated, "params": {**gated["params"], "tag": "a"}},
                                               "b": {**gated, "params": {**gated["params"], "tag": "b"}}},
                                     "outputs": {"a": {"from": "a.text"}, "b": {"from": "b.text"}}}))
    plan = load_plan(graph, {}, registry=pool_agents.registry())
    run(plan, store=Store(tmp / "cache"), preset={}, run_dir=tmp / "run", runtime={}, quiet=True,
        executor=PoolExecutor(attach=folder))
""")


def test_ctrl_c_of_an_attached_run_leaves_the_workers_to_serve_the_next(workers, tmp_path, caplog):
    import threading

    folder, pids = workers
    proc = subprocess.Popen([sys.executable, "-c", ATTACHED_SCRIPT, str(tmp_path), str(folder)])
    started = tmp_path / "started.log"
    deadline = time.monotonic() + 60
    while not (started.exists() and len(started.read_text().splitlines()) == 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists() and len(started.read_text().splitlines()) == 2, "both workers are inside a node"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) != 0
    assert all(standing.running(pid) for pid in pids), "Ctrl-C of a run stopped a standing worker"
    threading.Timer(1.0, (tmp_path / "gate").touch).start()  # the ended run's nodes finish a second from now
    outcome, _ = _run(tmp_path, _graph(tmp_path, {"a": {"agent": "p_sleep", "params": {"seconds": 0, "value": 5}}}),
                      folder, "next")  # waits for them rather than refusing
    assert outcome.manifest["nodes"]["a"]["status"] == "done"
    assert {w["pid"] for w in outcome.manifest["workers"]} == set(pids)
    assert "waiting for the standing worker" in caplog.text and "a run that ended" in caplog.text


def test_missing_or_dead_workers_and_a_wrong_runtime_are_one_line_errors(tmp_path, capsys):
    folder = Path(tempfile.mkdtemp(prefix="mw-", dir="/tmp"))
    try:
        base = [f"graph_file={_echo(tmp_path)}", "prompt=fox", f"hydra.run.dir={tmp_path / 'run'}"]
        none = run_mora(capsys, *base, "runtime=pool", f"runtime.attach={folder}")
        assert none.status == 1 and none.clean and f"no standing workers in {folder}" in none.err, none.err
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(folder / "worker-cpu0.sock"))
        dead.close()  # a socket whose worker is gone
        stale = run_mora(capsys, *base, "runtime=pool", f"runtime.attach={folder}")
        assert stale.status == 1 and stale.clean and "is not running (its socket outlived it)" in stale.err
        local = run_mora(capsys, *base, "runtime=local", f"runtime.attach={folder}")
        assert local.status == 2 and local.clean and "use it with runtime=pool" in local.err, local.err
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_start_starts_only_what_is_missing_and_refuses_a_socket_path_too_long(workers, tmp_path, capsys):
    folder, pids = workers
    again = run_admin(capsys, "workers", "start", "--device", "cpu", "--devices", "2", "--dir", str(folder))
    assert again.status == 0 and again.out.count("already running") == 2, again.out
    os.kill(pids[0], signal.SIGKILL)
    assert standing.wait_gone(pids[0], 10)
    restarted = admin("workers", "start", "--device", "cpu", "--devices", "2", "--dir", str(folder))
    assert restarted.returncode == 0 and "already running (pid" in restarted.stdout, restarted.stderr
    now = sorted(standing.look(p)["pid"] for p in standing.sockets(folder))
    assert pids[1] in now and pids[0] not in now and len(now) == 2
    pids[:] = now  # for the fixture's check that `stop` ends them
    deep = tmp_path / ("d" * 120)
    long = run_admin(capsys, "workers", "start", "--device", "cpu", "--devices", "1", "--dir", str(deep))
    assert long.status == 1 and long.clean and "longer than the 107 bytes" in long.err, long.err
    assert not deep.exists()


def test_a_run_attaches_to_the_workers_left_when_one_has_died(workers, tmp_path, caplog):
    folder, pids = workers
    os.kill(pids[0], signal.SIGKILL)
    assert standing.wait_gone(pids[0], 10)
    outcome, _ = _run(tmp_path, _graph(tmp_path, {"a": {"agent": "p_sleep", "params": {"seconds": 0, "value": 2}}}),
                      folder, "run")
    assert outcome.manifest["nodes"]["a"]["status"] == "done"
    assert [w["pid"] for w in outcome.manifest["workers"]] == [pids[1]]
    assert "is not running (its socket outlived it)" in caplog.text


def test_a_task_line_a_worker_cannot_read_ends_that_connection_not_the_worker(workers, tmp_path):
    folder, pids = workers
    for path in standing.sockets(folder):
        attached = standing.attach(path)
        attached.out.write('{"not": "a task"}\n')
        attached.out.flush()
        assert attached.lines.readline() == ""  # the worker hung up on this run
        attached.close()
    outcome, _ = _run(tmp_path, _graph(tmp_path, {"a": {"agent": "p_sleep", "params": {"seconds": 0, "value": 1}}}),
                      folder, "run")
    assert outcome.manifest["nodes"]["a"]["status"] == "done" and all(standing.running(pid) for pid in pids)


def test_stop_leaves_alone_a_socket_that_is_not_a_worker_of_this_user(tmp_path, capsys):
    import threading

    folder = Path(tempfile.mkdtemp(prefix="mw-", dir="/tmp"))
    impostor = subprocess.Popen(["sleep", "60"])
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "worker-cpu0.sock"))
    server.listen(4)

    def answer_as_someone_else() -> None:  # claims another process's pid, as a stale or foreign server might
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(1024)
            conn.sendall((json.dumps({"name": "cpu0", "pid": impostor.pid}) + "\n").encode())
            conn.close()

    threading.Thread(target=answer_as_someone_else, daemon=True).start()
    (folder / "docker.sock").touch()  # not named as a worker's: never looked at
    try:
        result = run_admin(capsys, "workers", "stop", "--dir", str(folder))
        assert result.status == 1 and result.clean and "left alone" in result.out and "is pid" in result.out, result
        assert (folder / "worker-cpu0.sock").exists() and (folder / "docker.sock").exists()
        assert impostor.poll() is None  # the pid it claimed was not signalled
    finally:
        server.close()
        impostor.kill()
        impostor.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_mora_launcher_sweep_runs_on_the_standing_workers(workers, tmp_path):
    folder, pids = workers
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"inputs": {"word": {"type": "text", "default": "fox"}},
                                     "nodes": {"fill": {"agent": "text_template", "in": {"text": {"input": "word"}},
                                                        "params": {"template": "a {text}"}}},
                                     "outputs": {"text": {"from": "fill.text"}}}))
    env = dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", "from mora.engine.frontends.cli import main; main()", "-m", f"graph_file={graph}",
         "inputs.word=fox,owl,cat", "runtime=pool", f"runtime.attach={folder}", "runtime.retries=1,2",
         "hydra/launcher=mora",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", "quiet=true"],
        env=env, capture_output=True, text=True, timeout=300, cwd=TESTS.parent)
    assert result.returncode == 0, result.stderr
    jobs = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/manifest.json"))]
    assert len(jobs) == 6 and all({w["pid"] for w in j["workers"]} == set(pids) for j in jobs)  # both groups
    assert sorted((tmp_path / "sweep" / str(i) / "text.txt").read_text() for i in range(6)) == [
        "a cat", "a cat", "a fox", "a fox", "a owl", "a owl"]
    assert all(standing.running(pid) for pid in pids)


def test_gpu_workers_on_a_machine_without_gpus_point_to_cpu_ones(tmp_path, capsys):
    from mora.engine.execution.executors.pool import count_gpus

    if count_gpus():
        pytest.skip("this machine has a GPU")
    result = run_admin(capsys, "workers", "start", "--dir", str(tmp_path / "w"))
    assert result.status == 2 and result.clean and "start CPU workers with --device cpu" in result.err, result.err
    assert not (tmp_path / "w").exists()
