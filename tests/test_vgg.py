"""The hand-written gradients of VGG's convolution and max pooling against autodiff and PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxstyle.vgg import conv3x3, max_pool_2x2


def autodiff_max_pool(x):
    window = (1, 2, 2, 1)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID")


def with_ties(rng, shape):
    """Values on a coarse grid, half of them zero (as after a ReLU): many equal maxima per window."""
    return np.maximum(np.round(rng.normal(size=shape) * 2) / 2, 0.0)


@pytest.mark.parametrize("shape", [(1, 8, 10, 3), (2, 7, 9, 4), (1, 5, 3, 2)])
def test_max_pool_gradient_goes_to_the_first_maximum_like_pytorch(rng, shape):
    x = with_ties(rng, shape)
    n, h, w, c = shape
    dy = rng.normal(size=(n, h // 2, w // 2, c))
    y, vjp = jax.vjp(max_pool_2x2, jnp.asarray(x))
    (dx,) = vjp(jnp.asarray(dy))

    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 2)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(np.asarray(dx), xt.grad.numpy().transpose(0, 2, 3, 1))
    # ... and exactly what autodiff (select_and_scatter) gives.
    (auto,) = jax.vjp(autodiff_max_pool, jnp.asarray(x))[1](jnp.asarray(dy))
    np.testing.assert_array_equal(np.asarray(dx), np.asarray(auto))
    assert np.count_nonzero(np.asarray(dx)) <= dy.size  # one element per window at most


def test_max_pool_gradient_under_vmap_equals_one_image_at_a_time(rng):
    x = jnp.asarray(with_ties(rng, (3, 1, 6, 6, 2)))
    loss = lambda x: jnp.sum(max_pool_2x2(x) ** 2)  # noqa: E731
    batched = jax.vmap(jax.grad(loss))(x)
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(jax.grad(loss)(x[i])))


def test_conv3x3_gradients_equal_autodiff(rng):
    x = jnp.asarray(rng.normal(size=(2, 6, 7, 3)))
    kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 5)))
    dy = jnp.asarray(rng.normal(size=(2, 6, 7, 5)))

    def plain(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    ours = jax.vjp(conv3x3, x, kernel)[1](dy)
    reference = jax.vjp(plain, x, kernel)[1](dy)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)
