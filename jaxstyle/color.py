"""Colour control (``--color``): pure functions on float RGB in [0, 1], channels last.

Gatys, Ecker, Bethge, Hertzmann and Shechtman, *Controlling Perceptual Factors in Neural
Style Transfer* (CVPR 2017, section 5), keep the content's colours in two ways, and
neural-style's ``-original_colors`` in a third. Each is a mode of ``--color``
(:data:`~jaxstyle.config.COLOR_HELP`), made of three steps that :mod:`jaxstyle.pipeline` calls, once where
the inputs are read and once where the output is made:

- :func:`styles_for` (the style images the network sees, matched to the content),
- :func:`network_view` (what the network sees of any other image: the contents, the
  initial image, a video's warped frames),
- :func:`recolour` (the output made from the optimised image and the content).

The modes:

- ``none``: the style's colours; the three steps change nothing.
- ``post``: after the run, the result's luminance with the content's chroma
  (:func:`preserve_color`, YCbCr).
- ``luminance``: luminance-only transfer. Content and style become their luminance ``Y``
  (YIQ), the style's matched to the content's mean and standard deviation
  (:func:`match_luminance`), replicated to three channels for the network; the output is
  the result's ``Y`` with the content's ``I`` and ``Q`` (:func:`luminance_output`).
- ``histogram-cholesky``, ``histogram-pca``: colour histogram matching before the run.
  The style's pixels are mapped by ``x' = A (x - mu_s) + mu_c`` so that their mean and
  covariance are the content's (:func:`match_colours`), with ``A`` from Cholesky factors
  or from symmetric square roots (eigendecompositions) of the covariances.

Which content: the first content image of a run (a sweep's several contents, a video's
frames), so that a style is matched once and every setting of a sweep and every frame of
a clip shares it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxstyle.config import COLOR_HELP, COLOR_MODES

HISTOGRAM_METHODS = {"histogram-cholesky": "cholesky", "histogram-pca": "pca"}

# Full-range ITU-R BT.601 YCbCr, as in JPEG and Pillow's "YCbCr" mode (which
# neural-style-pt's -original_colors uses): Y = 0.299 R + 0.587 G + 0.114 B.
RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ]
)
YCBCR_OFFSET = np.array([0.0, 0.5, 0.5])
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)

# NTSC YIQ (FCC), the space Gatys et al. 2017 name: the same Y as above; I and Q are
# chroma (each row of theirs sums to 0, so grey has I = Q = 0).
RGB_TO_YIQ = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.596, -0.274, -0.322],
        [0.211, -0.523, 0.312],
    ]
)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(Y, Cb, Cr) = M @ (R, G, B) + (0, 0.5, 0.5)`` per pixel, channels last."""
    return rgb @ RGB_TO_YCBCR.T + YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (not clipped)."""
    return (ycbcr - YCBCR_OFFSET) @ YCBCR_TO_RGB.T


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    """``(Y, I, Q) = M @ (R, G, B)`` per pixel, channels last (:data:`RGB_TO_YIQ`)."""
    return rgb @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_yiq` (not clipped)."""
    return yiq @ YIQ_TO_RGB.T


