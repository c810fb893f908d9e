"""The Python API: ``jaxstyle.stylize``. Glue between image I/O, weights and the solver."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import image as imageio
from jaxstyle import weights as weightsio
from jaxstyle.config import Settings, resolve
from jaxstyle.errors import JaxstyleError
from jaxstyle.losses import LossWeights, Targets
from jaxstyle.preprocess import InputConvention
from jaxstyle.solve import Diverged, Layers, SolverState, compute_targets_jit, init_state, solve

ImageLike = str | os.PathLike | np.ndarray
DEFAULT_CHUNK = 10  # steps per jitted chunk: progress and divergence checks happen between chunks


@dataclass
class Result:
    """What :func:`stylize` returns.

    Attributes:
      image: the stylized image, float32 RGB in [0, 1], shape ``(H, W, 3)``.
      trace: per-step losses ``{content, style, tv, total}`` (unweighted terms and the
        weighted total), each of shape ``(steps,)``, taken before each step.
      settings: the settings used.
      weights_file: the converted weights file used.
      weights_info: its provenance (source, source file and SHA-256, convention).
      seconds: wall time of the optimisation, compilation included.
    """

    image: np.ndarray
    trace: dict[str, np.ndarray]
    settings: Settings
    weights_file: Path
    weights_info: dict[str, str]
    seconds: float


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
    """The converted weights file named, or the first one found for the preset's convention."""
    path = Path(weights) if weights is not None else weightsio.find(settings.convention)
    return weightsio.read_converted(path)


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


def initial_image(settings: Settings, content: jax.Array, to_network: Callable) -> jax.Array:
    """The content image, or uniform random pixels drawn with ``settings.seed``."""
    if settings.init == "content":
        return content
    pixels = jax.random.uniform(jax.random.key(settings.seed), content.shape, content.dtype)
    return to_network(pixels)


def to_pixels(image: jax.Array, convention: InputConvention) -> np.ndarray:
    """Network-space images (channels last, any leading axes) to float RGB in [0, 1], clipped only here."""
    return np.asarray(jnp.clip(convention.from_network(image), 0.0, 1.0))


def build_network(
    settings: Settings, loaded: weightsio.LoadedWeights, dtype: str, compute_dtype: str | None
) -> tuple[jnp.dtype, Any, Any, Layers]:
    """``(dtype, graphdef, params, layers)``: the VGG-19 of ``loaded`` split for the core, and the recipe's layers.

    ``dtype`` is checked (float64 needs ``jax_enable_x64``); ``compute_dtype`` is the
    dtype of the convolutions (``None``: ``dtype``).
    """
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise JaxstyleError("dtype float64 needs jax_enable_x64 (JAX_ENABLE_X64=1)")
    graphdef, params = weightsio.split_model(loaded.convs, pool=settings.pool, dtype=dtype, compute_dtype=compute_dtype)
    return dtype, graphdef, params, Layers(tuple(settings.content_layers), tuple(settings.style_layers))


@dataclass
class Problem:
    """A stylization ready to run: inputs read and checked, network built, targets computed.

    Attributes:
      settings: the settings.
      graphdef, params: the VGG-19 network, split into structure and weights.
      layers: the content and style layers.
      targets: content features and style Gram matrices.
      loss_weights: the loss weights as arrays.
      state: the initial solver state.
      convention: how pixels map to the network's input space.
      weights_file: the converted weights file.
      weights_info: its provenance.
    """

    settings: Settings
    graphdef: Any
    params: Any
    layers: Layers
    targets: Targets
    loss_weights: LossWeights
    state: SolverState
    convention: InputConvention
    weights_file: Path
    weights_info: dict[str, str]


