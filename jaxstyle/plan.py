"""The plan of a run, decided before any computation: pure Python, no JAX.

A run (one stylization, a sweep, later the frames of a video) is a batch of settings
that share a schedule of stages (the scales of a coarse-to-fine run). The plan fixes,
from the settings and the sizes alone:

* the stages: each scale's size, its step count, and its first step in the run's
  global step numbering (steps count on across scales: a run of scales of 15 and 20
  steps has global steps 0..34);
* the chunks: each stage's steps cut into jitted ``lax.scan`` chunks, ending on every
  snapshot step and at most ``chunk_steps`` long (progress, snapshots and divergence
  checks happen between chunks);
* the batch: how many settings run together in one compiled micro-batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from jaxstyle.config import REMAT_MODES, Execution, Settings, Stage, stages
from jaxstyle.errors import JaxstyleError
from jaxstyle.nets import network

CHUNK_STEPS = 10  # steps per jitted chunk: progress and divergence checks happen between chunks
# On an accelerator a step takes milliseconds, and each chunk boundary costs a round trip
# to the host (the losses copied back, the stop flags read): longer chunks there. The
# runner also dispatches the next chunk before it reads the last one's losses
# (jaxstyle.pipeline.Runner.stage).
ACCELERATOR_CHUNK_STEPS = 50


def chunk_steps_for(platform: str) -> int:
    """Steps per jitted chunk on ``platform`` (``"cpu"``, ``"gpu"``, ``"tpu"``)."""
    return CHUNK_STEPS if platform == "cpu" else ACCELERATOR_CHUNK_STEPS


# On CPU one setting already keeps every core busy, so a wider batch adds no
# parallelism, only memory traffic: up to about 8 settings vmapped ran a little faster
# per setting than one at a time, and 16 slower (bench/RESULTS.md).
CPU_SETTINGS_PER_DEVICE = 8
# The memory model of one optimisation step (see step_bytes): bytes = fixed + factor *
# A(H, W), A the float32 bytes of the forward activations up to the deepest layer the
# recipe uses (NetworkSpec.activation_count). Fitted by `python -m bench.memory fit` to
# XLA's compiled memory analysis (arguments + outputs + temporaries) of one Adam step of
# the `paper` recipe at 128x128, 256x256 and 384x384, jax 0.10.2 on XLA:CPU (AMD EPYC,
# 2 cores), 2026-11-24; checked at other sizes by tests/test_memory.py and
# bench/RESULTS.md. Keyed by platform (jax's device.platform: what XLA keeps for the backward
# pass and its workspace differ between backends); a platform not fitted yet takes the CPU
# fit (say so in the plan's memory line), until `python -m bench.gpu` (its memory step) fits
# it on that platform. Inner keys: (network, compute dtype, remat); values: (fixed bytes, factor).
MEMORY_MODEL: dict[str, dict[tuple[str, str, str], tuple[int, float]]] = {
    "cpu": {
        ("vgg19", "float32", "none"): (108045135, 0.9398),
        ("vgg19", "float32", "blocks"): (108045135, 0.9398),
        ("vgg19", "float32", "bands"): (139330893, 0.2384),
        ("vgg19", "bfloat16", "none"): (155091257, 0.5779),
        ("vgg19", "bfloat16", "blocks"): (202145282, 0.6526),
        ("vgg19", "bfloat16", "bands"): (180115113, 0.2987),
        ("vgg16", "float32", "none"): (84636349, 0.9806),
        ("vgg16", "float32", "blocks"): (84336755, 0.9879),
        ("vgg16", "float32", "bands"): (114499039, 0.2631),
        ("vgg16", "bfloat16", "none"): (121719462, 0.6018),
        ("vgg16", "bfloat16", "blocks"): (147877890, 0.7226),
        ("vgg16", "bfloat16", "bands"): (144721065, 0.3242),
    },
}
MEMORY_MODEL_SOURCE = {"cpu": "XLA:CPU compiled memory analysis, jax 0.10.2, AMD EPYC 2 cores, 2026-11-24"}
# Peak resident memory of a fresh CPU process running steps (see host_peak_bytes):
# base + scale * step_bytes, fitted (bench.memory.host_models) on fresh-process VGG-19
# `paper` steps at 256 and 2048 square (bench/results/memory/runs.json), AMD EPYC 2
# cores with no other jobs, 2026-11-24 14:00 UTC. Keys: (compute dtype, remat); values:
# (base bytes, scale). With bands the scale is larger: what is left outside XLA's step
# (the images on the host, JAX's runtime) weighs more once the step itself is small.
HOST_MODEL: dict[tuple[str, str], tuple[int, float]] = {
    ("float32", "none"): (523299745, 1.054),
    ("float32", "blocks"): (535224163, 1.051),
    ("bfloat16", "none"): (526660205, 1.120),
    ("float32", "bands"): (526390663, 1.499),
}
# A network the table lacks (the tiny test network) takes this factor with no fixed part,
# scaled by its dtype's size; float64 takes the float32 entry twice over.
FALLBACK_FACTOR = 3.0
# Fraction of a device's memory the plan fills (the rest: XLA's other buffers, the host process).
# On a GPU "a device's memory" is XLA's allocator pool (jaxstyle.mesh.usable_memory), 75% of
# the device by default: the plan then fills about 52% of the device.
MEMORY_FILL = 0.7


@dataclass(frozen=True)
class StagePlan:
    """One stage of the schedule.

    Attributes:
      size: ``(height, width)`` of the image at this stage.
      steps: optimiser steps at this stage.
      first_step: global number of its first step (the steps of the stages before it).
      chunks: lengths of its jitted chunks, summing to ``steps``.
    """

    size: tuple[int, int]
    steps: int
    first_step: int
    chunks: tuple[int, ...]

    @property
    def chunk_ends(self) -> list[int]:
        """Global step count after each chunk."""
        ends, done = [], self.first_step
        for n in self.chunks:
            done += n
            ends.append(done)
        return ends


@dataclass(frozen=True)
class RunPlan:
    """Everything decided before a run starts.

    Attributes:
      stages: the schedule, coarse to fine.
      snapshot_steps: global steps after which a snapshot is taken (never the last).
      settings_count: number of settings ``K``.
      batch_size: settings per compiled micro-batch (a multiple of the device count).
      batch_reason: one line saying why that batch size (and that spatial split).
      spatial_shards: devices each image's height is split over (:func:`spatial_shards_for`).
      remat: the rematerialisation mode (``"auto"`` resolved by :func:`choose_remat`).
      memory_reason: one line with the memory estimate and why that remat mode.
    """

    stages: tuple[StagePlan, ...]
    snapshot_steps: frozenset[int]
    settings_count: int
    batch_size: int
    batch_reason: str
    spatial_shards: int = 1
    remat: str = "none"
    memory_reason: str = ""

    @property
    def steps(self) -> int:
        """Steps per setting over all stages."""
        return sum(stage.steps for stage in self.stages)

    @property
    def micro_batches(self) -> list[range]:
        """The settings of each micro-batch, in order (the last may be short)."""
        k, b = self.settings_count, self.batch_size
        return [range(first, min(first + b, k)) for first in range(0, k, b)]


def chunk_lengths(first_step: int, steps: int, boundaries: Sequence[int], chunk_steps: int) -> tuple[int, ...]:
    """Cut the global steps ``first_step .. first_step + steps`` at every boundary and every ``chunk_steps``.

    ``boundaries`` are global step counts after which a chunk must end (snapshots);
    chunk ends also fall on the stage's own multiples of ``chunk_steps``, so a stage
    compiles few distinct chunk lengths.
    """
    end = first_step + steps
    cuts = {end, *(b for b in boundaries if first_step < b < end)}
    cuts.update(range(first_step + chunk_steps, end, chunk_steps))
    lengths, done = [], first_step
    for cut in sorted(cuts):
        lengths.append(cut - done)
        done = cut
    return tuple(lengths)


def schedule(
    settings: Settings, output_size: tuple[int, int], save_every: int | None = None, chunk_steps: int = CHUNK_STEPS
) -> tuple[tuple[StagePlan, ...], frozenset[int]]:
    """The stages of a run ending at ``output_size`` and its snapshot steps.

    Snapshots are taken every ``save_every`` global steps (at least 1, as
    :class:`~jaxstyle.config.Execution` checks), across scales, except at the last step
    (the output itself).
    """
    scales: list[Stage] = stages(settings, output_size)
    total = sum(s.steps for s in scales)
    snapshots = frozenset(range(save_every, total, save_every)) if save_every else frozenset()
    planned, first = [], 0
    for stage in scales:
        chunks = chunk_lengths(first, stage.steps, sorted(snapshots), chunk_steps)
        planned.append(StagePlan(stage.size, stage.steps, first, chunks))
        first += stage.steps
    return tuple(planned), snapshots


def memory_model(platform: str) -> dict[tuple[str, str, str], tuple[int, float]]:
    """The memory model fitted on ``platform``, or the CPU's where that platform has none yet."""
    return MEMORY_MODEL.get(platform, MEMORY_MODEL["cpu"])


