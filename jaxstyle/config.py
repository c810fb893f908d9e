"""Settings of a run: defined once here, used by the Python API and the command line."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from jaxstyle.errors import JaxstyleError
from jaxstyle.nets import DEFAULT_NETWORK, network
from jaxstyle.preprocess import CONVENTIONS

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
      tv_reduction: ``"mean"`` (d2l: half the mean of the absolute differences) or
        ``"sum"`` (neural-style-pt: their sum).
      optimizer: ``"adam"`` or ``"lbfgs"`` (Optax's L-BFGS with a zoom line search).
      lr: Adam's learning rate, in network input units (L-BFGS's line search picks its own steps).
      lbfgs_memory: number of past steps L-BFGS keeps.
      tol: stop once a step lowers the total loss by less than ``tol`` times its value
        (0: never stop early).
      ema: decay of the exponential moving average of the iterates that is returned
        (0: the last iterate, as in the paper).
      warm_start: with Adam and several scales, each scale's Adam starts from the
        previous scale's step count and moments, resized to the new size (as
        style-transfer-pytorch does); ``False``: a fresh Adam at each scale.
      steps: optimisation steps (at every scale but the first, see ``initial_steps``).
      initial_steps: steps at the first (coarsest) scale (``None``: ``steps``).
      scale_steps: steps at each scale, overriding ``steps`` and ``initial_steps``.
      scales: number of scales, coarse to fine, each sqrt(2) larger than the one before.
      min_side: instead of ``scales``: as many scales as keep the first scale's longest
        side at least ``min_side``.
      size: output ``(height, width)``; ``None`` to use ``max_side``.
      max_side: longest output side, keeping the content's aspect (when ``size`` is ``None``).
      style_scale: size of the style image relative to the output.
      style_shape: ``"output"``: the style image is resized to the output's height and
        width (times ``style_scale``), as in d2l; ``"own"``: it keeps its aspect, with its
        longest side ``style_scale`` times the output's, as in neural-style.
      style_blend: weight of each style image when several are given (``None``: equal);
        normalised to sum to 1.
      preserve_color: keep the content image's colours, taking only the luminance of
        the result (YCbCr), as neural-style's ``-original_colors 1``.
      pool: ``"max"`` or ``"avg"``.
      init: ``"content"``, ``"noise"`` (uniform random pixels), ``"gaussian"`` (a normal
        of standard deviation 0.001 in network input space, neural-style's ``-init
        random``) or the path of an image file.
      seed: random seed of ``"noise"`` and ``"gaussian"``.
      convention: input convention of the weights looked up by default.
      network: the network, ``"vgg19"`` or ``"vgg16"`` (see :mod:`jaxstyle.nets`); the
        layers are checked against it, and the weights file must hold it.
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
    tv_reduction: str = "mean"
    optimizer: str = "adam"
    lr: float = 0.1
    lbfgs_memory: int = 10
    tol: float = 0.0
    ema: float = 0.0
    warm_start: bool = False
    steps: int = 500
    initial_steps: int | None = None
    scale_steps: tuple[int, ...] | None = None
    scales: int = 1
    min_side: int | None = None
    size: tuple[int, int] | None = (300, 450)
    max_side: int | None = None
    style_scale: float = 1.0
    style_shape: str = "output"
    style_blend: tuple[float, ...] | None = None
    preserve_color: bool = False
    pool: str = "max"
    init: str = "content"
    seed: int = 0
    convention: str = "torchvision"
    network: str = DEFAULT_NETWORK

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

    def blend_weights(self, n_styles: int) -> tuple[float, ...]:
        """Weights of ``n_styles`` style images, summing to 1 (equal when unset)."""
        return normalised_blend(self.style_blend or (1.0,) * n_styles, n_styles)


def check_blend(blend: Sequence[float]) -> None:
    """Raise unless every blend weight is finite and >= 0 and their sum is positive."""
    if not all(math.isfinite(b) and b >= 0 for b in blend) or sum(blend) <= 0:
        raise JaxstyleError(f"style blend weights must be >= 0 with a positive sum, not {list(blend)}")


def normalised_blend(blend: Sequence[float], n_styles: int) -> tuple[float, ...]:
    """``b_s / sum(b)`` for a checked blend of one weight per style image."""
    check_blend(blend)
    if len(blend) != n_styles:
        raise JaxstyleError(f"{len(blend)} style blend weights for {n_styles} style images")
    return tuple(b / sum(blend) for b in blend)


CHOICES = {
    "pool": ("max", "avg"),
    "optimizer": ("adam", "lbfgs"),
    "tv_reduction": ("mean", "sum"),
    "style_shape": ("output", "own"),
    "convention": tuple(CONVENTIONS),
}
INITS = ("content", "noise", "gaussian")  # or the path of an image


def finite_at_least(label: str, value: float, low: float, strict: bool = False) -> None:
    """Raise unless ``value`` is finite and ``>= low`` (``> low`` when ``strict``)."""
    ok = math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        raise JaxstyleError(f"{label} must be a finite number {'>' if strict else '>='} {low:g}, not {value}")


def validate(s: Settings) -> None:
    """Raise a :class:`JaxstyleError` naming the first setting that makes no sense."""
    spec = network(s.network)
    for label, layers in (("content layer", s.content_layers), ("style layer", s.style_layers)):
        if not layers:
            raise JaxstyleError(f"at least one {label} is needed")
        spec.check_layers(layers, label)
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
        ("tol", s.tol),
    ):
        finite_at_least(label, value, 0.0)
    finite_at_least("learning rate", s.lr, 0.0, strict=True)
    finite_at_least("style scale", s.style_scale, 0.0, strict=True)
    if not 0.0 <= s.ema < 1.0:
        raise JaxstyleError(f"ema must be a decay in [0, 1), not {s.ema}")
    if s.warm_start and s.optimizer != "adam":
        raise JaxstyleError("warm start carries Adam's moments from scale to scale; it needs --optimizer adam")
    if s.style_blend is not None:
        check_blend(s.style_blend)
    for label, value in (
        ("steps", s.steps),
        ("initial steps", s.initial_steps),
        *(("scale steps", n) for n in s.scale_steps or ()),
    ):
        if value is not None and not 1 <= value <= 10**6:
            raise JaxstyleError(f"{label} must be between 1 and 1000000, not {value}")
    if not 1 <= s.lbfgs_memory <= 1000:
        raise JaxstyleError(f"lbfgs memory must be between 1 and 1000, not {s.lbfgs_memory}")
    if not 1 <= s.scales <= 12:
        raise JaxstyleError(f"scales must be between 1 and 12, not {s.scales}")
    if s.min_side is not None and (s.scales != 1 or s.min_side < 1):
        raise JaxstyleError("give either a number of scales or a min side (a positive number of pixels), not both")
    if s.size is None and s.max_side is None:
        raise JaxstyleError("give a size or a max side")
    for key, allowed in CHOICES.items():
        if getattr(s, key) not in allowed:
            raise JaxstyleError(f"{key.replace('_', ' ')} must be one of {', '.join(allowed)}, not {getattr(s, key)!r}")
    if not s.init:
        raise JaxstyleError(f"init must be one of {', '.join(INITS)} or an image file")


# Presets of recipes users know. Each differs from its original in what jaxstyle does
# not implement; the README's preset table names every such difference.
PRESETS: dict[str, Settings] = {
    "paper": Settings(),
    # Gatys et al. 2016 as jcjohnson/neural-style and ProGamerGov/neural-style-pt run it.
    "gatys": Settings(
        content_layers=("relu4_2",),
        style_layers=GATYS_STYLE_LAYERS,
        content_weight=5.0,
        style_weight=100.0,
        tv_weight=1e-3,
        tv_reduction="sum",
        optimizer="lbfgs",
        lbfgs_memory=100,
        steps=1000,
        size=None,
        max_side=512,
        style_shape="own",
        init="gaussian",
        convention="caffe",
    ),
    # crowsonkb/style-transfer-pytorch. Its content and TV weights (0.015, 2) belong to
    # its own scaled-MSE and L2-TV losses; with jaxstyle's losses the paper's balance is
    # kept instead (style weight 5000 over layer weights summing to 1 = 1000 per layer).
    "crowsonkb": Settings(
        content_layers=("relu4_2",),
        style_layers=GATYS_STYLE_LAYERS,
        style_layer_weights=tuple(w / 341 for w in (256, 64, 16, 4, 1)),
        content_weight=1.0,
        style_weight=5e3,
        tv_weight=10.0,
        # Its step size 0.02 is in pixel units; 0.02 / 0.226 (the mean ImageNet std)
        # is the same step in torchvision's network input units.
        lr=0.0885,
        ema=0.99,
        warm_start=True,
        steps=500,
        initial_steps=1000,
        min_side=128,
        size=None,
        max_side=512,
        style_shape="own",
    ),
}

TUPLE_SETTINGS = (
    "content_layers",
    "style_layers",
    "content_layer_weights",
    "style_layer_weights",
    "scale_steps",
    "style_blend",
    "size",
)


def resolve(preset: str = "paper", **overrides: Any) -> Settings:
    """The preset's settings with every override that is not ``None`` applied.

    Giving ``size`` clears the preset's ``max_side`` and vice versa; likewise
    ``scales`` and ``min_side``.
    """
    if preset not in PRESETS:
        raise JaxstyleError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    for one, other, cleared in (("size", "max_side", None), ("scales", "min_side", None), ("min_side", "scales", 1)):
        if one in changes and other not in changes:
            changes[other] = cleared
    if "max_side" in changes and "size" not in changes:
        changes["size"] = None
    for key in TUPLE_SETTINGS:
        if changes.get(key) is not None:
            changes[key] = tuple(changes[key])
    return dataclasses.replace(PRESETS[preset], **changes)


class Stage(NamedTuple):
    """One scale of a coarse-to-fine run: its ``(height, width)`` and its step count."""

    size: tuple[int, int]
    steps: int


def stages(settings: Settings, size: tuple[int, int]) -> list[Stage]:
    """The scales of a run ending at ``size``, coarse to fine.

    Scale ``i`` of ``n`` has its longest side ``round(L / sqrt(2)**(n - 1 - i))``, ``L``
    the output's longest side, as in style-transfer-pytorch's ``gen_scales``; with
    ``min_side``, ``n`` is the largest count whose first side is at least ``min_side``.
    """
    h, w = size
    longest = max(h, w)
    if settings.min_side is not None:
        sides = []
        while not sides or round(longest / math.sqrt(2) ** len(sides)) >= settings.min_side:
            sides.append(round(longest / math.sqrt(2) ** len(sides)))
            if len(sides) == 12:
                break
    else:
        sides = [round(longest / math.sqrt(2) ** i) for i in range(settings.scales)]
    sizes = [(max(1, round(h * side / longest)), max(1, round(w * side / longest))) for side in reversed(sides)]
    if settings.scale_steps is not None:
        if len(settings.scale_steps) != len(sizes):
            raise JaxstyleError(f"{len(settings.scale_steps)} scale steps for {len(sizes)} scales")
        steps = list(settings.scale_steps)
    else:
        steps = [settings.initial_steps or settings.steps] + [settings.steps] * (len(sizes) - 1)
    return [Stage(s, n) for s, n in zip(sizes, steps, strict=True)]
