"""Standing workers: pool workers that outlive a command, so loaded and compiled models stay warm between runs.

Policy. `mora-admin workers start` starts one pool worker per device (`python -m mora.engine.execution.worker
KIND NAME --listen SOCKET DEVICE_ID`), detached from the terminal, each listening on a Unix socket in one folder. A run with
`runtime=pool runtime.attach=FOLDER` (`auto`: the default cache's `workers/`) connects to them instead of starting workers of
its own, so the models they loaded and compiled for earlier commands are still resident: a sweep pays loading and
compilation once per machine, not once per command. A worker serves one run at a time; a second run is refused at
once, naming the run it serves (never queued behind it). Each task carries its run's settings, so runs with
different caches may use the same workers. The protocol is the pool's (JSON lines, digests only) after a one-line
handshake each way: the run sends `{"attach": PID}` (or `{"status": PID}` to only look), the worker answers with its
name, device, pid, resident models, whom it serves, and what it runs: Mora's version, installation and code (a
digest of its files as they were when it started) and the versions of the libraries that enter cache keys. A run
refuses workers that run anything else (their results would be recorded under this code's keys). The socket is
owner-only (0600): a task names modules to import, so only the user who started the workers may send them; a run
also checks the peer's credentials (same user, the pid it claims), so a socket that is not a Mora worker of this user
is never trusted with tasks, and `stop` signals only such pids. Only files named `worker-*.sock` are workers';
`stop` removes one only when nothing listens on it. A worker removes its own socket as it exits.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import queue
import signal
import socket
import stat
import struct
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from mora.engine.errors import MoraError
from mora.engine.userfiles import expand_user

HANDSHAKE_SECONDS = 10.0
"""How long either side waits for the other's handshake line: a live worker answers in milliseconds."""
MAX_SOCKET_PATH = 107
"""Linux's limit on a Unix socket's path (sun_path holds 108 bytes with the terminating NUL)."""
ABANDONED_WAIT_SECONDS = 600.0
"""How long a run waits for a worker to finish the node of a run that has ended before it gives up."""
KEYED_LIBRARIES = ("torch", "diffusers", "transformers")
GONE = frozenset({errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET})
"""What connecting to a dead worker's socket gives: refused, or reset when it died with the connection queued."""
_LINE_LIMIT = 1 << 16
log = logging.getLogger("mora.pool")


class WorkersError(MoraError):
    """Standing workers that are missing, busy, of another Mora, or that cannot be started or stopped."""

    exit_status = 1


class NotRunning(WorkersError):
    """Nothing listens on a worker's socket: the worker has ended (the socket file outlived it) or never started."""


def workers_dir(value: str | None) -> Path:
    """The folder of standing workers that `runtime.attach` names (`auto` or empty: the default cache's `workers/`,
    $MORA_CACHE_DIR's or the user cache's: workers belong to the machine, not to the cache of one run)."""
    if value in (None, "", "auto"):
        from mora.engine.cache.store import default_cache_dir

        return default_cache_dir() / "workers"
    return expand_user(str(value), "runtime.attach").resolve()


def socket_path(folder: Path, name: str) -> Path:
    return _check_length(folder / f"{name}.sock")


def _check_length(path: Path) -> Path:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise WorkersError(f"the socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket allows; "
                           "choose a shorter folder (mora-admin workers start --dir ...; runtime.attach=...)")
    return path


def sockets(folder: Path) -> list[Path]:
    """The sockets of the standing workers in `folder` (none if it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("worker-*.sock") if _is_socket(p))


IDENTITY_PARTS = {"version": "Mora version", "package": "Mora installation",
                  "code": "Mora code (a file of it changed since the workers started)",
                  "libraries": "torch, diffusers or transformers version"}


@functools.cache
def identity() -> dict[str, str]:
    """What must be the same in a run and the workers it attaches to (IDENTITY_PARTS), as of this process's start."""
    import mora.engine

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "none"

    code = hashlib.blake2b(digest_size=16)
    for root in _code_roots():
        for file in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            st = file.stat()
            code.update(f"{file}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"version": version("mora-dag"), "package": str(Path(mora.engine.__file__).resolve().parent),
            "code": code.hexdigest(), "libraries": " ".join(f"{d}=={version(d)}" for d in KEYED_LIBRARIES)}


