"""Runs in a fresh process with 4 forced CPU devices: one image split over 1, 2 and 4 devices.

Usage: python tests/shard_worker.py OUT.npz WEIGHTS.h5
Writes, in float64 with the tiny test network: a three-scale stylization whole and split
over 4 devices, and the split one stopped after its first scale and resumed from its
checkpoint; a sweep of 4 settings on a 2 settings x 2 space mesh and on 4 x 1; and each
split's per-device memory of a compiled chunk (XLA's memory analysis), for the test to compare.
"""

import signal
import sys
from pathlib import Path

import jax
import numpy as np

from jaxstyle.api import stylize
from jaxstyle.batch import run_batch_chunk_jit
from jaxstyle.checkpoint import CheckpointOptions
from jaxstyle.config import Execution, resolve
from jaxstyle.errors import Stopped
from jaxstyle.mesh import single_run_mesh
from jaxstyle.pipeline import DeviceLayout, StageStep, next_stage_state, prepare_job
from jaxstyle.sweep import grid_product, sweep

jax.config.update("jax_enable_x64", True)
out, weights = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(5)
content = rng.uniform(0, 1, size=(128, 64, 3))
content[20:70, 10:40] = 0.3
style = rng.uniform(0, 1, size=(80, 60, 3))
# relu4_1 and relu5_1 lie behind 3 and 4 poolings: a split height is a multiple of 16 x shards.
# Three scales, 64x32, 91x46 and 128x64: the middle one cannot be split and runs whole on each device.
# The style image is 0.75 of the output: 96 rows at the last scale, split over 2 devices, not 4.
common = {
    "weights": weights,
    "network": "tiny",
    "content_layers": ("relu4_1",),
    "size": (128, 64),
    "style_scale": 0.75,
    "dtype": "float64",
}
results = {}
for shards in (1, 4):  # 2 shards: the sweep below
    r = stylize(content, style, scales=3, steps=2, spatial_shards=shards, **common)
    results[f"stylize{shards}_image"] = r.image
    results[f"stylize{shards}_total"] = r.trace["total"]

# Stopped after the first scale's chunk (split over 4) and resumed from its checkpoint.
directory = Path(out).with_suffix(".checkpoints")
chunks: list[int] = []


def stop_once() -> int | None:
    chunks.append(1)
    return signal.SIGTERM if len(chunks) == 1 else None


try:
    stylize(
        content,
        style,
        scales=3,
        steps=2,
        spatial_shards=4,
        **common,
        checkpoint=CheckpointOptions(directory),
        stop_signal=stop_once,
    )
    raise AssertionError("the run did not stop")
except Stopped:
    pass
r = stylize(
    content, style, scales=3, steps=2, spatial_shards=4, **common, checkpoint=CheckpointOptions(directory, resume=True)
)
results["resumed4_image"], results["resumed4_total"] = r.image, r.trace["total"]

points = grid_product(1, 1, [1.0], [1e2, 1e3], [0.0, 10.0], [0.1])
for shards in (1, 2):
    r = sweep([content], [style], points, steps=3, spatial_shards=shards, **common)
    results[f"sweep{shards}_images"] = r.images
    results[f"sweep{shards}_total"] = r.trace["total"]
    results[f"sweep{shards}_batch"] = r.batch_size


def chunk_bytes(shards: int) -> int:
    """Per-device bytes of a compiled 2-step chunk at 128x64: arguments, outputs and temporaries."""
    fields = {k: v for k, v in common.items() if k not in ("weights", "dtype")}
    settings = resolve("paper", steps=2, **fields)
    execution = Execution(dtype="float64", spatial_shards=shards)
    job = prepare_job([content], [style], settings, weights=weights, execution=execution, space_devices=4)
    layout = DeviceLayout.of(job, single_run_mesh(shards))
    params = jax.device_put(job.network.params, layout.replicated)
    targets, device = layout.targets(job, 0), layout.place_settings(job.per_setting())
    step = StageStep(job.network.graphdef, layout.recipe(job.network.recipe, 0), params, targets, device.setting, 2)
    state = next_stage_state(step, layout, 0, device, None, False, job.network.convention)
    lowered = run_batch_chunk_jit.lower(step.graphdef, step.recipe, 2, params, targets, device.setting, state)
    compiled = lowered.compile()
    m = compiled.memory_analysis()
    text = compiled.as_text()
    collectives.append([text.count(f" {op}(") for op in ("collective-permute", "all-gather")])
    # The image, Adam's moments and the average stay split by rows through a chunk.
    after, _, _ = compiled(params, targets, device.setting, state)
    images = [x for x in jax.tree.leaves(after) if x.shape[-3:] == (128, 64, 3)]
    split.append([len(images), sum("space" in x.sharding.spec for x in images)])
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


split: list[list[int]] = []
collectives: list[list[int]] = []
results["memory"] = np.asarray([chunk_bytes(n) for n in (1, 2, 4)])
results["split_leaves"] = np.asarray(split)
results["collectives"] = np.asarray(collectives)
results["devices"] = len(jax.devices())
np.savez(out, **results)
