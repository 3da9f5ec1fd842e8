"""Ctrl-C, remembered: a SIGINT that library code swallowed still ends the run as interrupted.

Policy. Python turns SIGINT into KeyboardInterrupt wherever the main thread happens to be. Code that
catches it (an import fallback with a bare `except:`, for one) can swallow it and fail later in a way
that reads as a node failure (`ModuleNotFoundError: Could not import module ...`) while the run goes
on. `recorded` swaps Python's default handler for one that records the signal before raising as
before; the runner then ends the run on the first unit it finishes after a SIGINT, however that unit
ended, and the front ends' guard exits 130 whenever `received()`, whatever the body returned or
raised. A handler someone else set (SIGINT ignored, as in a background job) is left alone.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_received = False
_active = False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = True
    raise KeyboardInterrupt


@contextmanager
def recorded() -> Iterator[None]:
    """Record SIGINT meanwhile (main thread only) where Python's default handler is in place, then put it back.
    Each use starts afresh: a Ctrl-C of an earlier run in the process never counts for a later one."""
    global _received, _active
    _received = False
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    _active = True
    try:
        yield
    finally:
        _active = False
        signal.signal(signal.SIGINT, signal.default_int_handler)


def received() -> bool:
    """Whether this process got a SIGINT in the last `recorded` (even one some code caught and dropped)."""
    return _received


def check() -> None:
    """Inside `recorded`: raise KeyboardInterrupt if a SIGINT came, so a swallowed Ctrl-C still stops the run here.
    Outside (a run through the Python API after a guarded one), nothing."""
    if _active and _received:
        raise KeyboardInterrupt