def memory_model_note(platform: str) -> str:
    """``""``, or where ``platform`` has no fit of its own, a note saying that the CPU's stands in."""
    return "" if platform in MEMORY_MODEL else f" (memory model fitted on CPU; none fitted on {platform} yet)"


def step_bytes(
    size: tuple[int, int],
    settings: Settings,
    dtype: str = "float32",
    remat: str = "none",
    compute_dtype: str | None = None,
    platform: str = "cpu",
) -> int:
    """Estimated memory of one optimisation step of one setting at ``size`` on ``platform``:
    ``fixed + factor * A(H, W)`` (:data:`MEMORY_MODEL`; the CPU fit where ``platform`` has none).

    ``A(H, W)`` is 4 bytes times the number of forward activation values up to the
    deepest layer the recipe uses; ``fixed`` (weights, their flipped copies for the
    input gradient) and ``factor`` (activations kept for the backward pass, gradients,
    workspace) are fitted per network, compute dtype and remat mode. The image, the
    optimiser state and the targets are counted in both.
    """
    spec = network(settings.network)
    deepest = spec.deepest((*settings.content_layers, *settings.style_layers))
    activations = 4 * spec.activation_count(*size, deepest)
    compute = compute_dtype or dtype
    model = memory_model(platform)
    fitted = model.get((spec.name, compute, remat))
    if fitted is not None:
        fixed, factor = fitted
        return int(fixed + factor * activations)
    # Not fitted: float64 is float32's model twice over; another network or mode, the fallback.
    scale = {"float64": 2.0, "bfloat16": 0.5, "float16": 0.5}.get(compute, 1.0)
    fixed, factor = model.get((spec.name, "float32", remat), (0, FALLBACK_FACTOR))
    return int(scale * (fixed + factor * activations))