def preserve_color(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The luminance ``Y`` of ``stylized`` with the chroma ``(Cb, Cr)`` of ``content``, clipped to [0, 1].

    Both are float RGB of the same shape. Done once on the final image, as in
    neural-style's ``-original_colors 1``; pixels whose combination falls outside the
    RGB cube are clipped, so there the chroma is only approximately the content's.
    """
    y = rgb_to_ycbcr(stylized.astype(np.float64))[..., :1]
    chroma = rgb_to_ycbcr(content.astype(np.float64))[..., 1:]
    return np.clip(ycbcr_to_rgb(np.concatenate([y, chroma], axis=-1)), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- luminance-only transfer


def luminance(rgb: np.ndarray) -> np.ndarray:
    """``Y = 0.299 R + 0.587 G + 0.114 B`` per pixel, float64 ``(..., H, W)``."""
    return rgb.astype(np.float64) @ RGB_TO_YIQ[0]


def match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
    """``L_s' = (sigma_c / sigma_s) (L_s - mu_s) + mu_c``: the style's luminance with the
    content's mean and standard deviation over pixels (Gatys et al. 2017, eq. 8). Not clipped.

    A flat style (``sigma_s = 0``) becomes the content's mean.
    """
    style_y, content_y = np.asarray(style_y, np.float64), np.asarray(content_y, np.float64)
    mu_s, sigma_s = style_y.mean(), style_y.std()
    mu_c, sigma_c = content_y.mean(), content_y.std()
    scale = sigma_c / sigma_s if sigma_s > 0 else 0.0
    return scale * (style_y - mu_s) + mu_c


def grey(y: np.ndarray) -> np.ndarray:
    """A luminance ``(H, W)`` replicated to three channels ``(H, W, 3)``: what the network sees of it."""
    return np.repeat(np.asarray(y)[..., None], 3, axis=-1)


def luminance_output(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """``rgb(Y_result, I_content, Q_content)`` (YIQ), not clipped: the output of a luminance-only run.

    Because ``I`` and ``Q`` vanish on grey, this equals ``content + (Y_result - Y_content) (1, 1, 1)``;
    in exact arithmetic it is also :func:`preserve_color`'s (YCbCr) combination before clipping.
    """
    y = rgb_to_yiq(result.astype(np.float64))[..., :1]
    iq = rgb_to_yiq(content.astype(np.float64))[..., 1:]
    return yiq_to_rgb(np.concatenate([y, iq], axis=-1))


# --------------------------------------------------------------------------- colour histogram matching


def mean_and_covariance(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mu = mean_p x_p`` and ``Sigma = mean_p (x_p - mu)(x_p - mu)^T`` over the pixels of ``(H, W, 3)``, float64."""
    x = np.asarray(rgb, np.float64).reshape(-1, 3)
    mu = x.mean(axis=0)
    centred = x - mu
    return mu, centred.T @ centred / len(x)


# The smallest eigenvalue a covariance is factored with: a flat or two-colour image has a
# singular covariance, which Cholesky refuses and which has no inverse square root. Far
# below the variance of 8-bit rounding alone, (1/255)^2 / 12 = 1.3e-6, so that a photo's
# covariance is factored as it is.
EIGENVALUE_FLOOR = 1e-10


def regularised(sigma: np.ndarray) -> np.ndarray:
    """``Sigma + max(0, floor - lambda_min) I``: ``Sigma`` itself unless its smallest eigenvalue is
    below :data:`EIGENVALUE_FLOOR`, which it is then lifted to."""
    lift = EIGENVALUE_FLOOR - np.linalg.eigvalsh(sigma)[0]
    return sigma + lift * np.eye(len(sigma)) if lift > 0 else sigma


def symmetric_sqrt(sigma: np.ndarray) -> np.ndarray:
    """``Sigma^(1/2) = U diag(sqrt(lambda)) U^T`` from the eigendecomposition ``Sigma = U diag(lambda) U^T``."""
    lam, u = np.linalg.eigh(sigma)
    return (u * np.sqrt(np.clip(lam, 0.0, None))) @ u.T


def colour_transform(style: np.ndarray, content: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, mu_s, mu_c)`` of the linear map ``x' = A (x - mu_s) + mu_c`` that gives the style's pixels the
    content's mean and covariance: ``A Sigma_s A^T = Sigma_c`` (Gatys et al. 2017, section 5.2).

    ``cholesky``: ``A = L_c L_s^-1``, with ``Sigma = L L^T``. ``pca``: ``A = Sigma_c^(1/2) Sigma_s^(-1/2)``,
    the symmetric square roots of the eigendecompositions (:func:`symmetric_sqrt`). A singular
    covariance is :func:`regularised` first (the match is then exact to :data:`EIGENVALUE_FLOOR`).
    """
    mu_s, sigma_s = mean_and_covariance(style)
    mu_c, sigma_c = mean_and_covariance(content)
    sigma_s, sigma_c = regularised(sigma_s), regularised(sigma_c)
    if method == "cholesky":
        a = np.linalg.cholesky(sigma_c) @ np.linalg.inv(np.linalg.cholesky(sigma_s))
    elif method == "pca":
        a = symmetric_sqrt(sigma_c) @ np.linalg.inv(symmetric_sqrt(sigma_s))
    else:
        raise ValueError(f"unknown colour matching method {method!r}; choose cholesky or pca")
    return a, mu_s, mu_c


def match_colours(style: np.ndarray, content: np.ndarray, method: str) -> np.ndarray:
    """The style's pixels mapped by ``x' = A (x - mu_s) + mu_c`` (:func:`colour_transform`), float64, not clipped."""
    a, mu_s, mu_c = colour_transform(style, content, method)
    return (np.asarray(style, np.float64) - mu_s) @ a.T + mu_c


# --------------------------------------------------------------------------- the modes, for the pipeline


def pixels(rgb: np.ndarray) -> np.ndarray:
    """Transformed pixels as an input image: clipped to [0, 1], float32.

    A departure the paper does not discuss: a matched style may leave the RGB cube, and
    input images are pixels in [0, 1] (the resizer clips there too).
    """
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def check_mode(mode: str) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of :data:`~jaxstyle.config.COLOR_MODES`."""
    if mode not in COLOR_HELP:
        raise ValueError(f"unknown colour mode {mode!r}; choose from {', '.join(COLOR_MODES)}")


def styles_for(mode: str, styles: Sequence[np.ndarray], content: np.ndarray) -> list[np.ndarray]:
    """The style images the network sees under ``mode``, each matched to ``content`` (the run's first).

    ``luminance``: each style's luminance matched to the content's (:func:`match_luminance`),
    replicated to three channels; ``histogram-*``: each style's colours matched
    (:func:`match_colours`); otherwise the styles as they are. Clipped to [0, 1] (:func:`pixels`).
    """
    check_mode(mode)
    if mode == "luminance":
        content_y = luminance(content)
        return [pixels(grey(match_luminance(luminance(s), content_y))) for s in styles]
    if mode in HISTOGRAM_METHODS:
        return [pixels(match_colours(s, content, HISTOGRAM_METHODS[mode])) for s in styles]
    return list(styles)


def network_view(mode: str, rgb: np.ndarray) -> np.ndarray:
    """What the network sees of an image that is not a style image (``(..., H, W, 3)``):
    its luminance replicated to three channels under ``luminance``, else the image itself."""
    check_mode(mode)
    if mode == "luminance":  # Y of pixels in [0, 1] lies in [0, 1]: nothing to clip
        return grey(luminance(rgb)).astype(rgb.dtype if np.issubdtype(rgb.dtype, np.floating) else np.float32)
    return rgb


def recolour(mode: str, result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The output of a run under ``mode`` from its optimised image ``result`` (RGB in [0, 1]) and
    the content image it was made from (the same size): with the content's chroma under
    ``post`` (:func:`preserve_color`) and ``luminance`` (:func:`luminance_output`, clipped); else ``result``."""
    check_mode(mode)
    if mode == "post":
        return preserve_color(result, content)
    if mode == "luminance":
        return pixels(luminance_output(result, content))
    return result
