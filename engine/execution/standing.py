"""Standing workers: pool workers that outlive a command, so loaded and compiled models stay warm between runs.

Policy. `mora-admin workers start` starts one pool worker per device (`python -m mora.engine.execution.worker
KIND NAME --listen SOCKET`), detached from the terminal, each listening on a Unix socket in one folder. A run with
`runtime=pool runtime.attach=FOLDER` (`auto`: `<cache>/workers`) connects to them instead of starting workers of
its own, so the models they loaded and compiled for earlier commands are still resident: a sweep pays loading and
compilation once per machine, not once per command. A worker serves one run at a time; a second run is refused at
once, naming the run it serves (never queued behind it). Each task carries its run's settings, so runs with
different caches may use the same workers. The protocol is the pool's (JSON lines, digests only) after a one-line
handshake each way: the run sends `{"attach": PID}` (or `{"status": PID}` to only look), the worker answers with its
name, device, pid, resident models, whom it serves, and its Mora's version and package folder; a run refuses
workers of another Mora (their tasks would not match). The socket is owner-only (0600 in a 0700 folder): a task
names modules to import, so only the user who started the workers may send them. `mora-admin workers stop` sends
SIGTERM; a worker removes its own socket as it exits.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import queue
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mora.engine.errors import MoraError

HANDSHAKE_SECONDS = 10.0
"""How long either side waits for the other's handshake line: a live worker answers in milliseconds."""
MAX_SOCKET_PATH = 107
"""Linux's limit on a Unix socket's path (sun_path holds 108 bytes with the terminating NUL)."""
_LINE_LIMIT = 1 << 16
log = logging.getLogger("mora.pool")


class WorkersError(MoraError):
    """Standing workers that are missing, busy, of another Mora, or that cannot be started or stopped."""

    exit_status = 1


def workers_dir(value: str | None) -> Path:
    """The folder of standing workers that `runtime.attach` names (`auto` or empty: `<cache>/workers`)."""
    if value in (None, "", "auto"):
        from mora.engine.cache.store import default_cache_dir

        return default_cache_dir() / "workers"
    return Path(str(value)).expanduser().absolute()


def socket_path(folder: Path, name: str) -> Path:
    path = folder / f"{name}.sock"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise WorkersError(f"the socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket allows; "
                           "choose a shorter folder (mora-admin workers start --dir ...; runtime.attach=...)")
    return path


def sockets(folder: Path) -> list[Path]:
    """The sockets of the standing workers in `folder` (none if it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.sock") if _is_socket(p))


def identity() -> dict[str, str]:
    """What must be the same in a run and the workers it attaches to: Mora's version and package folder."""
    import mora.engine

    try:
        version = importlib.metadata.version("mora-dag")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"version": version, "package": str(Path(mora.engine.__file__).resolve().parent)}


# ---- the worker's side ----------------------------------------------------------------------------------------

def listen(path: Path, hello: Callable[[], dict[str, Any]], serve_run: Callable[[IO[str], IO[str]], None]) -> None:
    """Serve runs that attach on `path`, one at a time, forever: `serve_run(lines, out)` answers one run's tasks
    until it leaves. `hello()` is what the handshake tells (name, device, resident models...)."""
    server = _bind(path)
    inode = path.stat().st_ino
    signal.signal(signal.SIGTERM, lambda *_: _exit(path, inode))
    runs: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
    serving: list[int | None] = [None]
    lock = threading.Lock()
    threading.Thread(target=_accept_forever, args=(server, hello, runs, serving, lock), daemon=True).start()
    while True:
        conn = runs.get()
        try:
            with conn, conn.makefile("r", encoding="utf-8") as lines, conn.makefile("w", encoding="utf-8") as out:
                serve_run(lines, out)
        except (OSError, ValueError):
            pass  # the run went away (Ctrl-C, killed) or sent garbage: serve the next one
        finally:
            with lock:
                serving[0] = None


def _bind(path: Path) -> socket.socket:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not _is_socket(path):
            raise WorkersError(f"{path} exists and is not a worker's socket; remove it or choose another folder")
        if _answers(path):
            raise WorkersError(f"a standing worker already listens on {path} (mora-admin workers status)")
        path.unlink()  # a socket left by a worker that died
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    server.listen(16)
    return server


def _exit(path: Path, inode: int) -> None:
    try:
        if path.stat().st_ino == inode:  # still ours, not a newer worker's
            path.unlink()
    except OSError:
        pass
    os._exit(0)


def _accept_forever(server: socket.socket, hello: Callable[[], dict[str, Any]],
                    runs: queue.SimpleQueue[socket.socket], serving: list[int | None], lock: threading.Lock) -> None:
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_greet, args=(conn, hello, runs, serving, lock), daemon=True).start()


