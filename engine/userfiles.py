"""Every file a user names (graph files, templates, input images, videos, latents) is opened here.

Policy: a user's file is opened once, without following it into anything but a regular file,
and checked on the open descriptor before a byte is read: a FIFO, a device such as /dev/zero,
a socket or a directory is refused by its type (opened non-blocking, so a FIFO with no writer
cannot hang), a symbolic-link loop is named as one, and a file larger than the caller's limit
or empty is refused by its size. Decoders then read from the checked descriptor, never from
the path again. Every refusal is an `InputError` whose message starts with the path.

A path the user writes may start with `~` or `~USER`; `expand_user` expands it for every caller, since
pathlib's own `expanduser` raises a bare RuntimeError for a user (or a home directory) that does not exist.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mora.engine.errors import InputError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def human_size(size: int) -> str:
    """A byte count for messages: bytes, KiB, MiB or GiB."""
    unit = next((u for u in (3, 2, 1) if size >= 1 << (10 * u)), 0)
    return f"{size} bytes" if unit == 0 else f"{size / (1 << (10 * unit)):.1f} {('KiB', 'MiB', 'GiB')[unit - 1]}"


@contextmanager
def open_user_file(path: Path, what: str, max_bytes: int, allow_empty: bool = False) -> Iterator[BinaryIO]:
    """The user's `what` file opened for reading, once it is known to be a regular file of 1 to `max_bytes` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file does not exist") from None
    except ValueError:  # a NUL byte in the path
        raise InputError(f"{path!r}: not a valid {what} path") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{path}: {what} path is a symbolic link loop") from None
        if e.errno == errno.ENXIO:  # opening a socket
            raise InputError(f"{path}: {what} path is {_describe(path)}, not a regular file") from None
        raise InputError(f"{path}: cannot read {what} file: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{path}: {what} path is {_kind(info.st_mode)}, not a regular file")
        if info.st_size == 0 and not allow_empty:
            raise InputError(f"{path}: {what} file is empty")
        if info.st_size > max_bytes:
            raise InputError(f"{path}: {what} file is {human_size(info.st_size)}, larger than the {human_size(max_bytes)} "
                             "allowed")
        os.set_blocking(fd, True)
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file


def read_user_file(path: Path, what: str, max_bytes: int, allow_empty: bool = False) -> bytes:
    """All bytes of the user's `what` file, within `max_bytes` (checked as `open_user_file` does)."""
    with open_user_file(path, what, max_bytes, allow_empty) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise InputError(f"{path}: cannot read {what} file: {e.strerror or e}") from None
    if len(data) > max_bytes:  # it grew while being read
        raise InputError(f"{path}: {what} file is larger than the {human_size(max_bytes)} allowed")
    return data


def expand_user(path: str | os.PathLike[str], what: str) -> Path:
    """`path` with a leading `~` or `~USER` expanded, as a shell would; an InputError naming `what` and the path when
    that user or home directory does not exist."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        head = str(path).split(os.sep, 1)[0]
        why = "no home directory is known ($HOME is unset)" if head == "~" else f"there is no user {head[1:]!r}"
        raise InputError(f"{what} {str(path)!r}: cannot expand {head!r}: {why}") from None


def _describe(path: Path) -> str:
    try:
        return _kind(os.stat(path).st_mode)
    except OSError:
        return "a special file"
