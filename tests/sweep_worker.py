"""Runs in a fresh process (XLA_FLAGS set before JAX starts): a sharded sweep and single runs.

Usage: python tests/sweep_worker.py OUT.npz WEIGHTS.h5 DTYPE STEPS   (WEIGHTS: the tiny test network's)
Writes the sweep's and the single runs' images and traces for the test to compare.
"""

import sys

import jax
import numpy as np

from jaxstyle.api import stylize
from jaxstyle.sweep import grid_product, sweep

out, weights, dtype, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if dtype == "float64":
    jax.config.update("jax_enable_x64", True)
rng = np.random.default_rng(7)
content = np.round(rng.uniform(0, 1, size=(48, 64, 3)) * 255) / 255
content[10:30, 8:40] = 0.5
style = rng.uniform(0, 1, size=(48, 64, 3))
# K = 6 settings, not a multiple of the 4 devices.
points = grid_product(1, 1, [1.0, 2.0], [1e2, 1e3, 1e4], [10.0], [0.1])
common = {"weights": weights, "network": "tiny", "size": (48, 64), "steps": steps, "dtype": dtype}
result = sweep([content], [style], points, **common)
singles = [
    stylize(
        content,
        style,
        content_weight=p.content_weight,
        style_weight=p.style_weight,
        tv_weight=p.tv_weight,
        lr=p.lr,
        **common,
    )
    for p in points
]
np.savez(
    out,
    devices=len(jax.devices()),
    batch_size=result.batch_size,
    sweep_images=result.images,
    sweep_total=result.trace["total"],
    single_images=np.stack([r.image for r in singles]),
    single_total=np.stack([r.trace["total"] for r in singles], axis=1),
)
