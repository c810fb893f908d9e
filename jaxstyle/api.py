"""The Python API: ``jaxstyle.stylize``, a batch of one setting through :mod:`jaxstyle.pipeline`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.checkpoint import CheckpointOptions
from jaxstyle.config import Execution, Settings, Stage, numbers_checked_as, resolve, split_execution
from jaxstyle.errors import JaxstyleError
from jaxstyle.losses import LossWeights, Targets
from jaxstyle.masks import MaskLike
from jaxstyle.pipeline import ChunkReport, ImageLike, Job, MaskInputs, prepare_job, run_job, single_device_mesh
from jaxstyle.preprocess import InputConvention
from jaxstyle.solve import Diverged, Recipe, SolverState, start_state


@dataclass
class Result:
    """What :func:`stylize` returns.

    Attributes:
      image: the stylized image, float32 RGB in [0, 1], shape ``(H, W, 3)``.
      trace: per-step losses ``{content, style, tv, total}`` (unweighted terms and the
        weighted total), taken before each step, all scales one after the other (a
        scale that ``tol`` stopped ends with the loss of its last image).
      final_losses: the losses of the returned image itself.
      settings: the settings used.
      execution: how the run was carried out, as asked.
      weights_file: the converted weights file used.
      weights_info: its provenance (source, source file and SHA-256, convention).
      seconds: wall time of the optimisation, compilation included.
      stages: each scale's size and the steps taken there (fewer than asked where ``tol`` stopped it).
    """

    image: np.ndarray
    trace: dict[str, np.ndarray]
    final_losses: dict[str, float]
    settings: Settings
    execution: Execution
    weights_file: Path
    weights_info: dict[str, str]
    seconds: float
    stages: list[Stage]


def style_list(style: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """One style image or several, as a list."""
    return list(style) if isinstance(style, (list, tuple)) else [style]


@dataclass
class Problem:
    """A stylization ready to run: a :class:`~jaxstyle.pipeline.Job` of one setting.

    The properties are the pieces of its first scale for the pure core
    (:func:`jaxstyle.solve.optimizer_step`, :func:`jaxstyle.solve.run_chunk`): benchmarks
    and tests step it by hand; :func:`optimize` runs it.
    """

    job: Job

    @property
    def settings(self) -> Settings:
        return self.job.settings

    @property
    def execution(self) -> Execution:
        return self.job.execution

    @property
    def graphdef(self) -> Any:
        return self.job.network.graphdef

    @property
    def params(self) -> Any:
        return self.job.network.params

    @property
    def recipe(self) -> Recipe:
        return self.job.network.recipe

    @property
    def convention(self) -> InputConvention:
        """How pixels map to the network's input space (from the weights file)."""
        return self.job.network.convention

    @cached_property
    def targets(self) -> Targets:
        """Content features and blended style targets of the setting at the first scale."""
        return self.job.point_targets(self.job.plan.stages[0].size)

    @cached_property
    def loss_weights(self) -> LossWeights:
        """The setting's loss weights as arrays."""
        setting = self.job.per_setting()[0]
        return jax.tree.map(lambda leaf: jnp.asarray(leaf[0]), setting.weights)

    @cached_property
    def state(self) -> SolverState:
        """The initial solver state at the first scale."""
        _, images, lrs, emas, tols = self.job.per_setting()
        first = (jnp.asarray(x[0]) for x in (images, lrs, emas, tols))
        return start_state(self.graphdef, self.recipe, self.params, self.targets, self.loss_weights, *first)


def prepare(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    *,
    preset: str = "paper",
    weights: str | os.PathLike | None = None,
    settings: Settings | None = None,
    execution: Execution | None = None,
    style_masks: Sequence[MaskLike] | None = None,
    style_image_masks: Sequence[MaskLike | None] | None = None,
    edit_mask: MaskLike | None = None,
    guidance: str = "simple",
    strength_map: MaskLike | None = None,
    masks: MaskInputs | None = None,
    **overrides: Any,
) -> Problem:
    """Read and check everything a run needs, so that a run fails before it starts.

    Arguments as for :func:`stylize`: ``overrides`` named like a field of
    :class:`~jaxstyle.config.Execution` (``dtype="float64"``, which needs
    ``jax_enable_x64`` and the parity tests use; ``compute_dtype="bfloat16"``;
    ``remat``; ``save_every``) go into ``execution``, the others into the settings.
    ``masks``: the four mask arguments in one (:class:`~jaxstyle.pipeline.MaskInputs`), instead of them.
    """
    masks = masks or MaskInputs(style_masks, style_image_masks, edit_mask, guidance, strength_map)
    if settings is None and guides_needed(masks):
        overrides.setdefault("style_loss", "guided")
    execution, overrides = split_execution(execution, overrides)
    with numbers_checked_as(execution.dtype):  # a float64 run takes float64 numbers
        settings = settings or resolve(preset, **overrides)
    job = prepare_job(
        [content],
        style_list(style),
        settings,
        weights=weights,
        execution=execution,
        space_devices=jax.device_count(),
        masks=masks if masks.given() else None,
    )
    return Problem(job)


def guides_needed(masks: MaskInputs) -> bool:
    """Whether ``masks`` are guidance channels (regions or style-image masks), which the
    ``guided`` style loss reads: a run given them and no style loss uses ``guided``."""
    return masks.style is not None or masks.style_image is not None


