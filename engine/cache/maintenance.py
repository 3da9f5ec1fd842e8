"""Cache maintenance: statistics, listing, full verification and garbage collection.

Policy: maintenance never destroys live or healthy data, and is safe while runs are going on.
`verify` recomputes the digest of every artifact an index entry references, moves corrupt
objects to `quarantine/` and drops the entries that used them (they become misses and are
recomputed on the next run), lists objects no entry references, and deletes temporary files
whose writer process is gone (with `repair=False` it changes nothing at all). `gc` removes
entries older than `max_age` (and entries of older cache versions, which are never hit), fits
this machine's `objects/` into `max_size` (eviction.py: local copies of objects the artifact
store holds go first, then the oldest entries whose objects only this directory holds), then
deletes objects in `objects/` that no remaining entry references, unless a live run's lease
names them or they are younger than `grace` (see leases.py). Both work only on a directory
that already holds a cache. Key leases (index rows under `lease/`, key_leases.py) are not
entries: every count, listing and check skips them, and gc deletes the expired ones (left by
drivers that died).

Only what Mora named is ever deleted: objects named `<digest>.<ext>` in their shard, temporary
files named as tmpfiles.py names them, as regular files reached through no symlink (a symlinked
`objects/`, shard or `tmp/` is left alone, as is anything else a user keeps in the folder).

An object store (`cache.artifacts`) may be shared by several cache directories whose indexes
this one cannot read, so nothing here proves one of its objects unreferenced: gc deletes this
machine's copies (`objects/`) and the store's abandoned temporary uploads, never the store's objects.
"""
from __future__ import annotations

import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from mora.engine.cache import tmpfiles
from mora.engine.cache.artifacts import OBJECT_NAME, ArtifactRef, CorruptArtifact
from mora.engine.cache.eviction import EntryId, LocalObject, Referrer, plan
from mora.engine.cache.index import CorruptRow, delete_rows, select
from mora.engine.cache.key_leases import PREFIX as LEASE_PREFIX
from mora.engine.cache.leases import live_digests
from mora.engine.cache.store import ENTRY_VERSION, Store, port_mismatch, stale
from mora.engine.ports import PortType

MEMO_PREFIX = "weights:"
GRACE = 600.0
"""Seconds for which a new object is safe from gc even when nothing references it yet."""
CLOCK_MARGIN = 5.0
"""Seconds by which gc's second read of the index reaches back: processes writing the index share this host's clock."""
UPLOAD_GRACE = 3600.0
"""Seconds after which a temporary object in an object store is taken for a dead writer's."""
PortsOf = Callable[[str], Mapping[str, PortType] | None]
"""An agent type's output ports (None: unknown), for checking entries against the nodes that would read them."""


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


def _rows(where: str = "1") -> str:
    return (f"(SELECT rowid, key, CAST(value AS TEXT) AS t FROM Cache WHERE {where} AND raw = 1 "
            f"AND key NOT GLOB '{MEMO_PREFIX}*' AND key NOT GLOB '{LEASE_PREFIX}*' AND mode = 1 AND filename IS NULL)")


ROWS = _rows()
"""Node-result rows whose JSON lies in the database (all but entries over 32 kB), for SQLite's JSON functions."""
VALID = "(json_valid(t) AND json_type(t) = 'object' AND json_type(t, '$.outputs') IS NOT NULL)"
STALE = f"(json_type(t, '$.v') = 'integer' AND json_extract(t, '$.v') != {ENTRY_VERSION})"
OTHER = (f"SELECT key FROM Cache WHERE raw = 1 AND key NOT GLOB '{MEMO_PREFIX}*' AND key NOT GLOB '{LEASE_PREFIX}*' "
         "AND (mode != 1 OR filename IS NOT NULL)")
"""Rows read through diskcache one by one: large entries held in value files, and rows Mora did not write."""


