"""What `gc --max-size` removes to fit this machine's `objects/` into the bound: a pure plan over one snapshot.

Policy. The bound is on the bytes of the object files in this cache directory's `objects/`: what
this machine holds on disk for the cache (the index, about 500 bytes an entry, and `quarantine/`
are outside it). Each such file is one of (the store being `cache.artifacts`, if any):

- a copy: an entry references it and the store holds the same object at the same size. Deleting
  it loses nothing (a read fetches it again), so copies go first, least recently used first (by
  the later of the file's access and modification times), and their entries stay.
- owned: an entry references it and no store holds it (there is none, or the store lacks it). Its
  bytes go only with every entry that references it, so entries are evicted oldest first, but
  only those that reference an owned object gc may delete.
- unreferenced: gc's sweep deletes it anyway, unless pinned.

Pinned objects stay whatever the bound: those a live run leases, and those younger than the grace
period, copies included (a worker holds no lease: it may be about to use an object it has just
written, fetched or found stored). An entry whose objects are all copies, all in the store only
(another machine wrote them) or all pinned is never evicted for size: dropping it would free
nothing here and only make its node be computed again. So the bound may be out of reach while
runs are going on; gc reports what it kept.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

EntryId = int | str
"""An index entry: the rowid of one held in the database, the key of one held in a value file."""


@dataclass(frozen=True)
class LocalObject:
    """An object file in `objects/` as one listing saw it."""

    path: Path
    size: int
    mtime: float
    atime: float

    @property
    def digest(self) -> str:
        return self.path.name.split(".", 1)[0]


@dataclass(frozen=True)
class Referrer:
    """An index entry, as eviction sees it: when it was created and the digests of its artifacts."""

    created: float
    digests: frozenset[str]


@dataclass(frozen=True)
class Eviction:
    """The plan: entries to delete (oldest first) and copies, by object file name, whose local file goes."""

    entries: list[EntryId]
    copies: frozenset[str]


def plan(objects: Mapping[str, LocalObject], entries: Mapping[EntryId, Referrer], max_size: int, *,
         stored: Mapping[str, int] | None, leased: set[str], young_after: float) -> Eviction:
    """Entries and copies to remove so that what stays in `objects/` fits `max_size` bytes (see the policy above).

    `objects`: this machine's object files by name; `stored`: the artifact store's objects (name to
    size), None without a store; `leased`: digests live runs lease; `young_after`: files modified
    after this time are within the grace period.
    """
    refs = Counter(d for entry in entries.values() for d in entry.digests)
    size = 0
    copies: list[LocalObject] = []
    freeable: dict[str, int] = {}  # owned objects' sizes by digest: freed once no entry references them
    for name, obj in objects.items():
        pinned = obj.digest in leased or obj.mtime > young_after
        if not pinned and not refs[obj.digest]:
            continue  # the sweep deletes it
        size += obj.size
        if pinned:
            continue
        if stored is not None and stored.get(name) == obj.size:
            copies.append(obj)
        else:
            freeable[obj.digest] = obj.size
    chosen: list[str] = []
    for obj in sorted(copies, key=lambda o: max(o.atime, o.mtime)):
        if size <= max_size:
            break
        chosen.append(obj.path.name)
        size -= obj.size
    doomed: list[EntryId] = []
    for key, entry in sorted(entries.items(), key=lambda kv: kv[1].created):
        if size <= max_size:
            break
        if not entry.digests & freeable.keys():
            continue
        doomed.append(key)
        for digest in entry.digests:
            refs[digest] -= 1
            if not refs[digest] and digest in freeable:
                size -= freeable[digest]
    return Eviction(doomed, frozenset(chosen))
