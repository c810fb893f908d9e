"""Spatial control with masks (Gatys et al. 2017, "Controlling Perceptual Factors in Neural
Style Transfer", section 4): region masks carried to the style layers, and their files.

The pure part (no I/O) brings masks in image coordinates to every style layer's size,
the guide pyramid of the ``guided`` style loss (:func:`jaxstyle.losses.guided_gram`), in
the paper's two ways (:data:`GUIDANCE`). The shell part reads mask files and arrays and
checks them, one line per fault naming the file or option.

Masks are in [0, 1]: 1 (white) where the mask applies, soft values weighting it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxstyle import image as imageio
from jaxstyle.errors import JaxstyleError

# How guidance channels reach a layer (Gatys et al. 2017, section 4.1).
GUIDANCE = ("simple", "inside")

# --------------------------------------------------------------------------- pure: guide pyramids


def erode3x3(guide: Array) -> Array:
    """``min`` of each position's 3x3 neighbourhood of ``(N, H, W, R)`` guides: what a neuron
    behind a 3x3 convolution (padding 1) keeps of the guide ("inside" guidance).

    Positions beyond the image's edges count as inside (padded with 1): a region that
    reaches the edge of the image is not eroded there, since the convolution's zero
    padding is no other region's content.
    """
    h, w = guide.shape[1:3]
    padded = jnp.pad(guide, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1)
    shifts = [padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3)]
    return jnp.min(jnp.stack(shifts), axis=0)


def pool2x2(guide: Array, reduce: str) -> Array:
    """``(N, H, W, R)`` guides over VGG's 2x2 pooling windows (stride 2; an odd last row or
    column dropped, as the network's pooling does): their ``mean`` or ``min``."""
    n, h, w, r = guide.shape
    windows = guide[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, r)
    return jnp.mean(windows, axis=(2, 4)) if reduce == "mean" else jnp.min(windows, axis=(2, 4))


def guide_pyramid(masks: Array, names: Sequence[str], taps: Sequence[str], guidance: str = "simple") -> tuple:
    """Guidance channels at each of the layers ``taps``: ``(N, H, W, R)`` masks at the
    network's input size, walked through the layers ``names`` (from the input on).

    ``simple``: each 2x2 pooling averages the guide (the mask downsampled to the layer,
    the paper's "simply downsampled"); convolutions and ReLUs leave it as it is.
    ``inside``: a neuron keeps its guide only where its receptive field lies inside the
    region: each 3x3 convolution erodes the guide (:func:`erode3x3`) and each pooling
    takes the minimum of its window, so that the value at a neuron is the minimum of the
    mask over its receptive field. For a hard mask that is 1 exactly where the receptive
    field lies inside the region; for a soft mask, the minimum is the region's weight
    where the neuron sees its weakest pixel (the soft form of the paper's rule).

    Returns one guide per tap, in the order of ``taps``.
    """
    if guidance not in GUIDANCE:
        raise ValueError(f"guidance must be one of {', '.join(GUIDANCE)}, not {guidance!r}")
    found, g = {}, masks
    for name in names:
        if name.startswith("conv") and guidance == "inside":
            g = erode3x3(g)
        elif name.startswith("pool"):
            g = pool2x2(g, "mean" if guidance == "simple" else "min")
        if name in taps:
            found[name] = g
    return tuple(found[name] for name in taps)


def strength_pyramid(strength: Array, names: Sequence[str], taps: Sequence[str]) -> tuple[tuple, Array]:
    """A strength map ``(N, H, W, 1)`` at each of the layers ``taps``: ``(ratios, means)``.

    The map reaches each layer as :func:`guide_pyramid`'s ``simple`` guidance does (a
    neuron's strength is the mean over the pixels below it, pooling by pooling), ``s_l``.
    ``ratios``: ``s_l / mean_p s_l`` per tap (0 where the mean is 0), ``(N, h, w, 1)``,
    the factor on the style gradient at each position; ``means``: ``mean_p s_l``,
    ``(N, len(taps))``, the factor on each layer's style term
    (:func:`jaxstyle.losses.strength_scaled`, :func:`jaxstyle.losses.loss_terms`).
    """
    levels = guide_pyramid(strength, names, taps, "simple")
    means = jnp.stack([jnp.mean(s, axis=(1, 2, 3)) for s in levels], axis=-1)
    ratios = tuple(
        jnp.where(m[:, None, None, None] > 0, s / jnp.where(m > 0, m, 1)[:, None, None, None], 0)
        for s, m in zip(levels, means.T, strict=True)
    )
    return ratios, means


