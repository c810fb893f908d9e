"""Optical flow, warping and Ruder et al.'s consistency masks, in NumPy and OpenCV (host side, no JAX).

Conventions: a flow ``f`` from frame ``a`` to frame ``b`` is an ``(H, W, 2)`` float32
array of ``(dx, dy)`` displacements such that ``a(p) ≈ b(p + f(p))``; warping ``b`` by
``f`` gives ``a``'s view of ``b``, ``warp(b, f)(p) = b(p + f(p))``.

The consistency check follows artistic-videos' ``consistencyChecker/consistencyChecker.cpp``
(manuelruder/artistic-videos at 40e7447953e22485aee800626180d88beabeda30): a pixel is
occluded where the flow and the other direction's flow, sampled where it points, do not
cancel, and lies on a motion boundary where the flow's gradient is large. The flow
itself comes from OpenCV's DIS (dense inverse search) instead of the paper's DeepFlow or
EpicFlow, which ship no Python wheel.
"""

from __future__ import annotations

import numpy as np

# consistencyChecker.cpp: "|w + ŵ|² >= 0.01 (|w|² + |ŵ|²) + 0.5" marks an occlusion ...
OCCLUSION_RELATIVE, OCCLUSION_ABSOLUTE = 0.01, 0.5
# ... and "|∇u|² + |∇v|² > 0.01 |w|² + 0.002" a motion boundary ...
BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE = 0.01, 0.002
# ... after which the mask is smoothed by a Gaussian of this standard deviation (SMOOTH_STRENGH).
MASK_SMOOTHING = 0.8


def cv2_module():
    """OpenCV, or a one-line error saying how to install the ``video`` extra."""
    try:
        import cv2
    except ImportError:
        from jaxstyle.errors import JaxstyleError

        raise JaxstyleError("video needs OpenCV: pip install 'jaxstyle[video]'") from None
    return cv2


def grey8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] to 8-bit luma (ITU-R BT.601 weights), what DIS takes."""
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.round(np.clip(luma, 0, 1) * 255).astype(np.uint8)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow from RGB frame ``a`` to ``b`` (``a(p) ≈ b(p + f(p))``) by OpenCV's DIS, ``(H, W, 2)``.

    The ``MEDIUM`` preset (variational refinement on, patches 8 px, stride 3), computed
    on BT.601 luma.
    """
    cv2 = cv2_module()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(grey8(a), grey8(b), None).astype(np.float32)


def sample(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image(p + flow(p))`` sampled bilinearly, and whether ``p + flow(p)`` lies inside the image.

    ``image``: ``(H, W)`` or ``(H, W, C)``; outside points take the nearest edge value.
    """
    cv2 = cv2_module()
    h, w = flow.shape[:2]
    x = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    y = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    out = cv2.remap(image.astype(np.float32), x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return out, inside


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` warped by ``flow``: ``out(p) = image(p + flow(p))``, bilinear, edges repeated."""
    return sample(image, flow)[0]


def consistency_mask(flow: np.ndarray, reverse: np.ndarray) -> np.ndarray:
    """Ruder et al.'s per-pixel weight of ``flow`` in [0, 1]: 0 at occlusions and motion boundaries.

    With ``w = flow(p)`` and ``ŵ = reverse(p + w)`` (the other direction's flow where
    ``w`` points), ``p`` is occluded where ``|w + ŵ|² >= 0.01 (|w|² + |ŵ|²) + 0.5``, and
    on a motion boundary where ``|∇u|² + |∇v|² > 0.01 |w|² + 0.002`` (``u, v`` the
    components of ``flow``, central differences). Occluded pixels, and pixels whose
    flow leaves the image, get 0; so do motion boundaries (their ``MOTION_BOUNDARIE_VALUE``
    is 0). As in consistencyChecker.cpp, occlusions enter the smoothing as -1 so that a
    Gaussian of sigma 0.8 widens them, and the result is clipped to [0, 1].
    """
    cv2 = cv2_module()
    back, inside = sample(reverse, flow)
    round_trip = np.sum(np.square(flow + back), axis=-1)
    magnitude = np.sum(np.square(flow), axis=-1)
    occluded = round_trip >= OCCLUSION_RELATIVE * (magnitude + np.sum(np.square(back), axis=-1)) + OCCLUSION_ABSOLUTE
    du_dy, du_dx = np.gradient(flow[..., 0])
    dv_dy, dv_dx = np.gradient(flow[..., 1])
    edge = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
    boundary = edge > BOUNDARY_RELATIVE * magnitude + BOUNDARY_ABSOLUTE
    mask = np.ones(flow.shape[:2], np.float32)
    mask[boundary] = 0.0
    mask[occluded] = -1.0
    mask[~inside] = 0.0  # consistencyChecker.cpp: a flow leaving the image is unreliable (0, not -1)
    mask = cv2.GaussianBlur(mask, (5, 5), MASK_SMOOTHING, borderType=cv2.BORDER_REPLICATE)
    return np.clip(mask, 0.0, 1.0)


def flows(frames: np.ndarray, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward flows between frames ``step`` apart, ``(N, H, W, 3)``.

    ``forward[i]``: from frame ``i`` to ``i + step``; ``backward[i]``: from frame
    ``i + step`` to ``i``; each ``(N - step, H, W, 2)``. Frames further apart than one
    (the long-term temporal loss) get their flow directly, as artistic-videos'
    ``makeOptFlow.sh`` computes it for each relative index, not by chaining flows.
    """
    pairs = list(zip(frames[:-step], frames[step:], strict=True))
    empty = np.zeros((0, *frames.shape[1:3], 2))
    forward = np.stack([dis_flow(a, b) for a, b in pairs]) if pairs else empty
    backward = np.stack([dis_flow(b, a) for a, b in pairs]) if pairs else empty
    return forward.astype(np.float32), backward.astype(np.float32)
