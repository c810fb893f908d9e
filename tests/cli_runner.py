"""The ``jaxstyle`` command run in the test process: what a user sees, without starting a new Python.

A fresh process per command costs seconds (importing JAX, loading compiled programs)
and shares nothing with the tests before it. :func:`run_cli` calls
:func:`jaxstyle.cli.main` with the command's arguments and returns what a process
would: the exit status and everything written to standard output and standard error.
Both are captured at the Python level (``sys.stdout``, ``sys.stderr``, warnings) and at
the file-descriptor level (what C libraries such as XLA or HDF5 print), so that a test
of "one line on stderr" sees every line a real process would print.

Tests that need a real process keep one: signals, exit on SIGTERM, the console-script
entry point, what importing the package loads, and multi-device runs (``XLA_FLAGS`` is
read when JAX starts).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CliResult:
    """What a finished ``jaxstyle`` command left: its exit status and its two output streams."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def working_directory(cwd: Path | str | None) -> Iterator[None]:
    if cwd is None:
        yield
        return
    before = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def environment(env: Mapping[str, str] | None) -> Iterator[None]:
    """``os.environ`` replaced by ``env`` (a whole environment, as ``subprocess`` takes it)."""
    if env is None:
        yield
        return
    before = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(before)


@contextlib.contextmanager
def captured_fd(fd: int) -> Iterator[io.StringIO]:
    """What is written to file descriptor ``fd`` (1 or 2) inside the block, read back after it."""
    text = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(fd)
        os.dup2(sink.fileno(), fd)
        try:
            yield text
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            text.write(sink.read().decode(errors="replace"))


@contextlib.contextmanager
def fresh_process_warnings() -> Iterator[None]:
    """Warnings printed to ``sys.stderr`` under a fresh interpreter's default filters,
    as a real command prints them (pytest otherwise records them itself)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        # JAX warns at every fork (FFmpeg, pip) once its threads run. In the test process
        # they run before the command starts, which in a process of its own they may not.
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        warnings.showwarning = show
        yield


def run_cli(*argv: object, cwd: Path | str | None = None, env: Mapping[str, str] | None = None) -> CliResult:
    """``jaxstyle ARGV`` in this process, in ``cwd`` and environment ``env`` where given.

    The exit status is ``main``'s return value, or the code of a ``SystemExit`` it
    raises (``--help``, argument errors); any other exception propagates, as a bug.
    """
    from jaxstyle.cli import main

    args = tuple(str(a) for a in argv)
    out, err = io.StringIO(), io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    with (
        working_directory(cwd),
        environment(env),
        captured_fd(1) as fd_out,
        captured_fd(2) as fd_err,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        fresh_process_warnings(),
    ):
        try:
            returncode = main(list(args))
        except SystemExit as e:
            returncode = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if e.code is not None and not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
        finally:
            out.flush()
            err.flush()
    return CliResult(args, returncode, out.getvalue() + fd_out.getvalue(), err.getvalue() + fd_err.getvalue())
