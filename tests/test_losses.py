"""Hand-computed values of the Gram matrix and the losses, the |x| subgradient, and
style-transfer-pytorch's W2 style loss, matrix square root and nine-point TV against
its own code (ported verbatim in ``bench/torch_recipe.py``) and against exact formulas.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bench import torch_recipe
from jaxstyle.losses import (
    W2_EPS,
    GaussianTarget,
    LossWeights,
    Targets,
    abs_zero_subgradient,
    content_loss,
    covariance,
    feature_moments,
    gaussian_target,
    gram_matrix,
    layer_statistics,
    loss_terms,
    newton_schulz_iterations,
    sqrtm,
    style_loss,
    tv_loss,
    tv_nine_point,
    w2_distance,
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


def gram_loss(features, targets, layer_weights):
    """The ``gram`` style loss of NHWC features at each layer against Gram targets."""
    return style_loss([layer_statistics(f, ("gram",)) for f in features], targets, layer_weights, "gram")


def w2_style_loss(features, targets, layer_weights):
    """The ``w2`` style loss of NHWC features at each layer against Gaussian targets."""
    return style_loss([layer_statistics(f, ("w2",)) for f in features], targets, layer_weights, "w2")


def test_style_loss_by_hand():
    f = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # Gram [[2.5, 3.5], [3.5, 5]]
    target = jnp.array([[[2.5, 0.5], [3.5, 1.0]]])  # differences 0, 3, 0, 4 -> mean(0, 9, 0, 16) = 6.25
    assert float(gram_loss([f], [target], jnp.array([1.0]))) == pytest.approx(6.25)
    assert float(gram_loss([f, f], [target, target], jnp.array([1.0, 3.0]))) == pytest.approx(25.0)


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
    targets = Targets(content=(img * 0.5,), style={"gram": (gram_matrix(img) * 2,)})
    w = LossWeights(jnp.array(2.0), jnp.array(3.0), jnp.array(5.0), jnp.ones(1), jnp.ones(1))
    terms = loss_terms(img, feats, feats, targets, w)
    expected = 2 * terms["content"] + 3 * terms["style"] + 5 * terms["tv"]
    assert float(terms["total"]) == pytest.approx(float(expected))
    assert float(terms["content"]) == pytest.approx(float(jnp.mean((img * 0.5) ** 2)))


# --------------------------------------------------------------------------- W2 and nine-point TV


def eig_sqrt(a: np.ndarray) -> np.ndarray:
    """The exact square root of a symmetric positive definite matrix, by eigendecomposition."""
    vals, vecs = np.linalg.eigh(a)
    return vecs @ np.diag(np.sqrt(vals)) @ vecs.T


def spd(rng, c: int, smallest: float) -> np.ndarray:
    """A random SPD matrix whose eigenvalues are geometric from ``smallest`` to 1."""
    q, _ = np.linalg.qr(rng.normal(size=(c, c)))
    return q @ np.diag(np.geomspace(smallest, 1.0, c)) @ q.T


def relu_features(rng, shape, spread: float = 1.0) -> np.ndarray:
    """ReLU-like NHWC features: correlated channels, some exact zeros, a mean per channel."""
    c = shape[-1]
    mixing = rng.normal(size=(c, c)) / np.sqrt(c)
    return np.maximum(spread * rng.normal(size=shape) @ mixing + rng.normal(size=c), 0.0)


def to_torch(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=grad)


def test_feature_moments_and_covariance_by_hand():
    # One image, H=1, W=2, C=2: positions p0 = (1, 2), p1 = (3, 5).
    f = jnp.array([[[[1.0, 2.0], [3.0, 5.0]]]])
    mean, second = feature_moments(f)
    np.testing.assert_allclose(mean, [[2.0, 3.5]])
    # (p0 p0^T + p1 p1^T) / 2 = ([[1, 2], [2, 4]] + [[9, 15], [15, 25]]) / 2
    np.testing.assert_allclose(second, [[[5.0, 8.5], [8.5, 14.5]]])
    # minus mu mu^T = [[4, 7], [7, 12.25]], plus eps on the diagonal
    np.testing.assert_allclose(covariance(mean, second), [[[1.0 + W2_EPS, 1.5], [1.5, 2.25 + W2_EPS]]])


def test_newton_schulz_converges_to_the_exact_square_root():
    # float64, C = 32, eigenvalues from 1e-2 to 1 (1.8e-3 of the Frobenius norm): the
    # error against the eigendecomposition's root, relative to its largest element, was
    # 4.7e-2 after 8 iterations, 6.0e-10 after 12 and 1.3e-15 after 14.
    a = spd(np.random.default_rng(0), 32, 1e-2) * 7.0
    exact = eig_sqrt(a)
    error = {n: np.abs(np.asarray(newton_schulz_iterations(jnp.asarray(a), n)) - exact).max() for n in (8, 12, 14)}
    scale = np.abs(exact).max()
    assert error[8] > 1e-3 * scale  # not there yet: small eigenvalues grow by at most 1.5 a step
    assert error[12] < 1e-8 * scale
    assert error[14] < 1e-13 * scale
    z = np.asarray(sqrtm(jnp.asarray(a), 14))
    assert np.linalg.norm(z @ z - a) < 1e-13 * np.linalg.norm(a)  # residual of the square


def test_newton_schulz_matches_upstreams_forward_and_lyapunov_backward(rng):
    a = spd(rng, 24, 1e-3)[None] * 3.0  # a batch of one, as the loss uses it
    g = rng.normal(size=a.shape)
    z, vjp = jax.vjp(jax.jit(sqrtm), jnp.asarray(a))
    a_torch = torch.tensor(a, requires_grad=True)
    z_torch = torch_recipe.sqrtm_ns_lyap(a_torch, num_iters=12)
    z_torch.backward(torch.tensor(g))
    np.testing.assert_allclose(np.asarray(z), z_torch.detach().numpy(), rtol=0, atol=1e-14 * np.abs(a).max())
    grad = np.asarray(vjp(jnp.asarray(g))[0])
    np.testing.assert_allclose(grad, a_torch.grad.numpy(), rtol=0, atol=1e-13 * np.abs(grad).max())


def test_sqrtm_gradient_is_the_exact_derivative_where_converged(rng):
    # The Lyapunov backward solves Z X + X Z = G. In Z's eigenbasis (Z = V diag(s) V^T):
    # X = V ((V^T G V)_ij / (s_i + s_j)) V^T, the derivative of the exact root.
    a = spd(rng, 16, 0.05) * 2.0  # well conditioned: 12 iterations converge
    g = rng.normal(size=a.shape)
    _, vjp = jax.vjp(jax.jit(sqrtm), jnp.asarray(a))
    vals, vecs = np.linalg.eigh(a)
    s = np.sqrt(vals)
    exact = vecs @ ((vecs.T @ g @ vecs) / (s[:, None] + s[None, :])) @ vecs.T
    np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]), exact, rtol=0, atol=1e-12 * np.abs(exact).max())


def test_w2_loss_matches_upstreams_code(rng):
    # Two layers of ReLU-like features; upstream's per-layer losses, weighted.
    shapes = [((1, 12, 16, 16), (1, 10, 14, 16)), ((1, 6, 8, 32), (1, 5, 7, 32))]
    feats = [relu_features(rng, shape) for shape, _ in shapes]
    styles = [relu_features(rng, shape, 1.5) for _, shape in shapes]
    weights = np.array([0.75, 0.25])
    targets = tuple(jax.jit(lambda x: gaussian_target(*feature_moments(x)))(jnp.asarray(s)) for s in styles)
    loss_and_grad = jax.jit(jax.value_and_grad(w2_style_loss))
    value, grads = loss_and_grad([jnp.asarray(f) for f in feats], targets, jnp.asarray(weights))
    x_torch = [to_torch(f, grad=True) for f in feats]
    modules = [torch_recipe.StyleLossW2(torch_recipe.StyleLossW2.get_target(to_torch(s))) for s in styles]
    ref = sum(w * m(x) for w, m, x in zip(weights, modules, x_torch, strict=True))
    ref.backward()
    assert float(value) == pytest.approx(float(ref.detach()), rel=1e-13)
    for g, x in zip(grads, x_torch, strict=True):
        g_ref = x.grad.numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(np.asarray(g), g_ref, rtol=0, atol=1e-12 * np.abs(g_ref).max())
    for t, m in zip(targets, modules, strict=True):  # the precomputed target root, too
        np.testing.assert_allclose(np.asarray(t.cov_sqrt), m.cov_sqrt.numpy(), rtol=0, atol=1e-14)


def test_w2_is_the_gaussian_wasserstein_distance_where_newton_schulz_converges(rng):
    # Gaussian features with well-conditioned covariances (condition numbers ~5): 12
    # iterations converge, and the loss is (|mu - mu_t|^2 + tr(S + S_t - 2 (S_t^1/2 S
    # S_t^1/2)^1/2)) / C exactly. (With mixing 0.3 instead of 0.1 the product's
    # condition number was ~2000 and the loss 3e-5 away from the exact distance:
    # upstream's 12 iterations, not the distance, are what the loss computes.)
    c = 8
    f = rng.normal(size=(1, 24, 32, c)) @ (np.eye(c) + 0.1 * rng.normal(size=(c, c))) + rng.normal(size=c)
    s = 1.3 * rng.normal(size=(1, 20, 20, c)) @ (np.eye(c) + 0.1 * rng.normal(size=(c, c))) + rng.normal(size=c)
    moments = [[np.asarray(m[0]) for m in feature_moments(jnp.asarray(x))] for x in (f, s)]
    (mu, second), (mu_t, second_t) = moments
    cov = second - np.outer(mu, mu) + W2_EPS * np.eye(c)
    cov_t = second_t - np.outer(mu_t, mu_t) + W2_EPS * np.eye(c)
    root_t = eig_sqrt(cov_t)
    exact = (np.sum((mu - mu_t) ** 2) + np.trace(cov + cov_t - 2 * eig_sqrt(root_t @ cov @ root_t))) / c
    value = float(w2_distance(feature_moments(jnp.asarray(f)), gaussian_target(*feature_moments(jnp.asarray(s)))))
    assert value == pytest.approx(exact, rel=1e-10)
    # Its own target: zero, up to the square roots' rounding.
    target = gaussian_target(*feature_moments(jnp.asarray(s)))
    same = float(w2_distance(feature_moments(jnp.asarray(s)), target))
    assert abs(same) < 1e-12 * np.trace(cov_t)


def test_w2_accumulates_bfloat16_features_in_float32(rng):
    f = jnp.asarray(relu_features(rng, (1, 6, 8, 16)), jnp.bfloat16)
    target = gaussian_target(*feature_moments(jnp.asarray(relu_features(rng, (1, 6, 8, 16)), jnp.float32)))
    mean, second = feature_moments(f)
    assert mean.dtype == second.dtype == jnp.float32
    value = w2_distance(feature_moments(f), target)
    assert value.dtype == jnp.float32
    assert float(value) == pytest.approx(float(w2_distance(feature_moments(f.astype(jnp.float32)), target)), rel=1e-6)


def test_nine_point_tv_by_hand():
    x = jnp.array([[0.0, 1.0], [3.0, 5.0]])[None, :, :, None]  # H = W = 2, C = 1
    # Padded by its edges to 4x4. Horizontal differences at the 4 pixels: 1, 0, 2, 0
    # (mean of squares 5/4); vertical: 3, 4, 0, 0 (25/4); over the 3x3 diagonal pairs
    # of the padded image, down-right: 0, 1, 0, 3, 5, 4, 0, 2, 0 (55/9) and down-left:
    # 0, -1, 0, 3, 2, 4, 0, -2, 0 (34/9). 2 * (5/4/3 + 25/4/3 + 55/9/12 + 34/9/12) = 718/108.
    assert float(tv_nine_point(x)) == pytest.approx(718 / 108, rel=1e-15)
    assert float(tv_loss(x, "nine")) == float(tv_nine_point(x))
    assert float(tv_nine_point(jnp.full((1, 4, 5, 3), 0.7))) == 0.0  # flat: no variation
    # Channels and images are averaged over, not summed.
    two = jnp.concatenate([x, x], axis=-1)
    assert float(tv_nine_point(two)) == pytest.approx(718 / 108, rel=1e-15)


def test_nine_point_tv_value_and_gradient_match_upstreams_code(rng):
    img = np.round(rng.uniform(0, 4, size=(1, 12, 16, 3))) / 4
    img[:, 3:9, 4:12, :] = 0.5
    value, grad = jax.value_and_grad(tv_nine_point)(jnp.asarray(img))
    x = to_torch(img, grad=True)
    ref = torch_recipe.TVLossNinePoint()(x)
    ref.backward()
    assert float(value) == pytest.approx(float(ref.detach()), rel=1e-14)
    np.testing.assert_allclose(np.asarray(grad), x.grad.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-16)


def test_loss_terms_select_each_settings_style_loss(rng):
    img = jnp.asarray(relu_features(rng, (1, 6, 8, 4)))
    style = jnp.asarray(relu_features(rng, (1, 6, 8, 4), 2.0))
    targets = Targets(
        content=(img * 0.5,),
        style={"gram": (gram_matrix(style),), "w2": (gaussian_target(*feature_moments(style)),)},
    )
    assert isinstance(targets.style["w2"][0], GaussianTarget)
    w = LossWeights(jnp.array(2.0), jnp.array(3.0), jnp.array(5.0), jnp.ones(1), jnp.ones(1))
    gram_only = loss_terms(img, [img], [img], targets, w, "nine", ("gram",))
    w2_only = loss_terms(img, [img], [img], targets, w, "nine", ("w2",))
    assert float(gram_only["style"]) == float(gram_loss([img], targets.style["gram"], jnp.ones(1)))
    assert float(w2_only["style"]) == float(w2_style_loss([img], targets.style["w2"], jnp.ones(1)))
    for one_hot, alone in (([1.0, 0.0], gram_only), ([0.0, 1.0], w2_only)):
        both = loss_terms(img, [img], [img], targets, w._replace(style_loss=jnp.array(one_hot)), "nine", ("gram", "w2"))
        assert {k: float(v) for k, v in both.items()} == {k: float(v) for k, v in alone.items()}


# --------------------------------------------------------------------------- the registry and guided Gram matrices


def guided_reference(features: np.ndarray, masks: np.ndarray) -> torch.Tensor:
    """Guided Gram matrices by Gatys et al. 2017 (section 4.1), written independently in PyTorch:
    ``F_r = m_r * F`` (NCHW, masks ``(N, R, H, W)``), ``G_r = F_r F_r^T / (C sum m_r^2)``; ``(N, R, C, C)``."""
    f = features if isinstance(features, torch.Tensor) else torch.from_numpy(features)
    m = torch.from_numpy(masks)
    n, c, h, w = f.shape
    grams = []
    for r in range(m.shape[1]):
        fr = (f * m[:, r : r + 1]).reshape(n, c, h * w)
        grams.append(fr @ fr.transpose(1, 2) / (c * (m[:, r] ** 2).sum(dim=(1, 2))[:, None, None]))
    return torch.stack(grams, dim=1)


def masks_nhwc(masks: np.ndarray) -> jnp.ndarray:
    return jnp.asarray(masks.transpose(0, 2, 3, 1))


def test_every_style_loss_sums_over_parts_of_the_positions(rng):
    # What banded remat and a split image do: sums over disjoint rows, added, then normalised.
    from jaxstyle.losses import STYLE_LOSSES, add_sums, layer_sums, sums_statistics, zero_sums

    f = jnp.asarray(relu_features(rng, (2, 9, 7, 5)))
    guide = jnp.asarray(rng.uniform(size=(2, 9, 7, 3)))
    for g in (None, guide):
        whole = layer_statistics(f, tuple(STYLE_LOSSES), g)
        sums = zero_sums(tuple(STYLE_LOSSES), 2, 5, f.dtype, None if g is None else 3)
        for rows in (slice(0, 2), slice(2, 6), slice(6, 9)):
            part = f[:, rows].reshape(2, -1, 5)
            sums = add_sums(
                sums, layer_sums(part, tuple(STYLE_LOSSES), None if g is None else g[:, rows].reshape(2, -1, 3))
            )
        parts = sums_statistics(sums, 9 * 7)
        assert jax.tree.structure(parts) == jax.tree.structure(whole)
        for a, b in zip(jax.tree.leaves(parts), jax.tree.leaves(whole), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_guided_gram_matches_an_independent_pytorch_formula_float64(rng):
    from jaxstyle.losses import STYLE_LOSSES

    guided = STYLE_LOSSES["guided"]
    f = relu_features(rng, (2, 10, 12, 6))
    masks = rng.uniform(size=(2, 3, 10, 12))  # soft masks, three regions
    masks[:, 2, :, :6] = 0.0  # a region that covers half the image
    target = rng.uniform(size=(2, 3, 6, 6))
    stats = layer_statistics(jnp.asarray(f), ("guided",), masks_nhwc(masks))["guided"]
    x = to_torch(f, grad=True)
    ref = guided_reference(x, masks)
    np.testing.assert_allclose(np.asarray(stats), ref.detach().numpy(), rtol=1e-13)

    def loss(features):
        return guided.distance(layer_statistics(features, ("guided",), masks_nhwc(masks))["guided"], target)

    value, grad = jax.value_and_grad(loss)(jnp.asarray(f))
    ref_loss = ((ref - torch.from_numpy(target)) ** 2).mean(dim=(0, 2, 3)).sum()  # sum_r mean_{n,c,d}
    ref_loss.backward()
    assert float(value) == pytest.approx(float(ref_loss.detach()), rel=1e-13)
    g_ref = x.grad.numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(grad), g_ref, rtol=0, atol=1e-13 * np.abs(g_ref).max())


def test_guided_gram_of_complementary_hard_masks_is_each_regions_own_gram(rng):
    f = relu_features(rng, (1, 8, 10, 4))
    inside = np.zeros((8, 10), bool)
    inside[2:7, 3:9] = True
    masks = np.stack([inside, ~inside]).astype(np.float64)[None]
    stats = np.asarray(layer_statistics(jnp.asarray(f), ("guided",), masks_nhwc(masks))["guided"])
    for r, region in enumerate((inside, ~inside)):
        pixels = f[0][region]  # (P_r, C): the region's own positions
        np.testing.assert_allclose(stats[0, r], pixels.T @ pixels / (4 * len(pixels)), rtol=1e-13)


def test_guided_gram_with_one_all_ones_mask_is_the_plain_gram_float64(rng):
    f = jnp.asarray(relu_features(rng, (2, 11, 9, 8)))
    style = jnp.asarray(relu_features(rng, (2, 11, 9, 8), 2.0))
    ones = jnp.ones((2, 11, 9, 1))
    gram = np.asarray(gram_matrix(f))
    for guide in (ones, None):
        guided = np.asarray(layer_statistics(f, ("guided",), guide)["guided"])
        assert guided.shape == (2, 1, 8, 8)
        np.testing.assert_allclose(guided[:, 0], gram, rtol=1e-10, atol=0)
    # and so is its loss, through loss_terms and the registry's targets
    w = LossWeights(jnp.array(2.0), jnp.array(3.0), jnp.array(5.0), jnp.ones(1), jnp.ones(1))
    targets = Targets(
        content=(f * 0.5,), style={"gram": (gram_matrix(style),), "guided": (gram_matrix(style)[:, None],)}
    )
    plain = loss_terms(f, [f], [f], targets, w, "mean", ("gram",))
    guided_terms = loss_terms(f, [f], [layer_statistics(f, ("guided",), ones)], targets, w, "mean", ("guided",))
    assert float(guided_terms["style"]) == pytest.approx(float(plain["style"]), rel=1e-10)
    unguided = loss_terms(f, [f], [f], targets, w, "mean", ("guided",))  # no guide: one region, the image
    assert float(unguided["style"]) == pytest.approx(float(plain["style"]), rel=1e-12)


def test_an_empty_region_has_zero_statistics_not_nan(rng):
    f = jnp.asarray(relu_features(rng, (1, 4, 4, 3)))
    guide = jnp.stack([jnp.ones((1, 4, 4)), jnp.zeros((1, 4, 4))], axis=-1)
    stats = layer_statistics(f, ("guided",), guide)["guided"]
    assert np.isfinite(np.asarray(stats)).all() and float(jnp.abs(stats[:, 1]).max()) == 0.0
