"""The exceptions the command line turns into one line: bad input, and a run stopped by a signal."""

from __future__ import annotations

from pathlib import Path


class JaxstyleError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The command line prints ``jaxstyle: <message>`` and exits with status 2;
    no traceback is shown. Messages name the file and the problem.
    """


class Stopped(Exception):
    """A run stopped at a chunk boundary because of signal ``signum``, after ``step`` steps.

    ``checkpoint`` is the directory its state was saved in, if one was set.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by signal {signum} after step {step}")
