"""Weight sweeps: many settings in one compiled run, micro-batched, sharded over all devices.

A sweep is a list of points; each names a content image, a style image, and the loss
weights and learning rate to use. Everything else (size, steps, layers, pooling,
initialisation) is shared by all points and comes from the settings.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import image as imageio
from jaxstyle import mesh as meshlib
from jaxstyle.api import DEFAULT_CHUNK, ImageLike, as_rgb, build_network, initial_image, load_weights, to_pixels
from jaxstyle.batch import BatchState, Setting, init_batch_jit, run_batch_chunk_jit, stack_targets_jit
from jaxstyle.config import Settings, resolve
from jaxstyle.errors import JaxstyleError
from jaxstyle.losses import LossWeights
from jaxstyle.solve import LOSS_NAMES, Layers, run_in_chunks
from jaxstyle.vgg import LAYER_NAMES, activation_count

SWEPT = ("content_weight", "style_weight", "tv_weight", "lr")
# Forward activations kept for the backward pass, their gradients and XLA's
# workspace: about three times the forward activations (measured, order of magnitude).
MEMORY_FACTOR = 3


@dataclass(frozen=True)
class SweepPoint:
    """One setting of a sweep.

    Attributes:
      content: index into the sweep's content images.
      style: index into the sweep's style images.
      content_weight, style_weight, tv_weight, lr: its loss weights and learning rate.
    """

    content: int
    style: int
    content_weight: float
    style_weight: float
    tv_weight: float
    lr: float

    def swept_values(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in SWEPT}


def grid_product(
    n_contents: int,
    n_styles: int,
    content_weight: Sequence[float],
    style_weight: Sequence[float],
    tv_weight: Sequence[float],
    lr: Sequence[float],
) -> list[SweepPoint]:
    """The Cartesian product of contents, styles and the four value lists, in that order."""
    product = itertools.product(range(n_contents), range(n_styles), content_weight, style_weight, tv_weight, lr)
    return [SweepPoint(*values) for values in product]


def read_grid(
    path: str | os.PathLike, base: Settings, contents: Sequence[str], styles: Sequence[str]
) -> list[SweepPoint]:
    """Points from a JSON list of objects, or a TOML file with ``[[setting]]`` tables.

    Each entry may set ``content_weight``, ``style_weight``, ``tv_weight``, ``lr``
    (default: the settings' values) and ``content``/``style`` (one of the given image
    paths; default: every given image, crossed with the entry).
    """
    path = Path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text).get("setting") if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise JaxstyleError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise JaxstyleError(f"{path}: not a readable grid file ({' '.join(str(e).split())})") from None
    if not isinstance(data, list) or not data or not all(isinstance(entry, dict) for entry in data):
        raise JaxstyleError(f"{path}: expected a non-empty list of settings ([[setting]] tables in TOML)")
    points = []
    for number, entry in enumerate(data, start=1):
        unknown = set(entry) - {*SWEPT, "content", "style"}
        if unknown:
            raise JaxstyleError(f"{path}: entry {number} has unknown key(s) {', '.join(sorted(unknown))}")
        content_ids = image_indexes(entry.get("content"), contents, path, number, "content")
        style_ids = image_indexes(entry.get("style"), styles, path, number, "style")
        try:
            values = [[float(entry.get(key, getattr(base, key)))] for key in SWEPT]
        except (TypeError, ValueError):
            raise JaxstyleError(f"{path}: entry {number} has a value that is not a number") from None
        for c, s in itertools.product(content_ids, style_ids):
            points += grid_product(1, 1, *values)
            points[-1] = dataclasses.replace(points[-1], content=c, style=s)
    return points


def image_indexes(name: str | None, given: Sequence[str], path: Path, number: int, what: str) -> list[int]:
    """Which of the given images a grid entry names (all when it names none)."""
    if name is None:
        return list(range(len(given)))
    matches = [i for i, g in enumerate(given) if g == name or Path(g).name == name]
    if not matches:
        raise JaxstyleError(f"{path}: entry {number} names {what} {name!r}, which is not among {', '.join(given)}")
    return matches[:1]


def check_points(points: Sequence[SweepPoint]) -> None:
    """Loss weights finite and >= 0, learning rates finite and > 0."""
    for k, p in enumerate(points):
        for key in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(p, key)
            if not (math.isfinite(value) and value >= 0):
                raise JaxstyleError(f"setting {k}: {key.replace('_', ' ')} must be a finite number >= 0, not {value}")
        if not (math.isfinite(p.lr) and p.lr > 0):
            raise JaxstyleError(f"setting {k}: learning rate must be a finite number > 0, not {p.lr}")


def bytes_per_setting(size: tuple[int, int], settings: Settings, dtype_bytes: int = 4) -> int:
    """Estimated device memory one setting needs during a step."""
    deepest = max((*settings.content_layers, *settings.style_layers), key=LAYER_NAMES.index)
    return MEMORY_FACTOR * activation_count(*size, deepest) * dtype_bytes


def plan_batch_size(k: int, per_setting: int, device_count: int, requested: int | None) -> tuple[int, str]:
    """Settings per compiled micro-batch (a multiple of the device count) and a line saying why."""
    if requested is not None:
        if requested < 1:
            raise JaxstyleError(f"--batch-size must be at least 1, not {requested}")
        per_device = math.ceil(requested / device_count)
        why = f"batch size {requested} as asked"
    else:
        memory, source = meshlib.device_memory_bytes()
        per_device = max(1, int(0.7 * memory) // per_setting)
        why = (
            f"~{per_setting / 2**20:.0f} MiB per setting, {memory / 2**30:.1f} GiB {source}: "
            f"up to {per_device} settings per device"
        )
    per_device = min(per_device, math.ceil(k / device_count))
    batch = per_device * device_count
    return batch, f"{k} settings on {device_count} device(s); {why}; micro-batches of {batch}"


@dataclass
class SweepResult:
    """What :func:`sweep` returns (every process holds all of it).

    Attributes:
      points: the settings, in order.
      images: final images, float32 RGB in [0, 1], shape ``(K, H, W, 3)``.
      trace: per-step losses ``{content, style, tv, total}``, each ``(steps, K)``.
      diverged_at: step at which each setting diverged, -1 for those that finished.
      settings: the shared settings.
      contents, styles: names of the content and style images.
      local: indexes of the settings whose shards this process computed.
      seconds: wall time of the optimisation, compilation included.
      batch_size: settings per compiled micro-batch.
      plan: the line explaining the batch size.
      device_count, process_count: where it ran.
    """

    points: list[SweepPoint]
    images: np.ndarray
    trace: dict[str, np.ndarray]
    diverged_at: np.ndarray
    settings: Settings
    contents: list[str]
    styles: list[str]
    local: list[int]
    seconds: float
    batch_size: int
    plan: str
    device_count: int
    process_count: int

    def status(self, k: int) -> str:
        return "finished" if self.diverged_at[k] < 0 else "diverged"


def image_name(img: ImageLike, default: str) -> str:
    return str(img) if isinstance(img, (str, os.PathLike)) else default


def sweep(
    contents: Sequence[ImageLike],
    styles: Sequence[ImageLike],
    points: Sequence[SweepPoint] | None = None,
    *,
    preset: str = "paper",
    weights: str | os.PathLike | None = None,
    settings: Settings | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_plan: Callable[[str], None] | None = None,
    dtype: str = "float32",
    compute_dtype: str | None = None,
    **overrides,
) -> SweepResult:
    """Run many settings at once: vmapped in one compiled program, sharded over all devices.

    Args:
      contents: content images (paths or arrays), all resized to one output size.
      styles: style images.
      points: the settings; default: every content with every style at the settings' values.
      preset, weights, settings, **overrides: the shared settings, as for :func:`jaxstyle.stylize`.
      batch_size: settings per compiled micro-batch (default: from a memory estimate).
      progress: called with ``(steps done, steps in all)`` over the whole sweep.
      on_plan: receives the line that explains the batch size, before the run.
      dtype: computation dtype (``"float64"`` needs ``jax_enable_x64``).
      compute_dtype: dtype of the convolutions (``"bfloat16"``); Gram matrices and losses stay in ``dtype``.

    Returns:
      A :class:`SweepResult`. A setting whose loss becomes NaN or infinite is frozen
      at its last finite image and reported as diverged; the others are unaffected.
    """
    settings = settings or resolve(preset, **overrides)
    if not contents or not styles:
        raise JaxstyleError("a sweep needs at least one content and one style image")
    if points is None:
        points = grid_product(len(contents), len(styles), *([getattr(settings, key)] for key in SWEPT))
    points = list(points)
    check_points(points)
    content_rgb = [as_rgb(c) for c in contents]
    style_rgb = [as_rgb(s) for s in styles]
    size = imageio.output_size(content_rgb[0].shape[:2], settings.size, settings.max_side)
    loaded = load_weights(settings, weights)

    dtype, graphdef, params, layers = build_network(settings, loaded, dtype, compute_dtype)
    to_network = loaded.convention.to_network
    content_net = to_network(jnp.asarray(np.stack([imageio.resize(c, size) for c in content_rgb]), dtype)[:, None])
    style_net = to_network(jnp.asarray(np.stack([imageio.resize(s, size) for s in style_rgb]), dtype)[:, None])
    targets = stack_targets_jit(graphdef, params, content_net, style_net, layers)

    mesh = meshlib.settings_mesh()
    devices = mesh.devices.size
    k = len(points)
    batch, plan = plan_batch_size(k, bytes_per_setting(size, settings, dtype.itemsize), devices, batch_size)
    if on_plan is not None:
        on_plan(plan)
    per_setting = host_settings(points, settings, content_net, to_network, dtype)
    per_setting = meshlib.pad_leading(per_setting, meshlib.padded_length(k, batch))
    params_g, targets_g = meshlib.to_global((params, targets), meshlib.replicated(mesh))

    total_steps = math.ceil(k / batch) * settings.steps
    images, traces, diverged, local = [], [], [], []
    start = time.perf_counter()
    for first in range(0, k, batch):
        chunk_of = jax.tree.map(lambda x, first=first: x[first : first + batch], per_setting)
        setting, init_images, lrs = meshlib.to_global(chunk_of, meshlib.batch_sharding(mesh))
        state = init_batch_jit(init_images, lrs)
        state, trace = run_steps(
            graphdef,
            layers,
            params_g,
            targets_g,
            setting,
            state,
            settings.steps,
            lambda n, first=first: progress and progress(first // batch * settings.steps + n, total_steps),
        )
        local += [first + row for row in meshlib.local_rows(state.solver.image) if first + row < k]
        final, diverged_at = meshlib.to_host((state.solver.image, state.diverged_at))
        images.append(to_pixels(jnp.asarray(final[:, 0]), loaded.convention))
        diverged.append(diverged_at)
        traces.append(trace)
    seconds = time.perf_counter() - start
    return SweepResult(
        points=points,
        images=np.concatenate(images)[:k],
        trace={name: np.concatenate([t[name] for t in traces], axis=1)[:, :k] for name in LOSS_NAMES},
        diverged_at=np.concatenate(diverged)[:k],
        settings=settings,
        contents=[image_name(c, f"content{i}") for i, c in enumerate(contents)],
        styles=[image_name(s, f"style{i}") for i, s in enumerate(styles)],
        local=sorted(local),
        seconds=seconds,
        batch_size=batch,
        plan=plan,
        device_count=devices,
        process_count=jax.process_count(),
    )


def host_settings(
    points: Sequence[SweepPoint], settings: Settings, content_net: jax.Array, to_network: Callable, dtype: jnp.dtype
) -> tuple[Setting, np.ndarray, np.ndarray]:
    """Per-setting arrays with a leading axis K: the settings, initial images, learning rates."""
    content_layers, style_layers = settings.resolved_layer_weights()
    k = len(points)

    def column(key: str) -> np.ndarray:
        return np.asarray([getattr(p, key) for p in points], dtype)

    weights = LossWeights(
        content=column("content_weight"),
        style=column("style_weight"),
        tv=column("tv_weight"),
        content_layers=np.tile(np.asarray(content_layers, dtype), (k, 1)),
        style_layers=np.tile(np.asarray(style_layers, dtype), (k, 1)),
    )
    content_index = np.asarray([p.content for p in points], np.int32)
    setting = Setting(weights, content_index, np.asarray([p.style for p in points], np.int32))
    # Every setting starts from the same image (the same noise too), so settings differ
    # only in what the sweep varies.
    starts = np.stack(
        [np.asarray(initial_image(settings, content_net[i], to_network)) for i in range(len(content_net))]
    )
    return setting, starts[content_index], column("lr")


def run_steps(
    graphdef,
    layers: Layers,
    params,
    targets,
    setting: Setting,
    state: BatchState,
    steps: int,
    progress: Callable[[int], None],
) -> tuple[BatchState, dict[str, np.ndarray]]:
    """All steps of one micro-batch in jitted chunks; the trace is ``(steps, B)`` per loss."""

    def chunk(state: BatchState, n: int) -> tuple[BatchState, dict[str, jax.Array]]:
        return run_batch_chunk_jit(graphdef, layers, n, params, targets, setting, state)

    return run_in_chunks(chunk, state, steps, DEFAULT_CHUNK, lambda _s, _l, done: progress(done), meshlib.to_host)
