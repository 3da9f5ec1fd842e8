"""Command-line values are data: graph inputs typed in a shell reach the graph exactly as typed.

Hydra reads every `key=value` with its override grammar, so `prompt="it's a fox, in the snow"`,
`"a fox (red)"` or `"a=b"` are grammar errors and `${...}` in a value is an interpolation that
resolves environment variables and config keys. For a single run Mora therefore rewrites the
values of the graph's data keys (`prompt=` and `inputs.NAME=`) into Hydra quoted strings before
Hydra sees them: any text at all stays literal, `${...}` included. The graph's declared input
types then read the text (`inputs.steps=4` is a number, `inputs.prompts=[a, b]` a list: see
`mora.engine.graph.validate.from_text`). Configuration keys (`runtime.*`, `seed`, `model`, ...) keep
Hydra's grammar and types.

A sweep (`-m`) keeps Hydra's sweep syntax for every key (`prompt=a,b` is two jobs); its values
are still never resolved, because graph inputs are read from the config unresolved (cli).
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import NoReturn

from hydra.types import RunMode

from mora.engine.errors import InputError
from mora.engine.userfiles import read_user_file

DATA_KEY = re.compile(r"^(?P<key>\+{0,2}(?:prompt|inputs\.[A-Za-z0-9_.-]+))=(?P<value>.*)$", re.DOTALL)
MAX_PROMPTS_BYTES = 1 << 20


class _Unparsable(Exception):
    """Hydra's argument parser refusing the command line (or answering `--version`): Hydra will say so itself."""


def _refuse(*args: object, **kwargs: object) -> NoReturn:
    raise _Unparsable


def is_multirun(argv: list[str]) -> bool:
    """Whether Hydra will run `argv` as a sweep, asked of Hydra's own parsers rather than matched as strings: its
    argument parser (which takes `--multi`, `--mult`, ... for `--multirun`, as argparse abbreviates) and its override
    parser with OmegaConf's reading of the `hydra.mode` enum (`'MULTIRUN'`, `"MULTIRUN"`, `RunMode.MULTIRUN`, 2; the
    last such override wins). A command line Hydra refuses is no sweep: Hydra reports it before anything runs.
    A `hydra.mode` set in a config file rather than on the command line is not seen here."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.error = parser.exit = _refuse  # type: ignore[method-assign, assignment]  # no message, no exit: Hydra's
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(argv)
    except _Unparsable:
        return False
    return bool(args.multirun) or _mode(args.overrides) == RunMode.MULTIRUN


def _mode(overrides: list[str]) -> RunMode | None:
    """The run mode the last `hydra.mode` override sets (None where none does, or where the value is not a mode)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import ValidationError
    from omegaconf.nodes import EnumNode

    parser = OverridesParser.create()
    mode = None
    for line in overrides:
        if "mode" not in line:  # the key must say it: a cheap filter before Hydra's grammar
            continue
        try:
            override = parser.parse_override(line)
        except HydraException:  # a data value that only `as_data` makes grammatical, or a typo Hydra will report
            continue
        if override.key_or_group != "hydra.mode" or override.package is not None:
            continue
        try:
            mode = None if override.is_delete() else EnumNode.validate_and_convert_to_enum(RunMode, override.value())
        except ValidationError:
            mode = None
    return mode


def hydra_quoted(text: str) -> str:
    """`text` as a Hydra single-quoted string that parses back to exactly `text`.

    Hydra's rule: inside quotes a backslash is literal unless it precedes a quote or ends the
    string; such backslash runs are doubled, and quotes escaped.
    """
    body = re.sub(r"\\+(?='|$)", lambda m: m[0] * 2, text).replace("'", "\\'")
    return f"'{body}'"


def as_data(argv: list[str]) -> list[str]:
    """The argument list with graph-input values made literal (single runs) and `inputs.NAME` addable.

    Graph inputs are not keys of the config until set (Hydra's struct mode refuses new keys and
    `inputs` starts empty), so `inputs.NAME=V` becomes the add-or-override form `++inputs.NAME=V`.
    """
    single = not is_multirun(argv)
    out = []
    for arg in argv:
        m = DATA_KEY.match(arg)
        if not m:
            out.append(arg)
            continue
        key, value = m["key"], m["value"]
        if key.startswith("inputs."):
            key = "++" + key
        out.append(f"{key}={hydra_quoted(value) if single else value}")
    return out


def sweep_over(texts: list[str]) -> str:
    """A Hydra sweep over these texts, each literal: `'a fox','it\\'s raining'` (for `-m prompt=...`)."""
    return ",".join(hydra_quoted(t) for t in texts)


def sweep_file(path: Path) -> str:
    """`sweep_over` the lines of a prompts file (blank lines skipped); InputError names the file if it is unusable."""
    data = read_user_file(path, "prompts", MAX_PROMPTS_BYTES)
    try:
        lines = [line for line in re.split(r"\r\n|\r|\n", data.decode("utf-8")) if line.strip()]  # universal newlines
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: prompts file is not UTF-8 text (byte {e.start})") from None
    if not lines:
        raise InputError(f"{path}: prompts file has no prompts (one per line)")
    return sweep_over(lines)


if __name__ == "__main__":  # python -m mora.engine.frontends.overrides prompts.txt: one prompt per line, as a sweep value
    import sys

    from mora.engine.frontends.guard import guarded

    if len(sys.argv) != 2:
        print("usage: python -m mora.engine.frontends.overrides PROMPTS_FILE", file=sys.stderr)
        sys.exit(2)
    sys.exit(guarded("mora", lambda: print(sweep_file(Path(sys.argv[1])))))
