"""The one exception type the command line turns into a one-line message."""

from __future__ import annotations

import os
import re

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
