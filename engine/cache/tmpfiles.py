"""Temporary files in a cache's `tmp/`: how Mora names them, and the lock that says their writer is alive.

Policy. Every file a writer stages in `tmp/` (an artifact before its atomic rename, a download
from the artifact store, an MP4 being encoded) is made here: named
`<pid>-[<label>-]<random>[<suffix>]` and held under an exclusive flock from the moment it exists
until it is renamed into place or removed. A run's input videos, which stay staged until the run's
inputs are all read, go in one such folder (`create_dir`), locked once for all of them. Maintenance
(`maintenance.clean_tmp`) deletes only files and folders with such a name whose lock is free, and so
never a live writer's file (even one on another host or in another container, whose pid it cannot
see) nor anything Mora did not name (a user's file, when `cache.dir` is a folder that already had a
`tmp/`).
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
        """Delete the file unless it was renamed into place, then release the lock (whatever the deletion did)."""
        try:
            self.path.unlink(missing_ok=True)
        finally:
            self.close()


@dataclass
class TempDir:
    """A new folder in `tmp/` that this process holds locked until `remove`: one lock for every file staged in it
    (a run's input videos: a descriptor each would run out at the process's limit in a sweep over many)."""

    path: Path
    fd: int

    def remove(self) -> None:
        """Delete the files left in the folder (those not moved into place) and the folder, then release the lock."""
        try:
            remove_tree(self.path)
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def remove_tree(folder: Path) -> None:
    """Delete a staging folder's regular files and the folder; never follows a symlink (one is left, and so is the
    folder then)."""
    with os.scandir(folder) as listing:
        for entry in listing:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
    os.rmdir(folder)


def create(folder: Path, label: str = "", suffix: str = "") -> TempFile:
    """A new empty file in `folder`, locked; `label` (lowercase letters) says what it is for."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=f"{os.getpid()}-{label}-" if label else f"{os.getpid()}-",
                                suffix=suffix)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # at most a moment's wait: maintenance may be testing the new file's lock
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return TempFile(Path(name), fd)


def create_dir(folder: Path, label: str) -> TempDir:
    """A new empty folder in `folder`, locked (an flock on the folder itself), named as `create` names files."""
    name = tempfile.mkdtemp(dir=folder, prefix=f"{os.getpid()}-{label}-")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except BaseException:
        os.rmdir(name)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        os.rmdir(name)
        raise
    return TempDir(Path(name), fd)


def writer_pid(name: str) -> int | None:
    """The pid of the process that made temporary file `name`, or None if Mora did not name it."""
    match = NAME.fullmatch(name)
    return int(match.group(1)) if match else None
