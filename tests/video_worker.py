"""Runs in a fresh process (XLA_FLAGS set before JAX starts): multi-pass video on all devices and on one.

Usage: python tests/video_worker.py OUT.npz WEIGHTS.h5 PHOTO
Writes both runs' frames and final losses for the test to compare (float64, tiny network).
"""

import sys

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from jaxstyle.clips import video  # noqa: E402
from jaxstyle.synthetic import PanZoom, photo_rgb, render  # noqa: E402

out, weights, photo = sys.argv[1], sys.argv[2], sys.argv[3]
frames = render(photo_rgb(photo), PanZoom(size=(48, 64)), 6)  # 6 frames: padded to 8 over 4 devices
style = np.random.default_rng(7).uniform(0, 1, size=(48, 64, 3))
common = {"weights": weights, "network": "tiny", "content_layers": ("relu4_1",), "size": (48, 64), "steps": 4}
runs = {
    name: video(frames, style, mode="multipass", passes=3, devices=devices, dtype="float64", **common)
    for name, devices in (("all", None), ("one", 1))
}
np.savez(
    out,
    devices=len(jax.devices()),
    **{f"{name}_frames": r.frames for name, r in runs.items()},
    **{f"{name}_{k}": v for name, r in runs.items() for k, v in r.final_losses.items()},
)
