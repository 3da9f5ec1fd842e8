"""The one place where an exception becomes a message and an exit status, for every entry point.

Policy: nothing a user can type prints a traceback. Each front end (`mora`, `mora-admin`) runs
its body through `guarded`, which maps exception classes to one line and a status:

- Mora's own errors (`MoraError`): their message; status `exit_status` (2 invalid input, 1 failed work).
- Hydra and OmegaConf refusing an override or config: 2, with Hydra's message and its cause. Where
  OmegaConf wraps a Mora error raised inside a resolver (`mora --help` reads the graph there),
  the Mora error is what is reported, with its own status.
- Hydra refusing its command line with a plain ValueError (`--resolve` without `--cfg`, two
  commands at once, `-sc` without a subcommand or with an unknown shell): 2, with Hydra's message.
- The job's log file that cannot be opened (a run directory that cannot be written, `hydra.job.name=a/b`):
  2, naming the file and the settings that place it.
- The operating system refusing a path (symlink loop, a file where a folder belongs, permissions): 2,
  naming the path and the reason; the machine failing a write (disk full, `> /dev/full`, I/O error):
  1, the environment's failure rather than bad input. `Path.resolve()` reports a loop as RuntimeError
  before Python 3.13; that one is mapped too.
- A standard stream the shell closed (`2>&-`) is opened on /dev/null first, so the run goes on as usual.
- Standard output's reader going away (`mora | head -1`, `mora-admin agents | head`): no message and status 141,
  what the shell shows for any tool that SIGPIPE stopped (Python ignores SIGPIPE, so the write fails with EPIPE
  instead). Not 0: the output asked for was not all delivered, and `set -o pipefail` scripts must see that as
  they do for `grep | head`; not 1, which means the work failed. The status is returned, not the signal raised,
  so workers and leases are cleaned up on the way out; the run's files are all written by then (`mora` writes
  its report before printing anything), and stdout is pointed at /dev/null so Python's last flush is quiet
  (the Python docs' "Note on SIGPIPE"). A broken pipe that is not standard output (a worker's) stays an error.
- Ctrl-C: 130 and one line; workers stop with the run (the pool and Ray executors clean up). Any SIGINT
  counts, even one a library caught and turned into another error (`mora.engine.execution.interrupts`).
- Anything else is a bug in Mora: one line naming the exception and status 1; the traceback is
  shown only with HYDRA_FULL_ERROR=1 (Hydra's own switch for full traces).

Hydra catches exceptions in its `run_and_report` and prints a trimmed trace unless HYDRA_FULL_ERROR
is set, so `hydra_errors_raise` sets it for the process and remembers whether the user had.
"""
from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from mora.engine.errors import GraphError, MoraError
from mora.engine.execution import interrupts

INTERRUPTED = 130
READER_GONE = 128 + 13
"""The status of a tool stopped by SIGPIPE (13): standard output's reader went away."""

ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EPIPE, errno.ENOMEM})
"""OS errors that say the machine failed (a full disk, a closed pipe), not that the input was bad: status 1."""

_user_wants_traces = os.environ.get("HYDRA_FULL_ERROR") == "1"


def hydra_errors_raise() -> None:
    """Let exceptions pass through Hydra's `run_and_report` to `guarded` instead of being printed there."""
    os.environ["HYDRA_FULL_ERROR"] = "1"


