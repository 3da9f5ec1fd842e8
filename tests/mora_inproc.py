"""`mora` and `mora-admin` run inside the test process, as a shell would call them, with captured output.

In-process runs cost Hydra's composition only (no interpreter start), which keeps the many-case
tests and the command-line fuzzer fast. `HYDRA_FULL_ERROR`, which `mora` sets for itself, is
restored afterwards so other tests' child processes do not inherit it.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest

from mora.engine.frontends import admin, cli

ECHO_GRAPH = {
    "inputs": {"prompt": {"type": "text"}},
    "nodes": {"frame": {"agent": "text_template", "in": {"text": {"input": "prompt"}},
                        "params": {"template": "A {text}"}}},
    "outputs": {"out": {"from": "frame.text"}},
}
"""A one-node graph, model-free and fast: `out.txt` is "A " + the prompt."""


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str

    @property
    def clean(self) -> bool:
        """No traceback and no internal error: every failure was one of Mora's own messages."""
        return "Traceback" not in self.out + self.err and "internal error" not in self.err


def run_mora(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    saved_argv, saved_full = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    capsys.readouterr()
    sys.argv = ["mora", *args]
    try:
        cli.main()
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved_argv
        if saved_full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full
    captured = capsys.readouterr()
    return Result(status, captured.out, captured.err)


def run_admin(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    status = admin.main(list(args))
    captured = capsys.readouterr()
    return Result(status, captured.out, captured.err)
