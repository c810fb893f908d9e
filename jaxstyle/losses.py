"""Style-transfer losses as pure functions of features, targets and weights.

Features are NHWC activations. Every loss is a mean over elements, as in the d2l
recipe the ``paper`` preset follows, so a loss does not grow with the image size.

The style losses are a registry, :data:`STYLE_LOSSES`: each is a :class:`StyleLoss`, four
pure functions that say which sums over positions it reads of a layer's features, how
they become statistics, how a style image's statistics become a target and how far an
image's statistics are from it. ``gram`` (Gatys et al.: mean squared error of Gram
matrices), ``w2`` (style-transfer-pytorch since May 2023: the Wasserstein-2 distance
between Gaussians fitted to the features, with its Newton-Schulz matrix square root)
and ``guided`` (Gatys et al. 2017: Gram matrices per guidance region). Three
TV losses: d2l's half mean and neural-style-pt's sum of absolute differences, and
style-transfer-pytorch's squared differences over a nine-point stencil. The
style-transfer-pytorch forms follow ``style_transfer/style_transfer.py`` and
``style_transfer/sqrtm.py`` of crowsonkb/style-transfer-pytorch at commit
e7e2c7134e3937be05ff9f5fcc0873fe5ceb6060 (2023-05-21).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxstyle import config

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
    """What a video frame's temporal loss pulls it towards: ``J`` earlier (or neighbouring)
    stylized frames warped into it, each with its mask (Ruder et al. 2016, eq. 7 and §3.3).

    A constant of the optimisation: computed on the host from the stylized frames, never
    differentiated through. The short-term loss has ``J = 1``: the previous frame (or, in
    multi-pass, the neighbour in the pass's direction); the long-term loss one entry per
    relative index, closest first, with the masks that keep each pixel's closest reliable frame.

    Attributes:
      image: the stylized frames warped into this frame by the optical flow, in network
        space, ``(N, J, H, W, 3)``.
      mask: the per-pixel weight ``c_j`` in [0, 1] of each: 0 at occlusions and motion
        boundaries (see :func:`jaxstyle.flow.consistency_mask`), and for the long-term loss
        where a closer frame is reliable, ``(N, J, H, W, 1)``.
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


class EditTarget(NamedTuple):
    """What ``--edit-mask`` holds fixed (restoration): the optimised image is ``c + m (x - c)``.

    Attributes:
      image: the content image ``c`` in network space, ``(N, H, W, 3)``.
      mask: ``m`` in [0, 1], ``(N, H, W, 1)``: 1 where pixels are optimised, 0 where they
        stay the content's.
    """

    image: Array
    mask: Array


class Guide(NamedTuple):
    """What a style layer's statistics read besides its features, per position (or ``None``).

    Attributes:
      regions: the guidance channels ``m_r`` of the ``guided`` loss, ``(N, h, w, R)`` (or
        ``(N, P, R)`` flattened), in [0, 1].
      strength: the strength map at this layer over its mean, ``s_l(p) / mean_p s_l``,
        ``(N, h, w, 1)`` (or ``(N, P, 1)``): the factor on the style loss's gradient at each
        position (:func:`strength_scaled`).
    """

    regions: Array | None = None
    strength: Array | None = None


def as_guide(guide: Guide | Array | None) -> Guide:
    """A :class:`Guide`; an array is its guidance channels ``regions``."""
    if guide is None:
        return Guide()
    return guide if isinstance(guide, Guide) else Guide(regions=guide)


@jax.custom_jvp
def strength_scaled(flat: Array, ratio: Array) -> Array:
    """``flat`` itself, whose derivative is scaled at each position: ``d(out) = ratio * d(flat)``.

    A layer's features pass through it on their way to the style statistics, so that the
    style loss's gradient with respect to the features at position ``p`` is multiplied by
    ``ratio(p) = s_l(p) / mean s_l`` (the strength map at the layer over its mean); with
    the layer's style term multiplied by ``mean s_l`` (:func:`loss_terms`), the style force
    at ``p`` is ``s_l(p)`` times the unmasked one. ``ratio`` is a constant (no derivative).
    """
    return flat


@strength_scaled.defjvp
def _strength_scaled_jvp(primals, tangents):
    (flat, ratio), (dflat, _) = primals, tangents
    return flat, (ratio * dflat).astype(dflat.dtype)


class Targets(NamedTuple):
    """What the synthesized image is pulled towards, computed once before solving.

    Tuples in the order of the recipe's layer lists (dict pytrees would be re-sorted
    by key under ``jit`` and lose their pairing with the per-layer weights).

    Attributes:
      content: features of the content image at each content layer.
      style: for each of the recipe's style losses, by name, its target at each style
        layer (:attr:`StyleLoss.target`: a Gram matrix for ``gram``, a
        :class:`GaussianTarget` for ``w2``); only the recipe's losses are present.
      temporal: the warped neighbouring frame and its mask (video frames only).
      guides: at each style layer, a :class:`Guide`: the guidance channels of the
        ``guided`` style loss at that layer's size (:func:`jaxstyle.masks.guide_pyramid`)
        and the strength map's ratios; ``None``: no masks.
      edit: with ``--edit-mask``, the content image and the mask of the pixels optimised.
      strength: with a strength map, ``mean_p s_l`` at each style layer, ``(N, L)``: the
        factor on each layer's style term (:func:`loss_terms`).
    """

    content: tuple[Array, ...]
    style: Mapping[str, tuple[Any, ...]]
    temporal: TemporalTarget | None = None
    guides: tuple[Guide, ...] | None = None
    edit: EditTarget | None = None
    strength: Array | None = None


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
    buffers the size of ``H*W*C`` at every style layer, among a step's largest
    temporaries in XLA:CPU's compiled memory analysis (bench/RESULTS.md); this form
    needs none. bfloat16 features enter both products as they are, accumulated in float32
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


def keep_rows(x: Array, rows: int, first_row: Array | int = 0) -> Array:
    """``x`` ``(..., h, W, C)`` with its rows from row ``rows`` on zeroed, its row ``i`` being row
    ``first_row + i``: an array of an image padded below its ``rows`` own rows (an image split
    over devices, :mod:`jaxstyle.spatial`) with the padding masked out."""
    index = first_row + jnp.arange(x.shape[-3])
    return jnp.where((index < rows)[:, None, None], x, jnp.zeros((), x.dtype))


def rows_mean(x: Array, rows: int | None = None) -> Array:
    """``mean(x)`` over the positions of ``x``'s first ``rows`` rows (axis -3), its other rows
    zero; over all of ``x`` when ``None``."""
    if rows is None:
        return jnp.mean(x)
    return jnp.sum(x) / (x.size // x.shape[-3] * rows)


def content_loss(
    features: Sequence[Array], targets: Sequence[Array], layer_weights: Array, rows: Sequence[int] | None = None
) -> Array:
    """``sum_l w_l * mean((F_l - T_l)^2)`` over the content layers ``l``.

    ``rows``: each layer's own rows, where features and targets were padded below them with
    zero rows (a split image, :mod:`jaxstyle.spatial`): each mean is over the own positions.
    """
    rows = rows or [None] * len(features)
    terms = [
        rows_mean(jnp.square(accumulate(f) - accumulate(t)), r) for f, t, r in zip(features, targets, rows, strict=True)
    ]
    return jnp.dot(layer_weights, jnp.stack(terms))


def gram_distance(gram: Array, target: Array) -> Array:
    """``mean((G - T)^2)`` of one layer's Gram matrices ``(N, C, C)``, over images and entries."""
    return jnp.mean(jnp.square(gram - target))


class Moments(NamedTuple):
    """The first two raw moments of a layer's features (:func:`feature_moments`), or their sums.

    Attributes:
      mean: ``(1/P) sum_p f_p`` (or ``sum_p f_p``), ``(N, C)``.
      second_moment: ``(1/P) sum_p f_p f_p^T`` (or ``sum_p f_p f_p^T``), ``(N, C, C)``.
    """

    mean: Array
    second_moment: Array


def feature_moments(features: Array) -> Moments:
    """Mean and second raw moment of NHWC features over positions, accumulated in >= float32.

    ``mu = (1/P) sum_p f_p`` with shape ``(N, C)`` and ``S = (1/P) sum_p f_p f_p^T`` with
    shape ``(N, C, C)``, over the ``P = H*W`` positions ``p``. Unlike the covariance,
    both are linear in the image's contributions, so several styles blend as weighted
    sums of them (style-transfer-pytorch's ``StyleLossW2.get_target``).
    """
    n, h, w, c = features.shape
    f = features.reshape(n, h * w, c)
    return Moments(moment_sums(f) / (h * w), gram_product(f, HIGHEST) / (h * w))


def moment_sums(flat: Array) -> Array:
    """``sum_p f_p`` of ``(N, P, C)`` features, accumulated in >= float32: ``(N, C)``.

    With :func:`gram_product` for the second moment, nothing the size of the features
    is copied: autodiff of ``einsum(f, f)`` on a float32 copy of them kept three
    ``H*W*C`` buffers per style layer, which made a W2 step's compiled memory well
    above a Gram step's (bench/RESULTS.md).
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


def w2_distance(moments: Moments, target: GaussianTarget) -> Array:
    """style-transfer-pytorch's Wasserstein-2 style loss of one layer, from its features' :class:`Moments`.

    ``(|mu - mu_t|^2 + tr(Sigma + Sigma_t - 2 (Sigma_t^(1/2) Sigma Sigma_t^(1/2))^(1/2))) / C``,
    the squared 2-Wasserstein distance between the Gaussians ``N(mu, Sigma)`` of the
    features and ``N(mu_t, Sigma_t)`` of the target, divided by the channel count ``C``
    (its ``mean`` over channels); both covariances carry ``+ eps I``
    (:data:`W2_EPS`), and the square roots are :func:`sqrtm`'s, so that where 12
    Newton-Schulz iterations have not converged (small eigenvalues) this is
    style-transfer-pytorch's value rather than the exact distance. Means over the
    ``N`` images too.
    """
    mean, second_moment = moments
    cov = covariance(mean, second_moment)
    mean_diff = jnp.mean(jnp.square(mean - target.mean))
    product = jnp.matmul(jnp.matmul(target.cov_sqrt, cov, precision=HIGHEST), target.cov_sqrt, precision=HIGHEST)
    sqrt_term = sqrtm(product)
    cov_diff = jnp.mean(jnp.diagonal(target.cov + cov - 2 * sqrt_term, axis1=-2, axis2=-1))
    return mean_diff + cov_diff


def guided_gram_sums(flat: Array, guide: Array | None) -> tuple[Array, Array | None]:
    """``(sum_p (m_r(p) f_p)(m_r(p) f_p)^T, sum_p m_r(p)^2)`` of ``(N, P, C)`` features: ``(N, R, C, C)``, ``(N, R)``.

    ``guide`` ``(N, P, R)``: the ``R`` guidance channels ``m_r`` at this layer's positions
    (region masks in [0, 1], already brought to the layer's size). ``None``: one all-ones
    channel, whose weight sum is not summed here (``None``) but taken by :func:`guided_gram`
    as the layer's positions, so that the zero rows a band is padded with do not count.
    Accumulated in >= float32, as :func:`gram_product`.
    """
    if guide is None:
        return gram_product(flat)[:, None], None
    acc = accumulation_dtype(flat.dtype)
    weighted = guide[:, :, :, None] * flat[:, :, None, :]  # m_r(p) f_p, (N, P, R, C)
    product = jnp.einsum("nprc,nprd->nrcd", weighted, weighted, preferred_element_type=acc)
    return product, jnp.sum(jnp.square(guide), axis=1, dtype=acc)


def guided_gram(sums: tuple[Array, Array | None], positions: int) -> Array:
    """Guided Gram matrices ``G_r = sum_p (m_r f_p)(m_r f_p)^T / (C sum_p m_r(p)^2)`` (Gatys et al.
    2017, "Controlling Perceptual Factors in Neural Style Transfer", section 4.1, guidance
    channels simply downsampled to the layer), ``(N, R, C, C)``, from :func:`guided_gram_sums`.

    Departure: the paper's ``F_r = m_r * F`` and ``G_r = F_r^T F_r`` is normalised here by
    the region's own weight ``sum_p m_r(p)^2`` times ``C``, not by the layer's ``C H W``, so
    that ``G_r`` is an average over the region: a region covering a fifth of the output
    compares with a style region of any size. With one all-ones channel (``positions``
    positions) both are :func:`gram_matrix`. An empty region gives ``G_r = 0``.
    """
    product, mass = sums
    channels = product.shape[-1]
    if mass is None:
        return product / (channels * positions)
    mass = jnp.where(mass > 0, mass, 1)[..., None, None]
    return product / (channels * mass)


def guided_gram_distance(grams: Array, target: Array) -> Array:
    """``sum_r mean((G_r - T_r)^2)``: each region's :func:`gram_distance` (means over the
    images and the ``C x C`` entries), summed over the ``R`` regions; ``(N, R, C, C)`` both."""
    return jnp.sum(jnp.mean(jnp.square(grams - target), axis=(0, 2, 3)))


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


def tv_nine_point(image: Array, rows: int | None = None) -> Array:
    """style-transfer-pytorch's L2 total variation over a nine-point stencil, of NHWC images.

    With ``x`` the image padded by one pixel on each side by repeating its edges:
    ``2 * (mean(h^2) / 3 + mean(v^2) / 3 + mean(d^2) / 12 + mean(a^2) / 12)`` where
    ``h = x[i, j+1] - x[i, j]`` and ``v = x[i+1, j] - x[i, j]`` over the image's own
    positions, and ``d = x[i+1, j+1] - x[i, j]`` and ``a = x[i+1, j] - x[i, j+1]`` over
    the ``(H+1) x (W+1)`` diagonal pairs of the padded image; each mean is over its
    own pairs, images and channels (its ``TVLoss``). ``rows``: as for :func:`tv_loss`.
    """
    if rows is not None:  # the rows below the own repeat the last, as the edge padding does
        image = jnp.where((jnp.arange(image.shape[1]) < rows)[:, None, None], image, image[:, rows - 1 : rows])
    own, pairs = (None, None) if rows is None else (rows, rows + 1)
    x = jnp.pad(image, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    centre = x[:, 1:-1, 1:-1]

    def term(diff: Array, rows: int | None) -> Array:
        return rows_mean(jnp.square(diff if rows is None else keep_rows(diff, rows)), rows)

    h = term(x[:, 1:-1, 2:] - centre, own) / 3
    v = term(x[:, 2:, 1:-1] - centre, own) / 3
    d = term(x[:, 1:, 1:] - x[:, :-1, :-1], pairs) / 12
    a = term(x[:, 1:, :-1] - x[:, :-1, 1:], pairs) / 12
    return 2 * (h + v + d + a)


def tv_loss(image: Array, reduction: str = "mean", rows: int | None = None) -> Array:
    """Total variation of NHWC images.

    ``"mean"`` (d2l): ``0.5 * (mean|x[i+1, j] - x[i, j]| + mean|x[i, j+1] - x[i, j]|)``,
    means over all images, positions and channels. ``"sum"`` (neural-style-pt):
    ``sum|x[i+1, j] - x[i, j]| + sum|x[i, j+1] - x[i, j]|``. ``"nine"``
    (style-transfer-pytorch): squared differences over a nine-point stencil
    (:func:`tv_nine_point`). ``rows``: the image's own rows, where it was padded below them
    (a split image, :mod:`jaxstyle.spatial`): the loss of ``image[:, :rows]``, the pairs
    that reach past them left out.
    """
    if reduction == "nine":
        return tv_nine_point(image, rows)
    dy = abs_zero_subgradient(image[:, 1:, :, :] - image[:, :-1, :, :])
    dx = abs_zero_subgradient(image[:, :, 1:, :] - image[:, :, :-1, :])
    dy_rows = None if rows is None else rows - 1
    if rows is not None:
        dy, dx = keep_rows(dy, dy_rows), keep_rows(dx, rows)
    if reduction == "sum":
        return jnp.sum(dy) + jnp.sum(dx)
    return 0.5 * (rows_mean(dy, dy_rows) + rows_mean(dx, rows))


def edited_image(image: Array, edit: EditTarget | None) -> Array:
    """``c + m (x - c)``: the image ``x`` with the pixels outside the edit mask ``m`` the content's ``c``.

    The objective is a function of this image, so its gradient with respect to ``x`` is
    ``m`` times the gradient at the composite: zero outside the mask, where no optimiser
    then moves ``x`` (Adam's moments stay 0 there; L-BFGS's directions are sums of
    gradients and past steps, all 0 there). ``None``: ``x`` itself.
    """
    if edit is None:
        return image
    return edit.image + edit.mask * (image - edit.image)


def temporal_loss(image: Array, target: TemporalTarget) -> Array:
    """Ruder et al.'s temporal loss of NHWC images (``mse`` criterion): the short-term loss of
    their eq. 7 when ``target`` holds one warped frame, the long-term loss of §3.3 when several.

    ``sum_j (1/D) sum_k c_{j,k} (x_k - w_{j,k})^2`` with ``D = N*H*W*C`` the image's
    elements, ``w_j`` the ``j``-th warped frame and ``c_j`` its mask (broadcast over
    channels): each term is artistic-videos' ``WeightedContentLoss`` on the image
    (``nn.MSECriterion`` of ``sqrt(c_j) * x`` against ``sqrt(c_j) * w_j``), one per earlier
    frame, all with the same weight. At a coarser scale than the targets', each warped
    frame and its mask are resized bilinearly to the image's size.
    """
    terms = []
    for j in range(target.image.shape[-4]):  # static: the warped frames, closest first
        warped, mask = target.image[..., j, :, :, :], target.mask[..., j, :, :, :]
        if warped.shape[-3:-1] != image.shape[-3:-1]:
            h, w = image.shape[-3:-1]
            warped = jax.image.resize(warped, (*warped.shape[:-3], h, w, warped.shape[-1]), "linear")
            mask = jax.image.resize(mask, (*mask.shape[:-3], h, w, mask.shape[-1]), "linear")
        diff = accumulate(image) - accumulate(warped)
        terms.append(jnp.sum(mask * jnp.square(diff)) / diff.size)
    return functools.reduce(jnp.add, terms)


# --------------------------------------------------------------------------- the style losses, by name


class StyleLoss(NamedTuple):
    """One style loss: what it reads of a style layer's features and what it makes of it.

    A style loss sees a layer's features only through sums over positions, so that
    whoever computes the features may split them: :mod:`jaxstyle.remat` adds the sums
    band by band, :mod:`jaxstyle.spatial` sums them over the devices holding the
    image's rows, and a batch of settings selects each setting's target by index,
    without any of them knowing which loss it computes (every sum, statistic and target
    is a pytree of arrays with a leading image axis ``N``).

    Attributes:
      sums: ``(flat, guide) -> sums``: sums over positions of ``(N, P, C)`` features.
        ``guide``: ``(N, P, R)`` per-position guidance channels at this layer, or ``None``
        (a loss that has no use for them ignores them).
      statistics: ``(sums, positions) -> statistics``: the sums over all of a layer's
        ``positions`` normalised. They must be linear in the image's contributions:
        several style images blend as ``sum_s b_s X_s`` (:func:`jaxstyle.solve.blend_statistics`).
      target: ``statistics -> target``: a style image's (blended) statistics made into what
        the loss compares with, once per stage (W2: the covariance and its square root).
      distance: ``(statistics, target) -> scalar``: the loss of one layer, averaged over ``N``.
    """

    sums: Callable[[Array, Array | None], Any]
    statistics: Callable[[Any, int], Any]
    target: Callable[[Any], Any]
    distance: Callable[[Any, Any], Array]


def _unguided(sums: Callable[[Array], Any]) -> Callable[[Array, Array | None], Any]:
    """``sums`` of a loss that reads no guidance channels, taking (and ignoring) a guide."""
    return lambda flat, guide: sums(flat)


STYLE_LOSSES: dict[str, StyleLoss] = {
    # G = sum_p f_p f_p^T / (C P)
    "gram": StyleLoss(
        sums=_unguided(gram_product),
        statistics=lambda product, positions: product / (product.shape[-1] * positions),
        target=lambda gram: gram,
        distance=gram_distance,
    ),
    # mu = sum_p f_p / P, S = sum_p f_p f_p^T / P (full precision, as upstream's float32)
    "w2": StyleLoss(
        sums=_unguided(lambda flat: Moments(moment_sums(flat), gram_product(flat, HIGHEST))),
        statistics=lambda sums, positions: Moments(sums.mean / positions, sums.second_moment / positions),
        target=lambda moments: gaussian_target(*moments),
        distance=w2_distance,
    ),
    "guided": StyleLoss(
        sums=guided_gram_sums,
        statistics=guided_gram,
        target=lambda grams: grams,
        distance=guided_gram_distance,
    ),
}
config.check_registry("jaxstyle.losses.STYLE_LOSSES", STYLE_LOSSES, config.STYLE_LOSS_HELP)

# A style layer's statistics: for each of the recipe's style losses, by name, its
# StyleLoss.statistics (the sums of layer_sums, normalised).
LayerStatistics = dict[str, Any]


def style_loss_entry(name: str) -> StyleLoss:
    """The registered :class:`StyleLoss` called ``name``, or a ``ValueError`` naming the choices."""
    if name not in STYLE_LOSSES:
        raise ValueError(f"unknown style loss {name!r}; choose from {', '.join(STYLE_LOSSES)}")
    return STYLE_LOSSES[name]


def layer_sums(flat: Array, style_losses: Sequence[str], guide: Guide | Array | None = None) -> dict[str, Any]:
    """Every loss's :attr:`StyleLoss.sums` of ``(N, P, C)`` features, by name; ``guide``: a
    :class:`Guide` flattened to ``(N, P, .)`` (an array: its guidance channels ``(N, P, R)``)."""
    regions, strength = as_guide(guide)
    if strength is not None:
        flat = strength_scaled(flat, strength.astype(flat.dtype))
    return {name: style_loss_entry(name).sums(flat, regions) for name in style_losses}


def zero_sums(style_losses: Sequence[str], n: int, c: int, dtype: jnp.dtype, guide_channels: int | None = None) -> dict:
    """Zeros shaped as :func:`layer_sums` of ``n`` images' ``c``-channel ``dtype`` features (with
    ``guide_channels`` guidance channels, or none): where a sum over bands starts."""
    flat = jax.ShapeDtypeStruct((n, 1, c), dtype)
    guide = None if guide_channels is None else jax.ShapeDtypeStruct((n, 1, guide_channels), dtype)
    shapes = jax.eval_shape(lambda f, g: layer_sums(f, style_losses, g), flat, guide)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def add_sums(a: dict, b: dict) -> dict:
    """Two parts' :func:`layer_sums` added (bands of an image, say)."""
    return jax.tree.map(jnp.add, a, b)


def sums_statistics(sums: dict, positions: int) -> LayerStatistics:
    """:data:`LayerStatistics` from :func:`layer_sums` over all of a layer's ``positions``."""
    return {name: style_loss_entry(name).statistics(s, positions) for name, s in sums.items()}


def layer_statistics(
    features: Array, style_losses: Sequence[str], guide: Guide | Array | None = None
) -> LayerStatistics:
    """:data:`LayerStatistics` of NHWC ``features`` (and of a :class:`Guide` at the features'
    size, or of guidance channels ``(N, H, W, R)``, or ``None``)."""
    n, h, w, c = features.shape
    flat_guide = flat_positions(as_guide(guide))
    return sums_statistics(layer_sums(features.reshape(n, h * w, c), style_losses, flat_guide), h * w)


def flat_positions(tree: Any) -> Any:
    """Every ``(N, H, W, K)`` leaf of ``tree`` as ``(N, H*W, K)``."""
    return jax.tree.map(lambda x: x.reshape(x.shape[0], -1, x.shape[-1]), tree)


def style_targets(stats: Sequence[LayerStatistics], style_losses: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """:attr:`Targets.style` from a style image's (blended) statistics at each style layer."""
    return {name: tuple(style_loss_entry(name).target(s[name]) for s in stats) for name in style_losses}


def style_loss(
    stats: Sequence[LayerStatistics], targets: Sequence[Any], layer_weights: Array, name: str = "gram"
) -> Array:
    """``sum_l w_l * d(X_l, T_l)`` over the style layers ``l``: the style loss ``name``'s
    :attr:`StyleLoss.distance` ``d`` between the image's statistics and its targets."""
    distance = style_loss_entry(name).distance
    terms = [distance(s[name], t) for s, t in zip(stats, targets, strict=True)]
    return jnp.dot(layer_weights, jnp.stack(terms))


def loss_terms(
    image: Array,
    content_features: Sequence[Array],
    style_statistics: Sequence[LayerStatistics | Array],
    targets: Targets,
    weights: LossWeights,
    tv_reduction: str = "mean",
    style_losses: Sequence[str] = ("gram",),
    rows: int | None = None,
) -> dict[str, Array]:
    """Loss terms and their weighted sum.

    ``total = w_c * content + w_s * style + w_tv * tv``; the returned ``content``,
    ``style`` and ``tv`` entries are the unweighted terms. ``style_statistics`` are each
    style layer's :data:`LayerStatistics` (or its NHWC features, reduced here).
    ``style_losses`` (static) are the style losses to compute (:data:`STYLE_LOSSES`);
    with several, ``style`` is ``sum_i weights.style_loss[i] * style_i``, the setting's
    own with a one-hot ``style_loss`` (a non-finite value of another would still poison
    it: 0 * inf). With a temporal target (video frames), ``total`` adds ``w_t * temporal``
    (:func:`temporal_loss`) and the returned dict has a ``temporal`` entry. With a strength
    map ``s`` (:attr:`Targets.strength`), style layer ``l``'s term is ``mean_p s_l`` times its
    distance, and its gradient at each position ``p`` is scaled by ``s_l(p) / mean s_l``
    (:func:`strength_scaled`): a uniform strength ``c`` is exactly a style weight ``c w_s``.

    ``rows``: the image's own rows, where a split stage padded it below them with rows the
    features and targets hold zeros in (:mod:`jaxstyle.spatial`): the content and TV
    terms are then those of the own rows alone (``style_statistics`` count only them already).
    """
    layer_rows = None
    if rows is not None:
        if targets.temporal is not None:
            raise ValueError("a video frame's temporal loss is not computed on a padded image")
        # A layer behind k 2x2 poolings keeps rows // 2^k rows; the padded height is 2^k times its own.
        layer_rows = [rows // (image.shape[-3] // f.shape[-3]) for f in content_features]
    content = content_loss(content_features, targets.content, weights.content_layers, layer_rows)
    stats = [s if isinstance(s, dict) else layer_statistics(s, style_losses) for s in style_statistics]
    layer_weights = weights.style_layers
    if targets.strength is not None:  # a strength map: each layer's term times its mean strength
        layer_weights = layer_weights * jnp.mean(targets.strength, axis=0)
    styles = [style_loss(stats, targets.style[name], layer_weights, name) for name in style_losses]
    style = styles[0] if len(styles) == 1 else jnp.dot(weights.style_loss, jnp.stack(styles))
    tv = tv_loss(image, tv_reduction, rows)
    total = weights.content * content + weights.style * style + weights.tv * tv
    terms = {"content": content, "style": style, "tv": tv}
    if targets.temporal is not None:
        terms["temporal"] = temporal_loss(image, targets.temporal)
        total = total + weights.temporal * terms["temporal"]
    return {**terms, "total": total}
