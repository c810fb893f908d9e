"""The exceptions the command line turns into one line: bad input, and a run stopped by a signal."""

from __future__ import annotations

import os
import re
from pathlib import Path

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


class JaxstyleError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The command line prints ``jaxstyle: <message>`` and exits with status 2;
    no traceback is shown. Messages name the file and the problem. Line breaks in
    the message (from a library's error text, or a file name) become spaces, so the
    message is always one line.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(_LINE_BREAKS.sub(" ", str(message)))


def one_line(e: BaseException) -> str:
    """An exception's message on one line, without the noise of long reprs.

    For an ``OSError`` with an errno, the system's words for it ("Read-only file
    system", "No space left on device"), without the file name the caller names
    anyway and without HDF5's report of the failed call around them; otherwise the
    text, every run of whitespace made one space, at most 200 characters.
    """
    system = isinstance(e, OSError) and isinstance(e.errno, int) and e.errno > 0
    text = " ".join((os.strerror(e.errno) if system else str(e)).split()) or type(e).__name__
    return text if len(text) < 200 else text[:197] + "..."


class Stopped(Exception):
    """A run stopped at a chunk boundary because of signal ``signum``, after ``step`` steps.

    ``checkpoint`` is the directory its state was saved in, if one was set.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by signal {signum} after step {step}")