def region_mass(guide: Array) -> Array:
    """``sum_p m_r(p)^2`` of ``(N, H, W, R)`` guides, ``(N, R)``: the weight a region's guided Gram
    matrix is normalised by (:func:`jaxstyle.losses.guided_gram`); 0 for a region the layer
    does not see."""
    return jnp.sum(jnp.square(guide), axis=(1, 2))


# --------------------------------------------------------------------------- shell: files and arrays

MaskLike = str | os.PathLike | np.ndarray


class PerFrame(tuple):
    """One mask per frame of a clip, in order (a video's moving regions or damage): where a
    video run takes a mask, it may take these (``jaxstyle video``: a folder of mask files).
    Other runs, which have no frames, refuse them."""


def per_frame_folder(folder: str | os.PathLike, option: str) -> PerFrame:
    """The image files of ``folder``, sorted by name, as :class:`PerFrame` masks; one line where there are none."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in MASK_SUFFIXES)
    if not files:
        raise JaxstyleError(f"{option} {folder}: a folder of per-frame masks with no image file in it")
    return PerFrame(files)


# The files a folder of per-frame masks is read from.
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Masks:
    """A run's masks, read and checked, in [0, 1], float32, at their own sizes.

    Attributes:
      style: per content image, its region masks ``(H, W, R)`` in its coordinates, one
        channel per style image (one entry: the same masks for every content image);
        ``None``: no regions.
      style_image: per style image, the mask of the part its statistics come from
        ``(h, w)`` in its coordinates, or ``None`` (all of it); ``None``: none given.
      edit: per content image, the mask of the pixels optimised ``(H, W)`` (one entry: the
        same for every content image); ``None``: every pixel.
      strength: per content image, the strength of the style at each pixel ``(H, W)`` (one
        entry: the same for every content image); ``None``: 1 everywhere.
      guidance: ``simple`` or ``inside`` (:func:`guide_pyramid`).
    """

    style: list[np.ndarray] | None = None
    style_image: list[np.ndarray | None] | None = None
    edit: list[np.ndarray] | None = None
    strength: list[np.ndarray] | None = None
    guidance: str = "simple"

    def for_content(self, kind: str, index: int) -> np.ndarray | None:
        """Content image ``index``'s ``style``, ``edit`` or ``strength`` masks (``None``: none given)."""
        masks = getattr(self, kind)
        if masks is None:
            return None
        return masks[index if len(masks) > 1 else 0]

    def arrays(self) -> list[np.ndarray]:
        """Every mask array, in a fixed order (what a checkpoint's fingerprint digests)."""
        style_image = [m for m in self.style_image or [] if m is not None]
        groups = (self.style or [], style_image, self.edit or [], self.strength or [])
        return [m for group in groups for m in group]


def as_mask(mask: MaskLike, name: str) -> np.ndarray:
    """A greyscale mask file or array as float32 ``(H, W)`` in [0, 1]; a one-line error naming
    ``name`` for an unreadable file, a colour image, or values outside [0, 1].

    Files: greyscale, or RGB(A) whose red, green and blue are equal (alpha
    ignored). Arrays: ``(H, W)`` or ``(H, W, 1)``, uint8 (0-255) or float in [0, 1].
    """
    if isinstance(mask, (str, os.PathLike)):
        arr = imageio.load_image(mask)  # float RGB; a greyscale file's three channels are equal
    else:
        arr = np.asarray(mask)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[:, :, :3]
        if not (np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])):
            raise JaxstyleError(f"mask {name} is not greyscale: its red, green and blue differ")
        arr = rgb[:, :, 0]
    if arr.ndim != 2:
        raise JaxstyleError(f"mask {name} of shape {arr.shape}: expected a greyscale (H, W) image")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if not (np.all(np.isfinite(arr)) and arr.min() >= 0 and arr.max() <= 1):
        raise JaxstyleError(f"mask {name} has values outside [0, 1]")
    return arr


def same_aspect(mask_hw: tuple[int, int], image_hw: tuple[int, int]) -> bool:
    """Whether a mask of ``mask_hw`` is the image's ``image_hw`` scaled by one factor, each side
    rounded: ``round(W h / H) = w`` or ``round(H w / W) = h``. A mask of another shape
    belongs to another picture."""
    (h, w), (hh, ww) = mask_hw, image_hw
    return round(ww * h / hh) == w or round(hh * w / ww) == h