def prepare(
    content: ImageLike,
    style: ImageLike,
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
    content_rgb, style_rgb = as_rgb(content), as_rgb(style)
    size = imageio.output_size(content_rgb.shape[:2], settings.size, settings.max_side)
    loaded = load_weights(settings, weights)
    # As in the source paper, the style image is resized to the output size.
    content_rgb, style_rgb = imageio.resize(content_rgb, size), imageio.resize(style_rgb, size)

    dtype, graphdef, params, layers = build_network(settings, loaded, dtype, compute_dtype)
    to_network = loaded.convention.to_network
    content_net = to_network(jnp.asarray(content_rgb, dtype)[None])
    style_net = to_network(jnp.asarray(style_rgb, dtype)[None])
    return Problem(
        settings=settings,
        graphdef=graphdef,
        params=params,
        layers=layers,
        targets=compute_targets_jit(graphdef, params, content_net, style_net, layers),
        loss_weights=loss_weights(settings, dtype),
        state=init_state(initial_image(settings, content_net, to_network), settings.lr),
        convention=loaded.convention,
        weights_file=loaded.path,
        weights_info={k: v for k, v in loaded.attrs.items() if k.startswith(("source", "convention"))},
    )


def optimize(
    problem: Problem,
    progress: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    save_every: int | None = None,
    on_snapshot: Callable[[int, np.ndarray], None] | None = None,
) -> Result:
    """Run a prepared problem to the end; arguments as for :func:`stylize`."""
    settings = problem.settings
    if save_every is not None and save_every < 1:
        raise JaxstyleError(f"--save-every must be at least 1, not {save_every}")

    def after_chunk(state: SolverState, losses: dict[str, np.ndarray]) -> None:
        step = int(state.step)
        if progress is not None:
            progress(step, losses)
        if save_every and on_snapshot is not None and step % save_every == 0 and step < settings.steps:
            on_snapshot(step, to_pixels(state.image[0], problem.convention))

    # Chunks end on every snapshot step; one chunk length means one compilation.
    chunk = math.gcd(save_every, DEFAULT_CHUNK) if save_every else DEFAULT_CHUNK
    start = time.perf_counter()
    try:
        state, trace = solve(
            problem.graphdef,
            problem.params,
            problem.layers,
            problem.targets,
            problem.loss_weights,
            problem.state,
            settings.steps,
            chunk_size=chunk,
            on_chunk=after_chunk,
        )
    except Diverged as e:
        raise JaxstyleError(
            f"the optimisation diverged at step {e.step} (loss {e.losses['total']}); try a lower --lr "
            f"(now {settings.lr}) or smaller loss weights"
        ) from None
    return Result(
        image=to_pixels(state.image[0], problem.convention),
        trace=trace,
        settings=settings,
        weights_file=problem.weights_file,
        weights_info=problem.weights_info,
        seconds=time.perf_counter() - start,
    )


def stylize(
    content: ImageLike,
    style: ImageLike,
    *,
    preset: str = "paper",
    weights: str | os.PathLike | None = None,
    settings: Settings | None = None,
    progress: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    save_every: int | None = None,
    on_snapshot: Callable[[int, np.ndarray], None] | None = None,
    dtype: str = "float32",
    **overrides,
) -> Result:
    """Stylize ``content`` in the manner of ``style``.

    Args:
      content: content image, a path or an ``(H, W, 3)`` array (uint8, or float in [0, 1]).
      style: style image, likewise.
      preset: named recipe the settings start from (see ``jaxstyle.config.PRESETS``).
      weights: converted weights file; default: the first found on the search path.
      settings: complete settings, instead of ``preset`` and ``overrides``.
      progress: called after every chunk of steps with the step count and that
        chunk's per-step losses.
      save_every: call ``on_snapshot(step, image)`` every this many steps.
      on_snapshot: receives snapshots as float RGB arrays in [0, 1].
      dtype: computation dtype, ``"float32"`` (``"float64"`` needs ``jax_enable_x64``).
      **overrides: any field of :class:`~jaxstyle.config.Settings`, e.g. ``steps=200``.

    Returns:
      A :class:`Result` with the image as a numpy array and the loss trace.

    Raises:
      JaxstyleError: bad input, missing weights, or a diverging run.
    """
    problem = prepare(content, style, preset=preset, weights=weights, settings=settings, dtype=dtype, **overrides)
    return optimize(problem, progress=progress, save_every=save_every, on_snapshot=on_snapshot)
