"""Temporary files in a cache's `tmp/`: how Mora names them, and the lock that says their writer is alive.

Policy. Every file a writer stages in `tmp/` (an artifact before its atomic rename, a download
from the artifact store, an input video being ingested, an MP4 being encoded) is made here: named
`<pid>-[<label>-]<random>[<suffix>]` and held under an exclusive flock from the moment it exists
until it is renamed into place or removed. Maintenance (`maintenance.clean_tmp`) deletes only
files with such a name whose lock is free, and so never a live writer's file (even one on another
host or in another container, whose pid it cannot see) nor anything Mora did not name (a user's
file, when `cache.dir` is a folder that already had a `tmp/`).
"""
from __future__ import annotations

import fcntl
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

NAME = re.compile(r"(\d+)-(?:[a-z]+-)?[a-z0-9_]{8}(?:\.[a-z0-9]+)?")
"""What `create` names a file (mkstemp's eight random characters after the prefix)."""


@dataclass
class TempFile:
    """A new file in `tmp/` that this process holds locked until `close` (or `remove`)."""

    path: Path
    fd: int

    def close(self) -> None:
        """Release the lock (the file, if not renamed into place, is then fair game for maintenance)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        """Delete the file unless it was renamed into place, then release the lock."""
        self.path.unlink(missing_ok=True)
        self.close()


def create(folder: Path, label: str = "", suffix: str = "") -> TempFile:
    """A new empty file in `folder`, locked; `label` (lowercase letters) says what it is for."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=f"{os.getpid()}-{label}-" if label else f"{os.getpid()}-",
                                suffix=suffix)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a new file nobody else has opened: never waits
    return TempFile(Path(name), fd)


def writer_pid(name: str) -> int | None:
    """The pid of the process that made temporary file `name`, or None if Mora did not name it."""
    match = NAME.fullmatch(name)
    return int(match.group(1)) if match else None
