"""L-BFGS with fixed steps and no line search, as ``torch.optim.LBFGS`` runs it in the peers.

neural-style (Lua and neural-style-pt) and pastiche call PyTorch's L-BFGS without a
line search: every step evaluates the loss and its gradient once, at the current
image, and moves by a fixed multiple of the quasi-Newton direction. This module is
that algorithm as an Optax transformation, step for step (``torch/optim/lbfgs.py``,
``max_iter`` 1 per call, ``tolerance_grad`` 1e-7, ``tolerance_change`` 1e-9), so that
it slots into the same step as Adam: ``update(grad, state, params)``.

One update, with gradient ``g_k`` at ``x_k``:

* curvature pair: ``s = x_k - x_{k-1}`` (the last update), ``y = g_k - g_{k-1}``; kept when
  ``y·s > 1e-10``, the oldest dropped beyond ``memory``; then ``γ = y·s / y·y``;
* direction ``d = -H g_k`` by the two-loop recursion (Nocedal and Wright, Algorithm 7.4)
  with ``H_0 = γ I`` (``γ = 1`` before the first pair);
* step ``t = lr`` (the first: ``min(1, 1 / ||g_0||_1) · lr``); update ``u = t d``;
* no move where ``max |g_k| <= 1e-7`` or ``g_k·d > -1e-9`` (PyTorch's two tolerances).

Departures, options PyTorch does not have:

* ``bounds``: the update is projected, ``u = clip(x_k + t d, lo, hi) - x_k``, and the
  pair's ``s`` is that projected update, the step actually taken. That keeps the image
  inside the pixel range, so that the file written is the image optimised rather than a
  clipped copy of it.
* ``first_step``: the first step is ``t = first_step / max |g_0|``, a move of at most
  ``first_step`` (network units) at any pixel. PyTorch's first step, ``1 / ||g_0||_1``,
  moves a style-transfer image by far less than float32 resolves in the gradient: the
  first pair's ``y = g_1 - g_0`` is then rounding noise, ``γ`` with it, and the following
  steps can throw the loss up by orders of magnitude before L-BFGS recovers, where a
  first move of a few pixel levels lets float32 follow float64 (measured on neural-style's
  objective: bench/RESULTS.md, "Measurements behind the code").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

# torch.optim.LBFGS's defaults, which pastiche and neural-style-pt keep (neural-style-pt
# sets both tolerances to -1; they matter only at a stationary point).
TOLERANCE_GRAD = 1e-7
TOLERANCE_CHANGE = 1e-9
# PyTorch's curvature condition: a pair is kept only where y·s exceeds this.
CURVATURE_MIN = 1e-10

Bounds = tuple[tuple[float, ...], tuple[float, ...]]


def clip_to(x: Array, bounds: Bounds) -> Array:
    """``x`` clipped to ``bounds`` ``(lo, hi)``, given per channel (the last axis)."""
    shape = (1,) * (x.ndim - 1) + (-1,)
    lo, hi = (jnp.asarray(b, x.dtype).reshape(shape) for b in bounds)
    return jnp.clip(x, lo, hi)


class FixedLbfgsState(NamedTuple):
    """What the fixed-step L-BFGS carries between steps.

    Attributes:
      count: updates made (int32).
      s, y: the curvature pairs, ``(memory, *shape)``, in a ring: slot ``head - 1`` newest.
      rho: ``1 / y·s`` of each slot, ``(memory,)``; 0 marks an empty slot (a no-op below).
      head: the slot the next pair goes to.
      gamma: the initial inverse-Hessian scale ``γ``.
      prev_grad: the gradient at the last update.
      prev_update: the last update ``u`` (the next pair's ``s``).
    """

    count: Array
    s: Array
    y: Array
    rho: Array
    head: Array
    gamma: Array
    prev_grad: Array
    prev_update: Array


def two_loop(grad: Array, s: Array, y: Array, rho: Array, head: Array, gamma: Array) -> Array:
    """``d = -H g``: the L-BFGS two-loop recursion over the ring, newest pair first.

    ``q = -g``; newest to oldest: ``a_i = rho_i s_i·q``, ``q -= a_i y_i``; ``r = γ q``;
    oldest to newest: ``b_i = rho_i y_i·r``, ``r += (a_i - b_i) s_i``. PyTorch's order of
    operations, so that float64 runs agree with it to rounding.
    """
    memory = rho.shape[0]

    def newest_first(i: int, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        q, alpha = carry
        j = (head - 1 - i) % memory
        a = jnp.vdot(s[j], q) * rho[j]
        return q - a * y[j], alpha.at[j].set(a)

    q, alpha = jax.lax.fori_loop(0, memory, newest_first, (-grad, jnp.zeros_like(rho)))

    def oldest_first(i: int, r: Array) -> Array:
        j = (head + i) % memory
        b = jnp.vdot(y[j], r) * rho[j]
        return r + (alpha[j] - b) * s[j]

    return jax.lax.fori_loop(0, memory, oldest_first, q * gamma)


def fixed_lbfgs(
    memory: int, learning_rate: float = 1.0, bounds: Bounds | None = None, first_step: float | None = None
) -> optax.GradientTransformation:
    """PyTorch's L-BFGS without line search (see the module docstring), keeping ``memory`` pairs.

    ``learning_rate`` is PyTorch's ``lr``, the fixed step length; ``bounds`` ``(lo, hi)``
    per channel (last axis), or ``None``; ``first_step`` the largest move of the first
    step, or ``None`` for PyTorch's ``min(1, 1 / ||g_0||_1) · lr``.
    """

    def init(params: Array) -> FixedLbfgsState:
        zeros = jnp.zeros_like(params)
        ring = jnp.zeros((memory, *params.shape), params.dtype)
        return FixedLbfgsState(
            count=jnp.zeros((), jnp.int32),
            s=ring,
            y=ring,
            rho=jnp.zeros((memory,), params.dtype),
            head=jnp.zeros((), jnp.int32),
            gamma=jnp.ones((), params.dtype),
            prev_grad=zeros,
            prev_update=zeros,
        )

    def update(grad: Array, state: FixedLbfgsState, params: Array | None = None) -> tuple[Array, FixedLbfgsState]:
        first = state.count == 0
        y = grad - state.prev_grad
        s = state.prev_update
        ys = jnp.vdot(y, s)
        keep = ~first & (ys > CURVATURE_MIN)
        head = state.head
        # One slot written (where a pair is kept, else rewritten as it was): no copy of the ring.
        s_ring = state.s.at[head].set(jnp.where(keep, s, state.s[head]))
        y_ring = state.y.at[head].set(jnp.where(keep, y, state.y[head]))
        rho = state.rho.at[head].set(jnp.where(keep, 1 / jnp.where(keep, ys, 1), state.rho[head]))
        gamma = jnp.where(keep, ys / jnp.where(keep, jnp.vdot(y, y), 1), state.gamma)
        head = jnp.where(keep, (head + 1) % memory, head)
        d = two_loop(grad, s_ring, y_ring, rho, head, gamma)
        if first_step is None:
            t_first = jnp.minimum(1.0, 1.0 / jnp.sum(jnp.abs(grad))) * learning_rate
        else:
            t_first = first_step / jnp.max(jnp.abs(grad))
        t = jnp.where(first, t_first, learning_rate).astype(grad.dtype)
        move = (jnp.max(jnp.abs(grad)) > TOLERANCE_GRAD) & (jnp.vdot(grad, d) <= -TOLERANCE_CHANGE)
        u = t * d
        if bounds is not None:
            if params is None:
                raise ValueError("fixed_lbfgs with bounds needs the params")
            u = clip_to(params + u, bounds) - params
        u = jnp.where(move, u, jnp.zeros_like(u))
        new = FixedLbfgsState(
            count=state.count + 1,
            s=s_ring,
            y=y_ring,
            rho=rho,
            head=head,
            gamma=gamma,
            prev_grad=grad,
            prev_update=u,
        )
        return u, new

    return optax.GradientTransformation(init, update)