def entries(store: Store) -> list[tuple[str, dict[str, Any] | None]]:
    """Every node-result entry (key, entry), None for rows that are not valid JSON entries."""
    out: list[tuple[str, dict[str, Any] | None]] = []
    for key, text in select(store.index, f"SELECT key, t FROM {ROWS} ORDER BY rowid"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        out.append((key, value if isinstance(value, dict) and "outputs" in value else None))
    return out + [(key, _get(store, key)) for (key,) in select(store.index, OTHER)]


def _get(store: Store, key: str) -> dict[str, Any] | None:
    try:
        value = store.index.get(key)
    except CorruptRow:
        return None
    return value if isinstance(value, dict) and "outputs" in value else None


def _created_sql(row: str) -> str:
    """The creation time of the entry in JSON column `row`, in SQL; a row without a numeric one counts as oldest."""
    return (f"(CASE WHEN json_type({row}, '$.created') IN ('integer', 'real') THEN json_extract({row}, '$.created') "
            "ELSE 0 END)")


def _created(entry: dict[str, Any]) -> float:
    """An entry's creation time, as `_created_sql` reads it."""
    value = entry.get("created")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _real_dir(path: Path) -> bool:
    """Whether `path` is a directory itself, not a symlink to one (maintenance never follows one out of the cache)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _objects(store: Store) -> dict[str, LocalObject]:
    """Stored objects by file name (`<digest>.<ext>`), from one directory listing per shard: only files Mora named.

    An object deleted or moved aside meanwhile (by a concurrent gc or quarantine) is simply not listed.
    """
    out: dict[str, LocalObject] = {}
    top = store.root / "objects"
    if not _real_dir(top):
        return out
    with os.scandir(top) as shards:
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with os.scandir(shard.path) as files:
                for e in files:
                    if not (OBJECT_NAME.fullmatch(e.name) and e.name[:2] == shard.name):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        out[e.name] = LocalObject(Path(e.path), st.st_size, st.st_mtime, st.st_atime)
    return out


def referenced(store: Store, entry: dict[str, Any]) -> set[str]:
    """The object names an entry references; none for a malformed one (verify reports it)."""
    try:
        return {ref.path.name for ref in store._refs(entry)}
    except (KeyError, TypeError, ValueError, AttributeError):
        return set()


def describe(store: Store, entry: dict[str, Any] | None) -> str:
    """An entry as `cache list` prints it (agent, node, `port=digest`), whatever its row holds: a malformed one says so."""
    if entry is None:
        return "<corrupt entry>"
    try:
        outputs = store.outputs(entry)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return f"<malformed entry: {type(e).__name__}: {e}>"
    outs = ", ".join(f"{port}=" + "+".join(r.digest[:12] for r in (refs if isinstance(refs, list) else [refs]))
                     for port, refs in outputs.items())
    return f"{entry.get('agent', '?')!s:<16} {entry.get('node', '?')!s:<32} {outs}"


def stats(store: Store) -> dict[str, Any]:
    """Counts per agent from the index's tag index (a second at a million entries) and one listing of the objects.

    `objects` and `object_bytes` are this machine's `objects/`, what `gc --max-size` bounds; with an
    artifact store, `store_objects` and `store_bytes` are the whole store's, which other caches may share.

    Rows without a tag (written before tags, or not by Mora) are classified from their JSON, as
    `<corrupt>` when they are not entries; a tagged row is counted under its tag unread (`verify`
    reads every entry).
    """
    objs = _objects(store)
    agents: dict[str, int] = {}
    query = (f"SELECT CASE WHEN {VALID} THEN coalesce(json_extract(t, '$.agent'), 'None') ELSE '<corrupt>' END, "
             f"count(*) FROM {_rows('tag IS NULL')} GROUP BY 1")
    counts = [(str(agent), n) for agent, n in select(store.index, query)]
    counts += select(store.index, "SELECT tag, count(*) FROM Cache WHERE tag IS NOT NULL GROUP BY tag")
    counts += [(str(e.get("agent")) if e else "<corrupt>", 1) for e in (_get(store, k) for (k,) in
                                                                      select(store.index, OTHER + " AND tag IS NULL"))]
    for agent, n in counts:
        agents[agent] = agents.get(agent, 0) + n
    remote = store.remote.objects() if store.remote is not None else None
    return {
        "dir": str(store.root),
        "entries": sum(agents.values()),
        "objects": len(objs),
        "object_bytes": sum(o.size for o in objs.values()),
        **({} if remote is None else {"artifacts": store.remote.url, "store_objects": len(remote),
                                      "store_bytes": sum(o.size for o in remote)}),
        "agents": dict(sorted(agents.items())),
        "tmp_files": len(_temp_files(store)),
        "quarantined": len(list((store.root / "quarantine").glob("*"))),
    }


def verify(store: Store, repair: bool = True, ports_of: PortsOf | None = None) -> VerifyReport:
    """Read every entry's artifacts in full; with `repair`, quarantine bad objects, drop bad entries, clean `tmp/`.

    `ports_of`: an entry whose outputs are not its agent's output ports is bad (a run would take it for a miss).
    """
    report = VerifyReport()
    started = time.time()
    live: set[str] = set()
    checked: dict[ArtifactRef, str | None] = {}  # each object is read once, however many entries share it
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
                ports = ports_of(str(entry.get("agent"))) if ports_of is not None else None
                if ports is not None and (why := port_mismatch(entry["outputs"], ports)):
                    refs, problem = [], f"not its agent's outputs: {why}"
            except (CorruptRow, KeyError, TypeError, ValueError, AttributeError) as e:
                refs, problem = [], f"malformed: {e}"
            for ref in refs:
                report.artifacts += 1
                if ref not in checked:
                    checked[ref] = _check(store, ref, repair, str(entry.get("node")))
                if checked[ref] is not None:
                    problem = f"{ref.path.name}: {checked[ref]}"
                    break
            if not problem:
                live |= {r.path.name for r in refs}
        if problem:
            report.bad_entries.append(f"{key[:16]} ({entry.get('node') if entry else '?'}): {problem}")
            if repair:  # an entry a run records meanwhile (its object stored again, intact) stays
                _delete_keys(store, [key], before=started)
    report.orphans = sorted(set(_objects(store)) - live)
    report.removed_tmp = clean_tmp(store) if repair else []
    return report


def _check(store: Store, ref: ArtifactRef, repair: bool, node: str) -> str | None:
    """Why an object is bad, or None. With `repair` a bad copy is quarantined (a corrupt object must not be mistaken
    for a good one, nor lost for inspection) and, with an artifact store, the store's copy is fetched and read: a
    copy that rotted on this machine alone is healed, not reported. An object this machine holds no copy of is read
    where it lies in the store, so verifying never fills this disk with copies (nor changes it, without `repair`)."""
    if store.remote is not None and not os.path.lexists(ref.path):
        digest = store.remote.digest_of(ref)
        if digest == ref.digest:
            return None
        if digest is not None and repair:
            store.remote.quarantine(ref)
        return f"{'missing from' if digest is None else 'does not match its digest in'} {store.remote.url}"
    first = None
    for _ in range(2 if repair and store.remote is not None else 1):
        try:
            ref.read_bytes()
            return None
        except CorruptArtifact as e:
            first = first or e.why
            if repair:
                store.quarantine(e.ref, e.why, e.inode, node=node)
    return first


def _temp_files(store: Store) -> list[Path]:
    """The files in `tmp/` that Mora named (tmpfiles.py); nothing when `tmp/` is a symlink."""
    folder = store.root / "tmp"
    if not _real_dir(folder):
        return []
    with os.scandir(folder) as listing:
        return [Path(e.path) for e in listing if tmpfiles.writer_pid(e.name) is not None]


def clean_tmp(store: Store, min_age: float = 60.0) -> list[str]:
    """Delete Mora's temporary files (and staging folders) that no writer holds (their lock is free) whose writer
    died or that went quiet.

    Writers hold an flock on their temporary file until it is renamed into place (tmpfiles.py), so
    a live write is never deleted, even by a process that cannot see the writer's pid (another host
    or container sharing the cache). Files of other names are never touched.
    """
    removed = []
    now = time.time()
    for p in _temp_files(store):
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            pid = tmpfiles.writer_pid(p.name)
            if (pid is not None and not psutil.pid_exists(pid)) or now - st.st_mtime > min_age:
                if stat.S_ISDIR(st.st_mode):  # a run's staging folder (its input videos)
                    tmpfiles.remove_tree(p)
                else:
                    p.unlink()
                removed.append(p.name)
        except OSError:  # held by its writer (BlockingIOError), or gone meanwhile
            continue
        finally:
            os.close(fd)
    return removed


def gc(store: Store, max_size: int | None = None, max_age: float | None = None,
       grace: float = GRACE) -> dict[str, int]:
    """Evict entries by version and age, fit `objects/` into `max_size` (eviction.py), then delete objects nothing
    references, leases or just wrote.

    Entries are chosen and deleted in SQL, in batched transactions; objects are matched by digest
    against one listing of `objects/` (bench/cache_scale.py: a tenth of a million entries in seconds).
    The referenced digests are read before the maintenance lock is taken; under it, only entries
    stored since (by diskcache's `store_time`, with a margin) are read again, so runs wait for a
    scan of one column, not for every entry's JSON. An entry stored after gc began is never deleted.

    The report: `removed_entries`; `removed_objects`, the files deleted from `objects/`, of which
    `removed_copies` were copies of objects the artifact store holds (their entries stay);
    `freed_bytes`; `kept_bytes`, what `objects/` holds afterwards; `kept_leased` and `kept_young`,
    the objects kept only because a live run leases them or they are within `grace` (unreferenced
    ones, and, when `kept_bytes` is over `max_size`, every one: they are what stands above the bound).
    """
    now = time.time()
    objs = _objects(store)
    # The store is reached before anything changes here, so an unreachable store changes nothing: its dead uploads
    # are cleaned first, and it is listed only when copies may have to go (under the bound already, eviction has
    # nothing to do whatever the store holds).
    if store.remote is not None:  # uploads of writers that died (a live upload takes seconds, not an hour)
        store.remote.clean_uploads(max(grace, UPLOAD_GRACE))
    stored = ({o.name: o.size for o in store.remote.objects()}
              if max_size is not None and store.remote is not None and sum(o.size for o in objs.values()) > max_size
              else None)
    store.index.expire()  # key leases of drivers that died (only they carry an expiry)
    removed_entries = _evict_by_age(store, max_age, now)
    copies: frozenset[str] = frozenset()
    if max_size is not None:
        with store.maintenance.exclusive():  # reading leases removes stale ones, which needs the lock
            leased = live_digests(store.root / "leases")
        eviction = plan(objs, _referrers(store), max_size, stored=stored, leased=leased, young_after=now - grace)
        removed_entries += delete_rows(store.index, [r for r in eviction.entries if isinstance(r, int)], before=now)
        removed_entries += _delete_keys(store, [r for r in eviction.entries if isinstance(r, str)], before=now)
        copies = eviction.copies
    report, pinned = _sweep(store, copies, now - grace)
    clean_tmp(store)
    if max_size is not None and report["kept_bytes"] > max_size:
        for why, n in pinned.items():
            report[why] += n
    return {"removed_entries": removed_entries, **report}


def _evict_by_age(store: Store, max_age: float | None, now: float) -> int:
    """Delete entries that are not valid, of another cache version, or created more than `max_age` ago; how many."""
    doomed = f"NOT {VALID} OR {STALE}" + (f" OR {_created_sql('t')} < ?" if max_age is not None else "")
    rowids = [r for (r,) in select(store.index, f"SELECT rowid FROM {ROWS} WHERE {doomed}",
                                   (now - max_age,) if max_age is not None else ())]
    old_keys = [key for (key,) in select(store.index, OTHER)
                if (entry := _get(store, key)) is None or stale(entry) or (max_age is not None and
                                                                          _created(entry) < now - max_age)]
    return delete_rows(store.index, rowids, before=now) + _delete_keys(store, old_keys, before=now)


def _sweep(store: Store, copies: frozenset[str], young_after: float) -> tuple[dict[str, int], dict[str, int]]:
    """Delete the objects no entry references, unless pinned, and the copies eviction chose: the report's object
    counts, and the referenced objects a pin holds (they count in the report only when over the bound)."""
    report = {"removed_objects": 0, "removed_copies": 0, "freed_bytes": 0, "kept_bytes": 0, "kept_leased": 0,
              "kept_young": 0}
    pinned = {"kept_leased": 0, "kept_young": 0}
    snapshot = time.time()
    live = _live_digests(store)  # the long read, before runs are made to wait
    with store.maintenance.exclusive():  # runs wait here briefly; what they lease from now on is seen below
        live |= _live_digests(store, since=snapshot - CLOCK_MARGIN)  # entries recorded meanwhile
        held = live_digests(store.root / "leases")
        for obj in _objects(store).values():
            why = _kept(obj, live, held, copies, young_after)
            if why == "gone":
                continue
            if why is None:
                obj.path.unlink(missing_ok=True)
                report["removed_objects"] += 1
                report["removed_copies"] += obj.digest in live
                report["freed_bytes"] += obj.size
                continue
            report["kept_bytes"] += obj.size
            if why != "referenced":
                (pinned if obj.digest in live else report)[why] += 1
    return report, pinned


def _delete_keys(store: Store, keys: list[str], before: float) -> int:
    """Delete entries by key unless stored since `before` (as `delete_rows`, which takes only rows without a value
    file); how many went."""
    deleted = 0
    for key in keys:
        with store.index.transact():
            if select(store.index, "SELECT 1 FROM Cache WHERE key = ? AND raw = 1 AND store_time < ?", (key, before)):
                deleted += store.index.delete(key)
    return deleted


def _kept(obj: LocalObject, live: set[str], held: set[str], copies: frozenset[str], young_after: float) -> str | None:
    """Why the sweep keeps an object (`referenced`, `kept_leased`, `kept_young`; `gone`: deleted meanwhile), or None.

    A referenced object stays unless eviction chose it as a copy (the store holds it: a read fetches
    it again); a chosen copy or an unreferenced object stays while a live run leases it or it is
    younger than the grace period.
    """
    if obj.digest in held:
        return "kept_leased"
    if obj.digest in live and obj.path.name not in copies:
        return "kept_young" if obj.mtime > young_after else "referenced"
    try:  # about to go: a writer that found it stored may have refreshed it since the listing
        return "kept_young" if obj.path.stat().st_mtime > young_after else None
    except FileNotFoundError:
        return "gone"


def _digests(where: str = "1") -> str:
    """Each inline entry's artifact digests: every `digest` member under `outputs` (over-inclusive is safe for gc)."""
    return (f"SELECT r.rowid, {_created_sql('r.t')}, j.value "
            f"FROM {_rows(f'{where} AND json_valid(CAST(value AS TEXT))')} AS r, "
            "json_tree(r.t, '$.outputs') AS j WHERE j.key = 'digest' AND j.type = 'text'")


def _live_digests(store: Store, since: float | None = None) -> set[str]:
    """Digests the entries reference; with `since`, only entries stored (or stored again) from then on."""
    where, params = ("1", ()) if since is None else ("store_time >= ?", (since,))
    live = {d for _, _, d in select(store.index, _digests(where), params)}
    for (key,) in select(store.index, OTHER + f" AND {where}", params):
        entry = _get(store, key)
        if entry is not None and not stale(entry):
            live |= {n.split(".", 1)[0] for n in referenced(store, entry)}
    return live


def _referrers(store: Store) -> dict[EntryId, Referrer]:
    """Every entry's creation time and artifact digests, as eviction weighs them."""
    rows: dict[EntryId, tuple[float, set[str]]] = {}
    for rowid, created, digest in select(store.index, _digests()):
        rows.setdefault(rowid, (float(created), set()))[1].add(digest)
    out: dict[EntryId, Referrer] = {key: Referrer(created, frozenset(d)) for key, (created, d) in rows.items()}
    for (key,) in select(store.index, OTHER):
        if (entry := _get(store, key)) is not None:
            out[key] = Referrer(_created(entry), frozenset(n.split(".", 1)[0] for n in referenced(store, entry)))
    return out