def describe(exc: BaseException) -> tuple[str, int]:
    """The message (without the program name) and exit status for an exception."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    exc = _mora_error_inside(exc)
    if isinstance(exc, GraphError):
        return f"invalid graph or inputs: {exc}", exc.exit_status
    if isinstance(exc, MoraError):
        return f"error: {exc}", exc.exit_status
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        cause = exc.__cause__
        detail = f"\n{cause}" if isinstance(cause, (HydraException, OmegaConfBaseException)) else ""
        return f"invalid configuration: {exc}{detail}".rstrip(), 2
    if isinstance(exc, ValueError) and str(exc).startswith("Unable to configure handler") and \
            isinstance(exc.__cause__, OSError):  # logging.config opening the job's log file in the run directory
        cause = exc.__cause__
        return (f"error: cannot write the run's log file '{cause.filename}': {cause.strerror or cause} "
                "(hydra.run.dir, hydra.sweep.dir, hydra.job.name)"), 2
    if isinstance(exc, ValueError) and _raised_by_hydra(exc):
        return f"invalid command line: {exc}", 2
    if isinstance(exc, FileExistsError) and exc.filename and not os.path.isdir(exc.filename):
        return f"error: '{exc.filename}' is a file where a directory is needed (a run directory?)", 2
    if isinstance(exc, OSError):
        where = " ".join(f"'{p}'" for p in (exc.filename, exc.filename2) if p is not None)
        return f"error: {exc.strerror or exc}" + (f": {where}" if where else ""), \
            1 if exc.errno in ENVIRONMENT_ERRNOS else 2
    if isinstance(exc, RuntimeError) and str(exc).startswith("Symlink loop"):  # Path.resolve() before Python 3.13
        return f"error: a symbolic link loop: {str(exc).removeprefix('Symlink loop from ')}", 2
    if isinstance(exc, RecursionError):
        return "error: the input is nested too deeply to read", 2
    return f"internal error: {type(exc).__name__}: {exc} (HYDRA_FULL_ERROR=1 shows the traceback)", 1


def _raised_by_hydra(exc: BaseException) -> bool:
    """Whether `exc` was raised in Hydra's own code (its command-line handling), not in Mora's or a library's."""
    import hydra

    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(os.path.dirname(hydra.__file__) + os.sep)


def _mora_error_inside(exc: BaseException) -> BaseException:
    """The MoraError that an OmegaConf resolver raised, which OmegaConf re-raises as its own error; else `exc`."""
    from omegaconf.errors import OmegaConfBaseException

    inner: BaseException | None = exc
    while isinstance(inner, OmegaConfBaseException):
        inner = inner.__cause__ or inner.__context__
    return inner if isinstance(inner, MoraError) else exc


def guarded(prog: str, body: Callable[[], int | None]) -> int:
    """Run `body` and return its status, mapping any exception (and Ctrl-C) to a message and status.

    Once SIGINT has come (`interrupts.received`), the status is 130 and the one line is "interrupted",
    however the body ended: a library that swallowed the KeyboardInterrupt turned it into some other failure.
    """
    _open_closed_streams()
    try:
        return _guarded(prog, body)
    finally:
        _stdout_gone()  # a failed run's message went to stderr; Python's flush of stdout at exit must say nothing


def _guarded(prog: str, body: Callable[[], int | None]) -> int:
    try:
        with interrupts.recorded():
            status = body() or 0
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit: a full disk behind `>` is reported like any other error
    except KeyboardInterrupt:
        status = INTERRUPTED
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        elif interrupts.received():
            status = INTERRUPTED
        else:
            print(f"{prog}: {e.code}", file=sys.stderr)
            return 1
    except Exception as e:
        status = 1
        if not interrupts.received():
            if isinstance(e, BrokenPipeError) and _stdout_gone():
                return READER_GONE
            message, status = describe(e)
            if status == 1 and not isinstance(e, MoraError) and _user_wants_traces:
                raise
            job = getattr(e, "mora_job", None)  # a sweep's job (mora.engine.frontends.cli)
            print(f"{prog}: {f'job {job}: ' if job else ''}{message}", file=sys.stderr)
            return status
    if interrupts.received() or status == INTERRUPTED:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    return status


def _stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has gone; if so it is pointed at /dev/null, so that nothing
    written to it later (Python's flush at exit) fails again."""
    import select
    import stat

    try:
        fd = sys.stdout.fileno()  # type: ignore[union-attr]
        if not stat.S_ISFIFO(os.fstat(fd).st_mode) or not hasattr(select, "poll"):
            return False
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poller.poll(0)):  # a pipe's writer: no reader left
            return False
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except (AttributeError, OSError, ValueError):  # no stdout, or one without a descriptor (a test's capture)
        return False
    return True


def _open_closed_streams() -> None:
    """Point a standard stream the shell closed (`2>&-`, `<&-`) at /dev/null, so runs go on as usual.

    Python leaves `sys.stderr` None when file descriptor 2 is closed, and logging, progress bars and
    warnings would fail on it; the descriptor is opened too, so workers started from here inherit it.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            stream = open(fd, mode, encoding="utf-8", closefd=False)  # noqa: SIM115 (open for the process's life)
        else:  # the number was closed at start-up and is some file's now: leave that file alone
            stream = open(os.devnull, mode, encoding="utf-8")  # noqa: SIM115 (open for the process's life)
        setattr(sys, name, stream)
