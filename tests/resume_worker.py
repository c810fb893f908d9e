"""Runs in a fresh process: a stylization or a sweep that checkpoints, for the resume tests.

Usage: python tests/resume_worker.py OUT.npz WEIGHTS.h5 DTYPE KIND OPTIMIZER SCALES CHECKPOINT_DIR RESUME

KIND is ``stylize`` or ``sweep`` (4 forced CPU devices when XLA_FLAGS asks for them).
WEIGHTS is the tiny test network's (what is resumed does not depend on the network).
SIGINT and SIGTERM are handled as the command line handles them; after every chunk the
worker prints ``STEP <done>`` on stdout, so a test can signal it at a step of its
choosing, then waits ``RESUME_WORKER_PAUSE`` seconds (environment; default 0): a pause
lets a signal sent on reading that line arrive before the next chunk ends, as it would
in a run whose chunks take seconds. Exits with the command line's status for a stopped
run; writes OUT.npz when the run ends.
"""

import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

out, weights, dtype, kind, optimizer, scales, directory, resume = sys.argv[1:9]
if dtype == "float64":
    jax.config.update("jax_enable_x64", True)

from jaxstyle.api import stylize  # noqa: E402
from jaxstyle.checkpoint import CheckpointOptions  # noqa: E402
from jaxstyle.errors import Stopped  # noqa: E402
from jaxstyle.signals import StopRequests, exit_status  # noqa: E402
from jaxstyle.sweep import grid_product, sweep  # noqa: E402

rng = np.random.default_rng(11)
content = np.round(rng.uniform(0, 1, size=(48, 64, 3)) * 255) / 255
style = rng.uniform(0, 1, size=(48, 64, 3))


def report(done: int) -> None:
    print(f"STEP {done}", flush=True)
    time.sleep(float(os.environ.get("RESUME_WORKER_PAUSE", "0")))


common = {
    "weights": weights,
    "network": "tiny",
    "content_layers": ("relu4_1",),
    "size": (48, 64),
    "steps": 12,
    "scales": int(scales),
    "optimizer": optimizer,
    "dtype": dtype,
    "checkpoint": CheckpointOptions(Path(directory), every_steps=4, every_minutes=None, resume=resume == "1"),
    "progress": lambda chunk: report(chunk.done),
}
if optimizer == "adam":
    common["ema"] = 0.5  # the moving average is part of the state too
with StopRequests() as stop:
    try:
        if kind == "stylize":
            result = stylize(content, style, stop_signal=stop, **common)
            images, total = result.image[None], result.trace["total"][:, None]
        else:
            # K = 6 settings in micro-batches of 4 over 4 devices: a checkpoint can fall in either.
            points = grid_product(1, 1, [1.0], [1e2, 1e3, 1e4], [0.0, 10.0], [0.1])
            result = sweep([content], [style], points, batch_size=4, stop_signal=stop, **common)
            images, total = result.images, result.trace["total"]
    except Stopped as e:
        sys.exit(exit_status(e.signum, saved=e.checkpoint is not None))
np.savez(out, images=images, total=total, final=np.asarray(result.final_losses["total"]))
