"""The key-to-result index: diskcache over SQLite, holding JSON only, never culled by size.

diskcache's default serializer is pickle, which runs code on read (CVE-2025-69872): here keys
are plain strings and values JSON bytes, and any row whose mode says pickle is refused as
corrupt instead of unpickled. diskcache's size limit silently drops entries (1 GB by default);
it is switched off (eviction policy "none") and eviction is Mora's own `gc`. Each node-result
row carries its agent as diskcache's tag, with diskcache's tag index, so counting entries per
agent reads that index instead of a million JSON values.

An I/O error is not corruption. Only a database that SQLite itself reports as malformed
(SQLITE_CORRUPT, SQLITE_NOTADB) is moved aside, with a message, and a fresh one started; a full
disk, an I/O error, a read-only or locked file leave the index exactly as it is and fail with
a message that says which (SQLite rolls the failed transaction back).

Opening waits out a lock like any other statement: diskcache builds the schema with its
connection timeout at zero and retries each statement itself, except the tag index's; two
processes creating one fresh index at once could meet there and one failed with "database is
locked" at once. `open_index` retries the whole (idempotent) opening within the index timeout.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import DBNAME, MODE_BINARY, MODE_RAW

from mora.engine.errors import CacheError, shown

log = logging.getLogger("mora.cache")
INDEX_FILE = DBNAME
CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
FULL_CODES = {sqlite3.SQLITE_FULL}
FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
LOCK_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
INDEX_TIMEOUT_S = 60.0


def is_corrupt(e: BaseException) -> bool:
    """Whether SQLite reported the database itself as malformed (not an I/O, space or lock error)."""
    code = getattr(e, "sqlite_errorcode", None)
    return isinstance(e, sqlite3.DatabaseError) and code is not None and code & 0xFF in CORRUPT_CODES


def is_locked(e: BaseException) -> bool:
    """Whether SQLite refused a statement because another connection holds a lock (worth waiting out)."""
    if not isinstance(e, sqlite3.OperationalError):
        return False
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+; 3.10 has only the message
    return code & 0xFF in LOCK_CODES if code is not None else "is locked" in str(e)


def index_error(e: BaseException, path: Path) -> str:
    """A message for an index error that says what happened, disk full first: the common case.

    SQLite reports a full disk as SQLITE_FULL while writing, but as a plain I/O error when it
    cannot even map its shared-memory file, so the device's free space decides in that case.
    """
    code = getattr(e, "sqlite_errorcode", None)
    if (code is not None and code & 0xFF in FULL_CODES) or getattr(e, "errno", None) in FULL_ERRNOS or _full(path):
        return f"disk full (no space left on the device of {path}) ({e})"
    return str(e)


def _full(path: Path) -> bool:
    try:
        return os.statvfs(path).f_bavail == 0
    except OSError:
        return False


OWN_VALUE_FILE = re.compile(r"[0-9a-f]{2}[/\\][0-9a-f]{2}[/\\][0-9a-f]{28}\.val")
"""A value file diskcache names (`Disk.filename`: two folders, then random hex): any other name in a row was put there
by another hand, and the index neither reads nor deletes it."""


def own_value_file(name: object) -> bool:
    return isinstance(name, str) and OWN_VALUE_FILE.fullmatch(name) is not None


class JSONOnlyDisk(diskcache.Disk):
    """A diskcache Disk that stores str keys and JSON values, refuses pickled rows, and touches no file it did not
    name: diskcache joins a row's `filename` to the index folder and reads or removes it (and its emptied parent
    folders) unchecked, so an edited row could have a lookup read, and a record, `verify` or `gc` delete, any file."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if not isinstance(key, str):
            raise TypeError("index keys must be strings")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise CorruptRow("index row holds a pickled key; refusing to unpickle it")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        data = json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return super().store(data, False, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode not in (MODE_RAW, MODE_BINARY):
            raise CorruptRow(f"index row has mode {mode} (not JSON); refusing to read it")
        if filename is not None and not own_value_file(filename):
            raise CorruptRow(f"index row names {shown(filename)} as its value file, not one the index wrote; "
                             "refusing to read it")
        data = super().fetch(mode, filename, value, False)
        try:
            return json.loads(bytes(data))
        except (ValueError, TypeError) as e:
            raise CorruptRow(f"index row is not JSON: {e}") from None


    def remove(self, file_path: str) -> None:
        if own_value_file(file_path):
            super().remove(file_path)
        else:
            log.warning("cache index: a row named %s as its value file, not one the index wrote; the row goes, the "
                        "file is left alone", shown(file_path))


class CorruptRow(Exception):
    """An index row that is not what Mora writes."""


def select(cache: diskcache.Cache, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one read-only SQL query over diskcache's `Cache` table (one statement: one snapshot).

    Maintenance over a million entries cannot afford a Python round trip and a JSON decode per
    row; SQLite's JSON functions do the counting and selecting where the rows are.
    """
    return cache._sql(query, params).fetchall()


def delete_rows(cache: diskcache.Cache, rowids: list[int], before: float, batch: int = 10_000) -> int:
    """Delete rows by rowid unless stored since `before`, `batch` to a transaction; how many went.

    Batches make runs writing meanwhile wait milliseconds, not minutes. A row stored since the
    caller read it (recording a key again updates its row in place, rowid and all) holds what
    another driver just recorded, so it stays. Only for rows whose value lies in the database
    (`filename IS NULL`): a row with a value file goes through `Cache.delete`, which removes the file too.
    """
    deleted = 0
    for start in range(0, len(rowids), batch):
        with cache.transact():
            deleted += cache._con.executemany("DELETE FROM Cache WHERE rowid = ? AND store_time < ?",
                                              [(r, before) for r in rowids[start:start + batch]]).rowcount
    return deleted


def open_index(path: Path) -> diskcache.Cache:
    """Open (or create) the index; a database SQLite reports as malformed is moved aside, nothing else."""
    try:
        return _open_waiting(path)
    except (sqlite3.DatabaseError, OSError) as e:
        if not is_corrupt(e):
            raise CacheError(f"cannot open the cache index {path}: {index_error(e, path)}; the index is "
                             "unchanged") from None
        aside = path.with_name(f"{path.name}.corrupt-{time.time_ns()}-{os.getpid()}")
        log.warning("cache index %s is unreadable (%s); moved it to %s and started a new one", path, e, aside)
        try:
            path.rename(aside)
            return _open_waiting(path)
        except (sqlite3.DatabaseError, OSError) as e2:
            raise CacheError(f"cache index {path} is unreadable ({e}) and could not be replaced "
                             f"({index_error(e2, path)})") from None


def _open_waiting(path: Path) -> diskcache.Cache:
    deadline = time.monotonic() + INDEX_TIMEOUT_S
    while True:
        try:
            return _open(path)
        except sqlite3.OperationalError as e:
            if not is_locked(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _open(path: Path) -> diskcache.Cache:
    cache = diskcache.Cache(
        str(path),
        disk=JSONOnlyDisk,
        size_limit=2**62,
        cull_limit=0,
        eviction_policy="none",
        statistics=False,
        tag_index=True,
        timeout=INDEX_TIMEOUT_S,
    )
    cache._sql("SELECT COUNT(*) FROM Cache").fetchone()  # force SQLite to read the file now
    return cache
