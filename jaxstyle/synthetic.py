"""A synthetic clip with known motion: a photo panned and zoomed (for tests, benchmarks, the docs).

Frame ``t`` shows the photo point ``q = z_t * p + b_t`` at frame pixel ``p`` (pixel
centres at integer coordinates): the camera zooms in by ``zoom`` per frame (``z``
shrinks) and pans by ``pan`` frame pixels per frame. The true flow from frame ``t`` to
``t + 1`` is then ``p' - p`` with ``z_{t+1} p' + b_{t+1} = z_t p + b_t``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PanZoom(NamedTuple):
    """The camera of a synthetic clip: per frame, ``z_t = z_0 / zoom**t`` and ``b_t = b_0 + t * pan * z_t``.

    Attributes:
      size: ``(height, width)`` of the frames.
      zoom: zoom factor per frame (>1 zooms in).
      pan: ``(dx, dy)`` pan per frame, in frame pixels.
      cover: the fraction of the photo's width the first frame shows.
    """

    size: tuple[int, int] = (48, 64)
    zoom: float = 1.02
    pan: tuple[float, float] = (1.5, 0.75)
    cover: float = 0.6


def camera(photo_hw: tuple[int, int], motion: PanZoom, t: int) -> tuple[float, np.ndarray]:
    """``(z_t, b_t)``: photo pixels per frame pixel, and the photo point at frame pixel (0, 0)."""
    ph, pw = photo_hw
    h, w = motion.size
    z0 = motion.cover * pw / w
    zt = z0 / motion.zoom**t
    centre = np.array([pw / 2, ph / 2])
    pan = np.asarray(motion.pan) * t * zt
    return zt, centre - zt * np.array([w / 2, h / 2]) + pan


def render(photo: np.ndarray, motion: PanZoom, count: int) -> np.ndarray:
    """``count`` frames ``(N, H, W, 3)`` float32 of ``photo`` (RGB in [0, 1]) under ``motion``.

    Each frame is sampled from the photo by area averaging where it shrinks (the photo
    is first blurred to the frame's scale) and bilinear interpolation.
    """
    import cv2

    h, w = motion.size
    frames = []
    for t in range(count):
        z, b = camera(photo.shape[:2], motion, t)
        sigma = max(0.0, 0.5 * (z - 1))
        src = cv2.GaussianBlur(photo, (0, 0), sigma) if sigma > 0.05 else photo
        matrix = np.array([[z, 0, b[0]], [0, z, b[1]]], np.float64)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        frames.append(cv2.warpAffine(src, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT))
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


def true_flow(photo_hw: tuple[int, int], motion: PanZoom, t: int, step: int = 1) -> np.ndarray:
    """The exact flow ``(H, W, 2)`` from frame ``t`` to frame ``t + step`` (``step`` may be -1)."""
    h, w = motion.size
    z0, b0 = camera(photo_hw, motion, t)
    z1, b1 = camera(photo_hw, motion, t + step)
    p = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), axis=-1)
    return ((z0 * p + b0 - b1) / z1 - p).astype(np.float32)


def photo_rgb(path: str) -> np.ndarray:
    """A photo as float32 RGB in [0, 1]."""
    from jaxstyle.image import load_image

    return load_image(path)
