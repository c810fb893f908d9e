"""The optimisation of one image's pixels: pure functions, no I/O.

:func:`optimizer_step` is one step of the recipe's optimiser (:mod:`jaxstyle.optimizers`);
:func:`run_chunk` loops it over a chunk of steps (:func:`chunk_loop`: one compilation for
every chunk up to a length). The style targets are the registered style losses'
(:data:`jaxstyle.losses.STYLE_LOSSES`). The batched form (:mod:`jaxstyle.batch`) vmaps
the same step over settings, and :mod:`jaxstyle.pipeline` runs the chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax import Array
from jax.sharding import Mesh

from jaxstyle.config import REMAT_MODES
from jaxstyle.lbfgs import Bounds, clip_to
from jaxstyle.losses import (
    LayerStatistics,
    LossWeights,
    Targets,
    edited_image,
    gram_matrix,
    layer_statistics,
    loss_terms,
    style_targets,
)
from jaxstyle.optimizers import adam, adam_transform, optimizer_of
from jaxstyle.remat import banded_network_features, block_features
from jaxstyle.spatial import split_features

# Optax's Adam as the ``adam`` optimiser runs it (the structure of its state, for warm starts).
ADAM = adam_transform()

LOSS_NAMES = ("content", "style", "tv", "total")


class Recipe(NamedTuple):
    """The part of a run fixed at compile time (static under ``jit``).

    Attributes:
      content: content layers.
      style: style layers.
      tv_reduction: ``"mean"``, ``"sum"`` or ``"nine"`` (see :func:`jaxstyle.losses.tv_loss`).
      optimizer: a name in :data:`jaxstyle.optimizers.OPTIMIZERS`: ``"adam"``, ``"lbfgs"``
        (Optax's, zoom line search) or ``"lbfgs-fixed"`` (PyTorch's, fixed steps).
      lbfgs_memory: past steps L-BFGS keeps.
      lbfgs_step: ``lbfgs-fixed``'s step length (PyTorch's ``lr``).
      lbfgs_first_step: ``lbfgs-fixed``'s first move at any pixel, in network units
        (``None``: PyTorch's first step; :func:`jaxstyle.lbfgs.fixed_lbfgs`).
      pixel_bounds: ``(lo, hi)`` per channel in network units: every step ends inside
        them (the pixel range [0, 1]); ``None``: the image is clipped only when written.
      style_losses: the style losses computed (names in :data:`jaxstyle.losses.STYLE_LOSSES`,
        in its order): a batch's settings choose among them with ``LossWeights.style_loss``.
      adam_b2: Adam's ``b2``.
      remat: ``"none"``, ``"blocks"`` or ``"bands"`` (:mod:`jaxstyle.remat`); never
        ``"auto"``: the planner resolves that.
      space_mesh: the mesh whose ``space`` axis splits the image's rows
        (:mod:`jaxstyle.spatial`); ``None``: the image is whole on its device.
      valid_rows: with ``space_mesh``, the image's own rows when its height was padded
        below them to split it (:func:`jaxstyle.spatial.pad_rows`); ``None``: every row is its own.
    """

    content: tuple[str, ...]
    style: tuple[str, ...]
    tv_reduction: str = "mean"
    optimizer: str = "adam"
    lbfgs_memory: int = 10
    lbfgs_step: float = 1.0
    lbfgs_first_step: float | None = None
    pixel_bounds: Bounds | None = None
    style_losses: tuple[str, ...] = ("gram",)
    adam_b2: float = 0.999
    remat: str = "none"
    space_mesh: Mesh | None = None
    valid_rows: int | None = None


class SolverState(NamedTuple):
    """Everything the optimisation carries from one step to the next.

    Attributes:
      image: the synthesized image in network input space, NHWC.
      opt_state: the optimiser's state (Adam's includes its learning rate).
      step: number of steps taken.
      average: exponential moving average of the iterates, before bias correction:
        ``a_n = d * a_{n-1} + (1 - d) * x_n`` with ``a_{-1} = 0``.
      average_bias: ``d ** (n + 1)``; the averaged image is ``a_n / (1 - d ** (n + 1))``.
      ema_decay: ``d`` (0: the average is the last iterate).
      tol: relative decrease below which the run stops (0: never).
      last_total: total loss before the previous step (``inf`` before the first).
      diverged_at: step at which the loss or image stopped being finite (-1: never).
      converged_at: step at which the loss stopped decreasing by ``tol`` (-1: never).
    """

    image: Array
    opt_state: optax.OptState
    step: Array
    average: Array
    average_bias: Array
    ema_decay: Array
    tol: Array
    last_total: Array
    diverged_at: Array
    converged_at: Array


class Diverged(Exception):
    """The loss or the image became NaN or infinite at ``step``."""

    def __init__(self, step: int, losses: dict[str, float]) -> None:
        self.step, self.losses = step, losses
        super().__init__(f"diverged at step {step} (total loss {losses['total']})")


def network_features(
    graphdef: nnx.GraphDef, params: nnx.State, image: Array, layers: Recipe
) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """Activations of ``image`` at the content layers and at the style layers."""
    model = nnx.merge(graphdef, params)
    acts = model(image, layers.content + layers.style)
    return tuple(acts[n] for n in layers.content), tuple(acts[n] for n in layers.style)


def objective_features(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    image: Array,
    recipe: Recipe,
    guides: tuple[Array, ...] | None = None,
) -> tuple[tuple[Array, ...], tuple[LayerStatistics, ...]]:
    """What the losses of ``image`` read: content features, and the style layers'
    :data:`~jaxstyle.losses.LayerStatistics` for ``recipe.style_losses``, computed as
    ``recipe.remat`` says (:mod:`jaxstyle.remat`: the same values, less memory kept for
    the backward pass) and over the devices of ``recipe.space_mesh`` (:mod:`jaxstyle.spatial`).
    ``guides``: the guidance channels at each style layer, ``(N, h, w, R)``
    (:attr:`~jaxstyle.losses.Targets.guides`), or ``None``."""
    losses = recipe.style_losses
    by_layer = None if guides is None else dict(zip(recipe.style, guides, strict=True))
    if recipe.space_mesh is not None:
        if recipe.remat == "bands":
            raise ValueError("remat 'bands' scans over the image's rows and cannot run with them split")
        model = nnx.merge(graphdef, params)
        content, style = split_features(
            model,
            image,
            recipe.space_mesh,
            recipe.content,
            recipe.style,
            losses,
            recipe.remat,
            recipe.valid_rows,
            by_layer,
        )
        return tuple(content[n] for n in recipe.content), tuple(style[n] for n in recipe.style)
    if recipe.remat == "none":
        content, style = network_features(graphdef, params, image, recipe)
        layer_guides = guides or (None,) * len(style)
        return content, tuple(layer_statistics(f, losses, g) for f, g in zip(style, layer_guides, strict=True))
    model = nnx.merge(graphdef, params)
    if recipe.remat == "blocks":
        content, style = block_features(model, image, recipe.content, recipe.style, losses, by_layer)
    elif recipe.remat == "bands":
        content, style = banded_network_features(model, image, recipe.content, recipe.style, losses, by_layer)
    else:
        raise ValueError(f"remat must be one of {', '.join(REMAT_MODES)}, not {recipe.remat!r}")
    return tuple(content[n] for n in recipe.content), tuple(style[n] for n in recipe.style)


def content_targets(graphdef: nnx.GraphDef, params: nnx.State, image: Array, recipe: Recipe) -> tuple[Array, ...]:
    """Features of the content image at each content layer (computed as ``recipe.remat`` says:
    with ``bands``, the first blocks' full-size activations never exist here either)."""
    return objective_features(graphdef, params, image, recipe._replace(style=()))[0]


def style_grams(graphdef: nnx.GraphDef, params: nnx.State, image: Array, recipe: Recipe) -> tuple[Array, ...]:
    """Gram matrices of a style image at each style layer, each ``(1, C, C)``."""
    return tuple(gram_matrix(f) for f in network_features(graphdef, params, image, recipe._replace(content=()))[1])


content_targets_jit = jax.jit(content_targets, static_argnames=("graphdef", "recipe"))
style_grams_jit = jax.jit(style_grams, static_argnames=("graphdef", "recipe"))


def style_statistics(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    image: Array,
    recipe: Recipe,
    guides: tuple[Array, ...] | None = None,
) -> tuple[LayerStatistics, ...]:
    """The :data:`~jaxstyle.losses.LayerStatistics` of a style image at each style layer, for
    ``recipe.style_losses`` (computed as ``recipe.remat`` says, as :func:`content_targets`);
    ``guides`` restrict them to a part of the image (``--style-image-masks``)."""
    return objective_features(graphdef, params, image, recipe._replace(content=()), guides)[1]


style_statistics_jit = jax.jit(style_statistics, static_argnames=("graphdef", "recipe"))


def blend_statistics(stats: Any, blend: Array) -> Any:
    """``sum_s b_s * X_s`` for every statistic: leaves are ``(S, ...)``, ``blend`` is ``(T, S)`` or ``(S,)``.

    Several style images give one target, the blend of their Gram matrices as in
    neural-style's ``-style_blend_weights``, or of their means and second moments as in
    style-transfer-pytorch (whose covariance then follows from the blended moments):
    every registered statistic is linear in the image's contributions
    (:class:`jaxstyle.losses.StyleLoss`).
    """
    return jax.tree.map(lambda x: jnp.tensordot(blend, x, axes=1), stats)


def recipe_style_targets(stats: tuple[LayerStatistics, ...], recipe: Recipe) -> dict[str, tuple[Any, ...]]:
    """:attr:`~jaxstyle.losses.Targets.style` from (blended) statistics at each style layer
    (:func:`jaxstyle.losses.style_targets`: W2's covariance and its square root, once)."""
    return style_targets(stats, recipe.style_losses)


style_targets_jit = jax.jit(recipe_style_targets, static_argnames=("recipe",))


def compute_targets(
    graphdef: nnx.GraphDef, params: nnx.State, content_image: Array, style_image: Array, recipe: Recipe
) -> Targets:
    """Content features of ``content_image`` and the style targets of ``style_image``."""
    style = recipe_style_targets(style_statistics(graphdef, params, style_image, recipe), recipe)
    return Targets(content=content_targets(graphdef, params, content_image, recipe), style=style)


compute_targets_jit = jax.jit(compute_targets, static_argnames=("graphdef", "recipe"))


def objective(
    image: Array, graphdef: nnx.GraphDef, params: nnx.State, recipe: Recipe, targets: Targets, weights: LossWeights
) -> tuple[Array, dict[str, Array]]:
    """``(total loss, {content, style, tv, total})`` of ``image``; with an edit target, of the
    image with the pixels outside the edit mask the content's (:func:`~jaxstyle.losses.edited_image`)."""
    image = edited_image(image, targets.edit)
    content_features, style_stats = objective_features(graphdef, params, image, recipe, targets.guides)
    terms = loss_terms(
        image,
        content_features,
        style_stats,
        targets,
        weights,
        recipe.tv_reduction,
        recipe.style_losses,
        recipe.valid_rows,
    )
    return terms["total"], terms


def total_loss(
    image: Array, graphdef: nnx.GraphDef, params: nnx.State, recipe: Recipe, targets: Targets, weights: LossWeights
) -> Array:
    """The total loss of ``image`` alone (what L-BFGS's line search evaluates)."""
    return objective(image, graphdef, params, recipe, targets, weights)[0]


def init_state(
    image: Array,
    learning_rate: float | Array,
    ema_decay: float | Array = 0.0,
    tol: float | Array = 0.0,
    recipe: Recipe | None = None,
    value_and_grad: tuple[Array, Array] | None = None,
) -> SolverState:
    """The initial state for ``image`` under ``recipe``'s optimiser (default: Adam);
    learning rate, EMA decay and tolerance are array leaves.

    Optax's L-BFGS needs ``value_and_grad``, the total loss and its gradient at ``image``
    (see :func:`start_state`): its line search stores them for the point it accepts,
    and each step reads them from the state instead of evaluating them again.
    """
    optimizer = adam() if recipe is None else optimizer_of(recipe)
    at_image = None if value_and_grad is None else (lambda: value_and_grad)
    return solver_state(image, optimizer.init(image, learning_rate, at_image), ema_decay, tol)


def solver_state(image: Array, opt_state: optax.OptState, ema_decay: float | Array, tol: float | Array) -> SolverState:
    """A :class:`SolverState` before the first step, with the optimiser's state ``opt_state``."""
    dtype = image.dtype
    decay = jnp.asarray(ema_decay, dtype)
    return SolverState(
        image=image,
        opt_state=opt_state,
        step=jnp.zeros((), jnp.int32),
        average=(1 - decay) * image,
        average_bias=decay,
        ema_decay=decay,
        tol=jnp.asarray(tol, dtype),
        last_total=jnp.asarray(jnp.inf, dtype),
        diverged_at=jnp.full((), -1, jnp.int32),
        converged_at=jnp.full((), -1, jnp.int32),
    )


def start_state(
    graphdef: nnx.GraphDef,
    recipe: Recipe,
    params: nnx.State,
    targets: Targets,
    weights: LossWeights,
    image: Array,
    learning_rate: float | Array,
    ema_decay: float | Array = 0.0,
    tol: float | Array = 0.0,
) -> SolverState:
    """:func:`init_state` for ``recipe``'s optimiser, which may evaluate the total loss and its
    gradient at ``image`` (L-BFGS's line search does; Adam does not)."""

    def value_and_grad() -> tuple[Array, Array]:
        return jax.value_and_grad(total_loss)(image, graphdef, params, recipe, targets, weights)

    opt_state = optimizer_of(recipe).init(image, learning_rate, value_and_grad)
    return solver_state(image, opt_state, ema_decay, tol)


def replace_named(tree: Any, **values: Any) -> Any:
    """``tree`` with every leaf whose field is named like a keyword replaced by its value (all occurrences)."""

    def pick(path: tuple, leaf: Any) -> Any:
        return values.get(getattr(path[-1], "name", None), leaf)

    return jax.tree_util.tree_map_with_path(pick, tree)


def warm_started_adam(previous: optax.OptState, fresh: optax.OptState) -> optax.OptState:
    """``fresh`` (an Adam state at the next scale) with ``previous``'s step count and moments.

    The first moment is resized bicubically and the second bilinearly, clipped at 0,
    to ``fresh``'s image shape, as style-transfer-pytorch's ``scale_adam`` does
    (``jax.image.resize``'s cubic is Keys' a = -0.5 where PyTorch's is a = -0.75).
    Leading batch axes, equal in both, are left as they are. The state is read and
    written by field name (``mu``, ``nu``, ``count``), not by position.
    """
    shape = optax.tree.get(fresh, "mu").shape
    mu = jax.image.resize(optax.tree.get(previous, "mu"), shape, "cubic")
    nu = jnp.maximum(jax.image.resize(optax.tree.get(previous, "nu"), shape, "linear"), 0)
    count = optax.tree.get_all_with_path(previous, "count")[0][1]  # every count of an Adam state is the same
    return replace_named(fresh, mu=mu, nu=nu, count=count)


warm_started_adam_jit = jax.jit(warm_started_adam)


def averaged_image(state: SolverState) -> Array:
    """The bias-corrected moving average ``a_n / (1 - d**(n+1))`` (the last iterate when ``d = 0``).

    Works on a batch of states too (leading axes on every leaf).
    """
    bias = state.average_bias
    return state.average / (1 - bias.reshape(bias.shape + (1,) * (state.average.ndim - bias.ndim)))


def optimizer_step(
    graphdef: nnx.GraphDef,
    recipe: Recipe,
    params: nnx.State,
    targets: Targets,
    weights: LossWeights,
    state: SolverState,
) -> tuple[SolverState, dict[str, Array]]:
    """One step of ``recipe``'s optimiser (:mod:`jaxstyle.optimizers`); returns the new state
    and the losses *before* the step.

    A run that has diverged or converged no longer moves: a step whose loss or new
    image is not finite is not taken and ``diverged_at`` records it; a step whose loss
    fell by less than ``tol * |previous loss|`` since the step before is not taken and
    ``converged_at`` records it.
    """

    def loss(image: Array) -> tuple[Array, dict[str, Array]]:
        return objective(image, graphdef, params, recipe, targets, weights)

    updates, opt_state, terms = optimizer_of(recipe).step(state.image, state.opt_state, loss)
    total = terms["total"]
    image = optax.apply_updates(state.image, updates)
    if recipe.pixel_bounds is not None:  # exactly inside: x + (clip(x + u) - x) may round past a bound
        image = clip_to(image, recipe.pixel_bounds)
    decay = state.ema_decay
    moved = state._replace(
        image=image,
        opt_state=opt_state,
        step=state.step + 1,
        average=decay * state.average + (1 - decay) * image,
        average_bias=decay * state.average_bias,
        last_total=total,
    )
    running = (state.diverged_at < 0) & (state.converged_at < 0)
    stalled = (state.tol > 0) & (state.last_total - total < state.tol * jnp.abs(state.last_total))
    finite = jnp.isfinite(total) & jnp.all(jnp.isfinite(image))
    advance = running & ~stalled & finite
    new = jax.tree.map(lambda n, o: jnp.where(advance, n, o), moved, state)
    new = new._replace(
        diverged_at=jnp.where(running & ~stalled & ~finite, state.step, state.diverged_at),
        converged_at=jnp.where(running & stalled, state.step, state.converged_at),
    )
    return new, terms


def chunk_loop(
    step: Callable[[Any], tuple[Any, dict[str, Array]]],
    state: Any,
    length: int,
    steps: int | Array | None = None,
    running: Callable[[Any], Array] | None = None,
) -> tuple[Any, dict[str, Array], Array]:
    """``state`` after ``steps`` applications of ``step`` in one ``while`` loop of at most ``length``.

    ``length`` is static: it fixes the compiled program and the losses' shape
    ``(length, ...)``; ``steps`` (default ``length``) is traced, so chunks of any length up
    to it share one compilation. Steps past ``steps`` are never run: the state is left
    bit for bit as it is, and their rows of the losses are zeros. With ``running``, the
    loop also ends once ``running(state)`` is false (after at least one step, so that a
    chunk always reports the losses of the state it starts from). Returns the state, the
    losses, and how many steps ran.
    """
    losses = jax.tree.map(lambda s: jnp.zeros((length, *s.shape), s.dtype), jax.eval_shape(step, state)[1])
    last = length if steps is None else jnp.minimum(steps, length)

    def go_on(carry: tuple[Array, Any, dict[str, Array]]) -> Array:
        i, st, _ = carry
        return (i < last) & ((i == 0) | running(st)) if running is not None else i < last

    def body(carry: tuple[Array, Any, dict[str, Array]]) -> tuple[Array, Any, dict[str, Array]]:
        i, st, out = carry
        st, terms = step(st)
        return i + 1, st, jax.tree.map(lambda rows, t: rows.at[i].set(t), out, terms)

    ran, state, losses = jax.lax.while_loop(go_on, body, (jnp.zeros((), jnp.int32), state, losses))
    return state, losses, ran


def run_chunk(
    graphdef: nnx.GraphDef,
    recipe: Recipe,
    num_steps: int,
    params: nnx.State,
    targets: Targets,
    weights: LossWeights,
    state: SolverState,
    steps: int | Array | None = None,
) -> tuple[SolverState, dict[str, Array]]:
    """``steps`` optimiser steps (default ``num_steps``) in one compiled loop of at most
    ``num_steps`` (static; see :func:`chunk_loop`); losses come back with shape
    ``(num_steps,)``, zeros past ``steps``."""

    def one(carry: SolverState) -> tuple[SolverState, dict[str, Array]]:
        return optimizer_step(graphdef, recipe, params, targets, weights, carry)

    state, losses, _ = chunk_loop(one, state, num_steps, steps)
    return state, losses


run_chunk_jit = jax.jit(run_chunk, static_argnames=("graphdef", "recipe", "num_steps"))
# The same with the input state donated: the new state is written into its buffers
# (compiled memory analysis: alias bytes = the state's), for callers that drop the old state.
run_chunk_donated = jax.jit(run_chunk, static_argnames=("graphdef", "recipe", "num_steps"), donate_argnames=("state",))
