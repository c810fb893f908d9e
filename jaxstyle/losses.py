"""Style-transfer losses as pure functions of features, targets and weights.

Features are NHWC activations. Every loss is a mean over elements, as in the d2l
recipe the ``paper`` preset follows, so a loss does not grow with the image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array


class LossWeights(NamedTuple):
    """Loss weights as array leaves, so changing a value never recompiles.

    Attributes:
      content: weight of the content loss (scalar).
      style: weight of the style loss (scalar).
      tv: weight of the total-variation loss (scalar).
      content_layers: per-content-layer weights, shape ``(len(content_layers),)``.
      style_layers: per-style-layer weights, shape ``(len(style_layers),)``.
    """

    content: Array
    style: Array
    tv: Array
    content_layers: Array
    style_layers: Array


class Targets(NamedTuple):
    """What the synthesized image is pulled towards, computed once before solving.

    Tuples in the order of the recipe's layer lists (dict pytrees would be re-sorted
    by key under ``jit`` and lose their pairing with the per-layer weights).

    Attributes:
      content: features of the content image at each content layer.
      style_gram: Gram matrix of the style image's features at each style layer.
    """

    content: tuple[Array, ...]
    style_gram: tuple[Array, ...]


def accumulate(x: Array) -> Array:
    """``x`` in at least float32: bfloat16/float16 features are summed in float32.

    Departure from tools that keep everything in half precision: Gram sums over H*W
    positions overflow float16 and lose most digits in bfloat16.
    """
    return x.astype(jnp.float32) if jnp.finfo(x.dtype).bits < 32 else x


def gram_matrix(features: Array) -> Array:
    """Normalised Gram matrix of NHWC features, one per image, accumulated in >= float32.

    ``G = F^T F / (C*H*W)`` with ``F`` of shape ``(H*W, C)``; returns ``(N, C, C)``.
    """
    n, h, w, c = features.shape
    f = accumulate(features).reshape(n, h * w, c)
    return jnp.einsum("npc,npd->ncd", f, f) / (c * h * w)


def content_loss(features: Sequence[Array], targets: Sequence[Array], layer_weights: Array) -> Array:
    """``sum_l w_l * mean((F_l - T_l)^2)`` over the content layers ``l``."""
    terms = [jnp.mean(jnp.square(accumulate(f) - accumulate(t))) for f, t in zip(features, targets, strict=True)]
    return jnp.dot(layer_weights, jnp.stack(terms))


def style_loss(features: Sequence[Array], gram_targets: Sequence[Array], layer_weights: Array) -> Array:
    """``sum_l w_l * mean((G(F_l) - G_l)^2)`` over the style layers ``l``, G the Gram matrix."""
    terms = [jnp.mean(jnp.square(gram_matrix(f) - g)) for f, g in zip(features, gram_targets, strict=True)]
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


def tv_loss(image: Array, reduction: str = "mean") -> Array:
    """Anisotropic total variation of NHWC images.

    ``"mean"`` (d2l): ``0.5 * (mean|x[i+1, j] - x[i, j]| + mean|x[i, j+1] - x[i, j]|)``,
    means over all images, positions and channels. ``"sum"`` (neural-style-pt):
    ``sum|x[i+1, j] - x[i, j]| + sum|x[i, j+1] - x[i, j]|``.
    """
    dy = abs_zero_subgradient(image[:, 1:, :, :] - image[:, :-1, :, :])
    dx = abs_zero_subgradient(image[:, :, 1:, :] - image[:, :, :-1, :])
    if reduction == "sum":
        return jnp.sum(dy) + jnp.sum(dx)
    return 0.5 * (jnp.mean(dy) + jnp.mean(dx))


def loss_terms(
    image: Array,
    content_features: Sequence[Array],
    style_features: Sequence[Array],
    targets: Targets,
    weights: LossWeights,
    tv_reduction: str = "mean",
) -> dict[str, Array]:
    """Loss terms and their weighted sum.

    ``total = w_c * content + w_s * style + w_tv * tv``; the returned ``content``,
    ``style`` and ``tv`` entries are the unweighted terms.
    """
    content = content_loss(content_features, targets.content, weights.content_layers)
    style = style_loss(style_features, targets.style_gram, weights.style_layers)
    tv = tv_loss(image, tv_reduction)
    total = weights.content * content + weights.style * style + weights.tv * tv
    return {"content": content, "style": style, "tv": tv, "total": total}
