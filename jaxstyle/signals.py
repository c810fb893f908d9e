"""SIGINT and SIGTERM as requests to stop, honoured by the runner between chunks.

A Python exception raised by a signal while XLA computes in its own threads can tear
the interpreter down under them (Ctrl-C during a run used to end in SIGSEGV). So while
a run is under way, the first SIGINT or SIGTERM only records itself; the runner asks
after every chunk, saves a checkpoint if it has a directory, and stops cleanly. A
second SIGINT stops at once (``KeyboardInterrupt``), for a user who will not wait for
the chunk to end.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

# Exit statuses a job script can tell apart (docs/guide/clusters.md).
EXIT_INTERRUPTED = 130  # SIGINT: 128 + 2, as a shell reports it
EXIT_PREEMPTED = 75  # SIGTERM with the state saved (EX_TEMPFAIL): run the same command with --resume
EXIT_TERMINATED = 143  # SIGTERM with nothing saved: 128 + 15


def exit_status(signum: int, saved: bool) -> int:
    """The exit status of a run stopped by ``signum``, with or without a checkpoint saved."""
    if signum == signal.SIGTERM:
        return EXIT_PREEMPTED if saved else EXIT_TERMINATED
    return EXIT_INTERRUPTED


class StopRequests:
    """A context in which SIGINT and SIGTERM are recorded instead of raised; call it to ask.

    Outside the main thread (where Python allows no signal handlers) it records nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __call__(self) -> int | None:
        """The first signal received, or ``None``."""
        return self.signum

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.signum = self.signum or signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