def host_peak_bytes(
    size: tuple[int, int],
    settings: Settings,
    dtype: str = "float32",
    remat: str = "none",
    compute_dtype: str | None = None,
) -> int:
    """Estimated peak resident memory of a CPU process that runs one setting at ``size``:
    ``base + scale * step_bytes`` (:data:`HOST_MODEL`: the Python process, JAX, the
    weights, the targets' computation, and the allocator's slack over XLA's buffers)."""
    base, scale = HOST_MODEL.get((compute_dtype or dtype, remat), HOST_MODEL.get(("float32", remat), (0, 1.0)))
    return int(base + scale * step_bytes(size, settings, dtype, remat, compute_dtype))


def choose_remat(
    settings: Settings,
    size: tuple[int, int],
    device_memory: int,
    execution: Execution | None = None,
    shards: int = 1,
    platform: str = "cpu",
) -> tuple[str, int, str]:
    """The remat mode of a run at ``size``, its estimated step memory, and a line saying why.

    ``execution.remat`` as asked (default ``Execution()``: ``auto``), or for ``auto`` the
    fastest mode (:data:`jaxstyle.config.REMAT_MODES` order) whose estimate, for the
    execution's dtypes, fits :data:`MEMORY_FILL` of ``device_memory``; where none fits,
    the one with the smallest estimate (the run may then fail out of memory).
    With the image's rows split over ``shards`` devices, the estimates are one device's
    share, ``step_bytes / shards`` (halos neglected), and ``bands`` is left out: it scans
    over the rows that the split spreads over devices.
    """
    execution = execution or Execution()
    modes = REMAT_MODES if shards == 1 else tuple(m for m in REMAT_MODES if m != "bands")
    if execution.remat == "bands" and shards > 1:
        raise JaxstyleError(
            f"--remat bands computes each image band by band of rows, which --spatial-shards {shards} splits "
            "over devices: use --remat blocks or none with it"
        )
    estimates = {
        m: step_bytes(size, settings, execution.dtype, m, execution.compute_dtype, platform) // shards for m in modes
    }
    budget = MEMORY_FILL * device_memory
    h, w = size
    if execution.remat != "auto":
        mode, why = execution.remat, "as asked"
    else:
        fitting = [m for m in modes if estimates[m] <= budget]
        mode = fitting[0] if fitting else min(modes, key=estimates.get)
        why = "auto: fastest that fits" if fitting else "auto: nothing fits, smallest estimate"
    if shards > 1:
        why += f"; one of {shards} devices' share"
    line = (
        f"remat {mode} ({why}); estimated {estimates[mode] / 2**20:.0f} MiB per step at {h}x{w} "
        f"({', '.join(f'{m} {v / 2**20:.0f}' for m, v in estimates.items())} MiB), "
        f"{MEMORY_FILL:.0%} of {device_memory / 2**30:.1f} GiB usable{memory_model_note(platform)}"
    )
    return mode, estimates[mode], line


