"""Every optimiser in the table (:data:`jaxstyle.optimizers.OPTIMIZERS`) over one interface,
in the manner of optax's ``alias_test.py``: each reduces a small smooth problem, keeps the
image's shape and dtype, and stays finite."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.optimizers import OPTIMIZERS, optimizer_of
from jaxstyle.solve import Recipe

SHAPE = (1, 4, 5, 3)  # an NHWC image
STEPS = 30
# What each optimiser runs with: Adam's learning rate; L-BFGS's ignore it.
LEARNING_RATE = 0.05


def problem(dtype):
    """``f(x) = |A x - b|^2 / 2 + 0.05 sum x^4`` over the flattened image: smooth and curved."""
    rng = np.random.default_rng(3)
    n = int(np.prod(SHAPE))
    a = jnp.asarray(rng.normal(size=(n + 5, n)) / np.sqrt(n), dtype)
    b = jnp.asarray(rng.normal(size=n + 5), dtype)
    x0 = jnp.asarray(rng.uniform(-0.5, 0.5, size=SHAPE), dtype)

    def loss(x):
        total = 0.5 * jnp.sum(jnp.square(a @ x.reshape(-1) - b)) + 0.05 * jnp.sum(x**4)
        return total, {"total": total}

    return loss, x0


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_reduces_a_small_problem(name, dtype):
    loss, x = problem(dtype)
    optimizer = optimizer_of(Recipe((), (), optimizer=name, lbfgs_memory=5))
    state = optimizer.init(x, LEARNING_RATE, lambda: jax.value_and_grad(lambda y: loss(y)[0])(x))

    @jax.jit
    def step(x, state):
        updates, state, terms = optimizer.step(x, state, loss)
        return x + updates, state, terms["total"]

    first = float(loss(x)[0])
    for i in range(STEPS):
        x, state, before = step(x, state)
        assert np.isfinite(float(before))
        if i == 0:
            assert float(before) == pytest.approx(first, rel=1e-6)  # terms are taken before the step
    assert x.shape == SHAPE and x.dtype == dtype
    assert np.isfinite(np.asarray(x)).all()
    assert float(loss(x)[0]) < 0.5 * first
