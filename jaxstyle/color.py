"""Colour transfer for ``--preserve-color``: pure functions on float RGB in [0, 1]."""

from __future__ import annotations

import numpy as np

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


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """``(Y, Cb, Cr) = M @ (R, G, B) + (0, 0.5, 0.5)`` per pixel, channels last."""
    return rgb @ RGB_TO_YCBCR.T + YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr` (not clipped)."""
    return (ycbcr - YCBCR_OFFSET) @ YCBCR_TO_RGB.T


def preserve_color(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The luminance ``Y`` of ``stylized`` with the chroma ``(Cb, Cr)`` of ``content``, clipped to [0, 1].

    Both are float RGB of the same shape. Done once on the final image, as in
    neural-style's ``-original_colors 1``; pixels whose combination falls outside the
    RGB cube are clipped, so there the chroma is only approximately the content's.
    """
    y = rgb_to_ycbcr(stylized.astype(np.float64))[..., :1]
    chroma = rgb_to_ycbcr(content.astype(np.float64))[..., 1:]
    return np.clip(ycbcr_to_rgb(np.concatenate([y, chroma], axis=-1)), 0.0, 1.0).astype(np.float32)
