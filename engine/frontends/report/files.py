"""How a report reads the files of a run or sweep folder: through `engine.userfiles`, as a user's files are read.

Policy. A report reads folders anyone may have written into, so it opens their files as Mora opens
a user's: regular files only, opened non-blocking (a FIFO with no writer cannot hang a report), and
no larger than the bound for what the file is (a manifest, a number, one of Hydra's records). A
text output is read only as far as a report shows it, and a file a report only links to (an image,
a video) is checked the same way without being read; a video's preview opens it through the same
reader, within media's bound for a video. A refusal is an `InputError` whose message starts with
the path; `reason` is the rest, which a report shows beside the file's name.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mora.engine.errors import InputError
from mora.engine.userfiles import open_user_file, read_user_file

MANIFEST_BYTES = 64 << 20
"""A manifest of thousands of nodes with their parameters is a few MiB."""
RECORD_BYTES = 8 << 20
"""Hydra's records of a sweep or a job: multirun.yaml, config.yaml, overrides.yaml."""
NUMBER_BYTES = 1 << 20
"""A `.json` output holds one number."""
ANY_SIZE = sys.maxsize
"""For a file read only in part (a text's beginning) or not at all (an image a report links to)."""


def read_text(path: Path, what: str, max_bytes: int) -> str:
    """The whole of the `what` file as UTF-8 text (it may be empty), within `max_bytes`."""
    data = read_user_file(path, what, max_bytes, allow_empty=True)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: {what} file is not UTF-8 text (byte {e.start})") from None


def read_head(path: Path, what: str, size: int) -> bytes:
    """The first `size` bytes of the `what` file, whatever its length."""
    with open_user_file(path, what, ANY_SIZE, allow_empty=True) as f:
        try:
            return f.read(size)
        except OSError as e:
            raise InputError(f"{path}: cannot read {what} file: {e.strerror or e}") from None


def check(path: Path, what: str) -> None:
    """Refuse the `what` file unless it is a regular file: a report links to it, and a browser would open it."""
    with open_user_file(path, what, ANY_SIZE, allow_empty=True):
        pass


def reason(error: InputError, path: Path) -> str:
    """Why `path` was refused, without the path its message starts with (a report names the file beside it)."""
    return str(error).removeprefix(f"{path}: ")
