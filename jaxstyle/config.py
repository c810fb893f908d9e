"""Settings of a run: defined once here, used by the Python API and the command line."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from jaxstyle.errors import JaxstyleError
from jaxstyle.preprocess import CONVENTIONS
from jaxstyle.vgg import LAYER_NAMES

GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass(frozen=True)
class Settings:
    """Everything that defines a stylization; the defaults are the ``paper`` preset.

    The ``paper`` preset is the recipe of the source paper (d2l's implementation of
    Gatys et al.): VGG-19 with max pooling and torchvision weights; style layers
    relu1_1..relu5_1; content layer relu4_4; Gram matrices divided by C*H*W; content
    weight 1, style 1000, TV 10; Adam with learning rate 0.1 for 500 steps; the image
    initialised to the content image and optimised in the network's input space; both
    images resized to 300x450 (height x width).

    Attributes:
      content_layers: layers whose features the content loss compares.
      style_layers: layers whose Gram matrices the style loss compares.
      content_layer_weights: weight of each content layer (``None``: all 1).
      style_layer_weights: weight of each style layer (``None``: all 1).
      content_weight: weight of the content loss.
      style_weight: weight of the style loss.
      tv_weight: weight of the total-variation loss.
      lr: Adam's learning rate, in network input units.
      steps: number of optimisation steps.
      size: output ``(height, width)``; ``None`` to use ``max_side``.
      max_side: longest output side, keeping the content's aspect (when ``size`` is ``None``).
      pool: ``"max"`` or ``"avg"``.
      init: ``"content"`` or ``"noise"`` (uniform random pixels drawn with ``seed``).
      seed: random seed.
      convention: input convention of the weights looked up by default.
    """

    # d2l takes conv5_1 before its ReLU (an accident of its in-place ReLU); we use
    # relu5_1 for all five style layers, as Gatys et al. do.
    style_layers: tuple[str, ...] = GATYS_STYLE_LAYERS
    # d2l's content layer (index 25 of torchvision's features); Gatys et al. use relu4_2.
    content_layers: tuple[str, ...] = ("relu4_4",)
    content_layer_weights: tuple[float, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None
    content_weight: float = 1.0
    # d2l used 1e3, later effectively 1e4; the source paper's value is 1e3.
    style_weight: float = 1e3
    tv_weight: float = 10.0
    lr: float = 0.1
    steps: int = 500
    size: tuple[int, int] | None = (300, 450)
    max_side: int | None = None
    pool: str = "max"
    init: str = "content"
    seed: int = 0
    convention: str = "torchvision"

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def resolved_layer_weights(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-layer weights of content and style layers, 1 where unset."""
        content = self.content_layer_weights or (1.0,) * len(self.content_layers)
        style = self.style_layer_weights or (1.0,) * len(self.style_layers)
        return tuple(content), tuple(style)


def validate(s: Settings) -> None:
    """Raise a :class:`JaxstyleError` naming the first setting that makes no sense."""
    for label, layers in (("content layer", s.content_layers), ("style layer", s.style_layers)):
        if not layers:
            raise JaxstyleError(f"at least one {label} is needed")
        for name in layers:
            if name not in LAYER_NAMES:
                raise JaxstyleError(f"unknown {label} {name!r}; VGG-19 has {', '.join(LAYER_NAMES)}")
    for label, weights, layers in (
        ("content layer weights", s.content_layer_weights, s.content_layers),
        ("style layer weights", s.style_layer_weights, s.style_layers),
    ):
        if weights is not None and len(weights) != len(layers):
            raise JaxstyleError(f"{len(weights)} {label} for {len(layers)} layers")
    for label, value in (
        ("content weight", s.content_weight),
        ("style weight", s.style_weight),
        ("tv weight", s.tv_weight),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise JaxstyleError(f"{label} must be a finite number >= 0, not {value}")
    if not (math.isfinite(s.lr) and s.lr > 0):
        raise JaxstyleError(f"learning rate must be a finite number > 0, not {s.lr}")
    if not 1 <= s.steps <= 10**6:
        raise JaxstyleError(f"steps must be between 1 and 1000000, not {s.steps}")
    if s.size is None and s.max_side is None:
        raise JaxstyleError("give a size or a max side")
    if s.pool not in ("max", "avg"):
        raise JaxstyleError(f"pool must be 'max' or 'avg', not {s.pool!r}")
    if s.init not in ("content", "noise"):
        raise JaxstyleError(f"init must be 'content' or 'noise', not {s.init!r}")
    if s.convention not in CONVENTIONS:
        raise JaxstyleError(f"convention must be one of {', '.join(CONVENTIONS)}, not {s.convention!r}")


PRESETS: dict[str, Settings] = {
    "paper": Settings(),
}


def resolve(preset: str = "paper", **overrides: Any) -> Settings:
    """The preset's settings with every override that is not ``None`` applied.

    Giving ``size`` clears the preset's ``max_side`` and vice versa.
    """
    if preset not in PRESETS:
        raise JaxstyleError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    if "size" in changes and "max_side" not in changes:
        changes["max_side"] = None
    if "max_side" in changes and "size" not in changes:
        changes["size"] = None
    for key in ("content_layers", "style_layers", "content_layer_weights", "style_layer_weights", "size"):
        if key in changes:
            changes[key] = tuple(changes[key])
    return dataclasses.replace(PRESETS[preset], **changes)
