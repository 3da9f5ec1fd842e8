"""Leases: what live runs reference, so that maintenance never deletes it.

Policy. A run takes a lease, `leases/<random>.lease`: a file it holds an exclusive `flock` on for
as long as it runs, to which it appends the digest of every artifact the run has looked up,
stored, or will read, one per line, before relying on it. Only the driver writes its lease:
what a worker stores is named there when the worker's result comes back (until then the
object is younger than gc's grace period, and a worker refreshes the mtime of one it finds). The
OS drops the lock when the run's process dies, so a lease whose lock can be taken is stale and
is removed. `gc` deletes only objects that no index entry references, that no live lease
names, and that are older than a grace period (which covers writers that hold no lease).

One lock closes the races, `leases/maintenance.lock`: runs hold it shared for the instant
between naming a digest in their lease and checking that its object exists (or writing it);
`gc` and quarantine hold it exclusively while they decide what to move or delete. Nobody waits
for it longer than `cache.lock_timeout` seconds: a holder stuck that long is an error naming the lock.

Only files named as `Lease.take` names them, and only regular files, are read as leases (opened
without blocking, never through a symlink): anything else in `leases/` is left alone.

A lease that cannot be written (a full disk) does not fail the run: the run goes on with a
warning that a concurrent gc could remove what it uses, and the grace period still holds.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from mora.engine.errors import CacheError

log = logging.getLogger("mora.cache")
LEASE_NAME = re.compile(r"\d+-[0-9a-f]{32}\.lease")
"""How `Lease.take` names a lease file."""
PATIENCE = 5.0
"""Seconds of waiting for the maintenance lock after which the wait is logged."""


class MaintenanceLock:
    """A shared/exclusive inter-process lock (flock: released by the OS if its holder dies), waited for `timeout` s."""

    def __init__(self, path: Path, timeout: float):
        self.path = path
        self.timeout = timeout
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def _held(self, mode: int) -> Iterator[None]:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        self._acquire(self._fd, mode)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _acquire(self, fd: int, mode: int) -> None:
        """Take the lock, polling (flock itself has no timeout); CacheError after `timeout` seconds."""
        start = time.monotonic()
        delay, logged = 0.001, False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                waited = time.monotonic() - start
            if waited >= self.timeout:
                raise CacheError(f"the cache's maintenance lock {self.path} has been held by another process for "
                                 f"{waited:.0f} s (cache.lock_timeout={self.timeout:g}): a `mora-admin cache gc` or "
                                 "`verify` stuck on this cache? End it, or raise cache.lock_timeout")
            if waited >= PATIENCE and not logged:
                log.warning("cache: waiting for the maintenance lock %s (held by another process: a "
                            "`mora-admin cache gc` or `verify`?), at most %g s", self.path, self.timeout)
                logged = True
            time.sleep(min(delay, self.timeout - waited))
            delay = min(delay * 2, 0.02)

    def shared(self) -> AbstractContextManager[None]:
        return self._held(fcntl.LOCK_SH)

    def exclusive(self) -> AbstractContextManager[None]:
        return self._held(fcntl.LOCK_EX)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Lease:
    """The digests one run relies on; the run's driver holds the file's lock and appends to it."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd = fd
        self._named: set[str] = set()

    @classmethod
    def take(cls, folder: Path) -> Lease:
        """A new lease held by this process (take it under the maintenance lock, shared)."""
        path = folder / f"{os.getpid()}-{uuid.uuid4().hex}.lease"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as e:
            log.warning("cache: cannot take a lease in %s (%s); a `mora-admin cache gc` running now could remove "
                        "what this run uses", folder, e.strerror or e)
            return cls(path, -1)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(path, fd)

    def add(self, digests: Iterable[str]) -> None:
        new = [d for d in dict.fromkeys(digests) if d not in self._named]
        if new and self._fd >= 0:
            try:
                os.write(self._fd, "".join(f"{d}\n" for d in new).encode())
            except OSError as e:
                log.warning("cache: cannot write the run's lease %s (%s); a `mora-admin cache gc` running now could "
                            "remove what this run uses", self.path, e.strerror or e)
                self.release()
                return
            self._named.update(new)

    def release(self) -> None:
        if self._fd < 0:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = -1


def live_digests(folder: Path) -> set[str]:
    """Digests named by leases whose run is alive; stale leases are removed (hold the lock exclusively)."""
    live: set[str] = set()
    with os.scandir(folder) as listing:
        names = [e.name for e in listing if LEASE_NAME.fullmatch(e.name)]
    for name in names:
        path = folder / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:  # gone meanwhile, or a symlink
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its run holds it: alive
                with os.fdopen(os.dup(fd), "r") as f:
                    live.update(line.strip() for line in f if line.strip())
            else:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return live
