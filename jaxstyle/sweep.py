"""Weight sweeps: many settings in one compiled run, micro-batched, sharded over all devices.

A sweep is a list of points; each names a content image, a style target (one style
image, or a blend of all of them), and the loss weights, learning rate and EMA decay to
use. Everything else (size, scales, steps, layers, optimiser, pooling, initialisation)
is shared by all points and comes from the settings. The run itself is the pipeline's
(:mod:`jaxstyle.pipeline`), the same that runs a single stylization.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxstyle import mesh as meshlib
from jaxstyle.checkpoint import CheckpointOptions
from jaxstyle.config import SWEPT_FIELDS, Execution, Settings, numbers_checked_as, resolve, split_execution, value_type
from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.pipeline import ChunkReport, ImageLike, MaskInputs, SweepPoint, image_name, prepare_job, run_job
from jaxstyle.plan import StagePlan

__all__ = ["SweepPoint", "SweepResult", "grid_product", "read_grid", "sweep"]

# At most this many settings in one sweep (points, each content and style target
# counted): at 300x450 and 500 steps, ~6 days on a GPU that does 100 setting-steps a second.
MAX_SETTINGS = 100_000
# Grid files larger than this are refused before they are parsed (a list of 100,000
# settings with every value given takes about 10 MiB of JSON).
MAX_GRID_BYTES = 16 << 20
# Host memory a sweep may plan to hold, as a fraction of the machine's.
HOST_MEMORY_FRACTION = 0.8


def check_count(count: int, what: str) -> None:
    """Raise if a sweep of ``count`` settings is larger than :data:`MAX_SETTINGS`."""
    if count > MAX_SETTINGS:
        raise JaxstyleError(f"{what} {count:,} settings; a sweep runs at most {MAX_SETTINGS:,}: split it")


def grid_product(
    n_contents: int,
    n_styles: int,
    content_weight: Sequence[float],
    style_weight: Sequence[float],
    tv_weight: Sequence[float],
    lr: Sequence[float],
    ema: Sequence[float | None] = (None,),
    style_loss: Sequence[str | None] = (None,),
) -> list[SweepPoint]:
    """The Cartesian product of contents, style targets and the value lists, in that order.

    Its size is checked (:data:`MAX_SETTINGS`) before it is built.
    """
    check_count(
        math.prod(map(len, (content_weight, style_weight, tv_weight, lr, ema, style_loss))) * n_contents * n_styles,
        "the values given make",
    )
    product = itertools.product(
        range(n_contents), range(n_styles), content_weight, style_weight, tv_weight, lr, ema, style_loss
    )
    return [SweepPoint(*values) for values in product]


def read_grid(
    path: str | os.PathLike, base: Settings, contents: Sequence[str], styles: Sequence[str]
) -> list[SweepPoint]:
    """Points from a JSON list of objects, or a TOML file with ``[[setting]]`` tables.

    Each entry may set ``content_weight``, ``style_weight``, ``tv_weight``, ``lr``,
    ``ema`` and ``style_loss`` (default: the settings' values) and ``content``/``style`` (one of the given image
    paths; default: every given image, crossed with the entry).
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a directory, a device (/dev/urandom never ends), a pipe
            raise JaxstyleError(f"{path}: not a regular file")
        size = path.stat().st_size
        if size > MAX_GRID_BYTES:
            raise JaxstyleError(f"{path}: {size:,} bytes; grid files of up to {MAX_GRID_BYTES >> 20} MiB are read")
        text = path.read_text()
        data = tomllib.loads(text).get("setting") if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise JaxstyleError(f"{path}: no such file") from None
    except RecursionError:
        raise JaxstyleError(f"{path}: nested too deeply to be a grid file") from None
    except (OSError, ValueError) as e:  # JSONDecodeError, TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise JaxstyleError(f"{path}: not a readable grid file ({one_line(e)})") from None
    if not isinstance(data, list) or not data or not all(isinstance(entry, dict) for entry in data):
        raise JaxstyleError(f"{path}: expected a non-empty list of settings ([[setting]] tables in TOML)")
    points = []
    for number, entry in enumerate(data, start=1):
        unknown = set(entry) - {*SWEPT_FIELDS, "content", "style"}
        if unknown:
            raise JaxstyleError(f"{path}: entry {number} has unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        content_ids = image_indexes(entry.get("content"), contents, path, number, "content")
        style_ids = image_indexes(entry.get("style"), styles, path, number, "style")
        check_count(len(points) + len(content_ids) * len(style_ids), f"{path}: entry {number} makes")
        values = [[grid_value(entry.get(key, getattr(base, key)), path, number, key)] for key in SWEPT_FIELDS]
        for c, s in itertools.product(content_ids, style_ids):
            points += grid_product(1, 1, *values)
            points[-1] = dataclasses.replace(points[-1], content=c, style=s)
    return points


def grid_value(value: object, path: Path, number: int, key: str) -> float | str:
    """A grid entry's value: a name for a setting that takes names (``style_loss``), else a number
    (not a string or a boolean) as a float; ranges and choices are checked later."""
    if value_type(key) is str:
        if not isinstance(value, str):
            raise JaxstyleError(f"{path}: entry {number}: {key} is {value!r:.40}, not a name")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JaxstyleError(f"{path}: entry {number}: {key} is {value!r:.40}, not a number")
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float
        raise JaxstyleError(f"{path}: entry {number}: {key} is too large a number") from None


def image_indexes(name: str | None, given: Sequence[str], path: Path, number: int, what: str) -> list[int]:
    """Which of the given images a grid entry names (all when it names none)."""
    if name is None:
        return list(range(len(given)))
    matches = [i for i, g in enumerate(given) if g == name or Path(g).name == name]
    if not matches:
        raise JaxstyleError(f"{path}: entry {number} names {what} {name!r}, which is not among {', '.join(given)}")
    return matches[:1]


@dataclass
class SweepResult:
    """What :func:`sweep` returns (every process holds all of it).

    Attributes:
      points: the settings, in order.
      images: final images, float32 RGB in [0, 1], shape ``(K, H, W, 3)``.
      trace: per-step losses ``{content, style, tv, total}``, each ``(steps, K)``, all
        scales one after the other (a stopped setting repeats its last losses).
      final_losses: the losses of each final image (what is written), each ``(K,)``.
      diverged_at: step at which each setting diverged, -1 for the others.
      steps_taken: steps each setting took (fewer than asked where it diverged or converged).
      stages: the schedule every setting shares (sizes and planned steps of each scale).
      settings: the shared settings.
      contents: names of the content images.
      content_size: ``(height, width)`` of the first content image, whose aspect the output size follows.
      styles: names of the style targets (an image, or a blend such as ``a.jpg*0.7+b.jpg*0.3``).
      local: indexes of the settings whose shards this process computed.
      seconds: wall time of the optimisation, compilation included.
      batch_size: settings per compiled micro-batch.
      plan: the line explaining the batch size.
      device_count, process_count: where it ran.
    """

    points: list[SweepPoint]
    images: np.ndarray
    trace: dict[str, np.ndarray]
    final_losses: dict[str, np.ndarray]
    diverged_at: np.ndarray
    steps_taken: np.ndarray
    stages: tuple[StagePlan, ...]
    settings: Settings
    contents: list[str]
    content_size: tuple[int, int]
    styles: list[str]
    local: list[int]
    seconds: float
    batch_size: int
    plan: str
    device_count: int
    process_count: int

    @property
    def steps(self) -> int:
        """Planned steps per setting, all scales counted."""
        return sum(stage.steps for stage in self.stages)

    def status(self, k: int) -> str:
        """``diverged``, ``converged`` (stopped by ``tol``) or ``finished``."""
        if self.diverged_at[k] >= 0:
            return "diverged"
        return "converged" if self.steps_taken[k] < self.steps else "finished"


def style_target_names(styles: Sequence[str], blends: np.ndarray, blended: bool) -> list[str]:
    """The style images' names, or one ``a.jpg*0.7+b.jpg*0.3`` per blend."""
    if not blended:
        return list(styles)
    return ["+".join(f"{name}*{w:g}" for name, w in zip(styles, row, strict=True) if w > 0) for row in blends]


def sweep(
    contents: Sequence[ImageLike],
    styles: Sequence[ImageLike],
    points: Sequence[SweepPoint] | None = None,
    *,
    style_blends: Sequence[Sequence[float]] | None = None,
    preset: str = "paper",
    weights: str | os.PathLike | None = None,
    settings: Settings | None = None,
    execution: Execution | None = None,
    progress: Callable[[ChunkReport], None] | None = None,
    on_plan: Callable[[str], None] | None = None,
    checkpoint: CheckpointOptions | None = None,
    stop_signal: Callable[[], int | None] | None = None,
    masks: MaskInputs | None = None,
    **overrides: Any,
) -> SweepResult:
    """Run many settings at once: vmapped in one compiled program, sharded over all devices.

    Args:
      contents: content images (paths or arrays), all resized to one output size.
      styles: style images.
      points: the settings; default: every content with every style target at the settings' values.
      style_blends: blends of all the style images, each a list of one weight per
        image; when given, these are the style targets that points index (default:
        each style image alone, or the settings' ``style_blend`` as the only target).
      preset, weights, settings, execution, **overrides: the shared settings and how the run is
        carried out, as for :func:`jaxstyle.stylize`; ``batch_size=`` (an
        :class:`~jaxstyle.config.Execution` field) is the settings per compiled micro-batch
        (default: from a memory estimate), ``dtype=``, ``compute_dtype=`` the dtypes.
      progress: called after every chunk with a :class:`~jaxstyle.pipeline.ChunkReport`.
      on_plan: receives the lines that explain the memory estimate (and remat mode) and the batch
        size, before the run.
      checkpoint, stop_signal: as for :func:`jaxstyle.stylize`; each process saves its shards.
      masks: regions, style-image masks and an edit mask (:class:`~jaxstyle.pipeline.MaskInputs`),
        shared by every setting (each content image's own, as a video frame's): with regions
        there is one style target, each style image in its region, so points' ``style`` is 0.

    Returns:
      A :class:`SweepResult`. A setting whose loss becomes NaN or infinite is frozen
      at its last finite image and reported as diverged; the others are unaffected.
    """
    execution, overrides = split_execution(execution, overrides)
    with numbers_checked_as(execution.dtype):  # a float64 run takes float64 numbers
        settings = settings or resolve(preset, **overrides)
    if not contents or not styles:
        raise JaxstyleError("a sweep needs at least one content and one style image")
    if points is not None:
        check_count(len(points), "the sweep has")
    if style_blends is None and settings.style_blend is not None:
        style_blends = [settings.style_blend]
    blended = style_blends is not None
    regions = masks is not None and masks.style is not None
    if not blended and not regions:
        style_blends = np.eye(len(styles)).tolist()  # each style image alone is a target
    job = prepare_job(
        contents,
        styles,
        settings,
        points,
        style_blends=style_blends,
        weights=weights,
        execution=execution,
        device_count=jax.device_count(),
        masks=masks,
    )
    mesh = meshlib.settings_mesh(job.plan.spatial_shards)
    check_host_memory(len(job.points), job.inputs.output_size, job.plan.steps, job.network.dtype.itemsize)
    if on_plan is not None:
        on_plan(job.plan.memory_reason)
        on_plan(job.plan.batch_reason)
    out = run_job(job, mesh, on_chunk=progress, checkpoint=checkpoint, stop_signal=stop_signal)
    style_names = [image_name(s, f"style{i}") for i, s in enumerate(styles)]
    return SweepResult(
        points=job.points,
        images=out.images,
        trace=out.trace_grid(job.plan.stages),
        final_losses=out.final_losses,
        diverged_at=out.diverged_at,
        steps_taken=out.stage_steps.sum(axis=1),
        stages=job.plan.stages,
        settings=settings,
        contents=[image_name(c, f"content{i}") for i, c in enumerate(contents)],
        content_size=job.inputs.contents[0].shape[:2],
        # With regions the one style target is every style image, each in its region: a|b.
        styles=["|".join(style_names)] if regions else style_target_names(style_names, job.inputs.blends, blended),
        local=out.local,
        seconds=out.seconds,
        batch_size=job.plan.batch_size,
        plan=job.plan.batch_reason,
        device_count=mesh.devices.size,
        process_count=jax.process_count(),
    )


def host_bytes_per_setting(size: tuple[int, int], steps: int, dtype_bytes: int = 4) -> int:
    """Host memory one setting of a sweep holds: its initial image and the padded copy of it, its
    final float32 image and the copy that joins the micro-batches, and its four losses per step, twice."""
    h, w = size
    return 2 * h * w * 3 * (dtype_bytes + 4) + 2 * 4 * steps * dtype_bytes


def check_host_memory(count: int, size: tuple[int, int], steps: int, dtype_bytes: int = 4) -> None:
    """Raise, before anything is allocated, if ``count`` settings of ``size`` and ``steps`` would need more
    than :data:`HOST_MEMORY_FRACTION` of the host's memory for their images and loss traces."""
    need = count * host_bytes_per_setting(size, steps, dtype_bytes)
    have = meshlib.host_memory_bytes()
    if have is None:  # unknown: no limit
        return
    if need > HOST_MEMORY_FRACTION * have:
        raise JaxstyleError(
            f"{count:,} settings at {size[0]}x{size[1]} with {steps} steps need about {need / 2**30:.1f} GiB of host "
            f"memory for their images and loss traces; this machine has {have / 2**30:.1f} GiB: "
            "sweep fewer settings at a time, or smaller"
        )
