"""Style-transfer losses as pure functions of features, targets and weights.

Features are NHWC activations. Every loss is a mean over elements, as in the d2l
recipe the ``paper`` preset follows, so a loss does not grow with the image size.

Two style losses: ``gram`` (Gatys et al.: mean squared error of Gram matrices) and
``w2`` (style-transfer-pytorch since May 2023: the Wasserstein-2 distance between
Gaussians fitted to the features, with its Newton-Schulz matrix square root). Three
TV losses: d2l's half mean and neural-style-pt's sum of absolute differences, and
style-transfer-pytorch's squared differences over a nine-point stencil. The
style-transfer-pytorch forms follow ``style_transfer/style_transfer.py`` and
``style_transfer/sqrtm.py`` of crowsonkb/style-transfer-pytorch at commit
e7e2c7134e3937be05ff9f5fcc0873fe5ceb6060 (2023-05-21).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

STYLE_LOSSES = ("gram", "w2")
# style-transfer-pytorch's StyleLossW2: eps added to every covariance's diagonal, and
# the iterations of its matrix square root (sqrtm_ns_lyap, forward and backward).
W2_EPS = 1e-4
NEWTON_SCHULZ_ITERATIONS = 12
# Full float32 (or float64) products in the Newton-Schulz iterations and the W2 loss:
# accelerators may otherwise run float32 matrix products in TF32 or bfloat16 passes,
# whose ~1e-3 errors the iterations would carry into the loss.
HIGHEST = jax.lax.Precision.HIGHEST


class LossWeights(NamedTuple):
    """Loss weights as array leaves, so changing a value never recompiles.

    Attributes:
      content: weight of the content loss (scalar).
      style: weight of the style loss (scalar).
      tv: weight of the total-variation loss (scalar).
      content_layers: per-content-layer weights, shape ``(len(content_layers),)``.
      style_layers: per-style-layer weights, shape ``(len(style_layers),)``.
      style_loss: which style loss the setting uses, one-hot over the recipe's
        ``style_losses`` (shape ``(len(style_losses),)``); a batch that mixes style
        losses computes each of them and keeps each setting's own. ``None`` (or
        anything) when the recipe has one style loss.
      temporal: weight of the temporal loss (scalar; video frames only, ``None`` otherwise).
    """

    content: Array
    style: Array
    tv: Array
    content_layers: Array
    style_layers: Array
    style_loss: Array | None = None
    temporal: Array | None = None


class TemporalTarget(NamedTuple):
    """What a video frame's temporal loss pulls it towards (Ruder et al. 2016, eq. 7).

    A constant of the optimisation: computed on the host from the previous stylized
    frame, never differentiated through.

    Attributes:
      image: the neighbouring stylized frame warped into this frame by the optical flow,
        in network space, ``(N, H, W, 3)``.
      mask: the per-pixel weight ``c`` in [0, 1]: 0 at occlusions and motion boundaries
        (see :func:`jaxstyle.flow.consistency_mask`), ``(N, H, W, 1)``.
    """

    image: Array
    mask: Array


class GaussianTarget(NamedTuple):
    """The Gaussian a W2 style loss pulls a layer's features towards.

    Attributes:
      mean: mean feature ``mu``, ``(N, C)``.
      cov: covariance ``Sigma + eps I`` (see :func:`covariance`), ``(N, C, C)``.
      cov_sqrt: its Newton-Schulz square root, computed once with the targets, ``(N, C, C)``.
    """

    mean: Array
    cov: Array
    cov_sqrt: Array


class Targets(NamedTuple):
    """What the synthesized image is pulled towards, computed once before solving.

    Tuples in the order of the recipe's layer lists (dict pytrees would be re-sorted
    by key under ``jit`` and lose their pairing with the per-layer weights).

    Each style loss has its own field, ``None`` when the recipe does not use it.

    Attributes:
      content: features of the content image at each content layer.
      style_gram: Gram matrix of the style image's features at each style layer (``gram``).
      style_w2: Gaussian statistics of the style image's features at each style layer (``w2``).
      temporal: the warped neighbouring frame and its mask (video frames only).
    """

    content: tuple[Array, ...]
    style_gram: tuple[Array, ...] | None = None
    style_w2: tuple[GaussianTarget, ...] | None = None
    temporal: TemporalTarget | None = None


def accumulation_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for bfloat16/float16, else ``dtype`` itself (see :func:`accumulate`)."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def accumulate(x: Array) -> Array:
    """``x`` in at least float32: bfloat16/float16 features are summed in float32.

    Departure from tools that keep everything in half precision: Gram sums over H*W
    positions overflow float16 and lose most digits in bfloat16.
    """
    return x.astype(accumulation_dtype(x.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def gram_product(f: Array, precision: jax.lax.Precision | None = None) -> Array:
    """``F^T F`` of ``(N, P, C)`` features, per image, accumulated in >= float32: ``(N, C, C)``;
    ``precision`` of both products (W2's moments ask for ``HIGHEST``, as upstream's float32).

    Its gradient is one product in the features' own layout, ``dF = F (dG + dG^T)``.
    Autodiff of the einsum computes ``dG F^T`` and ``dG^T F^T`` separately, each a
    ``(C, P)`` array, adds them and transposes the sum back with a copy: three extra
    buffers the size of ``H*W*C`` at every style layer (XLA:CPU's compiled memory
    analysis: 3 of the 6 largest temporaries at 256x256 were these); this form needs
    none. bfloat16 features enter both products as they are, accumulated in float32
    (``preferred_element_type``), not as a float32 copy; their gradient's
    ``dG + dG^T`` is rounded to bfloat16 first, as the gradient itself is.
    """
    return jnp.einsum("npc,npd->ncd", f, f, precision=precision, preferred_element_type=accumulation_dtype(f.dtype))


def _gram_product_fwd(f: Array, precision: jax.lax.Precision | None) -> tuple[Array, Array]:
    return gram_product(f, precision), f


def _gram_product_bwd(precision: jax.lax.Precision | None, f: Array, dg: Array) -> tuple[Array]:
    sym = (dg + jnp.swapaxes(dg, 1, 2)).astype(f.dtype)
    acc = accumulation_dtype(f.dtype)
    return (jnp.einsum("npc,ncd->npd", f, sym, precision=precision, preferred_element_type=acc).astype(f.dtype),)


gram_product.defvjp(_gram_product_fwd, _gram_product_bwd)


def gram_matrix(features: Array) -> Array:
    """Normalised Gram matrix of NHWC features, one per image, accumulated in >= float32.

    ``G = F^T F / (C*H*W)`` with ``F`` of shape ``(H*W, C)``; returns ``(N, C, C)``
    (:func:`gram_product`).
    """
    n, h, w, c = features.shape
    return gram_product(features.reshape(n, h * w, c)) / (c * h * w)


class LayerStatistics(NamedTuple):
    """What the style losses read of one layer's features, reduced where the features are made.

    With rematerialisation by blocks (:func:`jaxstyle.solve.objective`), each block
    reduces its style layers to these inside its checkpoint, so that the full-size
    features are not kept for the backward pass. A field its style losses do not need
    is ``None``.

    Attributes:
      gram: :func:`gram_matrix` ``(N, C, C)``.
      mean, second_moment: :func:`feature_moments`.
    """

    gram: Array | None
    mean: Array | None
    second_moment: Array | None


def layer_statistics(features: Array, style_losses: Sequence[str]) -> LayerStatistics:
    """The :class:`LayerStatistics` of NHWC ``features`` that ``style_losses`` read."""
    gram = gram_matrix(features) if "gram" in style_losses else None
    mean, second_moment = feature_moments(features) if "w2" in style_losses else (None, None)
    return LayerStatistics(gram, mean, second_moment)


def layer_gram(features: Array | LayerStatistics) -> Array:
    """:func:`gram_matrix` of features, or the one already in their :class:`LayerStatistics`."""
    return features.gram if isinstance(features, LayerStatistics) else gram_matrix(features)


def content_loss(features: Sequence[Array], targets: Sequence[Array], layer_weights: Array) -> Array:
    """``sum_l w_l * mean((F_l - T_l)^2)`` over the content layers ``l``."""
    terms = [jnp.mean(jnp.square(accumulate(f) - accumulate(t))) for f, t in zip(features, targets, strict=True)]
    return jnp.dot(layer_weights, jnp.stack(terms))


def style_loss(
    features: Sequence[Array | LayerStatistics], gram_targets: Sequence[Array], layer_weights: Array
) -> Array:
    """``sum_l w_l * mean((G(F_l) - G_l)^2)`` over the style layers ``l``, G the Gram matrix
    (features or their :class:`LayerStatistics`)."""
    terms = [jnp.mean(jnp.square(layer_gram(f) - g)) for f, g in zip(features, gram_targets, strict=True)]
    return jnp.dot(layer_weights, jnp.stack(terms))


def feature_moments(features: Array) -> tuple[Array, Array]:
    """Mean and second raw moment of NHWC features over positions, accumulated in >= float32.

    ``mu = (1/P) sum_p f_p`` with shape ``(N, C)`` and ``S = (1/P) sum_p f_p f_p^T`` with
    shape ``(N, C, C)``, over the ``P = H*W`` positions ``p``. Unlike the covariance,
    both are linear in the image's contributions, so several styles blend as weighted
    sums of them (style-transfer-pytorch's ``StyleLossW2.get_target``).
    """
    n, h, w, c = features.shape
    f = features.reshape(n, h * w, c)
    return moment_sums(f) / (h * w), gram_product(f, HIGHEST) / (h * w)


def moment_sums(flat: Array) -> Array:
    """``sum_p f_p`` of ``(N, P, C)`` features, accumulated in >= float32: ``(N, C)``.

    With :func:`gram_product` for the second moment, nothing the size of the features
    is copied: autodiff of ``einsum(f, f)`` on a float32 copy of them kept three
    ``H*W*C`` buffers per style layer (a W2 step's compiled memory at 512x512 was 21%
    above a Gram step's).
    """
    return jnp.sum(flat, axis=1, dtype=accumulation_dtype(flat.dtype))


def covariance(mean: Array, second_moment: Array, eps: float = W2_EPS) -> Array:
    """``Sigma + eps I = S - mu mu^T + eps I`` (style-transfer-pytorch's ``srm_to_cov`` plus its eps)."""
    eye = jnp.broadcast_to(jnp.eye(second_moment.shape[-1], dtype=second_moment.dtype), second_moment.shape)
    return second_moment - mean[..., :, None] * mean[..., None, :] + eps * eye


def newton_schulz_iterations(a: Array, iterations: int) -> Array:
    """The coupled Newton-Schulz iteration for ``a^(1/2)`` (a batch of SPD matrices).

    With ``||a||`` the Frobenius norm: ``Y_0 = a / ||a||``, ``Z_0 = I``;
    ``T_k = (3I - Z_k Y_k) / 2``, ``Y_{k+1} = Y_k T_k``, ``Z_{k+1} = T_k Z_k``; returns
    ``Y_n ||a||^(1/2)``. ``Y_k`` converges quadratically to ``(a/||a||)^(1/2)`` once close;
    an eigenvalue ``lambda << ||a||`` needs about ``log_1.5(||a|| / lambda) / 2`` iterations
    to get there (each multiplies its root by at most 1.5). As ``sqrtm_ns`` in
    style-transfer-pytorch's ``sqrtm.py``.
    """
    norm = jnp.sqrt(jnp.sum(jnp.square(a), axis=(-2, -1), keepdims=True))
    y = a / norm
    eye = jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)
    z = eye
    for _ in range(iterations):
        t = (3 * eye - jnp.matmul(z, y, precision=HIGHEST)) / 2
        y = jnp.matmul(y, t, precision=HIGHEST)
        z = jnp.matmul(t, z, precision=HIGHEST)
    return y * jnp.sqrt(norm)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrtm(a: Array, iterations: int = NEWTON_SCHULZ_ITERATIONS) -> Array:
    """Matrix square root by ``iterations`` Newton-Schulz steps (:func:`newton_schulz_iterations`).

    Its derivative is not that of the iterations: as style-transfer-pytorch's
    ``sqrtm_ns_lyap``, the backward pass solves the Sylvester equation
    ``Z X + X Z = G`` for the cotangent ``X`` of ``a`` (``Z`` the square root, ``G`` its
    cotangent) by ``iterations`` steps of a coupled Newton-Schulz iteration, which is
    the derivative of the exact square root where both iterations have converged.
    """
    return newton_schulz_iterations(a, iterations)


def _sqrtm_fwd(a: Array, iterations: int) -> tuple[Array, Array]:
    z = newton_schulz_iterations(a, iterations)
    return z, z


def _sqrtm_bwd(iterations: int, z: Array, g: Array) -> tuple[Array]:
    # style-transfer-pytorch's _MatrixSquareRootNSLyap.backward, line for line.
    norm = jnp.sqrt(jnp.sum(jnp.square(z), axis=(-2, -1), keepdims=True))
    a = z / norm
    eye = 3 * jnp.broadcast_to(jnp.eye(z.shape[-1], dtype=z.dtype), z.shape)
    q = g / norm
    for i in range(iterations):
        eye_a_a = eye - jnp.matmul(a, a, precision=HIGHEST)
        a_t = jnp.swapaxes(a, -2, -1)
        inner = jnp.matmul(a_t, q, precision=HIGHEST) - jnp.matmul(q, a, precision=HIGHEST)
        q = (jnp.matmul(q, eye_a_a, precision=HIGHEST) - jnp.matmul(a_t, inner, precision=HIGHEST)) / 2
        if i < iterations - 1:
            a = jnp.matmul(a, eye_a_a, precision=HIGHEST) / 2
    return (q / 2,)


sqrtm.defvjp(_sqrtm_fwd, _sqrtm_bwd)


def gaussian_target(mean: Array, second_moment: Array) -> GaussianTarget:
    """The W2 target of (blended) moments: mean, covariance plus ``eps I``, and its square root."""
    cov = covariance(mean, second_moment)
    return GaussianTarget(mean, cov, sqrtm(cov))


def w2_distance(features: Array | LayerStatistics, target: GaussianTarget) -> Array:
    """style-transfer-pytorch's Wasserstein-2 style loss of one layer.

    ``(|mu - mu_t|^2 + tr(Sigma + Sigma_t - 2 (Sigma_t^(1/2) Sigma Sigma_t^(1/2))^(1/2))) / C``,
    the squared 2-Wasserstein distance between the Gaussians ``N(mu, Sigma)`` of the
    features and ``N(mu_t, Sigma_t)`` of the target, divided by the channel count ``C``
    (its ``mean`` over channels); both covariances carry ``+ eps I``
    (:data:`W2_EPS`), and the square roots are :func:`sqrtm`'s, so that where 12
    Newton-Schulz iterations have not converged (small eigenvalues) this is
    style-transfer-pytorch's value rather than the exact distance. Means over the
    ``N`` images too. ``features`` may be their :class:`LayerStatistics`.
    """
    if isinstance(features, LayerStatistics):
        mean, second_moment = features.mean, features.second_moment
    else:
        mean, second_moment = feature_moments(features)
    cov = covariance(mean, second_moment)
    mean_diff = jnp.mean(jnp.square(mean - target.mean))
    product = jnp.matmul(jnp.matmul(target.cov_sqrt, cov, precision=HIGHEST), target.cov_sqrt, precision=HIGHEST)
    sqrt_term = sqrtm(product)
    cov_diff = jnp.mean(jnp.diagonal(target.cov + cov - 2 * sqrt_term, axis1=-2, axis2=-1))
    return mean_diff + cov_diff


def w2_style_loss(
    features: Sequence[Array | LayerStatistics], targets: Sequence[GaussianTarget], layer_weights: Array
) -> Array:
    """``sum_l w_l * W2_l`` over the style layers ``l`` (:func:`w2_distance`)."""
    terms = [w2_distance(f, t) for f, t in zip(features, targets, strict=True)]
    return jnp.dot(layer_weights, jnp.stack(terms))


@jax.custom_jvp
def abs_zero_subgradient(x: Array) -> Array:
    """``|x|`` whose derivative is ``sign(x)``, i.e. 0 at ``x = 0``.

    ``jax.grad(jnp.abs)(0.)`` is 1, PyTorch's is 0. Resized 8-bit photos have many
    exactly equal neighbours, and Adam turns any non-zero gradient there into a full
    ``lr``-sized move; with subgradient 0 a flat region stays flat, as in PyTorch.
    """
    return jnp.abs(x)


@abs_zero_subgradient.defjvp
def _abs_zero_subgradient_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return jnp.abs(x), jnp.sign(x) * dx


def tv_nine_point(image: Array) -> Array:
    """style-transfer-pytorch's L2 total variation over a nine-point stencil, of NHWC images.

    With ``x`` the image padded by one pixel on each side by repeating its edges:
    ``2 * (mean(h^2) / 3 + mean(v^2) / 3 + mean(d^2) / 12 + mean(a^2) / 12)`` where
    ``h = x[i, j+1] - x[i, j]`` and ``v = x[i+1, j] - x[i, j]`` over the image's own
    positions, and ``d = x[i+1, j+1] - x[i, j]`` and ``a = x[i+1, j] - x[i, j+1]`` over
    the ``(H+1) x (W+1)`` diagonal pairs of the padded image; each mean is over its
    own pairs, images and channels (its ``TVLoss``).
    """
    x = jnp.pad(image, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    centre = x[:, 1:-1, 1:-1]
    h = jnp.mean(jnp.square(x[:, 1:-1, 2:] - centre)) / 3
    v = jnp.mean(jnp.square(x[:, 2:, 1:-1] - centre)) / 3
    d = jnp.mean(jnp.square(x[:, 1:, 1:] - x[:, :-1, :-1])) / 12
    a = jnp.mean(jnp.square(x[:, 1:, :-1] - x[:, :-1, 1:])) / 12
    return 2 * (h + v + d + a)


def tv_loss(image: Array, reduction: str = "mean") -> Array:
    """Total variation of NHWC images.

    ``"mean"`` (d2l): ``0.5 * (mean|x[i+1, j] - x[i, j]| + mean|x[i, j+1] - x[i, j]|)``,
    means over all images, positions and channels. ``"sum"`` (neural-style-pt):
    ``sum|x[i+1, j] - x[i, j]| + sum|x[i, j+1] - x[i, j]|``. ``"nine"``
    (style-transfer-pytorch): squared differences over a nine-point stencil
    (:func:`tv_nine_point`).
    """
    if reduction == "nine":
        return tv_nine_point(image)
    dy = abs_zero_subgradient(image[:, 1:, :, :] - image[:, :-1, :, :])
    dx = abs_zero_subgradient(image[:, :, 1:, :] - image[:, :, :-1, :])
    if reduction == "sum":
        return jnp.sum(dy) + jnp.sum(dx)
    return 0.5 * (jnp.mean(dy) + jnp.mean(dx))


def temporal_loss(image: Array, target: TemporalTarget) -> Array:
    """Ruder et al.'s short-term temporal loss of NHWC images (their eq. 7, ``mse`` criterion).

    ``(1/D) * sum_k c_k * (x_k - w_k)^2`` with ``D = N*H*W*C`` all elements, ``w`` the
    warped neighbouring frame and ``c`` its mask (broadcast over channels), as
    artistic-videos' ``WeightedContentLoss`` on the image (``nn.MSECriterion`` of
    ``sqrt(c) * x`` against ``sqrt(c) * w``). At a coarser scale than the target's, the
    target and its mask are resized bilinearly to the image's size.
    """
    warped, mask = target.image, target.mask
    if warped.shape[-3:-1] != image.shape[-3:-1]:
        h, w = image.shape[-3:-1]
        warped = jax.image.resize(warped, (*warped.shape[:-3], h, w, warped.shape[-1]), "linear")
        mask = jax.image.resize(mask, (*mask.shape[:-3], h, w, mask.shape[-1]), "linear")
    diff = accumulate(image) - accumulate(warped)
    return jnp.sum(mask * jnp.square(diff)) / diff.size


def loss_terms(
    image: Array,
    content_features: Sequence[Array],
    style_features: Sequence[Array],
    targets: Targets,
    weights: LossWeights,
    tv_reduction: str = "mean",
    style_losses: Sequence[str] = ("gram",),
) -> dict[str, Array]:
    """Loss terms and their weighted sum.

    ``total = w_c * content + w_s * style + w_tv * tv``; the returned ``content``,
    ``style`` and ``tv`` entries are the unweighted terms. ``style_losses`` (static)
    are the style losses to compute, ``gram`` and/or ``w2``; with several, ``style``
    is ``sum_i weights.style_loss[i] * style_i``, the setting's own with a one-hot
    ``style_loss`` (a non-finite value of another would still poison it: 0 * inf).
    With a temporal target (video frames), ``total`` adds ``w_t * temporal``
    (:func:`temporal_loss`) and the returned dict has a ``temporal`` entry.
    """
    content = content_loss(content_features, targets.content, weights.content_layers)
    styles = []
    for name in style_losses:
        if name == "gram":
            styles.append(style_loss(style_features, targets.style_gram, weights.style_layers))
        elif name == "w2":
            styles.append(w2_style_loss(style_features, targets.style_w2, weights.style_layers))
        else:
            raise ValueError(f"unknown style loss {name!r}; choose from {', '.join(STYLE_LOSSES)}")
    style = styles[0] if len(styles) == 1 else jnp.dot(weights.style_loss, jnp.stack(styles))
    tv = tv_loss(image, tv_reduction)
    total = weights.content * content + weights.style * style + weights.tv * tv
    terms = {"content": content, "style": style, "tv": tv}
    if targets.temporal is not None:
        terms["temporal"] = temporal_loss(image, targets.temporal)
        total = total + weights.temporal * terms["temporal"]
    return {**terms, "total": total}
