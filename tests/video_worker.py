"""Runs in a fresh process (XLA_FLAGS set before JAX starts): the video runs the tests compare.

Usage:
  python tests/video_worker.py devices OUT.npz WEIGHTS.h5 PHOTO
    multi-pass video on all devices and on one (float64), both runs' frames and final losses.
  python tests/video_worker.py resume OUT.npz WEIGHTS.h5 PHOTO MODE CHECKPOINT_DIR RESUME
    a video (MODE: sequential or multipass) that checkpoints in CHECKPOINT_DIR, resuming when
    RESUME is 1; writes its frames to the folder OUT_frames (PNGs, OUT without .npz) and, with its float32 frames
    and final losses, OUT.npz when it ends.

WEIGHTS is the tiny test network's. In ``resume``, SIGINT and SIGTERM are handled as the
command line handles them; after every chunk the worker prints ``STEP <done>`` (frames or
passes counted as micro-batches) and waits ``RESUME_WORKER_PAUSE`` seconds (environment;
default 0), so that a test can signal it at a step of its choosing; a stopped run exits
with the command line's status.
"""

import os
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from jaxstyle.clips import video  # noqa: E402
from jaxstyle.synthetic import PanZoom, photo_rgb, render  # noqa: E402

kind, out, weights, photo = sys.argv[1:5]
style = np.random.default_rng(7).uniform(0, 1, size=(48, 64, 3))
common = {"weights": weights, "network": "tiny", "content_layers": ("relu4_1",), "size": (48, 64)}


def devices() -> None:
    frames = render(photo_rgb(photo), PanZoom(size=(48, 64)), 6)  # 6 frames: padded to 8 over 4 devices
    runs = {
        name: video(frames, style, mode="multipass", passes=3, devices=count, dtype="float64", steps=4, **common)
        for name, count in (("all", None), ("one", 1))
    }
    np.savez(
        out,
        devices=len(jax.devices()),
        **{f"{name}_frames": r.frames for name, r in runs.items()},
        **{f"{name}_{k}": v for name, r in runs.items() for k, v in r.final_losses.items()},
    )


def resume(mode: str, directory: str, again: str) -> None:
    from jaxstyle.checkpoint import CheckpointOptions
    from jaxstyle.errors import Stopped
    from jaxstyle.signals import StopRequests, exit_status

    def report(done: int) -> None:
        print(f"STEP {done}", flush=True)
        time.sleep(float(os.environ.get("RESUME_WORKER_PAUSE", "0")))

    frames = render(photo_rgb(photo), PanZoom(size=(48, 64)), 4)
    # 12 steps a frame (or a frame-pass) in chunks of 4 (cut by save_every), a checkpoint at
    # every chunk end; multi-pass: 3 passes, each two micro-batches of 2 frames.
    checkpoint = CheckpointOptions(Path(directory), every_steps=4, every_minutes=None, resume=again == "1")
    schedule = {"passes": 3, "batch_size": 2} if mode == "multipass" else {}
    with StopRequests() as stop:
        try:
            result = video(
                frames,
                style,
                Path(out).with_name(Path(out).stem + "_frames"),
                mode=mode,
                steps=12,
                save_every=4,
                ema=0.5,  # the moving average is part of the state too
                checkpoint=checkpoint,
                stop_signal=stop,
                progress=lambda chunk: report(chunk.done),
                **schedule,
                **common,
            )
        except Stopped as e:
            sys.exit(exit_status(e.signum, saved=e.checkpoint is not None))
    np.savez(out, frames=result.frames, **{f"final_{k}": v for k, v in result.final_losses.items()})


if kind == "devices":
    devices()
else:
    resume(*sys.argv[5:8])
