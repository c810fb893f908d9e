"""Many settings in one compiled run: the batched (vmapped) solver. Pure, no I/O.

A batch of K settings shares the network and the targets. What differs per setting is
an array leaf with a leading axis of length K: the loss weights, the learning rate (in
the optimiser state), the EMA decay and tolerance (in the solver state), and which
content image and style target the setting uses. Targets are stacked once per distinct
image or style blend (``Targets`` leaves with a leading axis) and selected by index
inside the step, so they are neither recomputed nor copied per setting.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from jaxstyle.losses import LossWeights, Targets, TemporalTarget
from jaxstyle.solve import Recipe, SolverState, chunk_loop, content_targets, objective, optimizer_step, start_state
from jaxstyle.spatial import settings_vmap


class Setting(NamedTuple):
    """One setting's per-run values; in a batch every leaf has a leading axis K.

    Attributes:
      weights: its loss weights.
      content_index: which content image (index into the stacked content targets).
      style_index: which style target (index into the stacked style targets).
      temporal: a video frame's own temporal target (``None`` for still images).
    """

    weights: LossWeights
    content_index: Array
    style_index: Array
    temporal: TemporalTarget | None = None


def stack_content_targets(
    graphdef: nnx.GraphDef, params: nnx.State, contents: Array, recipe: Recipe
) -> tuple[Array, ...]:
    """Content features of every content image (``contents``: (Nc, 1, H, W, 3)), leading axis Nc."""
    return jax.vmap(lambda c: content_targets(graphdef, params, c, recipe))(contents)


stack_content_targets_jit = jax.jit(stack_content_targets, static_argnames=("graphdef", "recipe"))


def select_targets(
    stacked: Targets, content_index: Array, style_index: Array, temporal: TemporalTarget | None = None
) -> Targets:
    """The targets of one setting: ``stacked.content[l][content_index]``, and every leaf of every
    style loss's targets at ``style_index``; ``temporal`` is the setting's own (per-setting data,
    not shared). Guidance channels and the edit target belong to a content image (a video
    frame's masks are its own): ``[content_index]`` as the content features."""
    return Targets(
        content=tuple(t[content_index] for t in stacked.content),
        style=jax.tree.map(lambda t: t[style_index], stacked.style),
        temporal=temporal,
        guides=jax.tree.map(lambda t: t[content_index], stacked.guides),
        edit=jax.tree.map(lambda t: t[content_index], stacked.edit),
        strength=None if stacked.strength is None else stacked.strength[content_index],
    )


def setting_targets(stacked: Targets, setting: Setting) -> Targets:
    """:func:`select_targets` for ``setting``."""
    return select_targets(stacked, setting.content_index, setting.style_index, setting.temporal)


def init_batch(
    graphdef: nnx.GraphDef,
    recipe: Recipe,
    params: nnx.State,
    targets: Targets,
    settings: Setting,
    images: Array,
    learning_rates: Array,
    ema_decays: Array,
    tols: Array,
) -> SolverState:
    """Initial state of K settings from their images (K, 1, H, W, 3) and per-setting values (K,)."""

    def one(setting: Setting, image: Array, lr: Array, ema: Array, tol: Array) -> SolverState:
        t = setting_targets(targets, setting)
        return start_state(graphdef, recipe, params, t, setting.weights, image, lr, ema, tol)

    return settings_vmap(one, recipe.space_mesh)(settings, images, learning_rates, ema_decays, tols)


init_batch_jit = jax.jit(init_batch, static_argnames=("graphdef", "recipe"))


def batch_losses(
    graphdef: nnx.GraphDef, recipe: Recipe, params: nnx.State, targets: Targets, settings: Setting, images: Array
) -> dict[str, Array]:
    """``{content, style, tv, total}`` of each setting's image ``images[k]`` (K, 1, H, W, 3); each ``(K,)``."""

    def one(setting: Setting, image: Array) -> dict[str, Array]:
        t = setting_targets(targets, setting)
        return objective(image, graphdef, params, recipe, t, setting.weights)[1]

    return settings_vmap(one, recipe.space_mesh)(settings, images)


batch_losses_jit = jax.jit(batch_losses, static_argnames=("graphdef", "recipe"))


def run_batch_chunk(
    graphdef: nnx.GraphDef,
    recipe: Recipe,
    num_steps: int,
    params: nnx.State,
    targets: Targets,
    settings: Setting,
    state: SolverState,
    steps: int | Array | None = None,
) -> tuple[SolverState, dict[str, Array], Array]:
    """Up to ``steps`` steps (default ``num_steps``) of all K settings: a ``vmap`` of
    :func:`optimizer_step` in one loop of at most ``num_steps`` (static: every chunk of a
    stage shares one compilation; :func:`~jaxstyle.solve.chunk_loop`).

    Each setting stops on its own when it diverges or converges, and the loop ends once
    every setting has stopped (the steps it skips would change nothing). Returns the
    state, the losses ``(num_steps, K)`` (zeros past the steps run) and the number of
    steps run. A batch of one (a single stylization) runs the step without ``vmap``:
    under ``vmap`` the data-dependent ``cond``s of L-BFGS's line search become
    ``select``s that compute both branches (the cost is in bench/RESULTS.md, "Measurements
    behind the code"); for Adam the two programs are the same.
    """

    def one(setting: Setting, st: SolverState) -> tuple[SolverState, dict[str, Array]]:
        t = setting_targets(targets, setting)
        return optimizer_step(graphdef, recipe, params, t, setting.weights, st)

    def running(st: SolverState) -> Array:
        return jnp.any((st.diverged_at < 0) & (st.converged_at < 0))

    if len(settings.content_index) == 1:
        first = jax.tree.map(lambda x: x[0], settings)
        final, losses, ran = chunk_loop(
            lambda st: one(first, st), jax.tree.map(lambda x: x[0], state), num_steps, steps, running
        )
        return jax.tree.map(lambda x: x[None], final), jax.tree.map(lambda x: x[:, None], losses), ran

    def batched(st: SolverState) -> tuple[SolverState, dict[str, Array]]:
        return settings_vmap(one, recipe.space_mesh)(settings, st)

    return chunk_loop(batched, state, num_steps, steps, running)


run_batch_chunk_jit = jax.jit(run_batch_chunk, static_argnames=("graphdef", "recipe", "num_steps"))
