"""Input conventions: how RGB pixels in [0, 1] map to a network's input space.

Weights trained in different frameworks expect different inputs; the convention is
stored in the converted weights file, so weights and preprocessing travel together.

No JAX import: the settings (and the command line's ``--help``) read the conventions'
names from here. The maps work on JAX and NumPy arrays alike (NumPy constants of the
input's dtype), and return the input's kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # a jax.Array or a numpy.ndarray


@dataclass(frozen=True)
class InputConvention:
    """``network = (pixels[..., order] * scale - mean) / std``, channels last.

    Attributes:
      name: ``"torchvision"`` or ``"caffe"``.
      bgr: whether the network expects channels in BGR order.
      scale: multiplier applied to [0, 1] pixels (1 or 255).
      mean: per-channel mean, in the network's channel order and scale.
      std: per-channel standard deviation, in the network's channel order and scale.
    """

    name: str
    bgr: bool
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def _channel_constants(self, x: Array) -> tuple[Array, Array]:
        shape = (1,) * (x.ndim - 1) + (3,)
        mean = np.asarray(self.mean, dtype=x.dtype).reshape(shape)
        std = np.asarray(self.std, dtype=x.dtype).reshape(shape)
        return mean, std

    def to_network(self, rgb: Array) -> Array:
        """Map RGB pixels in [0, 1] (shape ``(..., 3)``) to network input space."""
        x = rgb[..., ::-1] if self.bgr else rgb
        mean, std = self._channel_constants(x)
        return (x * self.scale - mean) / std

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(lo, hi)`` per network channel: where pixels 0 and 1 map to (:meth:`to_network`)."""
        lo = tuple((0.0 - m) / s for m, s in zip(self.mean, self.std, strict=True))
        hi = tuple((self.scale - m) / s for m, s in zip(self.mean, self.std, strict=True))
        return lo, hi

    def level(self) -> float:
        """One 8-bit level (1/255 of the pixel range) in network units, averaged over the channels."""
        return sum(self.scale / 255 / s for s in self.std) / len(self.std)

    def from_network(self, x: Array) -> Array:
        """Inverse of :meth:`to_network`; does not clip (clip when writing pixels)."""
        mean, std = self._channel_constants(x)
        pixels = (x * std + mean) / self.scale
        return pixels[..., ::-1] if self.bgr else pixels


TORCHVISION = InputConvention(
    name="torchvision",
    bgr=False,
    scale=1.0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)

# Caffe VGG weights (and the Keras applications copy of them) expect BGR in 0..255
# minus the ImageNet channel means, with no division by a standard deviation.
CAFFE = InputConvention(
    name="caffe",
    bgr=True,
    scale=255.0,
    mean=(103.939, 116.779, 123.68),
    std=(1.0, 1.0, 1.0),
)

CONVENTIONS: dict[str, InputConvention] = {c.name: c for c in (TORCHVISION, CAFFE)}
