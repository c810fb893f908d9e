"""Many settings in one compiled run: the batched (vmapped) solver. Pure, no I/O.

A batch of K settings shares the network and the targets. What differs per setting is
an array leaf with a leading axis of length K: the loss weights, the learning rate (in
the optimiser state), and which content and style image the setting uses. Targets are
stacked once per distinct image (``Targets`` leaves with a leading axis) and selected
by index inside the step, so they are neither recomputed nor copied per setting.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from jaxstyle.losses import LossWeights, Targets, gram_matrix
from jaxstyle.solve import Layers, SolverState, adam_step, init_state, network_features


class Setting(NamedTuple):
    """One setting's per-run values; in a batch every leaf has a leading axis K.

    Attributes:
      weights: its loss weights.
      content_index: which content image (index into the stacked content targets).
      style_index: which style image (index into the stacked style targets).
    """

    weights: LossWeights
    content_index: Array
    style_index: Array


class BatchState(NamedTuple):
    """Solver state of every setting, and the step at which each diverged (-1: never)."""

    solver: SolverState
    diverged_at: Array


def stack_targets(graphdef: nnx.GraphDef, params: nnx.State, contents: Array, styles: Array, layers: Layers) -> Targets:
    """Targets of every content image (``contents``: (Nc, 1, H, W, 3)) and style image.

    Returns ``Targets`` whose content leaves have a leading axis Nc and whose Gram
    leaves have a leading axis Ns.
    """
    content = jax.vmap(lambda c: network_features(graphdef, params, c, Layers(layers.content, ()))[0])(contents)
    style = jax.vmap(lambda s: network_features(graphdef, params, s, Layers((), layers.style))[1])(styles)
    style = tuple(jax.vmap(gram_matrix)(f) for f in style)
    return Targets(content=content, style_gram=style)


stack_targets_jit = jax.jit(stack_targets, static_argnames=("graphdef", "layers"))


def select_targets(stacked: Targets, content_index: Array, style_index: Array) -> Targets:
    """The targets of one setting: ``stacked.content[l][content_index]`` and likewise for styles."""
    return Targets(
        content=tuple(t[content_index] for t in stacked.content),
        style_gram=tuple(g[style_index] for g in stacked.style_gram),
    )


def init_batch(images: Array, learning_rates: Array) -> BatchState:
    """Initial state of K settings from their images (K, 1, H, W, 3) and learning rates (K,)."""
    solver = jax.vmap(init_state)(images, learning_rates)
    return BatchState(solver=solver, diverged_at=jnp.full(learning_rates.shape, -1, jnp.int32))


init_batch_jit = jax.jit(init_batch)


def guarded_step(
    graphdef: nnx.GraphDef,
    layers: Layers,
    params: nnx.State,
    targets: Targets,
    weights: LossWeights,
    state: BatchState,
) -> tuple[BatchState, dict[str, Array]]:
    """One Adam step of one setting that freezes the setting once it stops being finite.

    A setting whose loss or image becomes NaN or infinite keeps its last finite state
    and records the step in ``diverged_at``; it no longer moves.
    """
    new, terms = adam_step(graphdef, layers, params, targets, weights, state.solver)
    running = state.diverged_at < 0
    finite = jnp.isfinite(terms["total"]) & jnp.all(jnp.isfinite(new.image))
    keep = running & finite
    solver = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, state.solver)
    diverged_at = jnp.where(running & ~finite, state.solver.step, state.diverged_at)
    return BatchState(solver, diverged_at), terms


def run_batch_chunk(
    graphdef: nnx.GraphDef,
    layers: Layers,
    num_steps: int,
    params: nnx.State,
    targets: Targets,
    settings: Setting,
    state: BatchState,
) -> tuple[BatchState, dict[str, Array]]:
    """``num_steps`` steps of all K settings: ``lax.scan`` over a ``vmap`` of :func:`guarded_step`.

    Losses come back with shape ``(num_steps, K)``.
    """

    def one(setting: Setting, st: BatchState) -> tuple[BatchState, dict[str, Array]]:
        t = select_targets(targets, setting.content_index, setting.style_index)
        return guarded_step(graphdef, layers, params, t, setting.weights, st)

    def body(st: BatchState, _: None) -> tuple[BatchState, dict[str, Array]]:
        return jax.vmap(one)(settings, st)

    return jax.lax.scan(body, state, None, length=num_steps)


run_batch_chunk_jit = jax.jit(run_batch_chunk, static_argnames=("graphdef", "layers", "num_steps"))
