"""Runs in a fresh process with 4 forced CPU devices: a masked run whole and split over 4 devices.

Usage: python tests/masks_worker.py OUT.npz WEIGHTS.h5
Writes, in float64 with the tiny test network: two regions with two styles, a strength map
and an edit mask, over two scales, whole (1 device) and with its rows split over 4 devices
(guides computed on the whole image, padded with zero rows as the image is, then split by
rows as the features are), and a sweep
of two settings with the same masks split over 2 devices.
"""

import sys

import jax
import numpy as np

from jaxstyle.api import stylize
from jaxstyle.pipeline import MaskInputs
from jaxstyle.sweep import grid_product, sweep

jax.config.update("jax_enable_x64", True)
out, weights = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
content = rng.uniform(0, 1, size=(100, 64, 3))  # split over 4: padded to 128 rows (32 a device)
styles = [rng.uniform(0, 1, size=(64, 64, 3)), rng.uniform(0, 1, size=(72, 60, 3))]
top = np.zeros((100, 64), np.float32)
top[:70] = 1.0  # the region boundary inside a device's rows (32 each over 4)
strength = np.linspace(0.2, 1.0, 100 * 64).reshape(100, 64)
edit = np.ones((100, 64), np.float32)
edit[90:] = 0.0
common = {"weights": weights, "network": "tiny", "content_layers": ("relu4_1",), "size": (100, 64), "dtype": "float64"}
masks = {"style_masks": [top, 1 - top], "strength_map": strength, "edit_mask": edit, "guidance": "inside"}
results = {"devices": jax.device_count()}
for shards in (1, 4):
    r = stylize(content, styles, scales=2, steps=2, spatial_shards=shards, **masks, **common)
    results[f"stylize{shards}_image"] = r.image
    results[f"stylize{shards}_total"] = r.trace["total"]
points = grid_product(1, 1, [1.0], [1e2, 1e4], [10.0], [0.1], style_loss=["guided"])
given = MaskInputs([top, 1 - top], None, edit, "inside", strength)
for shards in (1, 2):
    r = sweep([content], styles, points, steps=2, spatial_shards=shards, masks=given, **common)
    results[f"sweep{shards}_images"] = r.images
np.savez(out, **results)