def _greet(conn: socket.socket, hello: Callable[[], dict[str, Any]], runs: queue.SimpleQueue[socket.socket],
           serving: list[int | None], lock: threading.Lock) -> None:
    """Answer one connection's handshake; hand it to the serving loop if it attaches and the worker is free."""
    take = False
    try:
        conn.settimeout(HANDSHAKE_SECONDS)
        request = json.loads(_read_line(conn))
        attach = request.get("attach") if isinstance(request, dict) else None
        with lock:
            busy = serving[0]
            take = isinstance(attach, int) and busy is None
            if take:
                serving[0] = attach
        answer = {**hello(), "serving": busy, "serving_alive": busy is not None and _alive(busy)}
        conn.sendall((json.dumps(answer) + "\n").encode())
        if take:
            conn.settimeout(None)
            runs.put(conn)
            return
    except (OSError, ValueError):
        if take:  # the run left during its handshake
            with lock:
                serving[0] = None
    conn.close()


# ---- the run's side --------------------------------------------------------------------------------------------

@dataclass
class Attached:
    """A standing worker this process attached to: its handshake and the connection's two ends."""

    sock: socket.socket
    hello: dict[str, Any]
    lines: IO[str]
    out: IO[str]

    def close(self) -> None:
        """Leave the worker (it finishes a task it is running, then serves the next run). The socket is shut down
        before anything is closed: a thread reading `lines` holds its lock until it sees the end."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.out.close()
        except OSError:
            pass
        self.sock.close()


def attach(path: Path) -> Attached:
    """Take the standing worker listening on `path` for this run. One still finishing the task of a run that has
    ended (Ctrl-C, the previous command of a script) is waited for, as is, briefly, one this process has just left;
    one serving a live run is refused at once."""
    waited = False
    own_deadline = time.monotonic() + HANDSHAKE_SECONDS
    while True:
        sock, hello = _handshake(path, "attach")
        serving = hello.get("serving")
        ending = serving is not None and (not hello.get("serving_alive") or
                                          serving == os.getpid() and time.monotonic() < own_deadline)
        if not ending:  # free, or serving a live run (another process's, or still ours after the deadline)
            break
        sock.close()
        if not waited and serving != os.getpid():
            log.info("waiting for the standing worker %s to finish the task of an ended run (pid %s)",
                     hello.get("name"), serving)
            waited = True
        time.sleep(0.05)
    name = f"the standing worker {hello.get('name')} on {hello.get('kind')}:{hello.get('device_id')} ({path})"
    if hello.get("serving") is not None:
        sock.close()
        raise WorkersError(f"{name} is serving another run (pid {hello['serving']}); wait for it, or start "
                           "workers in another folder (mora-admin workers start --dir ...)")
    mine = identity()
    theirs = {k: hello.get(k) for k in mine}
    if theirs != mine:
        sock.close()
        raise WorkersError(f"{name} runs Mora {theirs['version']} from {theirs['package']}, this is Mora "
                           f"{mine['version']} from {mine['package']}: restart them (mora-admin workers stop, "
                           "then start)")
    return Attached(sock, hello, sock.makefile("r", encoding="utf-8"), sock.makefile("w", encoding="utf-8"))


def look(path: Path) -> dict[str, Any] | None:
    """The handshake of the worker on `path` without taking it; None if nothing answers there."""
    try:
        sock, hello = _handshake(path, "status")
    except WorkersError:
        return None
    sock.close()
    return hello


def _handshake(path: Path, verb: str) -> tuple[socket.socket, dict[str, Any]]:
    if not _is_socket(path):
        raise WorkersError(f"no standing worker at {path}: start them with `mora-admin workers start`")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(HANDSHAKE_SECONDS)
    try:
        sock.connect(str(path))
        sock.sendall((json.dumps({verb: os.getpid()}) + "\n").encode())
        line = _read_line(sock)
        hello = json.loads(line) if line else None
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        raise WorkersError(f"the standing worker at {path} is not running (its socket outlived it); start the "
                           "workers again: mora-admin workers start") from None
    except (OSError, ValueError) as e:
        sock.close()
        raise WorkersError(f"the standing worker at {path} did not answer its handshake ({e or type(e).__name__})") \
            from None
    if not isinstance(hello, dict):
        sock.close()
        raise WorkersError(f"the standing worker at {path} closed the connection without a handshake")
    sock.settimeout(None)
    return sock, hello


def _read_line(sock: socket.socket) -> str:
    """One handshake line, read a byte at a time so that nothing after it is taken from the stream."""
    data = bytearray()
    while len(data) < _LINE_LIMIT:
        byte = sock.recv(1)
        if not byte or byte == b"\n":
            break
        data += byte
    return data.decode("utf-8")


def _answers(path: Path) -> bool:
    return look(path) is not None


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_gone(pid: int, seconds: float) -> bool:
    """Whether process `pid` ended within `seconds`."""
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
