"""The Python API: ``jaxstyle.stylize``. Glue between image I/O, weights and the solver."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import image as imageio
from jaxstyle import weights as weightsio
from jaxstyle.color import preserve_color
from jaxstyle.config import INITS, Settings, Stage, check_convention, resolve, stages
from jaxstyle.errors import JaxstyleError
from jaxstyle.losses import LossWeights, Targets
from jaxstyle.preprocess import InputConvention
from jaxstyle.solve import (
    LOSS_NAMES,
    Diverged,
    Recipe,
    SolverState,
    averaged_image,
    blend_grams,
    content_targets_jit,
    init_state,
    solve,
    style_grams_jit,
    warm_started_adam_jit,
)

ImageLike = str | os.PathLike | np.ndarray
DEFAULT_CHUNK = 10  # steps per jitted chunk: progress and divergence checks happen between chunks
MIN_STYLE_SIDE = 16  # relu5_1 lies behind four 2x2 poolings


@dataclass
class Result:
    """What :func:`stylize` returns.

    Attributes:
      image: the stylized image, float32 RGB in [0, 1], shape ``(H, W, 3)``.
      trace: per-step losses ``{content, style, tv, total}`` (unweighted terms and the
        weighted total), taken before each step, all scales one after the other.
      settings: the settings used.
      weights_file: the converted weights file used.
      weights_info: its provenance (source, source file and SHA-256, convention).
      seconds: wall time of the optimisation, compilation included.
      stages: each scale's size and the steps taken there (fewer than asked where ``tol`` stopped it).
    """

    image: np.ndarray
    trace: dict[str, np.ndarray]
    settings: Settings
    weights_file: Path
    weights_info: dict[str, str]
    seconds: float
    stages: list[Stage]


def as_rgb(img: ImageLike) -> np.ndarray:
    """A path (read from disk) or an array (uint8 or float in [0, 1]) as float32 RGB."""
    if isinstance(img, (str, os.PathLike)):
        return imageio.load_image(img)
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise JaxstyleError(f"image array of shape {arr.shape}: expected (H, W, 3)")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32)


def load_weights(settings: Settings, weights: str | os.PathLike | None) -> weightsio.LoadedWeights:
    """The converted weights file named (or the first one found), checked to expect the settings' convention."""
    path = Path(weights) if weights is not None else weightsio.find(settings.convention)
    loaded = weightsio.read_converted(path)
    check_convention(settings, loaded.convention.name, path)
    return loaded


def loss_weights(settings: Settings, dtype: jnp.dtype) -> LossWeights:
    """The settings' loss weights as array leaves of ``dtype``."""
    content_layers, style_layers = settings.resolved_layer_weights()
    return LossWeights(
        content=jnp.asarray(settings.content_weight, dtype),
        style=jnp.asarray(settings.style_weight, dtype),
        tv=jnp.asarray(settings.tv_weight, dtype),
        content_layers=jnp.asarray(content_layers, dtype),
        style_layers=jnp.asarray(style_layers, dtype),
    )


def initial_image(
    settings: Settings, content: jax.Array, to_network: Callable, init_rgb: np.ndarray | None = None
) -> jax.Array:
    """The starting image in network space, shaped like ``content`` (network space, NHWC).

    ``content``: the content image; ``noise``: uniform random pixels; ``gaussian``:
    ``0.001 * N(0, 1)`` in network space (neural-style's ``-init random``, near the
    mean colour); a file: ``init_rgb`` resized to the content's size. Random draws use
    ``settings.seed``.
    """
    key = jax.random.key(settings.seed)
    if settings.init == "content":
        return content
    if settings.init == "noise":
        return to_network(jax.random.uniform(key, content.shape, content.dtype))
    if settings.init == "gaussian":
        return 0.001 * jax.random.normal(key, content.shape, content.dtype)
    rgb = imageio.resize(init_rgb, content.shape[-3:-1])
    return to_network(jnp.asarray(rgb, content.dtype).reshape(content.shape))


def read_init(settings: Settings) -> np.ndarray | None:
    """The ``init`` image file's pixels, or ``None`` when ``init`` names no file."""
    return None if settings.init in INITS else imageio.load_image(settings.init)


def to_pixels(image: jax.Array, convention: InputConvention) -> np.ndarray:
    """Network-space images (channels last, any leading axes) to float RGB in [0, 1], clipped only here."""
    return np.asarray(jnp.clip(convention.from_network(image), 0.0, 1.0))


