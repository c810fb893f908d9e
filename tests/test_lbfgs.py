"""The fixed-step L-BFGS (:mod:`jaxstyle.lbfgs`) on a small smooth problem, in float64.

Unbounded, against ``torch.optim.LBFGS`` itself; bounded, against a list-based
reference written here from PyTorch's code with the projection added.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxstyle.lbfgs import fixed_lbfgs

N, MEMORY, STEPS = 12, 4, 25


def problem(rng):
    """``f(x) = |A x - b|^2 + 0.1 sum x^4``: smooth, curved, with its minimum outside [-0.3, 0.3]."""
    a = rng.normal(size=(N + 3, N))
    b = rng.normal(size=N + 3) * 3
    x0 = rng.uniform(-0.2, 0.2, size=N)
    return a, b, x0


def f_jax(a, b):
    return lambda x: jnp.sum((a @ x - b) ** 2) + 0.1 * jnp.sum(x**4)


def run_jax(a, b, x0, bounds=None, lr=1.0):
    f = jax.jit(jax.value_and_grad(f_jax(jnp.asarray(a), jnp.asarray(b))))
    opt = fixed_lbfgs(MEMORY, lr, bounds)
    x = jnp.asarray(x0)
    state = opt.init(x)
    xs, values = [], []
    for _ in range(STEPS):
        value, grad = f(x)
        u, state = opt.update(grad, state, x)
        x = optax.apply_updates(x, u)
        xs.append(np.asarray(x))
        values.append(float(value))
    return np.asarray(xs), np.asarray(values)


def run_torch(a, b, x0, lr=1.0):
    a, b = torch.from_numpy(a), torch.from_numpy(b)
    x = torch.tensor(x0, requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=lr, max_iter=1, history_size=MEMORY)
    xs, values = [], []

    def closure():
        opt.zero_grad()
        loss = torch.sum((a @ x - b) ** 2) + 0.1 * torch.sum(x**4)
        loss.backward()
        values.append(float(loss.detach()))
        return loss

    for _ in range(STEPS):
        opt.step(closure)
        xs.append(x.detach().numpy().copy())
    return np.asarray(xs), np.asarray(values)


def run_reference_projected(a, b, x0, lo, hi, lr=1.0):
    """PyTorch's L-BFGS step (lists, a history that drops its oldest pair), each update
    projected onto ``[lo, hi]`` and the projected update kept as the pair's ``s``."""

    def value_grad(x):
        r = a @ x - b
        return float(r @ r + 0.1 * np.sum(x**4)), 2 * a.T @ r + 0.4 * x**3

    x, xs, values = x0.copy(), [], []
    dirs, stps, ros, h_diag, prev_g, prev_u = [], [], [], 1.0, None, None
    for k in range(STEPS):
        value, g = value_grad(x)
        values.append(value)
        if k > 0:
            y, s = g - prev_g, prev_u
            ys = y @ s
            if ys > 1e-10:
                if len(dirs) == MEMORY:
                    dirs.pop(0), stps.pop(0), ros.pop(0)
                dirs.append(y), stps.append(s), ros.append(1 / ys)
                h_diag = ys / (y @ y)
        q, al = -g, [0.0] * len(dirs)
        for i in range(len(dirs) - 1, -1, -1):
            al[i] = (stps[i] @ q) * ros[i]
            q = q - al[i] * dirs[i]
        r = q * h_diag
        for i in range(len(dirs)):
            r = r + (al[i] - (dirs[i] @ r) * ros[i]) * stps[i]
        t = min(1.0, 1.0 / np.abs(g).sum()) * lr if k == 0 else lr
        u = np.clip(x + t * r, lo, hi) - x
        prev_g, prev_u = g, u
        x = x + u
        xs.append(x.copy())
    return np.asarray(xs), np.asarray(values)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("lr", [1.0, 0.5])
def test_unbounded_it_is_torch_lbfgs_without_line_search(rng, lr):
    a, b, x0 = problem(rng)
    xs, values = run_jax(a, b, x0, lr=lr)
    xs_ref, values_ref = run_torch(a, b, x0, lr=lr)
    np.testing.assert_allclose(values, values_ref, rtol=1e-10)
    np.testing.assert_allclose(xs, xs_ref, rtol=1e-10, atol=1e-12)
    assert values[-1] < 0.6 * values[0]  # the least-squares residual keeps it well above 0


def test_bounded_it_projects_each_step_and_remembers_the_projected_step(rng):
    a, b, x0 = problem(rng)
    lo, hi = -0.3, 0.3
    xs, values = run_jax(a, b, x0, bounds=((lo,), (hi,)))
    xs_ref, values_ref = run_reference_projected(a, b, x0, lo, hi)
    np.testing.assert_allclose(values, values_ref, rtol=1e-10)
    np.testing.assert_allclose(xs, xs_ref, rtol=1e-10, atol=1e-12)
    assert np.all(xs >= lo) and np.all(xs <= hi)
    assert np.any(np.isclose(xs[-1], lo)) and np.any(np.isclose(xs[-1], hi))  # the bounds bind
    free, _ = run_jax(a, b, x0)
    assert np.abs(free[-1]).max() > hi  # without them, the minimum lies outside
    # What the bounds are for: the image optimised inside them beats the free one clipped afterwards.
    f = f_jax(a, b)
    assert f(xs[-1]) < f(np.clip(free[-1], lo, hi))  # 164.1 against 174.6


def test_first_step_moves_the_farthest_coordinate_by_exactly_first_step(rng):
    a, b, x0 = problem(rng)
    grad = jax.grad(f_jax(jnp.asarray(a), jnp.asarray(b)))(jnp.asarray(x0))
    for first_step in (0.01, 0.1):
        u, _ = fixed_lbfgs(MEMORY, 1.0, first_step=first_step).update(grad, fixed_lbfgs(MEMORY).init(x0), x0)
        np.testing.assert_allclose(np.abs(u).max(), first_step, rtol=1e-14)
        np.testing.assert_allclose(u, -grad * first_step / np.abs(grad).max(), rtol=1e-14)  # along -g
    u_torch, _ = fixed_lbfgs(MEMORY).update(grad, fixed_lbfgs(MEMORY).init(x0), x0)
    np.testing.assert_allclose(u_torch, -grad * min(1.0, 1.0 / np.abs(grad).sum()), rtol=1e-14)


def test_lbfgs_first_step_is_given_in_8_bit_levels_of_the_weights_convention():
    from jaxstyle.preprocess import CAFFE, TORCHVISION

    assert CAFFE.level() == 1.0  # 0-255 units
    np.testing.assert_allclose(TORCHVISION.level(), np.mean([1 / 255 / s for s in (0.229, 0.224, 0.225)]))
