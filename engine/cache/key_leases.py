"""Key leases: which driver computes a node, held as rows in the index, so concurrent drivers compute it once.

Policy. Only drivers write the index, and before a driver dispatches a cacheable node it takes
the key's lease: the index row `lease/<key>`, added atomically (diskcache's `add` writes only
where no unexpired row exists) with the driver's name (`host:pid:random`) as its value and an
expiry of `ttl` seconds: `ExecutionSettings.lock_timeout`, within MIN_TTL and MAX_TTL. A thread renews the
leases it holds every `ttl/3` seconds for as long as their nodes run; the lease is released (deleted, by its owner only)
once the node's entry is recorded or the node has failed for good. A driver that dies stops
renewing, so its leases lapse `ttl` seconds later and another driver takes them over (on the
same host, a lease whose driver process is gone is taken over at once). Nothing
here is a file lock: SQLite's own locking on the driver's disk is all, and workers, which may run
on other machines, never see these rows.

A driver that finds a key leased by another waits (the scheduler polls the index for the entry,
which it then serves, or for the lease's lapse, when it takes the lease and computes), at most
`lock_timeout` seconds: a live driver stuck on a node must not stall every other run. Lease rows
are not node results: maintenance skips keys under `lease/`, and gc deletes the expired ones.
An index that cannot be written (a full disk) does not stop the run: the node is computed
without a lease, with a warning that another driver might compute it too.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import uuid

import diskcache

log = logging.getLogger("mora.cache")
PREFIX = "lease/"
MAX_TTL = 30.0
"""Seconds after its driver's last renewal that a lease lapses, at most: how long a crashed driver holds up others."""
MIN_TTL = 1.0
"""And at least (a lease renewed every few milliseconds would cost more than it saves)."""


class KeyLeases:
    """The key leases one driver holds in one index, renewed on a thread while any is held."""

    def __init__(self, index: diskcache.Cache, lock_timeout: float):
        self.index = index
        self.ttl = min(max(lock_timeout, MIN_TTL), MAX_TTL)
        self.owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._held: set[str] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, key: str) -> bool:
        """Hold `key`'s lease: True if this driver now holds it (or already did), False if another holds it."""
        with self._guard:
            if key in self._held:
                return True
        try:
            taken = self.index.add(PREFIX + key, self.owner, expire=self.ttl) or self._take_from_the_dead(key)
        except (OSError, sqlite3.DatabaseError) as e:
            log.warning("cache: cannot write the lease of key %s (%s); another run may compute its node too",
                        key[:12], e)
            return True
        if taken:
            with self._guard:
                self._held.add(key)
            self._renew_meanwhile()
        return bool(taken)

    def _take_from_the_dead(self, key: str) -> bool:
        """Take over a lease held by a driver process of this host that no longer exists."""
        with self.index.transact():
            holder = self.index.get(PREFIX + key)
            if not _dead_here(holder):
                return False
            log.info("cache: the run that held key %s (%s) has ended; taking its node over", key[:12], holder)
            self.index.set(PREFIX + key, self.owner, expire=self.ttl)
            return True

    def release(self, key: str) -> None:
        """Give the lease up (the node's entry is recorded, or the node failed)."""
        with self._guard:
            if key not in self._held:
                return
            self._held.discard(key)
        try:
            with self.index.transact():
                if self.index.get(PREFIX + key) == self.owner:
                    self.index.delete(PREFIX + key)
        except (OSError, sqlite3.DatabaseError) as e:
            log.warning("cache: cannot release the lease of key %s (%s); it lapses in %.0f s", key[:12], e, self.ttl)

    def renew(self) -> None:
        """Push back the expiry of every lease still held; a lease that lapsed and was taken over is let go."""
        with self._guard:
            keys = sorted(self._held)
        lost = []
        try:
            with self.index.transact():
                for key in keys:
                    if self.index.get(PREFIX + key) == self.owner:
                        self.index.touch(PREFIX + key, expire=self.ttl)
                    elif not self.index.add(PREFIX + key, self.owner, expire=self.ttl):
                        lost.append(key)
        except (OSError, sqlite3.DatabaseError) as e:
            log.warning("cache: cannot renew key leases (%s); another run may compute the same nodes", e)
            return
        for key in lost:
            log.warning("cache: the lease of key %s lapsed and another run took it over; both compute its node",
                        key[:12])
            with self._guard:
                self._held.discard(key)

    def _renew_meanwhile(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew_forever, name="mora-key-leases", daemon=True)
            self._thread.start()

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.renew()

    def close(self) -> None:
        """Stop renewing and release every lease still held."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._guard:
            keys = sorted(self._held)
        for key in keys:
            self.release(key)



HOST = socket.gethostname()


def _dead_here(owner: object) -> bool:
    """Whether `owner` names a process of this host that does not exist (a pid reused since only makes us wait)."""
    if not isinstance(owner, str) or owner.count(":") < 2:
        return False
    host, pid, _ = owner.rsplit(":", 2)
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