def style_size(style_hw: tuple[int, int], output_hw: tuple[int, int], settings: Settings) -> tuple[int, int]:
    """The size a style image is resized to before its features are taken.

    ``style_shape="output"``: ``style_scale`` times the output's height and width (d2l
    resizes the style to the output size). ``"own"``: the style's aspect, its longest
    side ``style_scale`` times the output's longest side (neural-style, style-transfer-pytorch).
    """
    scale = settings.style_scale
    if settings.style_shape == "output":
        h, w = output_hw
    else:
        h, w = style_hw
        scale *= max(output_hw) / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def style_images_net(
    style_rgbs: Sequence[np.ndarray], output_hw: tuple[int, int], settings: Settings, to_network: Callable, dtype
) -> list[jax.Array]:
    """Each style image resized for an output of ``output_hw``, in network space, ``(1, h, w, 3)``."""
    images = []
    for number, rgb in enumerate(style_rgbs, start=1):
        h, w = style_size(rgb.shape[:2], output_hw, settings)
        if min(h, w) < MIN_STYLE_SIDE:
            raise JaxstyleError(
                f"style image {number} would be {h}x{w} pixels at style scale {settings.style_scale}; "
                f"VGG-19 needs at least {MIN_STYLE_SIDE} on each side"
            )
        images.append(to_network(jnp.asarray(imageio.resize(rgb, (h, w)), dtype)[None]))
    return images