def _code_roots() -> list[Path]:
    """The code a worker runs: the engine's folder, and those of the packages its entry points register (agents, the
    model loader; a top-level module alone is its file), found without importing the agents' modules (only their
    parent packages are imported, to locate them); an entry point whose module is gone is left out."""
    import importlib.util

    import mora.engine

    roots = {Path(mora.engine.__file__).resolve().parent}
    for group in ("mora.agents", "mora.model_loader"):
        for ep in importlib.metadata.entry_points(group=group):
            try:
                spec = importlib.util.find_spec(ep.module)
            except (ImportError, ValueError):
                continue
            if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
                origin = Path(spec.origin).resolve()
                roots.add(origin.parent if "." in ep.module else origin)
    return sorted(roots)


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
        except OSError:
            pass  # the run went away (Ctrl-C, killed): serve the next one
        except Exception:  # noqa: BLE001 (a task this worker cannot read ends that run's connection, not the worker)
            traceback.print_exc()
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
        answer = {**hello(), "serving": busy, "serving_alive": busy is not None and running(busy)}
        conn.sendall((json.dumps(answer) + "\n").encode())
        if take:
            conn.settimeout(None)
            runs.put(conn)
            take = False
            return
    except (OSError, ValueError):
        pass  # the other side left or sent no handshake (a probe): nothing to report
    except Exception:  # noqa: BLE001 (a failed handshake ends that connection; the worker serves on)
        traceback.print_exc()
    finally:
        if take:  # taken, then the handshake failed: free again
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
    """Take the standing worker listening on `path` for this run. One still finishing the node of a run that has
    ended (Ctrl-C, the previous command of a script) is waited for (at most ABANDONED_WAIT_SECONDS), as is, briefly,
    one this process has just left; one serving a live run is refused at once."""
    started = time.monotonic()
    waited = False
    while True:
        sock, hello = _handshake(path, "attach")
        serving = hello.get("serving")
        own = serving == os.getpid() and time.monotonic() - started < HANDSHAKE_SECONDS
        ended = serving is not None and not hello.get("serving_alive")
        if not (own or ended):  # free, or serving a live run
            break
        sock.close()
        if ended and time.monotonic() - started > ABANDONED_WAIT_SECONDS:
            raise WorkersError(f"the standing worker {hello.get('name')} ({path}) is still finishing a node of a run "
                               f"that ended (pid {serving}) after {ABANDONED_WAIT_SECONDS:.0f} s; wait for it, or "
                               "restart the workers (mora-admin workers stop, then start)")
        if ended and not waited:
            log.warning("waiting for the standing worker %s to finish a node of a run that ended (pid %s)",
                        hello.get("name"), serving)
            waited = True
        time.sleep(0.05)
    name = f"the standing worker {hello.get('name')} on {hello.get('kind')}:{hello.get('device_id')} ({path})"
    if hello.get("serving") == os.getpid():
        sock.close()
        raise WorkersError(f"{name} is still held by another run of this process: one process may attach to a "
                           "worker once at a time")
    if hello.get("serving") is not None:
        sock.close()
        raise WorkersError(f"{name} is serving another run (pid {hello['serving']}); wait for it, or start "
                           "workers in another folder (mora-admin workers start --dir ...)")
    mine = identity()
    differ = [IDENTITY_PARTS[k] for k in mine if hello.get(k) != mine[k]]
    if differ:
        sock.close()
        raise WorkersError(f"{name} was started with another {', '.join(differ)} than this run's: restart them "
                           "(mora-admin workers stop, then start)")
    return Attached(sock, hello, sock.makefile("r", encoding="utf-8"), sock.makefile("w", encoding="utf-8"))


def look(path: Path) -> dict[str, Any]:
    """The handshake of the worker on `path` without taking it. NotRunning if nothing listens there, WorkersError if
    what listens is not a worker of this user or does not answer."""
    sock, hello = _handshake(path, "status")
    sock.close()
    return hello


def alive(path: Path) -> dict[str, Any] | None:
    """`look(path)`, or None for a socket nothing listens on."""
    try:
        return look(path)
    except NotRunning:
        return None


def _handshake(path: Path, verb: str) -> tuple[socket.socket, dict[str, Any]]:
    if not _is_socket(path):
        raise NotRunning(f"no standing worker at {path}: start them with `mora-admin workers start`")
    _check_length(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(HANDSHAKE_SECONDS)
    try:
        sock.connect(str(path))
        peer = _peer(sock)
        if peer is not None and peer[1] != os.getuid():
            raise WorkersError(f"{path} is served by another user's process (uid {peer[1]}), not by a worker of yours")
        sock.sendall((json.dumps({verb: os.getpid()}) + "\n").encode())
        line = _read_line(sock)
        hello = json.loads(line) if line else None
        if not isinstance(hello, dict) or "pid" not in hello:
            raise WorkersError(f"what listens on {path} did not answer as a standing worker")
        if peer is not None and hello["pid"] != peer[0]:
            raise WorkersError(f"what listens on {path} says it is pid {hello['pid']} but is pid {peer[0]}: not a "
                               "standing worker")
    except WorkersError:
        sock.close()
        raise
    except OSError as e:
        sock.close()
        if e.errno not in GONE:
            raise WorkersError(f"the standing worker at {path} did not answer its handshake ({e})") from None
        raise NotRunning(f"the standing worker at {path} is not running (its socket outlived it); start it again: "
                         "mora-admin workers start") from None
    except ValueError as e:
        sock.close()
        raise WorkersError(f"the standing worker at {path} did not answer its handshake "
                           f"({e or type(e).__name__})") from None
    sock.settimeout(None)
    return sock, hello


def _peer(sock: socket.socket) -> tuple[int, int] | None:
    """The connected process's pid and uid (Linux's SO_PEERCRED), None where the platform does not say."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return pid, uid


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
    """Whether something listens on `path` (a worker that does not answer its handshake still counts)."""
    try:
        look(path)
    except NotRunning:
        return False
    except WorkersError:
        return True
    return True


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except OSError:
        return False


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not ended (a zombie whose parent has not reaped it yet has ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def wait_gone(pid: int, seconds: float) -> bool:
    """Whether process `pid` ended within `seconds`."""
    deadline = time.monotonic() + seconds
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