def optimize(
    problem: Problem,
    progress: Callable[[ChunkReport], None] | None = None,
    on_snapshot: Callable[[int, np.ndarray], None] | None = None,
    checkpoint: CheckpointOptions | None = None,
    stop_signal: Callable[[], int | None] | None = None,
) -> Result:
    """Run a prepared problem to the end, scale by scale; arguments as for :func:`stylize`
    (snapshots are taken as the problem's ``execution.save_every`` planned them)."""
    job, settings = problem.job, problem.settings
    try:
        out = run_job(
            job,
            single_device_mesh(job.plan.spatial_shards),
            on_chunk=progress,
            on_snapshot=on_snapshot and (lambda step, _rows, images: on_snapshot(step, images[0])),
            raise_on_divergence=True,
            checkpoint=checkpoint,
            stop_signal=stop_signal,
        )
    except Diverged as e:
        raise JaxstyleError(
            f"the optimisation diverged at step {e.step} (loss {e.losses['total']}); try a lower --lr "
            f"(now {settings.lr}) or smaller loss weights"
        ) from None
    return Result(
        image=out.images[0],
        trace={name: v[:, 0] for name, v in out.trace().items()},
        final_losses={name: float(v[0]) for name, v in out.final_losses.items()},
        settings=settings,
        execution=job.execution,
        weights_file=job.network.weights_file,
        weights_info=job.network.weights_info,
        seconds=out.seconds,
        stages=[Stage(stage.size, int(n)) for stage, n in zip(job.plan.stages, out.stage_steps[0], strict=True)],
    )


def stylize(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    *,
    preset: str = "paper",
    weights: str | os.PathLike | None = None,
    settings: Settings | None = None,
    execution: Execution | None = None,
    progress: Callable[[ChunkReport], None] | None = None,
    on_snapshot: Callable[[int, np.ndarray], None] | None = None,
    checkpoint: CheckpointOptions | None = None,
    stop_signal: Callable[[], int | None] | None = None,
    style_masks: Sequence[MaskLike] | None = None,
    style_image_masks: Sequence[MaskLike | None] | None = None,
    edit_mask: MaskLike | None = None,
    guidance: str = "simple",
    strength_map: MaskLike | None = None,
    **overrides: Any,
) -> Result:
    """Stylize ``content`` in the manner of ``style``.

    Args:
      content: content image, a path or an ``(H, W, 3)`` array (uint8, or float in [0, 1]).
      style: style image, likewise, or a list of them (blended by ``style_blend``).
      preset: named recipe the settings start from (see ``jaxstyle.config.PRESETS``).
      weights: converted weights file; default: the first found on the search path.
      settings: complete settings, instead of ``preset`` and the recipe's ``overrides``.
      execution: how the run is carried out (:class:`~jaxstyle.config.Execution`: dtypes,
        remat mode, split over devices, snapshots); default ``Execution()``, with the
        ``overrides`` named like its fields.
      progress: called after every chunk of steps with a
        :class:`~jaxstyle.pipeline.ChunkReport` (global step, all scales counted;
        scale; that chunk's per-step losses); :class:`jaxstyle.progress.Progress` shows them.
      on_snapshot: called as ``on_snapshot(step, image)`` every ``save_every`` global steps
        (an execution choice), with the image as float RGB in [0, 1].
      checkpoint: where and how often to save the run's state, and whether to resume
        from it (see :class:`~jaxstyle.checkpoint.CheckpointOptions`).
      stop_signal: asked after every chunk; a signal number stops the run there
        (after a checkpoint, if ``checkpoint`` is set) with
        :class:`~jaxstyle.pipeline.Stopped` (see :class:`jaxstyle.signals.StopRequests`).
      style_masks: one region mask per style image, in the content's coordinates: paths of
        greyscale images or ``(H, W)`` arrays in [0, 1] (white: this style; soft values
        weight it). Style image ``r`` is matched in region ``r``; pixels no mask covers keep
        the content. Selects ``style_loss="guided"`` unless another is asked (an error).
        See docs/guide/spatial-control.md.
      style_image_masks: one mask (or ``None``) per style image, in its own coordinates:
        the part of it its statistics come from.
      edit_mask: the pixels optimised; the others are the content's, bit for bit in 8 bits.
      guidance: how masks reach the style layers, ``"simple"`` or ``"inside"``
        (:func:`jaxstyle.masks.guide_pyramid`).
      strength_map: the strength of the style at each pixel, in [0, 1], in the content's
        coordinates (a path or an array): the style loss's gradient there is scaled by it, so
        that a uniform strength ``c`` is a style weight times ``c``
        (:func:`jaxstyle.losses.loss_terms`).
      **overrides: any field of :class:`~jaxstyle.config.Settings`, e.g. ``steps=200``, or of
        :class:`~jaxstyle.config.Execution`, e.g. ``remat="blocks"``, ``compute_dtype="bfloat16"``,
        ``dtype="float64"`` (needs ``jax_enable_x64``), ``save_every=100``.

    Returns:
      A :class:`Result` with the image as a numpy array and the loss trace.

    Raises:
      JaxstyleError: bad input, missing weights, or a diverging run.
    """
    problem = prepare(
        content,
        style,
        preset=preset,
        weights=weights,
        settings=settings,
        execution=execution,
        style_masks=style_masks,
        style_image_masks=style_image_masks,
        edit_mask=edit_mask,
        guidance=guidance,
        strength_map=strength_map,
        **overrides,
    )
    return optimize(
        problem,
        progress=progress,
        on_snapshot=on_snapshot,
        checkpoint=checkpoint,
        stop_signal=stop_signal,
    )