def stacked_style_grams(graphdef, params, recipe: Recipe, style_images: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
    """Gram matrices of every style image at every style layer; leaves ``(S, 1, C, C)``.

    Style images may differ in size (one compiled function per size); Gram matrices do not.
    """
    grams = [style_grams_jit(graphdef, params, image, recipe) for image in style_images]
    return tuple(jnp.stack(layer) for layer in zip(*grams, strict=True))


def build_network(
    settings: Settings, loaded: weightsio.LoadedWeights, dtype: str, compute_dtype: str | None
) -> tuple[jnp.dtype, Any, Any, Recipe]:
    """``(dtype, graphdef, params, recipe)``: the VGG-19 of ``loaded`` split for the core, and the static recipe.

    ``dtype`` is checked (float64 needs ``jax_enable_x64``); ``compute_dtype`` is the
    dtype of the convolutions (``None``: ``dtype``).
    """
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise JaxstyleError("dtype float64 needs jax_enable_x64 (JAX_ENABLE_X64=1)")
    graphdef, params = weightsio.split_model(loaded.convs, pool=settings.pool, dtype=dtype, compute_dtype=compute_dtype)
    recipe = Recipe(
        content=tuple(settings.content_layers),
        style=tuple(settings.style_layers),
        tv_reduction=settings.tv_reduction,
        optimizer=settings.optimizer,
        lbfgs_memory=settings.lbfgs_memory,
    )
    return dtype, graphdef, params, recipe


def new_state(settings: Settings, image: jax.Array) -> SolverState:
    """A fresh solver state at ``image`` with the settings' optimiser, learning rate, EMA and tolerance."""
    return init_state(image, settings.lr, settings.ema, settings.tol, settings.optimizer, settings.lbfgs_memory)


def upsample(images: jax.Array, size: tuple[int, int], convention: InputConvention) -> jax.Array:
    """Network-space images ``(..., h, w, 3)`` resized to the next scale: bicubic on pixels, clipped to [0, 1].

    As in style-transfer-pytorch, which clips there too.
    """
    pixels = np.asarray(convention.from_network(images))
    flat = pixels.reshape(-1, *pixels.shape[-3:])
    resized = np.stack([imageio.resize(rgb, size) for rgb in flat]).reshape(*pixels.shape[:-3], *size, 3)
    return convention.to_network(jnp.asarray(resized, images.dtype))


@dataclass
class Problem:
    """A stylization ready to run: inputs read and checked, network built, first scale's targets computed.

    Attributes:
      settings: the settings.
      graphdef, params: the VGG-19 network, split into structure and weights.
      recipe: the static part of the recipe (layers, TV reduction, optimiser).
      targets: content features and (blended) style Gram matrices at the first scale.
      loss_weights: the loss weights as arrays.
      state: the initial solver state at the first scale.
      stages: the scales, coarse to fine (one for a single-scale run).
      content_rgb, style_rgbs: the input images at their own sizes.
      blend: the normalised weight of each style image.
      convention: how pixels map to the network's input space.
      weights_file: the converted weights file.
      weights_info: its provenance.
    """

    settings: Settings
    graphdef: Any
    params: Any
    recipe: Recipe
    targets: Targets
    loss_weights: LossWeights
    state: SolverState
    stages: list[Stage]
    content_rgb: np.ndarray
    style_rgbs: list[np.ndarray]
    blend: tuple[float, ...]
    convention: InputConvention
    weights_file: Path
    weights_info: dict[str, str]

    def targets_at(self, size: tuple[int, int]) -> Targets:
        """Content features and blended style Gram matrices for an output of ``size``."""
        network = (self.graphdef, self.params, self.recipe)
        dtype = self.state.image.dtype
        return stage_targets(
            network, self.settings, self.convention, dtype, self.content_rgb, self.style_rgbs, self.blend, size
        )

    def final_pixels(self, state: SolverState) -> np.ndarray:
        """The averaged iterate as RGB, with the content's colours when ``preserve_color``."""
        return output_pixels(averaged_image(state), self.settings, self.convention, [self.content_rgb])[0]


def output_pixels(
    images: jax.Array | np.ndarray,
    settings: Settings,
    convention: InputConvention,
    content_rgbs: Sequence[np.ndarray],
) -> np.ndarray:
    """Network-space images ``(B, H, W, 3)`` as RGB in [0, 1]; with ``preserve_color``,
    row ``b`` takes the colours of ``content_rgbs[b]`` (resized to the output)."""
    rgb = to_pixels(jnp.asarray(images), convention)
    if settings.preserve_color:
        rgb = np.stack(
            [
                preserve_color(x, imageio.resize(content, x.shape[:2]))
                for x, content in zip(rgb, content_rgbs, strict=True)
            ]
        )
    return rgb


def blended_style_grams(
    network: tuple[Any, Any, Recipe],
    settings: Settings,
    convention: InputConvention,
    dtype: jnp.dtype,
    style_rgbs: Sequence[np.ndarray],
    blend: Sequence[float] | np.ndarray,
    size: tuple[int, int],
) -> tuple[jax.Array, ...]:
    """Style Gram targets for an output of ``size``: ``sum_s blend[..., s] * G_s`` per layer.

    ``blend`` is one row of weights ``(S,)`` or one row per style target ``(T, S)``.
    """
    graphdef, params, recipe = network
    styles = style_images_net(style_rgbs, size, settings, convention.to_network, dtype)
    return blend_grams(stacked_style_grams(graphdef, params, recipe, styles), jnp.asarray(blend, dtype))


def stage_targets(
    network: tuple[Any, Any, Recipe],
    settings: Settings,
    convention: InputConvention,
    dtype: jnp.dtype,
    content_rgb: np.ndarray,
    style_rgbs: Sequence[np.ndarray],
    blend: Sequence[float],
    size: tuple[int, int],
) -> Targets:
    """Content features and blended style Gram matrices for an output of ``size``.

    ``network`` is ``(graphdef, params, recipe)``; the images are at their own sizes.
    """
    graphdef, params, recipe = network
    content = convention.to_network(jnp.asarray(imageio.resize(content_rgb, size), dtype)[None])
    return Targets(
        content=content_targets_jit(graphdef, params, content, recipe),
        style_gram=blended_style_grams(network, settings, convention, dtype, style_rgbs, blend, size),
    )


def check_stages(plan: Sequence[Stage]) -> None:
    """Every scale at least :data:`MIN_STYLE_SIDE` pixels a side (the output itself was checked already)."""
    h, w = plan[0].size
    if min(h, w) < MIN_STYLE_SIDE:
        raise JaxstyleError(
            f"coarsest scale {h}x{w} is too small: VGG-19 needs at least {MIN_STYLE_SIDE} pixels a side; "
            "use fewer --scales or a larger --min-side"
        )


def style_list(style: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """One style image or several, as a list."""
    return list(style) if isinstance(style, (list, tuple)) else [style]


def prepare(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    *,
    preset: str = "paper",
    weights: str | os.PathLike | None = None,
    settings: Settings | None = None,
    dtype: str = "float32",
    compute_dtype: str | None = None,
    **overrides,
) -> Problem:
    """Read and check everything a run needs, so that a run fails before it starts.

    Arguments as for :func:`stylize`; ``dtype`` is the computation dtype (``"float64"``
    needs ``jax_enable_x64``; the parity tests use it); ``compute_dtype="bfloat16"``
    runs the convolutions in bfloat16 while the image, Gram matrices and losses stay
    in ``dtype``.
    """
    settings = settings or resolve(preset, **overrides)
    content_rgb = as_rgb(content)
    style_rgbs = [as_rgb(s) for s in style_list(style)]
    blend = settings.blend_weights(len(style_rgbs))
    size = imageio.output_size(content_rgb.shape[:2], settings.size, settings.max_side)
    plan = stages(settings, size)
    check_stages(plan)
    init_rgb = read_init(settings)
    loaded = load_weights(settings, weights)

    dtype, graphdef, params, recipe = build_network(settings, loaded, dtype, compute_dtype)
    convention = loaded.convention
    first = plan[0].size
    content_net = convention.to_network(jnp.asarray(imageio.resize(content_rgb, first), dtype)[None])
    return Problem(
        settings=settings,
        graphdef=graphdef,
        params=params,
        recipe=recipe,
        targets=stage_targets(
            (graphdef, params, recipe), settings, convention, dtype, content_rgb, style_rgbs, blend, first
        ),
        loss_weights=loss_weights(settings, dtype),
        state=new_state(settings, initial_image(settings, content_net, convention.to_network, init_rgb)),
        stages=plan,
        content_rgb=content_rgb,
        style_rgbs=style_rgbs,
        blend=blend,
        convention=convention,
        weights_file=loaded.path,
        weights_info={k: v for k, v in loaded.attrs.items() if k.startswith(("source", "convention"))},
    )


def optimize(
    problem: Problem,
    progress: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    save_every: int | None = None,
    on_snapshot: Callable[[int, np.ndarray], None] | None = None,
) -> Result:
    """Run a prepared problem to the end, scale by scale; arguments as for :func:`stylize`."""
    settings = problem.settings
    if save_every is not None and save_every < 1:
        raise JaxstyleError(f"--save-every must be at least 1, not {save_every}")
    # Chunks end on every snapshot step; one chunk length means one compilation per scale.
    chunk = math.gcd(save_every, DEFAULT_CHUNK) if save_every else DEFAULT_CHUNK
    start = time.perf_counter()
    state, targets, traces, taken, done = problem.state, problem.targets, [], [], 0
    total_steps = sum(stage.steps for stage in problem.stages)
    for number, stage in enumerate(problem.stages):
        if number > 0:
            # Each scale starts from the previous scale's averaged iterate, upsampled,
            # with a fresh optimiser or (warm_start) Adam's moments resized.
            targets = problem.targets_at(stage.size)
            fresh = new_state(settings, upsample(averaged_image(state), stage.size, problem.convention))
            if settings.warm_start:
                fresh = fresh._replace(opt_state=warm_started_adam_jit(state.opt_state, fresh.opt_state))
            state = fresh

        def after_chunk(state: SolverState, losses: dict[str, np.ndarray], offset: int = done) -> None:
            step = offset + int(state.step)
            if progress is not None:
                progress(step, losses)
            if save_every and on_snapshot is not None and step % save_every == 0 and step < total_steps:
                on_snapshot(step, problem.final_pixels(state))

        try:
            state, trace = solve(
                problem.graphdef,
                problem.params,
                problem.recipe,
                targets,
                problem.loss_weights,
                state,
                stage.steps,
                chunk_size=chunk,
                on_chunk=after_chunk,
            )
        except Diverged as e:
            raise JaxstyleError(
                f"the optimisation diverged at step {done + e.step} (loss {e.losses['total']}); try a lower --lr "
                f"(now {settings.lr}) or smaller loss weights"
            ) from None
        traces.append(trace)
        taken.append(int(state.step))
        done += stage.steps
    return Result(
        image=problem.final_pixels(state),
        trace={name: np.concatenate([t[name] for t in traces]) for name in LOSS_NAMES},
        settings=settings,
        weights_file=problem.weights_file,
        weights_info=problem.weights_info,
        seconds=time.perf_counter() - start,
        stages=[Stage(stage.size, n) for stage, n in zip(problem.stages, taken, strict=True)],
    )


def stylize(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    *,
    preset: str = "paper",
    weights: str | os.PathLike | None = None,
    settings: Settings | None = None,
    progress: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    save_every: int | None = None,
    on_snapshot: Callable[[int, np.ndarray], None] | None = None,
    dtype: str = "float32",
    compute_dtype: str | None = None,
    **overrides,
) -> Result:
    """Stylize ``content`` in the manner of ``style``.

    Args:
      content: content image, a path or an ``(H, W, 3)`` array (uint8, or float in [0, 1]).
      style: style image, likewise, or a list of them (blended by ``style_blend``).
      preset: named recipe the settings start from (see ``jaxstyle.config.PRESETS``).
      weights: converted weights file; default: the first found on the search path.
      settings: complete settings, instead of ``preset`` and ``overrides``.
      progress: called after every chunk of steps with the step count and that
        chunk's per-step losses.
      save_every: call ``on_snapshot(step, image)`` every this many steps.
      on_snapshot: receives snapshots as float RGB arrays in [0, 1].
      dtype: computation dtype, ``"float32"`` (``"float64"`` needs ``jax_enable_x64``).
      compute_dtype: ``"bfloat16"`` runs the convolutions in bfloat16 (Gram matrices and losses stay ``dtype``).
      **overrides: any field of :class:`~jaxstyle.config.Settings`, e.g. ``steps=200``.

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
        dtype=dtype,
        compute_dtype=compute_dtype,
        **overrides,
    )
    return optimize(problem, progress=progress, save_every=save_every, on_snapshot=on_snapshot)
