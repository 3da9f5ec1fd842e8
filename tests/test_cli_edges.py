"""Edges of the command line: what a user can type or do that must end in one line and the status it means.

130 for any Ctrl-C (one a library swallowed too), 2 for bad input refused before anything runs (model
attention and tiny/random names, Ray's address and GPU counts, a log file that cannot be opened), 1 for a
machine that fails (a full disk behind `>`), and an ordinary run with standard streams closed. Signals and
streams are tried on real `mora` processes on a model-free graph; settings in-process (`run_mora`).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mora_inproc import ECHO_GRAPH, run_mora

MORA = "from mora.engine.frontends.cli import main; main()"
# Ctrl-C as at a terminal: a test run started in the background of a non-interactive shell inherits
# SIGINT ignored, and a Python started so never raises KeyboardInterrupt
INTERRUPTIBLE = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "

SWALLOWING_AGENT = '''
import time
from mora.engine.cache.media import text_blob
from mora.engine.graph.agent import Agent, Param, Port
from mora.engine.ports import PortType


def _run(ctx, inputs, params):
    open(params["log"], "a").write("started\\n")
    try:  # as an import fallback with a bare `except:` does: Ctrl-C becomes another error
        time.sleep(60)
    except BaseException:
        raise ModuleNotFoundError("Could not import module 'Qwen2ForCausalLM'") from None
    return {"text": text_blob("never")}


SWALLOW = Agent("p_swallow", 1, "Sleep; turn a Ctrl-C into an import error.", _run,
                outputs=(Port("text", PortType.TEXT),),
                params=(Param("log", str, "", "file to log the start to", run_only=True),))
'''


def _swallowing_env(tmp: Path) -> dict[str, str]:
    site = tmp / "site"
    dist = site / "mora_swallow-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mora-swallow\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mora.agents]\np_swallow = swallow_agents:SWALLOW\n")
    (site / "swallow_agents.py").write_text(SWALLOWING_AGENT)
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, MORA_CACHE_DIR=str(tmp / "cache"))


def test_ctrl_c_that_an_agent_swallowed_still_exits_130_with_one_line(tmp_path):
    log = tmp_path / "started.log"
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({
        "nodes": {"a": {"agent": "p_swallow", "params": {"log": str(log)}},
                  "b": {"agent": "text_template", "in": {"text": "x"}, "params": {"template": "A {text}"}}},
        "outputs": {"a": {"from": "a.text"}, "b": {"from": "b.text"}}}))
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE + MORA, f"graph_file={graph}", "runtime=local",
                             "runtime.device=cpu", "quiet=true", f"hydra.run.dir={tmp_path / 'run'}"],
                            env=_swallowing_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not log.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert log.exists(), proc.communicate()[1]
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["mora: interrupted"], err
    assert "Traceback" not in out and not (tmp_path / "run" / "manifest.json").exists()


def _run_closed(tmp_path: Path, closed: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`mora ARGS` with the standard streams named in `closed` (`0`, `1`, `2`) closed, as `2>&-` does."""
    graph = tmp_path / "echo.yaml"
    graph.write_text(yaml.safe_dump(ECHO_GRAPH))
    redirect = " ".join(f"{fd}>&-" if fd != "0" else "<&-" for fd in closed)
    argv = " ".join(f"'{a}'" for a in [sys.executable, "-c", MORA, f"graph_file={graph}", "inputs.prompt=fox",
                                       "runtime=local", f"hydra.run.dir={tmp_path / 'run'}", *args])
    env = dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(["bash", "-c", f"{argv} {redirect}; echo $? > {tmp_path / 'status'}"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_closed_stderr_runs_normally(tmp_path):
    done = _run_closed(tmp_path, "2")
    assert (tmp_path / "status").read_text().strip() == "0", done.stdout
    assert (tmp_path / "run" / "out.txt").read_text() == "A fox"
    assert "out:" in done.stdout and "Traceback" not in done.stdout


def test_all_standard_streams_closed_run_normally(tmp_path):
    _run_closed(tmp_path, "012")
    assert (tmp_path / "status").read_text().strip() == "0"
    assert (tmp_path / "run" / "out.txt").read_text() == "A fox"


def test_torch_logs_nothing_below_warning_even_when_its_import_was_cut_short():
    """An import of torch that Ctrl-C cut short never sets its logger: its exit hooks' INFO stats must stay quiet."""
    import logging

    from mora.engine.execution.progress import quiet_libraries

    torch_log = logging.getLogger("torch")
    before = torch_log.level
    torch_log.setLevel(logging.NOTSET)
    try:
        quiet_libraries(False)
        assert not logging.getLogger("torch._subclasses.fake_tensor").isEnabledFor(logging.INFO)
    finally:
        torch_log.setLevel(before)


@pytest.mark.parametrize(("override", "message"), [
    ("model.attention=bogus", "model attention 'bogus' is not one of ['sdpa', 'auto', 'xformers'"),
    ("+model.roles.text_to_image.attention=sdpa_bogus", "model attention 'sdpa_bogus' is not one of"),
    ("model.roles.prompt={source:tiny,name:nosuch}", "no tiny model named 'nosuch' (role prompt); known: "),
    ("model.roles.text_to_image={source:random,name:nosuch}", "no random model named 'nosuch' (role text_to_image)"),
])
def test_model_settings_checked_before_anything_runs(capsys, cache_dir, tmp_path, override, message):
    result = run_mora(capsys, "model=tiny", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 2, result.err
    assert message in result.err and "Traceback" not in result.err
    assert not (tmp_path / "run" / "manifest.json").exists() and not (cache_dir / "models").exists()


def test_a_log_file_that_cannot_be_opened_is_a_clear_error(capsys, cache_dir, tmp_path):
    result = run_mora(capsys, "model=tiny", "outputs=[prompt]", "hydra.job.name=a/b",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 2, result.err
    assert "cannot write the run's log file" in result.err and "hydra.job.name" in result.err
    assert "internal error" not in result.err


@pytest.mark.parametrize(("overrides", "message"), [
    (["runtime.address=garbage"], "runtime.address: must be null"),
    (["runtime.address=ray://host:port"], "runtime.address: must be null"),
    (["runtime.num_gpus=100000"], "runtime.num_gpus: 100000 GPU(s) asked but this machine has"),
    (["runtime.num_gpus=100000", "runtime.device=cpu"], "runtime.num_gpus: 100000 CPU actors but this machine has"),
])
def test_ray_settings_that_cannot_work_are_refused_before_ray_starts(capsys, cache_dir, tmp_path, overrides, message):
    result = run_mora(capsys, "model=tiny", "outputs=[prompt]", "runtime=ray", *overrides,
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 2, result.err
    assert message in result.err and "internal error" not in result.err


def test_a_ray_address_where_nothing_listens_is_refused_at_once():
    import socket

    from mora.engine.errors import MoraError
    from mora.engine.execution.executors.ray import reachable

    with socket.socket() as s:  # a port just freed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.time()
    with pytest.raises(MoraError, match=rf"runtime.address=127.0.0.1:{port} \("):
        reachable(f"127.0.0.1:{port}", timeout=5)
    assert time.time() - started < 5


def test_stdout_on_a_full_disk_is_an_environment_failure(tmp_path):
    graph = tmp_path / "echo.yaml"
    graph.write_text(yaml.safe_dump(ECHO_GRAPH))
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", MORA, f"graph_file={graph}", "inputs.prompt=fox",
                               "runtime=local", "quiet=true", f"hydra.run.dir={tmp_path / 'run'}"],
                              env=dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache")), stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "mora: error: No space left on device"
    assert "Traceback" not in done.stderr


def _closed_reader(tmp_path: Path, *command: str, failing: bool = False) -> subprocess.CompletedProcess:
    """`command` run with its standard output a pipe whose reader has gone (`mora ... | true`, `| head -1`)."""
    graph = tmp_path / "echo.yaml"
    nodes = {"frame": {**ECHO_GRAPH["nodes"]["frame"], "params": {"template": "no placeholder"}}} if failing else {}
    graph.write_text(yaml.safe_dump({**ECHO_GRAPH, "nodes": {**ECHO_GRAPH["nodes"], **nodes}}))
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-c", *(a.replace("GRAPH", str(graph)) for a in command)],
                              env=dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache")), stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)


def test_a_reader_that_went_away_keeps_the_runs_files_and_ends_quietly_with_141(tmp_path):
    done = _closed_reader(tmp_path, MORA, "graph_file=GRAPH", "inputs.prompt=fox", "runtime=local", "quiet=true",
                          f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 141, done.stderr
    assert "Broken pipe" not in done.stderr and "mora:" not in done.stderr and "Exception" not in done.stderr
    assert {"manifest.json", "out.txt", "report.html"} <= {p.name for p in (tmp_path / "run").iterdir()}


ADMIN = "from mora.engine.frontends.admin import main; raise SystemExit(main())"


@pytest.mark.parametrize("command", [(MORA, "--help"), (ADMIN, "agents")])
def test_a_listing_cut_short_by_its_reader_ends_quietly_with_141(tmp_path, command):
    done = _closed_reader(tmp_path, *command)
    assert (done.returncode, done.stderr) == (141, "")


def test_a_failed_node_outranks_a_reader_that_went_away(tmp_path):
    done = _closed_reader(tmp_path, MORA, "graph_file=GRAPH", "inputs.prompt=fox", "runtime=local", "quiet=true",
                          f"hydra.run.dir={tmp_path / 'run'}", failing=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("mora: error: 1 node(s) failed: frame")
    assert "Broken pipe" not in done.stderr and "Exception" not in done.stderr
    assert (tmp_path / "run" / "report.html").is_file()


@pytest.mark.parametrize("spelling", [("--multi",), ("--mult",), ("--multir",), ("hydra.mode='MULTIRUN'",),
                                      ('hydra.mode="MULTIRUN"',), ("hydra.mode=RunMode.MULTIRUN",)])
def test_every_spelling_hydra_reads_as_a_sweep_is_a_sweep(capsys, cache_dir, tmp_path, spelling):
    graph = tmp_path / "echo.yaml"
    graph.write_text(yaml.safe_dump(ECHO_GRAPH))
    result = run_mora(capsys, *spelling, f"graph_file={graph}", "runtime=local", "quiet=true", "prompt=a,b",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 0, result.err
    assert [(tmp_path / "sweep" / job / "out.txt").read_text() for job in ("0", "1")] == ["A a", "A b"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("argv", "multirun"), [
    (["-m"], True), (["--multirun"], True), (["--mu", "x=1"], True), (["hydra.mode=MULTIRUN"], True),
    (["+hydra.mode='MULTIRUN'"], True), (["hydra.mode=2"], True), (["hydra.mode=MULTIRUN", "hydra.mode=RUN"], False),
    (["prompt=hydra.mode=MULTIRUN"], False), (["prompt=it's -m, a mode"], False), (["--cfg=job"], False),
    (["--version"], False), (["x=1", "-m", "y=2"], False),  # Hydra refuses that command line itself
])
def test_multirun_is_what_hydras_parsers_say(capsys, argv, multirun):
    from mora.engine.frontends.overrides import is_multirun

    assert is_multirun(argv) is multirun
    assert capsys.readouterr() == ("", "")  # asking Hydra's parser prints nothing (not even --version's line)


@pytest.mark.slow
def test_ray_devices_beyond_the_clusters_gpus_are_refused_not_waited_for(ray_cluster):
    pytest.importorskip("ray")
    from mora.engine.errors import MoraError
    from mora.engine.execution.executors.ray import RayExecutor

    with pytest.raises(MoraError, match=r"runtime.devices asks 3 GPU\(s\) but the Ray cluster has 2"):
        RayExecutor({"device": "cpu", "devices": 3})


def test_an_input_refused_inside_the_job_is_one_line(tmp_path):
    """Hydra's own "Error executing job with overrides: [...]" (every override again, a long prompt in full) is
    left out: the refusal is Mora's one line."""
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump(ECHO_GRAPH))
    env = dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", MORA, f"graph_file={graph}", "inputs.nosuch=1",
                           f"inputs.prompt={'fox ' * 2000}", f"hydra.run.dir={tmp_path / 'run'}"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[:2000]
    assert "unknown graph input 'nosuch'" in lines[0] and "fox fox" not in lines[0]


def test_a_pool_of_more_cpu_workers_than_one_machine_may_start_is_refused_before_any_starts():
    from mora.engine.errors import MoraError
    from mora.engine.execution.executors.pool import MAX_CPU_WORKERS, PoolExecutor

    with pytest.raises(MoraError, match=f"runtime.devices={MAX_CPU_WORKERS + 1} CPU workers is more than"):
        PoolExecutor(MAX_CPU_WORKERS + 1, "cpu")


def test_a_worker_whose_driver_is_gone_exits_without_a_traceback(tmp_path):
    worker = subprocess.Popen([sys.executable, "-m", "mora.engine.execution.worker", "cpu", "w0"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache")))
    worker.stdout.close()  # the driver's end of the protocol, gone before the worker says it is ready
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 3 and b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()[-2000:]


def test_a_ctrl_c_never_counts_for_a_later_run_in_the_same_process():
    from mora.engine.execution import interrupts

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (see INTERRUPTIBLE)
    try:
        with interrupts.recorded():
            with pytest.raises(KeyboardInterrupt):
                signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # what a Ctrl-C does here
            assert interrupts.received()
        interrupts.check()  # outside a guarded run (the Python API afterwards): nothing to stop
        with interrupts.recorded():
            assert not interrupts.received()
            interrupts.check()
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_sweep_job_refused_inside_is_named_in_its_one_line(tmp_path):
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"inputs": {"n": {"type": "number", "default": 1}},
                                     "nodes": {"a": {"agent": "text_template", "in": {"text": "x"},
                                                     "params": {"nosuch": {"input": "n"}}}},
                                     "outputs": {"out": {"from": "a.text"}}}))
    env = dict(os.environ, MORA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", MORA, "-m", f"graph_file={graph}", "hydra/launcher=basic",
                           "inputs.n=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("mora:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-2000:]
    assert errors[0].startswith("mora: job #0 (") and "inputs.n=1)" in errors[0] and "nosuch" in errors[0]
    assert "Error executing job" not in done.stderr


def test_mp4_outputs_without_pyav_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """A broken install (PyAV missing) once surfaced only when the first video was written, after all of a sweep's
    work (on the GPU machine, whose image lacks PyAV): now the run stops before its first node, saying what to do."""
    from mora.engine.frontends import manifest

    monkeypatch.setattr(manifest, "pyav_installed", lambda: False)
    monkeypatch.setenv("MORA_CACHE_DIR", str(tmp_path / "cache"))
    result = run_mora(capsys, "model=tiny", "prompt=red ball", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.status == 1 and result.clean, result.err
    assert "output(s) video are videos, written as MP4 through PyAV" in result.err and "video_format=frames" in result.err
    assert not [p for p in (tmp_path / "cache").rglob("objects/**/*") if p.is_file()]  # no node ran
