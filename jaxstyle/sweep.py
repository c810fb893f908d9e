"""Weight sweeps: many settings in one compiled run, micro-batched, sharded over all devices.

A sweep is a list of points; each names a content image, a style target (one style
image, or a blend of all of them), and the loss weights, learning rate and EMA decay to
use. Everything else (size, scales, steps, layers, optimiser, pooling, initialisation)
is shared by all points and comes from the settings.
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
from jaxstyle.api import (
    DEFAULT_CHUNK,
    ImageLike,
    as_rgb,
    blended_style_grams,
    build_network,
    check_stages,
    initial_image,
    load_weights,
    output_pixels,
    read_init,
    upsample,
)
from jaxstyle.batch import Setting, init_batch_jit, run_batch_chunk_jit, stack_content_targets_jit
from jaxstyle.config import Settings, finite_at_least, normalised_blend, resolve, stages
from jaxstyle.errors import JaxstyleError
from jaxstyle.losses import LossWeights, Targets
from jaxstyle.nets import network
from jaxstyle.solve import (
    LOSS_NAMES,
    Recipe,
    SolverState,
    averaged_image,
    run_in_chunks,
    warm_started_adam_jit,
)

SWEPT = ("content_weight", "style_weight", "tv_weight", "lr", "ema")
# Forward activations kept for the backward pass, their gradients and XLA's
# workspace: about three times the forward activations (measured, order of magnitude).
MEMORY_FACTOR = 3
# On CPU one setting already keeps every core busy, so a wider batch adds no
# parallelism, only memory traffic: at 150x225 on 2 cores, 2-8 settings vmapped ran
# 2-3% faster per setting than one at a time and 16 ran 4-12% slower.
CPU_SETTINGS_PER_DEVICE = 8


@dataclass(frozen=True)
class SweepPoint:
    """One setting of a sweep.

    Attributes:
      content: index into the sweep's content images.
      style: index into the sweep's style targets (the style images, or the blends).
      content_weight, style_weight, tv_weight, lr: its loss weights and learning rate.
      ema: its EMA decay (``None``: the settings' value).
    """

    content: int
    style: int
    content_weight: float
    style_weight: float
    tv_weight: float
    lr: float
    ema: float | None = None

    def swept_values(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in SWEPT}


def grid_product(
    n_contents: int,
    n_styles: int,
    content_weight: Sequence[float],
    style_weight: Sequence[float],
    tv_weight: Sequence[float],
    lr: Sequence[float],
    ema: Sequence[float | None] = (None,),
) -> list[SweepPoint]:
    """The Cartesian product of contents, style targets and the value lists, in that order."""
    product = itertools.product(range(n_contents), range(n_styles), content_weight, style_weight, tv_weight, lr, ema)
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
    """Loss weights finite and >= 0, learning rates finite and > 0, EMA decays in [0, 1)."""
    for k, p in enumerate(points):
        if p.ema is not None and not 0 <= p.ema < 1:
            raise JaxstyleError(f"setting {k}: ema must be a decay in [0, 1), not {p.ema}")
        for key in ("content_weight", "style_weight", "tv_weight"):
            finite_at_least(f"setting {k}: {key.replace('_', ' ')}", getattr(p, key), 0.0)
        finite_at_least(f"setting {k}: learning rate", p.lr, 0.0, strict=True)


def bytes_per_setting(size: tuple[int, int], settings: Settings, dtype_bytes: int = 4) -> int:
    """Estimated device memory one setting needs during a step."""
    spec = network(settings.network)
    deepest = spec.deepest((*settings.content_layers, *settings.style_layers))
    return MEMORY_FACTOR * spec.activation_count(*size, deepest) * dtype_bytes


def plan_batch_size(
    k: int, per_setting: int, device_count: int, requested: int | None, platform: str | None = None
) -> tuple[int, str]:
    """Settings per compiled micro-batch (a multiple of the device count) and a line saying why.

    Default: as many settings as fit in 70% of a device's memory, and on CPU at most
    ``CPU_SETTINGS_PER_DEVICE``. ``platform`` defaults to that of the first device.
    """
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
        if (platform or jax.devices()[0].platform) == "cpu" and per_device > CPU_SETTINGS_PER_DEVICE:
            per_device = CPU_SETTINGS_PER_DEVICE
            why += f", {per_device} on CPU (wider batches gain nothing there)"
    per_device = min(per_device, math.ceil(k / device_count))
    batch = per_device * device_count
    return batch, f"{k} settings on {device_count} device(s); {why}; micro-batches of {batch}"


@dataclass
class SweepResult:
    """What :func:`sweep` returns (every process holds all of it).

    Attributes:
      points: the settings, in order.
      images: final images, float32 RGB in [0, 1], shape ``(K, H, W, 3)``.
      trace: per-step losses ``{content, style, tv, total}``, each ``(steps, K)``, all
        scales one after the other (a stopped setting repeats its last losses).
      diverged_at: step at which each setting diverged, -1 for the others.
      steps_taken: steps each setting took (fewer than asked where it diverged or converged).
      settings: the shared settings.
      contents: names of the content images.
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
    diverged_at: np.ndarray
    steps_taken: np.ndarray
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
        """``diverged``, ``converged`` (stopped by ``tol``) or ``finished``."""
        if self.diverged_at[k] >= 0:
            return "diverged"
        return "converged" if self.steps_taken[k] < len(self.trace["total"]) else "finished"


def image_name(img: ImageLike, default: str) -> str:
    return str(img) if isinstance(img, (str, os.PathLike)) else default


def blend_matrix(n_styles: int, blends: Sequence[Sequence[float]] | None) -> np.ndarray:
    """Rows of style weights, one per style target: the identity, or each blend normalised to sum 1."""
    if not blends:
        return np.eye(n_styles)
    return np.asarray([normalised_blend(blend, n_styles) for blend in blends], np.float64)


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
      points: the settings; default: every content with every style target at the settings' values.
      style_blends: blends of all the style images, each a list of one weight per
        image; when given, these are the style targets that points index (default:
        each style image alone, or the settings' ``style_blend`` as the only target).
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
    if style_blends is None and settings.style_blend is not None:
        style_blends = [settings.style_blend]
    blends = blend_matrix(len(styles), style_blends)
    if points is None:
        points = grid_product(len(contents), len(blends), *([getattr(settings, key)] for key in SWEPT))
    points = [p if p.ema is not None else dataclasses.replace(p, ema=settings.ema) for p in points]
    check_points(points)
    for k, p in enumerate(points):
        if not (0 <= p.content < len(contents) and 0 <= p.style < len(blends)):
            raise JaxstyleError(f"setting {k}: no content image {p.content} or style target {p.style}")
    content_rgb = [as_rgb(c) for c in contents]
    style_rgb = [as_rgb(s) for s in styles]
    size = imageio.output_size(content_rgb[0].shape[:2], settings.size, settings.max_side)
    plan_stages = stages(settings, size)
    check_stages(plan_stages)
    init_rgb = read_init(settings)
    loaded = load_weights(settings, weights)

    dtype, graphdef, params, recipe = build_network(settings, loaded, dtype, compute_dtype)
    convention = loaded.convention
    mesh = meshlib.settings_mesh()
    devices = mesh.devices.size

    def targets_at(size: tuple[int, int]) -> Targets:
        resized = np.stack([imageio.resize(c, size) for c in content_rgb])
        content_net = convention.to_network(jnp.asarray(resized, dtype)[:, None])
        targets = Targets(
            content=stack_content_targets_jit(graphdef, params, content_net, recipe),
            style_gram=blended_style_grams(
                (graphdef, params, recipe), settings, convention, dtype, style_rgb, blends, size
            ),
        )
        return meshlib.to_global(targets, meshlib.replicated(mesh))

    stage_targets = [targets_at(stage.size) for stage in plan_stages]
    k = len(points)
    batch, plan = plan_batch_size(k, bytes_per_setting(size, settings, dtype.itemsize), devices, batch_size)
    if on_plan is not None:
        on_plan(plan)
    to_network = convention.to_network
    starts = [
        np.asarray(initial_image(settings, to_network(jnp.asarray(c, dtype)[None]), to_network, init_rgb))
        for c in (imageio.resize(c, plan_stages[0].size) for c in content_rgb)
    ]
    per_setting = meshlib.pad_leading(host_settings(points, settings, starts, dtype), meshlib.padded_length(k, batch))
    params_g = meshlib.to_global(params, meshlib.replicated(mesh))
    sharded = meshlib.batch_sharding(mesh)
    steps_in_all = sum(stage.steps for stage in plan_stages)
    total_steps = math.ceil(k / batch) * steps_in_all

    def run_micro_batch(first: int) -> tuple[SolverState, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """All scales of settings ``first .. first + batch``: final state, trace, diverged_at, steps taken."""
        chunk_of = jax.tree.map(lambda x: x[first : first + batch], per_setting)
        setting, images, lrs, emas, tols = meshlib.to_global(chunk_of, sharded)
        traces, diverged_at, steps_taken, state = [], np.full(batch, -1), np.zeros(batch, np.int64), None
        for number, stage in enumerate(plan_stages):
            offset = sum(s.steps for s in plan_stages[:number])
            fresh = init_batch_jit(images, lrs, emas, tols, settings.optimizer, settings.lbfgs_memory)
            if state is not None and settings.warm_start:
                fresh = fresh._replace(opt_state=warm_started_adam_jit(state.opt_state, fresh.opt_state))
            # A setting that diverged at an earlier scale stays frozen.
            state = fresh if state is None else fresh._replace(diverged_at=state.diverged_at)
            state, trace = run_steps(
                graphdef,
                recipe,
                params_g,
                stage_targets[number],
                setting,
                state,
                stage.steps,
                lambda n, done=first // batch * steps_in_all + offset: progress and progress(done + n, total_steps),
            )
            stage_diverged, stage_steps = meshlib.to_host((state.diverged_at, state.step))
            diverged_at = np.where((diverged_at < 0) & (stage_diverged >= 0), offset + stage_diverged, diverged_at)
            steps_taken += stage_steps
            traces.append(trace)
            if number + 1 < len(plan_stages):
                # The next scale starts from each setting's averaged iterate, upsampled.
                previous = jnp.asarray(meshlib.to_host(averaged_image(state)))
                images = meshlib.to_global(upsample(previous, plan_stages[number + 1].size, convention), sharded)
        trace = {name: np.concatenate([t[name] for t in traces]) for name in LOSS_NAMES}
        return state, trace, diverged_at, steps_taken

    images, traces, diverged, taken, local = [], [], [], [], []
    start = time.perf_counter()
    for first in range(0, k, batch):
        state, trace, diverged_at, steps_taken = run_micro_batch(first)
        local += [first + row for row in meshlib.local_rows(state.image) if first + row < k]
        final = meshlib.to_host(averaged_image(state))[:, 0]
        row_contents = [content_rgb[c] for c in setting_contents(points, first, batch)]
        images.append(output_pixels(final, settings, convention, row_contents))
        diverged.append(diverged_at)
        taken.append(steps_taken)
        traces.append(trace)
    seconds = time.perf_counter() - start
    style_names = [image_name(s, f"style{i}") for i, s in enumerate(styles)]
    return SweepResult(
        points=points,
        images=np.concatenate(images)[:k],
        trace={name: np.concatenate([t[name] for t in traces], axis=1)[:, :k] for name in LOSS_NAMES},
        diverged_at=np.concatenate(diverged)[:k],
        steps_taken=np.concatenate(taken)[:k],
        settings=settings,
        contents=[image_name(c, f"content{i}") for i, c in enumerate(contents)],
        styles=style_target_names(style_names, blends, style_blends is not None),
        local=sorted(local),
        seconds=seconds,
        batch_size=batch,
        plan=plan,
        device_count=devices,
        process_count=jax.process_count(),
    )


def setting_contents(points: Sequence[SweepPoint], first: int, batch: int) -> list[int]:
    """The content index of each row of a micro-batch (0 for padding rows)."""
    rows = [p.content for p in points[first : first + batch]]
    return rows + [0] * (batch - len(rows))


def host_settings(
    points: Sequence[SweepPoint], settings: Settings, starts: Sequence[np.ndarray], dtype: jnp.dtype
) -> tuple[Setting, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-setting arrays with a leading axis K: settings, initial images, learning rates, EMA decays, tolerances.

    ``starts`` holds the initial image of each content image.
    """
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
    emas = np.asarray([settings.ema if p.ema is None else p.ema for p in points], dtype)
    # Every setting starts from the same image (the same noise too), so settings differ
    # only in what the sweep varies.
    return setting, np.stack(starts)[content_index], column("lr"), emas, np.full(k, settings.tol, dtype)


def run_steps(
    graphdef,
    recipe: Recipe,
    params,
    targets: Targets,
    setting: Setting,
    state: SolverState,
    steps: int,
    progress: Callable[[int], None],
) -> tuple[SolverState, dict[str, np.ndarray]]:
    """All steps of one micro-batch at one scale in jitted chunks; the trace is ``(steps, B)`` per loss.

    Ends early once every setting has stopped; the trace then repeats the last losses.
    """

    def chunk(state: SolverState, n: int) -> tuple[SolverState, dict[str, jax.Array]]:
        return run_batch_chunk_jit(graphdef, recipe, n, params, targets, setting, state)

    def after_chunk(state: SolverState, _losses: dict, done: int) -> bool:
        progress(done)
        stopped = meshlib.to_host((state.diverged_at >= 0) | (state.converged_at >= 0))
        return bool(stopped.all())

    state, trace = run_in_chunks(chunk, state, steps, DEFAULT_CHUNK, after_chunk, meshlib.to_host)
    missing = steps - len(trace["total"])
    if missing:
        trace = {k: np.concatenate([v, np.repeat(v[-1:], missing, axis=0)]) for k, v in trace.items()}
    return state, trace
