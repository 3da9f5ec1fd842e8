"""A long-lived worker process: runs NodeTasks sent as JSON lines on stdin, answers on stdout.

Each line is a node or a batch of nodes (mora.engine.execution.task.unit_to_json). One worker owns one
device (the pool sets CUDA_VISIBLE_DEVICES before it starts, so inside it the device is `cuda`),
keeps its models resident between nodes, and reads inputs from and writes outputs to the
content-addressed artifact store; it never opens the index: each answer carries the nodes' entries
(output digests, seconds), which the driver records. Only digests cross the pipe. A GPU worker imports torch and creates its
CUDA context before it says it is ready, so that start-up overlaps the driver's planning rather
than the first node; while a unit runs, the models of the nodes downstream of it load on a
background thread (mora.engine.execution.runner.prefetch). Each answer also lists the models resident in
the worker, which the pool uses to place nodes near their models, and the loads since the last
answer (model, start, seconds, prefetched or not) for the pool's timeline. The worker ignores
SIGINT (the pool stops it) and exits if its parent dies. With `--listen` it is a standing worker instead
(mora.engine.execution.standing): it serves the runs that attach on a Unix socket until it is stopped.

    python -m mora.engine.execution.worker DEVICE WORKER_NAME [--listen SOCKET DEVICE_ID]
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from mora.engine.execution.model_loader import model_loader
from mora.engine.execution.task import NodeResult, unit_from_json


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(3)


def serve(device: str, name: str) -> None:
    """A pool's worker: answer the tasks on stdin until the pool closes it; exit if the pool's process dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    out = sys.stdout
    sys.stdout = sys.stderr  # agents' prints must not corrupt the protocol
    device = _ready_device(device)
    out.write(json.dumps({"ready": name, "device": device, "pid": os.getpid(), "time": time.time()}) + "\n")
    out.flush()
    answer(sys.stdin, out, device, name)


def stand(kind: str, name: str, path: str, device_id: str) -> None:
    """A standing worker (mora.engine.execution.standing): serve the runs that attach on the socket `path`."""
    from mora.engine.execution import standing

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout = sys.stderr
    standing.identity()  # the code as it is now, before the seconds torch and CUDA take to start
    device = _ready_device(kind)
    since = time.time()

    def hello() -> dict:
        return {"name": name, "kind": kind, "device_id": device_id,
                "device": device, "pid": os.getpid(), "since": since,
                "resident": model_loader().resident_models(), **standing.identity()}

    standing.listen(Path(path), hello, lambda lines, out: answer(lines, out, device, name))


def _ready_device(device: str) -> str:
    from mora.engine.execution.devices import choose_device, warm_up

    device = choose_device(device)
    warm_up(device)
    return device


def answer(lines: Iterable[str], out: TextIO, device: str, name: str) -> None:
    """Run each unit of `lines` and write its results, resident models and loads to `out`, a line each."""
    from mora.engine.execution.runner import execute_unit, prefetch

    for line in lines:
        if not line.strip():
            continue
        unit = unit_from_json(json.loads(line))
        prefetch(unit, device)
        results = execute_unit(unit, device, name)
        loader = model_loader()
        out.write(json.dumps({"results": [dataclasses.asdict(r) for r in results],
                              "resident": loader.resident_models(), "loads": loader.take_loads()}) + "\n")
        out.flush()


def result_from_json(data: dict) -> NodeResult:
    data = dict(data)
    data["model_loads"] = tuple(data.get("model_loads") or ())
    data["corrupt"] = tuple(data.get("corrupt") or ())
    return NodeResult(**data)


def main(argv: list[str]) -> None:
    if len(argv) == 5 and argv[2] == "--listen":  # KIND NAME --listen SOCKET DEVICE_ID
        from mora.engine.errors import MoraError

        try:
            stand(argv[0], argv[1], argv[3], argv[4])
        except MoraError as e:
            print(f"mora worker {argv[1]}: error: {e}", file=sys.stderr)
            sys.exit(e.exit_status)
        return
    try:
        serve(argv[0], argv[1])
    except BrokenPipeError:  # the driver is gone (Ctrl-C, killed): nobody to answer, nothing to report
        os._exit(3)


if __name__ == "__main__":
    main(sys.argv[1:])
