"""Runs in a fresh process with 4 forced CPU devices: one image split over 1, 2 and 4 devices.

Usage: python tests/shard_worker.py OUT.npz WEIGHTS.h5
Writes, in float64 with the tiny test network:

* the objective's value, terms and image gradient of images whose heights are not
  multiples of the split's (101, 37 rows over 4 devices and 100 over 2, every TV form,
  Gram and W2, remat none and blocks), split (padded rows, masked) and whole;
* a three-scale stylization of a 101-row image (stages of 50, 71 and 101 rows, every one
  padded) whole and split over 4, with L-BFGS over 2, and split over 4 stopped after
  its first scale and resumed from its checkpoint;
* a sweep of 4 settings on a 2 settings x 2 space mesh and on 4 x 1;
* per-device memory (XLA's memory analysis) and collectives of a compiled chunk, split
  over 1, 2 and 4 devices at 128x64 (nothing padded) and over 4 at 101x50 (padded),
  for the test to compare.
"""

import signal
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxstyle.api import stylize
from jaxstyle.batch import run_batch_chunk_jit
from jaxstyle.checkpoint import CheckpointOptions
from jaxstyle.config import Execution, resolve
from jaxstyle.errors import Stopped
from jaxstyle.losses import LossWeights
from jaxstyle.mesh import single_run_mesh
from jaxstyle.pipeline import DeviceLayout, StageStep, next_stage_state, prepare_job
from jaxstyle.solve import Recipe, compute_targets, content_targets, objective
from jaxstyle.spatial import pad_rows
from jaxstyle.sweep import grid_product, sweep
from jaxstyle.vgg import VGG

jax.config.update("jax_enable_x64", True)
out, weights = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(5)
results = {}

# --- the objective: split with padded rows against whole, value and gradient.
# relu5_1 lies behind 4 poolings: heights are padded to multiples of 16 x shards.
CASES = [  # shards, height, TV form, style loss, remat
    (4, 101, "mean", "gram", "none"),
    (4, 37, "nine", "w2", "blocks"),
    (2, 100, "sum", "gram", "blocks"),
]  # every TV form, both losses, both remat modes, 2 and 4 devices: three cases (each compiles twice)
graphdef, params = nnx.split(VGG("tiny", param_dtype=jnp.float64, rngs=nnx.Rngs(0)))
objective_rows = []
for shards, height, tv, style_loss, remat in CASES:
    recipe = Recipe(("relu2_1", "relu4_1"), ("relu1_1", "relu3_1", "relu5_1"), tv, style_losses=(style_loss,))
    recipe = recipe._replace(remat=remat)
    image, content = (jnp.asarray(rng.normal(size=(1, height, 40, 3))) for _ in range(2))
    style = jnp.asarray(rng.normal(size=(1, 50, 40, 3)))
    w = LossWeights(*map(jnp.asarray, (1.0, 1e3, 3.0, [1.0, 0.5], [1.0, 1.0, 1.0])))
    targets = compute_targets(graphdef, params, content, style, recipe)

    def value_and_grad(x, recipe, targets, w):
        return jax.value_and_grad(lambda x: objective(x, graphdef, params, recipe, targets, w), has_aux=True)(x)

    (_, whole), whole_grad = jax.jit(value_and_grad, static_argnums=1)(image, recipe, targets, w)
    mesh = single_run_mesh(shards)
    rows = -(-height // (16 * shards)) * (16 * shards)
    split = recipe._replace(space_mesh=mesh, valid_rows=height)
    place = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "space"))
    padded_content = jax.device_put(pad_rows(content, rows), place)
    split_targets = targets._replace(
        content=jax.jit(content_targets, static_argnums=(0, 3))(graphdef, params, padded_content, split)
    )
    (_, parts), grad = jax.jit(value_and_grad, static_argnums=1)(
        jax.device_put(pad_rows(image, rows), place), split, split_targets, w
    )
    grad = np.asarray(grad)
    objective_rows.append(
        [
            max(abs(float(parts[k]) / float(whole[k]) - 1) for k in whole),
            np.linalg.norm(grad[:, :height] - whole_grad) / np.linalg.norm(whole_grad),
            np.abs(grad[:, height:]).max(),
            rows - height,
        ]
    )
results["objective"] = np.asarray(objective_rows)

# --- the pipeline: three scales of 50x25, 71x35 and 101x50, each padded over 4 devices (2 with L-BFGS).
content = rng.uniform(0, 1, size=(101, 50, 3))
content[20:70, 10:40] = 0.3
style = rng.uniform(0, 1, size=(80, 60, 3))
# The style image is 0.75 of the output: 76 rows at the last scale, not a multiple: whole on every device.
common = {
    "weights": weights,
    "network": "tiny",
    "content_layers": ("relu4_1",),
    "size": (101, 50),
    "style_scale": 0.75,
    "dtype": "float64",
}
for shards in (1, 4):  # 2 devices: the L-BFGS run below and the objective's 100-row case
    r = stylize(content, style, scales=3, steps=2, spatial_shards=shards, **common)
    results[f"stylize{shards}_image"] = r.image
    results[f"stylize{shards}_total"] = r.trace["total"]
for shards in (1, 2):  # L-BFGS: a line search over the padded image, whose padded rows never move
    r = stylize(content, style, scales=2, steps=3, optimizer="lbfgs", spatial_shards=shards, **common)
    results[f"lbfgs{shards}_image"] = r.image
    results[f"lbfgs{shards}_total"] = r.trace["total"]

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


def chunk_bytes(shards: int, size: tuple[int, int]) -> int:
    """Per-device bytes of a compiled 2-step chunk at ``size``: arguments, outputs and temporaries."""
    fields = {k: v for k, v in common.items() if k not in ("weights", "dtype", "size")}
    settings = resolve("paper", steps=2, size=size, **fields)
    execution = Execution(dtype="float64", spatial_shards=shards)
    image = rng.uniform(0, 1, size=(*size, 3))
    job = prepare_job([image], [style], settings, weights=weights, execution=execution, space_devices=4)
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
    # The image, Adam's moments and the average stay split by rows through a chunk (padded ones too).
    after, _, _ = compiled(params, targets, device.setting, state)
    images = [x for x in jax.tree.leaves(after) if x.shape[-3:] == (*layout.device_size(0), 3)]
    split.append([len(images), sum("space" in x.sharding.spec for x in images)])
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


split: list[list[int]] = []
collectives: list[list[int]] = []
results["memory"] = np.asarray([chunk_bytes(n, (128, 64)) for n in (1, 2, 4)] + [chunk_bytes(4, (101, 50))])
results["split_leaves"] = np.asarray(split)
results["collectives"] = np.asarray(collectives)
results["devices"] = len(jax.devices())
np.savez(out, **results)
