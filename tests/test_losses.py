"""Hand-computed values of the Gram matrix and the three losses, and the |x| subgradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bench import torch_recipe
from jaxstyle.losses import (
    LossWeights,
    Targets,
    abs_zero_subgradient,
    content_loss,
    gram_matrix,
    loss_terms,
    style_loss,
    tv_loss,
)

pytestmark = pytest.mark.usefixtures("strict_dtypes")


def test_gram_matrix_by_hand():
    # One image, H=1, W=2, C=2: positions p0 = (1, 2), p1 = (3, 4).
    f = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # F^T F = [[1+9, 2+12], [2+12, 4+16]] = [[10, 14], [14, 20]], divided by C*H*W = 4.
    np.testing.assert_allclose(gram_matrix(f), [[[2.5, 3.5], [3.5, 5.0]]])


def test_gram_matrix_is_per_image():
    f = jnp.stack([jnp.ones((2, 3, 4)), 2 * jnp.ones((2, 3, 4))])
    g = gram_matrix(f)
    assert g.shape == (2, 4, 4)
    np.testing.assert_allclose(g[0], np.full((4, 4), 6 / 24))
    np.testing.assert_allclose(g[1], np.full((4, 4), 4 * 6 / 24))


def test_content_loss_by_hand():
    a = [jnp.array([[[[1.0, 2.0]]]]), jnp.array([[[[0.0]]]])]
    t = [jnp.array([[[[0.0, 0.0]]]]), jnp.array([[[[3.0]]]])]
    # layer 1: mean(1, 4) = 2.5; layer 2: 9. Weighted 2 * 2.5 + 0.5 * 9 = 9.5.
    assert float(content_loss(a, t, jnp.array([2.0, 0.5]))) == pytest.approx(9.5)


def test_style_loss_by_hand():
    f = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # Gram [[2.5, 3.5], [3.5, 5]]
    target = jnp.array([[[2.5, 0.5], [3.5, 1.0]]])  # differences 0, 3, 0, 4 -> mean(0, 9, 0, 16) = 6.25
    assert float(style_loss([f], [target], jnp.array([1.0]))) == pytest.approx(6.25)
    assert float(style_loss([f, f], [target, target], jnp.array([1.0, 3.0]))) == pytest.approx(25.0)


def test_tv_loss_by_hand():
    x = jnp.array([[[[0.0], [1.0], [3.0]], [[2.0], [2.0], [2.0]]]])  # H=2, W=3, C=1
    # vertical |2-0|, |2-1|, |2-3| -> mean 4/3; horizontal 1, 2, 0, 0 -> mean 3/4.
    assert float(tv_loss(x)) == pytest.approx(0.5 * (4 / 3 + 3 / 4))


def test_abs_subgradient_is_zero_at_zero_like_pytorch():
    x = jnp.array([-2.0, 0.0, 3.0])
    g = jax.grad(lambda v: jnp.sum(abs_zero_subgradient(v)))(x)
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0])
    assert float(jax.grad(jnp.abs)(0.0)) == 1.0  # why the custom rule exists


def test_tv_gradient_matches_pytorch_on_flat_regions(rng):
    # An 8-bit image with flat regions: many exactly equal neighbours.
    img = np.round(rng.uniform(0, 4, size=(1, 12, 16, 3))) / 4
    img[:, 3:9, 4:12, :] = 0.5
    g_jax = jax.grad(tv_loss)(jnp.asarray(img))
    x = torch.tensor(img.transpose(0, 3, 1, 2), requires_grad=True)
    torch_recipe.tv_loss(x).backward()
    np.testing.assert_allclose(np.asarray(g_jax), x.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-15)
    assert float(jnp.abs(g_jax[0, 5, 6:10]).max()) == 0.0  # the inside of a flat region does not move


def test_loss_terms_weighting():
    img = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float64).reshape(2, 4, 4, 3)[:1] / 10
    feats = [img]
    targets = Targets(content=(img * 0.5,), style_gram=(gram_matrix(img) * 2,))
    w = LossWeights(jnp.array(2.0), jnp.array(3.0), jnp.array(5.0), jnp.ones(1), jnp.ones(1))
    terms = loss_terms(img, feats, feats, targets, w)
    expected = 2 * terms["content"] + 3 * terms["style"] + 5 * terms["tv"]
    assert float(terms["total"]) == pytest.approx(float(expected))
    assert float(terms["content"]) == pytest.approx(float(jnp.mean((img * 0.5) ** 2)))
