"""Progress of a run: a bar on a terminal, plain lines in log files, or JSON lines for programs.

On a cluster stderr is a file (SLURM logs, nohup, CI), where a progress bar writes
nothing useful until the end; there a line is printed at a fixed interval instead:
step, loss, steps per second and the time left, with the scale of a coarse-to-fine
run and the micro-batch of a sweep. Steps per second are measured from the end of the
first chunk, so compilation does not count.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from jaxstyle.pipeline import ChunkReport

MODES = ("auto", "bar", "log", "json", "none")


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h04m``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Receives every :class:`~jaxstyle.pipeline.ChunkReport` of a run and shows it.

    Args:
      label: the command (``stylize``, ``sweep``).
      mode: ``bar`` (tqdm), ``log`` (a line every ``interval`` seconds), ``json`` (a JSON
        object per line, every ``interval`` seconds), ``none``; ``auto``: ``bar`` when
        ``stream`` is a terminal, else ``log``.
      interval: seconds between lines in ``log`` and ``json`` modes (the last chunk always prints).
      stream: where to write (default: stderr).
    """

    def __init__(self, label: str, mode: str = "auto", interval: float = 30.0, stream: IO[str] | None = None) -> None:
        self.label, self.stream = label, stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        self.mode, self.interval = mode, interval
        self.bar = None
        self.first: tuple[float, int] | None = None  # (time, setting-steps) after the first chunk
        self.last_print = -math.inf

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=1, unit="step", desc=self.label, file=self.stream)
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self.bar is not None:
            self.bar.leave = kind is None  # erased if the run failed
            self.bar.close()

    def write(self, line: str) -> None:
        """A line of text that does not break the bar."""
        if self.mode == "none":
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def __call__(self, report: ChunkReport) -> None:
        now, done, total = time.monotonic(), report.done, report.steps * report.micro_batches
        if self.first is None:
            self.first = (now, done)
        elapsed, counted = now - self.first[0], done - self.first[1]
        rate = counted / elapsed if elapsed > 0 and counted > 0 else math.nan
        loss = float(min(report.losses["total"][-1]))  # the best setting's, in a sweep
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4g}")
            return
        last = done == total
        if self.mode == "none" or (now - self.last_print < self.interval and not last):
            return
        self.last_print = now
        record = {
            "command": self.label,
            "step": report.step,
            "steps": report.steps,
            "stage": report.stage + 1,
            "stages": report.stages,
            "micro_batch": report.micro_batch + 1,
            "micro_batches": report.micro_batches,
            "done": done,
            "total": total,
            "loss": loss,
            "steps_per_second": rate if math.isfinite(rate) else None,
            "eta_seconds": (total - done) / rate if rate > 0 else None,
        }
        if self.mode == "json":
            print(json.dumps(record), file=self.stream, flush=True)
            return
        where = f" scale {report.stage + 1}/{report.stages}" if report.stages > 1 else ""
        if report.micro_batches > 1:
            where += f" micro-batch {report.micro_batch + 1}/{report.micro_batches}"
        speed = f"{rate:.3g} steps/s" if math.isfinite(rate) else "- steps/s"
        eta = duration((total - done) / rate) if rate > 0 else "?"
        print(
            f"{self.label}: step {report.step}/{report.steps}{where} ({100 * done / total:.0f}%) "
            f"loss {loss:.4g} {speed} ETA {eta}",
            file=self.stream,
            flush=True,
        )
