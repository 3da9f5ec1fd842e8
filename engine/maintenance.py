"""Cache maintenance: statistics, listing, full verification and garbage collection.

Policy: maintenance never destroys live or healthy data, and is safe while runs are going on.
`verify` recomputes the digest of every artifact an index entry references, moves corrupt
objects to `quarantine/` and drops the entries that used them (they become misses and are
recomputed on the next run), lists objects no entry references, and deletes temporary files
whose writer process is gone. `gc` removes entries older than `max_age` (and entries of older
cache versions, which are never hit), then the oldest until the objects fit in `max_size`,
then deletes objects that no remaining entry references, unless a live run's lease names them
or they are younger than `grace` (see leases.py). Both work only on a directory that already
holds a cache.
"""
from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mora.engine.artifacts import CorruptArtifact
from mora.engine.index import CorruptRow
from mora.engine.leases import live_digests
from mora.engine.store import Store, stale

MEMO_PREFIX = "weights:"
GRACE = 600.0
"""Seconds for which a new object is safe from gc even when nothing references it yet."""


@dataclass
class VerifyReport:
    entries: int = 0
    artifacts: int = 0
    bad_entries: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    removed_tmp: list[str] = field(default_factory=list)
    stale: int = 0
    """Entries of an older cache version: never hit, not verified, removed by gc."""

    @property
    def ok(self) -> bool:
        return not self.bad_entries


def entries(store: Store) -> list[tuple[str, dict[str, Any] | None]]:
    """Every node-result entry (key, entry), None for rows that are not valid JSON entries."""
    out: list[tuple[str, dict[str, Any] | None]] = []
    for key in list(store.index.iterkeys()):
        if not isinstance(key, str) or key.startswith(MEMO_PREFIX):
            continue
        try:
            value = store.index.get(key)
        except CorruptRow:
            value = None
        out.append((key, value if isinstance(value, dict) and "outputs" in value else None))
    return out


def _objects(store: Store) -> dict[str, Path]:
    return {p.name: p for p in (store.root / "objects").glob("*/*") if p.is_file()}


def referenced(store: Store, entry: dict[str, Any]) -> set[str]:
    return {ref.path.name for ref in store._refs(entry)}


def stats(store: Store) -> dict[str, Any]:
    objs = _objects(store)
    rows = entries(store)
    return {
        "dir": str(store.root),
        "entries": len(rows),
        "objects": len(objs),
        "object_bytes": sum(p.stat().st_size for p in objs.values()),
        "agents": _count_by(rows, "agent"),
        "tmp_files": len(list((store.root / "tmp").iterdir())),
        "quarantined": len(list((store.root / "quarantine").glob("*"))),
    }


def _count_by(rows: list[tuple[str, dict[str, Any] | None]], field_: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, entry in rows:
        name = str(entry.get(field_)) if entry else "<corrupt>"
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def verify(store: Store, repair: bool = True) -> VerifyReport:
    report = VerifyReport()
    live: set[str] = set()
    for key, entry in entries(store):
        if stale(entry):
            report.stale += 1
            continue
        report.entries += 1
        problem = None
        if entry is None:
            problem = "not a valid entry"
        else:
            try:
                refs = list(store._refs(entry))
            except (CorruptRow, KeyError, TypeError, ValueError, AttributeError) as e:
                refs, problem = [], f"malformed: {e}"
            for ref in refs:
                report.artifacts += 1
                try:
                    ref.read_bytes()
                except CorruptArtifact as e:
                    problem = f"{ref.path.name}: {e.why}"
                    if repair:  # a corrupt object must not be mistaken for a good one, nor lost for inspection
                        store.quarantine(e.ref, e.why, e.inode, node=str(entry.get("node")))
                    break
            if not problem:
                live |= {r.path.name for r in refs}
        if problem:
            report.bad_entries.append(f"{key[:16]} ({entry.get('node') if entry else '?'}): {problem}")
            if repair:
                store.index.delete(key)
    report.orphans = sorted(set(_objects(store)) - live)
    report.removed_tmp = clean_tmp(store)
    return report


def clean_tmp(store: Store, min_age: float = 60.0) -> list[str]:
    """Delete temporary files no writer holds (their lock is free) whose writer died or that went quiet.

    Writers hold an flock on their temporary file until it is renamed into place, so a live
    write is never deleted, even by a process that cannot see the writer's pid (another host
    or container sharing the cache).
    """
    removed = []
    now = time.time()
    for p in (store.root / "tmp").iterdir():
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            pid = p.name.split("-", 1)[0]
            if (pid.isdigit() and not _alive(int(pid))) or now - os.fstat(fd).st_mtime > min_age:
                p.unlink()
                removed.append(p.name)
        except OSError:  # held by its writer (BlockingIOError), or not a file Mora wrote
            continue
        finally:
            os.close(fd)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gc(store: Store, max_size: int | None = None, max_age: float | None = None,
       grace: float = GRACE) -> dict[str, int]:
    """Evict entries by version, age and size, then delete objects nothing references, leases or just wrote."""
    now = time.time()
    removed_entries = 0
    keep: list[tuple[str, dict[str, Any]]] = []
    for key, entry in entries(store):
        if entry is None or stale(entry) or (max_age is not None and now - float(entry.get("created", 0)) > max_age):
            store.index.delete(key)
            removed_entries += 1
        else:
            keep.append((key, entry))
    if max_size is not None:
        objs = _objects(store)
        keep.sort(key=lambda kv: float(kv[1].get("created", 0)))
        size = sum(objs[n].stat().st_size for n in {n for _, e in keep for n in referenced(store, e)} if n in objs)
        while keep and size > max_size:
            key, entry = keep.pop(0)
            store.index.delete(key)
            removed_entries += 1
            still = {n for _, e in keep for n in referenced(store, e)}
            size -= sum(objs[n].stat().st_size for n in referenced(store, entry) - still if n in objs)
    freed = removed_objects = leased = young = 0
    with store.maintenance.exclusive():  # runs wait here briefly; what they lease from now on is seen below
        live = {n for _, e in entries(store) if e is not None and not stale(e) for n in referenced(store, e)}
        held = live_digests(store.root / "leases")
        for name, path in _objects(store).items():
            if name in live:
                continue
            if name.split(".", 1)[0] in held:
                leased += 1
                continue
            st = path.stat()
            if now - st.st_mtime < grace:
                young += 1
                continue
            freed += st.st_size
            path.unlink(missing_ok=True)
            removed_objects += 1
    clean_tmp(store)
    return {"removed_entries": removed_entries, "removed_objects": removed_objects, "freed_bytes": freed,
            "kept_leased": leased, "kept_young": young}