def batch_size_for(
    k: int, per_setting_bytes: int, device_count: int, device_memory: int, platform: str, requested: int | None
) -> tuple[int, str]:
    """Settings per compiled micro-batch (a multiple of the device count) and a line saying why.

    Default: as many settings as fit in :data:`MEMORY_FILL` of a device's memory, and on CPU at most
    ``CPU_SETTINGS_PER_DEVICE``; never more than ``k`` needs.
    """
    if requested is not None:
        if requested < 1:
            raise JaxstyleError(f"--batch-size must be at least 1, not {requested}")
        per_device = math.ceil(requested / device_count)
        why = f"batch size {requested} as asked"
    else:
        per_device = max(1, int(MEMORY_FILL * device_memory) // per_setting_bytes)
        why = (
            f"~{per_setting_bytes / 2**20:.0f} MiB per setting, {device_memory / 2**30:.1f} GiB per device: "
            f"up to {per_device} settings per device"
        )
        if platform == "cpu" and per_device > CPU_SETTINGS_PER_DEVICE:
            per_device = CPU_SETTINGS_PER_DEVICE
            why += f", {per_device} on CPU (wider batches gain nothing there)"
    per_device = min(per_device, math.ceil(k / device_count))
    batch = per_device * device_count
    return batch, f"{k} settings on {device_count} device(s); {why}; micro-batches of {batch}"


def pools_before_deepest(settings: Settings) -> int:
    """The 2x2 poolings in front of the deepest layer the recipe uses (4 for relu5_1)."""
    spec = network(settings.network)
    deepest = spec.deepest((*settings.content_layers, *settings.style_layers))
    return sum(name.startswith("pool") for name in spec.layer_names[: spec.layer_names.index(deepest)])


def spatial_multiple(settings: Settings, shards: int) -> int:
    """What a split image's rows are padded to a multiple of (:func:`split_height`):
    ``shards * 2**p``, ``p`` the poolings in front of the deepest layer used, so that every
    device holds whole, even rows at every level (each pooling window lies on one device)."""
    return shards * 2 ** pools_before_deepest(settings)


def split_height(height: int, settings: Settings, shards: int) -> int:
    """The rows a stage of ``height`` rows is computed with over ``shards`` devices: ``height``
    rounded up to a multiple of :func:`spatial_multiple` (``height`` itself on one device).

    Every stage of a split run is split, the rows past ``height`` zero padding that every
    layer masks out (:mod:`jaxstyle.spatial`): the same result as the whole image, for the
    work of at most ``spatial_multiple - 1`` extra rows.
    """
    if shards == 1:
        return height
    multiple = spatial_multiple(settings, shards)
    return -(-height // multiple) * multiple


def split_line(height: int, settings: Settings, shards: int) -> str:
    """What the split does to a height, for the plan's line: nothing, or the padding it computes."""
    rows = split_height(height, settings, shards)
    if rows == height:
        return f"{height} rows, {height // shards} per device"
    return (
        f"{height} rows padded to {rows} ({rows // shards} per device, a multiple of "
        f"{spatial_multiple(settings, shards)}; the {rows - height} zero rows are masked out)"
    )


def spatial_shards_for(
    settings: Settings,
    output_size: tuple[int, int],
    devices: int,
    device_memory: int,
    step_bytes: int,
    requested: int = 0,
) -> tuple[int, str]:
    """Devices the image's height is split over, and a line saying why.

    ``requested`` (the execution's ``spatial_shards``) if given (at most ``devices``; any
    height: it is padded, :func:`split_height`). ``0`` (automatic): the fewest divisors ``n``
    of ``devices`` for which one setting's whole-image step estimate ``step_bytes``
    (:func:`choose_remat`), divided by ``n`` and scaled to the padded height (halos
    neglected), fits in :data:`MEMORY_FILL` of a device's memory; the most of them when
    none does. This is the one place the decision is made.
    """
    height = output_size[0]
    if requested >= 1:
        if requested > devices:
            raise JaxstyleError(f"--spatial-shards {requested} needs {requested} devices; this run has {devices}")
        shards, why = requested, f"image split over {requested} device(s) as asked"
    else:
        divisors = [n for n in range(1, devices + 1) if devices % n == 0]
        share = {n: step_bytes * split_height(height, settings, n) / height / n for n in divisors}
        fitting = [n for n in divisors if share[n] <= MEMORY_FILL * device_memory]
        shards = fitting[0] if fitting else divisors[-1]
        why = f"~{step_bytes / 2**20:.0f} MiB per image step: split over {shards} of {devices} device(s)"
        why += "" if fitting else " (the most there are; it may not fit)"
    return shards, why + (f" ({split_line(height, settings, shards)})" if shards > 1 else "")


def make_plan(
    settings: Settings,
    output_size: tuple[int, int],
    settings_count: int,
    *,
    execution: Execution | None = None,
    device_count: int = 1,
    device_memory: int = 1 << 30,
    platform: str = "cpu",
    chunk_steps: int | None = None,
    space_devices: int | None = None,
) -> RunPlan:
    """The whole plan of a run of ``settings_count`` settings sharing ``settings``' schedule.

    Chunks are ``chunk_steps`` long (default :func:`chunk_steps_for` the ``platform``), and
    memory is estimated with the ``platform``'s model (:func:`memory_model`).

    ``execution`` (default: ``Execution()``) gives the dtypes the memory estimates are for,
    the remat mode, the split of the image and the micro-batch size asked for (each
    ``auto``, ``0`` or unset: chosen here), and the snapshot steps. ``device_count``
    devices hold the batch (a settings x space mesh when images are split);
    ``space_devices`` (default ``device_count``) is how many one image may be split over
    (a single stylization: every device, with one setting).
    """
    execution = execution or Execution()
    chunk_steps = chunk_steps or chunk_steps_for(platform)
    planned, snapshots = schedule(settings, output_size, execution.save_every, chunk_steps)
    remat, per_setting, memory_why = choose_remat(settings, output_size, device_memory, execution, 1, platform)
    devices = space_devices or device_count
    shards, split = spatial_shards_for(
        settings, output_size, devices, device_memory, per_setting, execution.spatial_shards
    )
    if shards > 1:
        # Split rows: the remat mode and the estimate are chosen again for one device's share of the padded rows.
        padded = (split_height(output_size[0], settings, shards), output_size[1])
        remat, per_setting, memory_why = choose_remat(settings, padded, device_memory, execution, shards, platform)
    if device_count > 1 and device_count % shards:
        raise JaxstyleError(f"--spatial-shards {shards} does not divide the {device_count} devices")
    groups = max(1, device_count // shards)
    batch, why = batch_size_for(settings_count, per_setting, groups, device_memory, platform, execution.batch_size)
    if shards > 1:
        why += f"; {split}"
    return RunPlan(planned, snapshots, settings_count, batch, why, shards, remat, memory_why)
