"""Checkpoints of a run at chunk boundaries, written with Orbax, and their checks.

A checkpoint holds everything the runner carries from one chunk to the next: the
solver state of the micro-batch in flight (image, optimiser state, step, EMA, stop
flags; sharded as in the run), the runner's host progress (the losses so far and the
results of the micro-batches already done: nested tuples, lists and dicts of NumPy
arrays, written by Orbax as they are), and where the run stands (micro-batch, stage,
chunks done). The images
every stage starts from are derived from the inputs, the settings and the seed, so no
random state needs saving. Orbax writes each checkpoint into a temporary directory and
renames it into place when complete, so a kill in the middle of a write leaves the
last complete checkpoint as it was.

A checkpoint is bound to its run by a fingerprint of the settings, the points, the
input images, the weights, the dtypes and the plan; one made by another run, or by
another format version, is refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.errors import JaxstyleError, one_line

FORMAT_VERSION = 2  # 2: the host side is the runner's progress pytree as it is (1: flat named arrays)
KEEP = 2  # checkpoints kept: the newest, and the one before in case the newest is being written


@dataclass(frozen=True)
class Position:
    """Where a run stands after a chunk.

    Attributes:
      micro_batch: the micro-batch in flight.
      stage: its stage in flight.
      chunks_done: chunks of that stage done.
      step: global steps done in that micro-batch (all stages counted).
    """

    micro_batch: int
    stage: int
    chunks_done: int
    step: int


def digest(*parts: Any) -> str:
    """SHA-256 of JSON-able parts, NumPy arrays by their dtype, shape and bytes."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class CheckpointOptions:
    """How a run checkpoints, as the user asks for it.

    Attributes:
      directory: where checkpoints go.
      every_steps: save at least every this many steps (``None``: by time only).
      every_minutes: save at least every this many minutes of wall time (``None``: by steps only).
      resume: go on from the newest checkpoint in ``directory``, if there is one.
        Without it, a directory that already holds checkpoints is refused.
    """

    directory: Path
    every_steps: int | None = None
    every_minutes: float | None = 10.0
    resume: bool = False


class Checkpoints:
    """A checkpoint directory of one run: when to save, save, and restore.

    Args:
      options: the directory (created if missing), how often, and whether to resume.
        A checkpoint is saved at the first chunk boundary at least ``every_steps``
        steps or ``every_minutes`` after the last.
      fingerprint: ``{part: digest}`` of what the run depends on (see :func:`digest`).
    """

    def __init__(self, options: CheckpointOptions, fingerprint: dict[str, str]) -> None:
        import orbax.checkpoint as ocp

        self.directory = Path(options.directory).absolute()
        self.fingerprint, self.resume = fingerprint, options.resume
        self.every_steps = options.every_steps
        self.every_seconds = None if options.every_minutes is None else 60.0 * options.every_minutes
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            options = ocp.CheckpointManagerOptions(max_to_keep=KEEP, enable_async_checkpointing=False)
            self.manager = ocp.CheckpointManager(self.directory, options=options)
        except (OSError, ValueError) as e:
            raise JaxstyleError(f"{self.directory}: cannot use as a checkpoint directory ({one_line(e)})") from None
        self.last_save_time = time.monotonic()
        self.last_save_step = 0

    def due(self, done: int) -> bool:
        """Whether a checkpoint is due after ``done`` setting-steps of the run."""
        by_steps = self.every_steps is not None and done - self.last_save_step >= self.every_steps
        by_time = self.every_seconds is not None and time.monotonic() - self.last_save_time >= self.every_seconds
        return by_steps or by_time

    def save(self, done: int, position: Position, state: Any, host: Any) -> None:
        """Write a checkpoint (atomically) of the device ``state`` and the ``host`` pytree of NumPy
        arrays after ``done`` steps."""
        import orbax.checkpoint as ocp

        meta = {"format_version": FORMAT_VERSION, "fingerprint": self.fingerprint, "position": vars(position)}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), host=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(meta)
        )
        try:
            self.manager.save(done, args=args, force=True)
            self.manager.wait_until_finished()
        except (OSError, ValueError) as e:
            raise JaxstyleError(f"{self.directory}: cannot write a checkpoint ({one_line(e)})") from None
        self.last_save_time, self.last_save_step = time.monotonic(), done

    def latest(self) -> tuple[int, Position] | None:
        """``(done, position)`` of the newest complete checkpoint, checked against this run; ``None`` if none."""
        import orbax.checkpoint as ocp

        self.manager.reload()
        done = self.manager.latest_step()
        if done is None:
            return None
        if not self.resume:
            raise JaxstyleError(
                f"{self.directory}: holds checkpoints of an earlier run; pass --resume to go on from the newest, "
                "or use another --checkpoint-dir"
            )
        try:
            meta = self.manager.restore(done, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except (OSError, ValueError, KeyError, FileNotFoundError) as e:
            raise JaxstyleError(f"{self.directory}: unreadable checkpoint {done} ({one_line(e)})") from None
        self.check(meta)
        self.last_save_step = done
        return done, Position(**meta["position"])

    def check(self, meta: dict) -> None:
        """Refuse a checkpoint of another format version or of another run, naming what differs."""
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version != FORMAT_VERSION:
            raise JaxstyleError(
                f"{self.directory}: checkpoint format version {version}, this jaxstyle reads {FORMAT_VERSION}"
            )
        theirs = meta.get("fingerprint", {})
        for part, ours in self.fingerprint.items():
            if theirs.get(part) != ours:
                raise JaxstyleError(
                    f"{self.directory}: the checkpoint there was made with other {part}; resume with the same "
                    "command, or use another --checkpoint-dir"
                )

    def restore(self, done: int, abstract_state: Any) -> tuple[Any, Any]:
        """The device state (shaped and sharded like ``abstract_state``) of checkpoint ``done``, and its
        host pytree as Orbax reads it back: tuples as dicts of their fields, lists as lists, NumPy arrays."""
        import orbax.checkpoint as ocp

        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), host=ocp.args.StandardRestore())
        try:
            restored = self.manager.restore(done, args=args)
        except (OSError, ValueError, KeyError) as e:
            raise JaxstyleError(f"{self.directory}: unreadable checkpoint {done} ({one_line(e)})") from None
        return restored.state, restored.host