def checked_mask(mask: MaskLike, name: str, image_hw: tuple[int, int], image: str) -> np.ndarray:
    """:func:`as_mask`, of the image ``image``'s aspect (:func:`same_aspect`) and not all black."""
    arr = as_mask(mask, name)
    if not same_aspect(arr.shape, image_hw):
        (h, w), (hh, ww) = arr.shape, image_hw
        raise JaxstyleError(f"mask {name} is {h}x{w} pixels: not the aspect of the {image}, {hh}x{ww}")
    if not np.any(arr > 0):
        raise JaxstyleError(f"mask {name} is all black: it selects no pixel")
    return arr


def mask_name(mask: MaskLike, option: str, number: int) -> str:
    """A path's text, or ``option``'s ``number``-th array."""
    return str(mask) if isinstance(mask, (str, os.PathLike)) else f"{option} array {number}"


def read_masks(
    content_hws: Sequence[tuple[int, int]],
    style_hws: Sequence[tuple[int, int]],
    style_masks: Sequence[MaskLike] | None = None,
    style_image_masks: Sequence[MaskLike | None] | None = None,
    edit_mask: MaskLike | None = None,
    guidance: str = "simple",
    strength_map: MaskLike | None = None,
) -> Masks | None:
    """Read and check a run's masks (``None`` when none is given).

    ``style_masks``: one per style image, in the content images' coordinates (the first
    content image's aspect); ``style_image_masks``: one per style image (``None`` for all of
    it), in that image's coordinates; ``edit_mask`` and ``strength_map``: in the content's
    coordinates (a strength map may be all black: no style anywhere). A mask may be of any
    size of its image's aspect: it is resized with the image at every scale.
    """
    if style_masks is None and style_image_masks is None and edit_mask is None and strength_map is None:
        return None
    if guidance not in GUIDANCE:
        raise JaxstyleError(f"--guidance must be one of {', '.join(GUIDANCE)}, not {guidance!r}")
    content_hw = content_hws[0]
    masks = Masks(guidance=guidance)
    if style_masks is not None:
        if len(style_masks) != len(style_hws):
            raise JaxstyleError(
                f"--style-masks gives {len(style_masks)} mask(s) for {len(style_hws)} style image(s): "
                "one per style image"
            )
        names = [mask_name(m, "--style-masks", k) for k, m in enumerate(style_masks, start=1)]
        arrays = [checked_mask(m, n, content_hw, "content image") for m, n in zip(style_masks, names, strict=True)]
        if len({a.shape for a in arrays}) > 1:
            raise JaxstyleError(
                f"--style-masks are of different sizes: {', '.join('x'.join(map(str, a.shape)) for a in arrays)}"
            )
        masks.style = [np.stack(arrays, axis=-1)]
    if style_image_masks is not None:
        if len(style_image_masks) != len(style_hws):
            raise JaxstyleError(
                f"--style-image-masks gives {len(style_image_masks)} mask(s) for {len(style_hws)} style image(s): "
                "one per style image"
            )
        masks.style_image = [
            None if m is None else checked_mask(m, mask_name(m, "--style-image-masks", k), hw, f"style image {k}")
            for k, (m, hw) in enumerate(zip(style_image_masks, style_hws, strict=True), start=1)
        ]
    if edit_mask is not None:
        masks.edit = [checked_mask(edit_mask, mask_name(edit_mask, "--edit-mask", 1), content_hw, "content image")]
    if strength_map is not None:
        name = mask_name(strength_map, "--strength-map", 1)
        arr = as_mask(strength_map, name)
        if not same_aspect(arr.shape, content_hw):
            (h, w), (hh, ww) = arr.shape, content_hw
            raise JaxstyleError(f"mask {name} is {h}x{w} pixels: not the aspect of the content image, {hh}x{ww}")
        masks.strength = [arr]
    return masks


def resized(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A mask ``(H, W)`` or ``(H, W, R)`` resized to ``size`` (Pillow's bicubic, the images'
    resizer, per channel), clipped to [0, 1]; at its own size, the mask itself."""
    if mask.shape[:2] == tuple(size):
        return mask
    channels = mask.reshape(*mask.shape[:2], -1)
    out = np.stack([imageio.resize(channels[:, :, [r, r, r]], size)[:, :, 0] for r in range(channels.shape[2])], -1)
    return np.clip(out, 0.0, 1.0).reshape(*size, *mask.shape[2:])
