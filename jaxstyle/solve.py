"""The optimisation: pixels of one image, optimised by Adam inside a jitted scan.

Everything here is pure and free of I/O, except :func:`solve`, the Python loop over
jitted chunks, which calls back to the shell for progress and snapshots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import Array

from jaxstyle.losses import LossWeights, Targets, gram_matrix, loss_terms

# The learning rate is read from the optimiser state (``inject_hyperparams``), so it
# is an array leaf like the loss weights: a new value never recompiles. The other
# hyperparameters stay Python floats (injected, they would become float64 arrays
# under x64 and promote a float32 run).
ADAM = optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps", "eps_root", "nesterov"))(learning_rate=0.1)

LOSS_NAMES = ("content", "style", "tv", "total")


class Layers(NamedTuple):
    """The layers a recipe reads (static: part of the compiled program)."""

    content: tuple[str, ...]
    style: tuple[str, ...]


class SolverState(NamedTuple):
    """Everything the optimisation carries from one step to the next.

    Attributes:
      image: the synthesized image in network input space, NHWC.
      opt_state: Adam's state, learning rate included.
      step: number of steps taken.
    """

    image: Array
    opt_state: optax.OptState
    step: Array


class Diverged(Exception):
    """The loss or the image became NaN or infinite at ``step``."""

    def __init__(self, step: int, losses: dict[str, float]) -> None:
        self.step, self.losses = step, losses
        super().__init__(f"diverged at step {step} (total loss {losses['total']})")


def network_features(
    graphdef: nnx.GraphDef, params: nnx.State, image: Array, layers: Layers
) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
    """Activations of ``image`` at the content layers and at the style layers."""
    model = nnx.merge(graphdef, params)
    acts = model(image, layers.content + layers.style)
    return tuple(acts[n] for n in layers.content), tuple(acts[n] for n in layers.style)


def compute_targets(
    graphdef: nnx.GraphDef, params: nnx.State, content_image: Array, style_image: Array, layers: Layers
) -> Targets:
    """Content features of ``content_image`` and Gram matrices of ``style_image``."""
    content, _ = network_features(graphdef, params, content_image, Layers(layers.content, ()))
    _, style = network_features(graphdef, params, style_image, Layers((), layers.style))
    return Targets(content=content, style_gram=tuple(gram_matrix(f) for f in style))


compute_targets_jit = jax.jit(compute_targets, static_argnames=("graphdef", "layers"))


def objective(
    image: Array, graphdef: nnx.GraphDef, params: nnx.State, layers: Layers, targets: Targets, weights: LossWeights
) -> tuple[Array, dict[str, Array]]:
    """``(total loss, {content, style, tv, total})`` of ``image``."""
    content_features, style_features = network_features(graphdef, params, image, layers)
    terms = loss_terms(image, content_features, style_features, targets, weights)
    return terms["total"], terms


def init_state(image: Array, learning_rate: float | Array) -> SolverState:
    """Adam's initial state for ``image``, with the learning rate as an array leaf."""
    opt_state = ADAM.init(image)
    lr = jnp.asarray(learning_rate, dtype=image.dtype)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": lr})
    return SolverState(image=image, opt_state=opt_state, step=jnp.zeros((), jnp.int32))


def adam_step(
    graphdef: nnx.GraphDef,
    layers: Layers,
    params: nnx.State,
    targets: Targets,
    weights: LossWeights,
    state: SolverState,
) -> tuple[SolverState, dict[str, Array]]:
    """One Adam step; returns the new state and the losses *before* the step."""
    grad_fn = jax.value_and_grad(objective, has_aux=True)
    (_, terms), grad = grad_fn(state.image, graphdef, params, layers, targets, weights)
    updates, opt_state = ADAM.update(grad, state.opt_state, state.image)
    image = optax.apply_updates(state.image, updates)
    return SolverState(image, opt_state, state.step + 1), terms


def run_chunk(
    graphdef: nnx.GraphDef,
    layers: Layers,
    num_steps: int,
    params: nnx.State,
    targets: Targets,
    weights: LossWeights,
    state: SolverState,
) -> tuple[SolverState, dict[str, Array]]:
    """``num_steps`` Adam steps in one ``lax.scan``; losses come back with shape ``(num_steps,)``."""

    def body(carry: SolverState, _: None) -> tuple[SolverState, dict[str, Array]]:
        return adam_step(graphdef, layers, params, targets, weights, carry)

    return jax.lax.scan(body, state, None, length=num_steps)


run_chunk_jit = jax.jit(run_chunk, static_argnames=("graphdef", "layers", "num_steps"))

ChunkCallback = Callable[[SolverState, dict[str, np.ndarray]], None]


def solve(
    graphdef: nnx.GraphDef,
    params: nnx.State,
    layers: Layers,
    targets: Targets,
    weights: LossWeights,
    state: SolverState,
    steps: int,
    chunk_size: int = 50,
    on_chunk: ChunkCallback | None = None,
) -> tuple[SolverState, dict[str, np.ndarray]]:
    """Run ``steps`` Adam steps as jitted chunks of ``chunk_size`` steps.

    After each chunk, ``on_chunk(state, chunk_losses)`` is called (progress bars,
    snapshots). A chunk of a new length compiles once; with ``steps`` a multiple of
    ``chunk_size`` there is one compilation in all.

    Returns:
      The final state and ``{content, style, tv, total}``, each of shape ``(steps,)``.

    Raises:
      Diverged: if a loss or the image stops being finite.
    """

    def check(state: SolverState, losses: dict[str, np.ndarray], done: int) -> None:
        bad = ~np.isfinite(losses["total"])
        if bad.any() or not bool(jnp.isfinite(state.image).all()):
            first = int(np.argmax(bad)) if bad.any() else len(bad) - 1
            raise Diverged(done - len(bad) + first, {k: float(v[first]) for k, v in losses.items()})
        if on_chunk is not None:
            on_chunk(state, losses)

    def chunk(state: SolverState, n: int) -> tuple[SolverState, dict[str, jax.Array]]:
        return run_chunk_jit(graphdef, layers, n, params, targets, weights, state)

    return run_in_chunks(chunk, state, steps, chunk_size, check)


def run_in_chunks(
    run: Callable[[Any, int], tuple[Any, dict[str, Array]]],
    state: Any,
    steps: int,
    chunk_size: int,
    after_chunk: Callable[[Any, dict[str, np.ndarray], int], None],
    to_host: Callable[[dict[str, Array]], dict[str, np.ndarray]] | None = None,
) -> tuple[Any, dict[str, np.ndarray]]:
    """The Python loop over jitted chunks shared by single runs and sweeps.

    ``run(state, n)`` advances ``n`` steps; ``after_chunk(state, losses, steps_done)``
    sees each chunk's losses on the host. Returns the final state and every loss
    concatenated along the step axis.
    """
    to_host = to_host or (lambda losses: {k: np.asarray(v) for k, v in losses.items()})
    trace: dict[str, list[np.ndarray]] = {name: [] for name in LOSS_NAMES}
    done = 0
    while done < steps:
        n = min(chunk_size, steps - done)
        state, losses = run(state, n)
        losses = to_host(losses)
        for name in LOSS_NAMES:
            trace[name].append(losses[name])
        done += n
        after_chunk(state, losses, done)
    return state, {name: np.concatenate(v) for name, v in trace.items()}
