"""`mora-admin workers start|status|stop`: the standing workers of this machine (mora.engine.execution.standing).

Why a command of its own: standing workers outlive every `mora` command by design, so starting and stopping
them is the user's explicit act, never a side effect of a run.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mora.engine.errors import MoraError
from mora.engine.execution import standing
from mora.engine.execution.standing import WorkersError


def cmd_workers(args: argparse.Namespace) -> int:
    folder = standing.workers_dir(args.dir)
    return {"start": start, "status": status, "stop": stop}[args.action](folder, args)


def parse_devices(text: str) -> Any:
    """`all`, a count (`2`) or GPU ids (`0,2`), as `runtime.devices` takes them."""
    if text == "all":
        return "all"
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"must be `all`, a count such as 2 or GPU ids such as 0,2; got {text!r}")
    if len(parts) == 1:
        if int(parts[0]) < 1:
            raise argparse.ArgumentTypeError("a count of at least 1")
        return int(parts[0])
    if len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(f"a GPU id is listed twice in {text!r}")
    return [int(p) for p in parts]


def start(folder: Path, args: argparse.Namespace) -> int:
    """Start a standing worker for each device that has none running, and wait until each answers on its socket."""
    from mora.engine.execution.executors.pool import count_gpus, device_ids

    kind = "cpu" if args.device == "cpu" else "cuda"
    if kind == "cuda" and count_gpus() == 0:
        raise MoraError("no GPU is visible on this machine: start CPU workers with --device cpu")
    names = {f"{kind}{i}": i for i in device_ids(args.devices, kind)}
    paths = {name: standing.socket_path(folder, f"worker-{name}") for name in names}
    running = {name: hello for name, path in paths.items() if (hello := standing.alive(path)) is not None}
    mine = standing.identity()
    for name, hello in running.items():
        differ = [standing.IDENTITY_PARTS[k] for k in mine if hello.get(k) != mine[k]]
        if differ:
            raise WorkersError(f"worker {name} (pid {hello['pid']}) runs with another {', '.join(differ)}: stop the "
                               "workers, then start them")
        print(f"worker {name} on {kind}:{names[name]}: already running (pid {hello['pid']})")
    if len(running) == len(names):
        return 0
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    started: dict[str, subprocess.Popen] = {}
    try:
        for name, device_id in names.items():
            if name not in running:
                started[name] = _spawn(folder, kind, name, device_id, paths[name])
        deadline = time.monotonic() + (120.0 if args.timeout is None else args.timeout)
        problem = None
        for name, proc in started.items():
            problem = problem or _wait_ready(proc, paths[name], folder / f"worker-{name}.log", deadline)
        if problem is not None:
            raise WorkersError(problem)
    except BaseException:  # a failure or Ctrl-C: none of the workers this command started is left behind
        _end(list(started.values()))
        raise
    for name, proc in started.items():
        print(f"worker {name} on {kind}:{names[name]}: pid {proc.pid}, listening on {paths[name]}")
    print(f"attach runs with: mora runtime=pool runtime.attach={folder}")
    return 0


def _end(procs: list[subprocess.Popen]) -> None:
    """Terminate every process first, then wait for each (a second Ctrl-C meanwhile cannot leave one running)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spawn(folder: Path, kind: str, name: str, device_id: str, path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="" if kind == "cpu" else device_id)
    log = os.open(folder / f"worker-{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # prompts are logged
    try:
        return subprocess.Popen([sys.executable, "-m", "mora.engine.execution.worker", kind, name, "--listen",
                                 str(path), device_id], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    finally:
        os.close(log)


def _wait_ready(proc: subprocess.Popen, path: Path, log: Path, deadline: float) -> str | None:
    """None once the worker this command started answers on `path`; else why it did not."""
    while True:
        try:
            hello = standing.look(path)
            if hello["pid"] == proc.pid:
                return None
        except standing.WorkersError:
            pass
        if proc.poll() is not None:
            return f"the worker for {path.name} ended (exit code {proc.returncode}) before it listened: {_tail(log)}"
        if time.monotonic() > deadline:
            return f"the worker for {path.name} did not listen within the time given (--timeout); its log: {log}"
        time.sleep(0.1)


def _tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else f"(nothing in {log})"


def status(folder: Path, args: argparse.Namespace) -> int:
    """One line per standing worker: device, pid, age, whom it serves and its resident models."""
    paths = standing.sockets(folder)
    if not paths:
        print(f"no standing workers in {folder}")
    for path in paths:
        try:
            hello = standing.look(path)
        except standing.NotRunning:
            print(f"{path.name}: not running (its socket outlived it; `mora-admin workers start` starts it again, "
                  "`stop` removes it)")
            continue
        except standing.WorkersError as e:
            print(f"{path.name}: {e}")
            continue
        serving = f"serving the run of pid {hello['serving']}" if hello.get("serving") is not None else "idle"
        resident = ", ".join(hello.get("resident", [])) or "none"
        up = time.time() - float(hello.get("since", time.time()))
        print(f"{hello['name']} on {hello['kind']}:{hello['device_id']}: pid {hello['pid']}, up {up:.0f} s, "
              f"{serving}; resident models: {resident}")
    return 0


def stop(folder: Path, args: argparse.Namespace) -> int:
    """Stop every standing worker in `folder` (SIGTERM, then SIGKILL after --timeout) and remove the sockets nothing
    listens on; a socket whose listener does not answer as a worker of this user is left alone."""
    paths = standing.sockets(folder)
    if not paths:
        print(f"no standing workers in {folder}")
    left = 0
    for path in paths:
        try:
            hello = standing.look(path)
        except standing.NotRunning:
            path.unlink(missing_ok=True)
            print(f"{path.name}: removed (its worker had already ended)")
            continue
        except standing.WorkersError as e:
            print(f"{path.name}: left alone: {e}")
            left += 1
            continue
        pid = int(hello["pid"])
        if not _signal_until_gone(pid, 10.0 if args.timeout is None else args.timeout):
            print(f"{hello['name']} (pid {pid}): did not end, even after SIGKILL")
            left += 1
            continue
        path.unlink(missing_ok=True)  # removed by the worker itself unless it had to be killed
        print(f"stopped {hello['name']} (pid {pid})" +
              (f"; it was serving the run of pid {hello['serving']}" if hello.get("serving") is not None else ""))
    if left:
        raise WorkersError(f"{left} socket(s) in {folder} were left: see above")
    return 0


def _signal_until_gone(pid: int, seconds: float) -> bool:
    """SIGTERM, then SIGKILL after `seconds`; whether the process is gone (one that ended meanwhile is)."""
    for sig, wait in ((signal.SIGTERM, seconds), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if standing.wait_gone(pid, wait):
            return True
    return False


def add_parser(sub: Any, folder: Callable[[str], str]) -> None:
    """`mora-admin workers ...` on the admin parser's subcommands; `folder` reads `--dir` as every command's does."""
    w = sub.add_parser("workers", help="standing workers: models loaded and compiled once, kept between runs")
    w.add_argument("action", choices=["start", "status", "stop"])
    w.add_argument("--dir", type=folder, help="their folder (default: <cache>/workers; runs attach with runtime.attach=DIR)")
    w.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="start: GPU workers, or CPU ones")
    w.add_argument("--devices", type=parse_devices, default="all",
                   help="start: all, a count (2) or GPU ids (0,2); for CPU workers a count (default 2)")
    w.add_argument("--timeout", type=float,
                   help="start: seconds to wait for the workers to listen (default 120); stop: before SIGKILL "
                        "(default 10)")
    w.set_defaults(fn=cmd_workers)
