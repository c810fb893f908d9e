"""Settings of a run: defined once here, used by the Python API and the command line.

Two dataclasses hold them: :class:`Settings`, the recipe (what is optimised, and how:
network, layers, loss weights, optimiser, schedule, size, initial image), and
:class:`Execution`, how a run is carried out (dtypes, rematerialisation, the split over
devices, micro-batches, snapshots): choices that change the speed, the memory or the
rounding of a run, never the recipe it follows.

Each field of both carries, in its metadata (:class:`SettingInfo`, made by
:func:`setting`), what the rest of jaxstyle needs to know about it: its help text, its
allowed choices or range, the settings it depends on, the optimisers it matters for,
whether sweeps vary it and its short label there. From the fields, their types and that
metadata come the command line's options, the command stored in each output that
reproduces it, the ``presets`` table, validation, the sweep's axes and the docstring's
attribute list: adding a setting means adding a field here (with its ``section``) and
using it where the run needs it.

``jaxstyle --help`` and ``jaxstyle presets`` read this module, so it imports no JAX
(beyond the layer names of :mod:`jaxstyle.vgg`, which validation checks against).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import math
import os
import struct
import textwrap
import types
import typing
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from jaxstyle.errors import JaxstyleError, SettingError
from jaxstyle.nets import DEFAULT_NETWORK, NETWORKS, network
from jaxstyle.preprocess import CONVENTIONS

GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONVENTION_NAMES = tuple(CONVENTIONS)  # read from jaxstyle.preprocess, which imports no JAX
INITS = ("content", "noise", "gaussian")  # or the path of an image

# The registered style losses and optimisers, by name, with one line of help each: the
# choices and help of --style-loss and --optimizer. The registries themselves,
# jaxstyle.losses.STYLE_LOSSES and jaxstyle.optimizers.OPTIMIZERS, import JAX, which this
# module must not (jaxstyle --help reads it); each checks on import that it holds exactly
# these names, in this order (the order of a recipe's style_losses).
STYLE_LOSS_HELP: dict[str, str] = {
    "gram": "mean squared error of Gram matrices (Gatys et al.)",
    "w2": "the Wasserstein-2 distance between Gaussians fitted to the features (style-transfer-pytorch since 2023)",
    "guided": "Gram matrices per guidance region (Gatys et al. 2017, section 4); without guidance channels "
    "one region, the whole image, where it equals gram",
}

OPTIMIZER_HELP: dict[str, str] = {
    "adam": "Adam",
    "lbfgs": "Optax's L-BFGS with a zoom line search",
    "lbfgs-fixed": "PyTorch's L-BFGS as neural-style and pastiche run it, fixed steps and no line search "
    "(one network evaluation per step)",
}


def choices_help(table: dict[str, str]) -> str:
    """``"name: help; name: help"`` for an option's help text."""
    return "; ".join(f"{name}: {text}" for name, text in table.items())


def check_registry(kind: str, registry: dict, names: dict[str, str]) -> None:
    """Raise unless ``registry`` holds exactly ``names``, in order (run by each registry on import)."""
    if tuple(registry) != tuple(names):
        raise RuntimeError(f"{kind} registered {tuple(registry)} but jaxstyle.config names {tuple(names)}")


# The modes of --color (jaxstyle.color, which imports NumPy, applies them), with one line of help each.
COLOR_HELP: dict[str, str] = {
    "none": "the style's colours",
    "post": "after the run, the result's luminance with the content's chroma (YCbCr), "
    "as neural-style's -original_colors 1",
    "luminance": "luminance-only transfer: the network sees luminance only, the style's matched to the "
    "content's mean and variance; the output takes the content's I and Q (YIQ)",
    "histogram-cholesky": "before the run, the style's colour mean and covariance matched to the content's "
    "(linear map from Cholesky factors)",
    "histogram-pca": "as histogram-cholesky, the map from the covariances' symmetric square roots "
    "(eigendecompositions)",
}
COLOR_MODES = tuple(COLOR_HELP)
OPTIMIZERS = tuple(OPTIMIZER_HELP)
STYLE_LOSS_NAMES = tuple(STYLE_LOSS_HELP)
# Rematerialisation modes (jaxstyle.remat), fastest first: `auto` takes the first whose estimate fits.
REMAT_MODES = ("none", "blocks", "bands")
# jax_default_matmul_precision values an Execution may ask for ("default": the platform's own).
MATMUL_PRECISIONS = ("default", "float32", "tensorfloat32", "bfloat16_3x", "bfloat16")
# The upstream commit the crowsonkb preset follows (crowsonkb/style-transfer-pytorch, 2023-05-21).
CROWSONKB_COMMIT = "e7e2c7134e3937be05ff9f5fcc0873fe5ceb6060"


class Bounds(NamedTuple):
    """The range ``low <= x <= high`` of a number (``<`` at an open end); ``x`` must be finite.

    With ``run_float``, the number enters the run as an array of the run's float dtype
    (float32, unless a run says otherwise: see :func:`numbers_checked_as`) and is
    checked as that dtype holds it: in float32, 1e39 is infinite and 1e-50 is 0.
    """

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    run_float: bool = False

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is a finite number (no bool) inside the range, as the run holds it."""
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        if self.run_float and RUN_FLOAT.get() == "float32":
            x = as_float32(x)
            if x is None:
                return False
        if isinstance(x, float) and not math.isfinite(x):
            return False
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def describe(self) -> str:
        """``a finite number >= 0``, ``between 1 and 1000``, ``in [0, 1)``; for float32 numbers
        without a high end, ``a number >= 0 and at most 3.40282e+38 (the largest float32)``."""
        above = f"{'>' if self.low_open else '>='} {plain(self.low)}"
        if self.high == math.inf and self.run_float and RUN_FLOAT.get() == "float32":
            return f"a number {above} and at most {FLOAT32_MAX:g} (the largest float32)"
        if self.high == math.inf:
            return f"a finite number {above}"
        if not (self.low_open or self.high_open):
            return f"between {plain(self.low)} and {plain(self.high)}"
        opening, closing = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {opening}{plain(self.low)}, {plain(self.high)}{closing}"


# The float dtype of the run whose numbers are being checked: float32, the dtype of
# every command-line run; float64 for the parity runs of the Python API.
RUN_FLOAT: contextvars.ContextVar[str] = contextvars.ContextVar("RUN_FLOAT", default="float32")
# The largest finite float32 (numpy.finfo(numpy.float32).max), without importing NumPy.
FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]


@contextlib.contextmanager
def numbers_checked_as(dtype: Any) -> Iterator[None]:
    """Inside the block, check numbers of ``run_float`` bounds as ``dtype`` (``"float64"``, a NumPy dtype) holds."""
    token = RUN_FLOAT.set("float64" if str(dtype) == "float64" else "float32")
    try:
        yield
    finally:
        RUN_FLOAT.reset(token)


def as_float32(x: float) -> float | None:
    """``x`` rounded to the nearest float32, or ``None`` where that is infinite (``|x|`` beyond float32's range)."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except (OverflowError, struct.error):
        return None


def plain(x: float) -> str:
    """A bound as people write it: ``1000000``, ``0.5``, ``3.40282e+38``."""
    if isinstance(x, int):
        return str(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else f"{x:g}"


@dataclass(frozen=True)
class SettingInfo:
    """What jaxstyle knows about one setting, beyond its type and default.

    Attributes:
      doc: what it does, in a sentence (the option's help and the docstring's entry).
      choices: the values it may take, or ``None``.
      bounds: the range it (or each of its elements) must lie in, or ``None``.
      depends_on: settings that, when given, reset this one to unset (``None``, or its
        default where it cannot be ``None``) unless it is given too.
      optimizers: the optimisers it matters for (``None``: all). It depends on
        ``optimizer``, and a sweep gives it one value under the others.
      swept: whether ``jaxstyle sweep`` takes a list of its values (a sweep axis).
      short: its label in sweep file names and contact sheets (default: its name).
      cli: whether it is a command-line option (``convention`` comes from the preset).
      group: options of one group are mutually exclusive on the command line.
      section: the part of the recipe it belongs to, a key of :data:`SECTIONS` (its
        group in ``--help``, ``jaxstyle presets`` and the docstring); ``execution`` for
        the fields of :class:`Execution`.
      commands: the commands that offer it as an option (``None``: every command that
        runs a job); for execution choices that only some commands use.
    """

    doc: str
    section: str
    choices: tuple[Any, ...] | None = None
    bounds: Bounds | None = None
    depends_on: tuple[str, ...] = ()
    optimizers: tuple[str, ...] | None = None
    swept: bool = False
    short: str | None = None
    cli: bool = True
    group: str | None = None
    commands: tuple[str, ...] | None = None

    def dependencies(self) -> tuple[str, ...]:
        """The settings that reset this one when given: ``depends_on``, and ``optimizer`` if optimiser-specific."""
        return (*self.depends_on, "optimizer") if self.optimizers else self.depends_on


def setting(default: Any, doc: str, section: str, **facts: Any) -> Any:
    """A field of :class:`Settings` or :class:`Execution` with ``default`` and its
    :class:`SettingInfo` (``doc``, ``section`` and ``facts``)."""
    return dataclasses.field(default=default, metadata={"jaxstyle": SettingInfo(doc, section, **facts)})


# The sections of the recipe, in the order --help, `jaxstyle presets` and the Settings
# docstring show them, with their titles. They are labels in each field's metadata, not
# nested dataclasses: attribute access stays flat (settings.lr, not settings.optimizer.lr),
# because nesting would change every caller, and because the dependencies that reset one
# setting when another is given cross sections (a size form resets scale_steps of the
# schedule; optimizer resets lr, warm_start and lbfgs_memory; style_layers resets
# style_layer_weights), which resolve() and override() apply over one flat set of names.
SECTIONS: dict[str, str] = {
    "network": "network",
    "layers": "layers",
    "losses": "weights of the losses",
    "style": "style images",
    "optimizer": "optimiser",
    "schedule": "schedule",
    "size": "output size",
    "init": "initial image",
    "output": "output",
}
EXECUTION = "execution"  # the section of every field of Execution


# Loss weights, learning rate, EMA decay, tolerance and layer weights enter the run as
# float32 arrays: they are checked as float32 holds them.
NONNEGATIVE = Bounds(0.0, run_float=True)
STEPS = Bounds(1, 10**6)
# Image sides in pixels (jaxstyle.image checks sizes against these): relu5_1 sits
# behind four 2x2 poolings, so 32 px leave it 2x2; 8192 is far beyond what fits on
# one accelerator for VGG-19 at float32.
MIN_SIDE, MAX_SIDE = 32, 8192
SIDE = Bounds(MIN_SIDE, MAX_SIDE)
# jax.random.key takes a signed 64-bit integer.
SEED = Bounds(-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Settings:
    """Everything that defines a stylization; the defaults are the ``paper`` preset.

    The ``paper`` preset is the recipe of the source paper (d2l's implementation of
    Gatys et al.): VGG-19 with max pooling and torchvision weights; style layers
    relu1_1..relu5_1; content layer relu4_4; Gram matrices divided by C*H*W; content
    weight 1, style 1000, TV 10; Adam with learning rate 0.1 for 500 steps; the image
    initialised to the content image and optimised in the network's input space; both
    images resized to 135,000 pixels (the area of d2l's 300x450) at the content's aspect,
    where d2l fixes 300x450 (height x width), made for its landscape photo, for any content.

    Give a field to :func:`resolve` (or ``jaxstyle.stylize``, or as an option) and the
    fields that depend on it go back to unset unless given too (see each field's
    ``depends_on`` and ``optimizers``).
    """

    # d2l takes conv5_1 before its ReLU (an accident of its in-place ReLU); we use
    # relu5_1 for all five style layers, as Gatys et al. do.
    style_layers: tuple[str, ...] = setting(
        GATYS_STYLE_LAYERS,
        "layers whose statistics the style loss compares, e.g. relu1_1,relu2_1",
        section="layers",
    )
    # d2l's content layer (index 25 of torchvision's features); Gatys et al. use relu4_2.
    content_layers: tuple[str, ...] = setting(
        ("relu4_4",), "layers whose features the content loss compares", section="layers"
    )
    content_layer_weights: tuple[float, ...] | None = setting(
        None,
        "weight of each content layer (unset: all 1)",
        bounds=NONNEGATIVE,
        depends_on=("content_layers",),
        section="layers",
    )
    style_layer_weights: tuple[float, ...] | None = setting(
        None,
        "weight of each style layer, e.g. 256,64,16,4,1 (unset: all 1)",
        bounds=NONNEGATIVE,
        depends_on=("style_layers",),
        section="layers",
    )
    content_weight: float = setting(
        1.0, "weight of the content loss", bounds=NONNEGATIVE, swept=True, short="cw", section="losses"
    )
    # d2l used 1e3, later effectively 1e4; the source paper's value is 1e3.
    style_weight: float = setting(
        1e3, "weight of the style loss", bounds=NONNEGATIVE, swept=True, short="sw", section="losses"
    )
    tv_weight: float = setting(
        10.0, "weight of the total-variation loss", bounds=NONNEGATIVE, swept=True, short="tv", section="losses"
    )
    tv_reduction: str = setting(
        "mean",
        "TV as d2l's half mean or neural-style-pt's sum of absolute differences, "
        "or nine: style-transfer-pytorch's mean squared differences over a nine-point stencil",
        choices=("mean", "sum", "nine"),
        section="losses",
    )
    optimizer: str = setting(
        "adam",
        choices_help(OPTIMIZER_HELP),
        choices=OPTIMIZERS,
        section="optimizer",
    )
    lr: float = setting(
        0.1,
        "Adam's learning rate, in network input units (L-BFGS's line search picks its own steps)",
        bounds=Bounds(0.0, low_open=True, run_float=True),
        optimizers=("adam",),
        swept=True,
        short="lr",
        section="optimizer",
    )
    adam_beta2: float = setting(
        0.999,
        "Adam's beta2, the decay of its second-moment estimate (style-transfer-pytorch: 0.99)",
        bounds=Bounds(0.0, 1.0, high_open=True),
        optimizers=("adam",),
        section="optimizer",
    )
    lbfgs_memory: int = setting(
        10,
        "past steps L-BFGS keeps",
        bounds=Bounds(1, 1000),
        optimizers=("lbfgs", "lbfgs-fixed"),
        section="optimizer",
    )
    lbfgs_step: float = setting(
        1.0,
        "lbfgs-fixed's step length (torch.optim.LBFGS's lr; its first step is scaled by min(1, 1/‖g‖₁))",
        bounds=Bounds(0.0, low_open=True, run_float=True),
        optimizers=("lbfgs-fixed",),
        section="optimizer",
    )
    # 0 by default: from noise (the gatys preset's init) PyTorch's first step works, and a
    # first move of 10 levels leaves L-BFGS crawling; from an image the opposite holds
    # (measured on real VGG-19: bench/RESULTS.md; docs/guide/controls.md, Optimisers).
    lbfgs_first_step: float = setting(
        0.0,
        "lbfgs-fixed's first step: the largest change it makes to any pixel, in 8-bit levels, e.g. 10 when "
        "starting from an image (0: PyTorch's min(1, 1/‖g‖₁)·lbfgs_step)",
        bounds=NONNEGATIVE,
        optimizers=("lbfgs-fixed",),
        section="optimizer",
    )
    bounded: bool = setting(
        False,
        "keep the image inside the pixel range at every step (a projection onto [0, 1]), so that the file "
        "written is the image optimised; off: clipped only when written, as the peers do",
        optimizers=("adam", "lbfgs-fixed"),
        section="optimizer",
    )
    tol: float = setting(
        0.0,
        "stop once a step lowers the total loss by less than this fraction of it (0: never stop early)",
        bounds=NONNEGATIVE,
        section="schedule",
    )
    ema: float = setting(
        0.0,
        "return the exponential moving average of the iterates with this decay, e.g. 0.99 (0: the last iterate)",
        bounds=Bounds(0.0, 1.0, high_open=True, run_float=True),
        swept=True,
        short="ema",
        section="optimizer",
    )
    # After the other swept settings, so that SweepPoint's positional fields keep their order.
    style_loss: str = setting(
        "gram",
        choices_help(STYLE_LOSS_HELP),
        choices=STYLE_LOSS_NAMES,
        swept=True,
        short="loss",
        section="losses",
    )
    warm_start: bool = setting(
        False,
        "with several scales, start each scale's Adam from the previous scale's step count and moments, "
        "resized (style-transfer-pytorch's scale_adam); off: a fresh Adam at each scale",
        optimizers=("adam",),
        section="optimizer",
    )
    steps: int = setting(500, "optimisation steps at each scale", bounds=STEPS, section="schedule")
    initial_steps: int | None = setting(
        None,
        "steps at the first (coarsest) scale (unset: steps)",
        bounds=STEPS,
        depends_on=("steps",),
        section="schedule",
    )
    scale_steps: tuple[int, ...] | None = setting(
        None,
        "steps at each scale, e.g. 1000,500,500, instead of steps and initial steps",
        bounds=STEPS,
        depends_on=("steps", "initial_steps", "scales", "min_side"),
        section="schedule",
    )
    scales: int = setting(
        1,
        "number of scales, coarse to fine, each sqrt(2) larger than the one before",
        bounds=Bounds(1, 12),
        depends_on=("min_side",),
        section="schedule",
    )
    min_side: int | None = setting(
        None,
        "instead of a number of scales: as many as keep the first scale's longest side at least this many pixels",
        bounds=Bounds(1, MAX_SIDE),
        depends_on=("scales",),
        section="schedule",
    )
    # The output size, in one of three forms (jaxstyle.image.output_size turns each into
    # a height and width); giving one unsets the others. Only size may change the aspect.
    size: tuple[int, int] | None = setting(
        None,
        "output height x width, the only size form that may change the content's aspect (d2l fixes 300x450 "
        "for any content; the paper preset takes its area, --pixels 135000, at the content's aspect)",
        bounds=SIDE,
        depends_on=("max_side", "pixels"),
        group="size",
        section="size",
    )
    max_side: int | None = setting(
        None,
        "longest output side in pixels, keeping the content's aspect",
        bounds=SIDE,
        depends_on=("size", "pixels"),
        group="size",
        section="size",
    )
    # d2l fixes 300x450 (H x W), a size made for its landscape photo, whatever the content;
    # the paper preset takes that area, 135,000 pixels, at the content's aspect instead.
    pixels: int | None = setting(
        300 * 450,
        "output area in pixels, keeping the content's aspect (the paper preset: 135000, the area of 300x450)",
        bounds=Bounds(MIN_SIDE**2, MAX_SIDE**2),
        depends_on=("size", "max_side"),
        group="size",
        section="size",
    )
    # A style image's longest side is at least the style scale times the output's
    # shortest possible side, and at most MAX_SIDE: hence at most MAX_SIDE / MIN_SIDE.
    style_scale: float = setting(
        1.0,
        "size of the style image relative to the output, e.g. 0.5",
        bounds=Bounds(0.0, MAX_SIDE / MIN_SIDE, low_open=True),
        section="style",
    )
    style_shape: str = setting(
        "output",
        "output: the style image is resized to the output's height and width (times the style scale), as in d2l; "
        "own: it keeps its aspect, its longest side the style scale times the output's, as in neural-style",
        choices=("output", "own"),
        section="style",
    )
    style_blend: tuple[float, ...] | None = setting(
        None,
        "weight of each style image when several are given, e.g. 0.7,0.3; normalised to sum 1 (unset: equal)",
        section="style",
    )
    # Replaces the on/off preserve_color (now color="post"), which resolve() and the
    # command line's --preserve-color still take (DEPRECATED_SETTINGS).
    color: str = setting(
        "none",
        "colour control (Gatys et al. 2017, section 5; docs: guide/controls.md): " + choices_help(COLOR_HELP),
        choices=COLOR_MODES,
        section="output",
    )
    pool: str = setting("max", "VGG pooling", choices=("max", "avg"), section="network")
    init: str = setting(
        "content",
        "initial image: content, noise (uniform random pixels), gaussian (0.001 N(0, 1) in network input space, "
        "neural-style's -init random) or an image file",
        section="init",
    )
    seed: int = setting(0, "random seed of the noise and gaussian inits", bounds=SEED, section="init")
    convention: str = setting(
        "torchvision",
        "input convention the weights must expect (lr and the gaussian init are in its units)",
        choices=CONVENTION_NAMES,
        cli=False,
        section="network",
    )
    network: str = setting(
        DEFAULT_NETWORK,
        f"the network ({', '.join(NETWORKS)}); the layers are checked against it, and the weights file must hold it",
        section="network",
    )

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


@dataclass(frozen=True)
class Execution:
    """How a run is carried out: every run-time choice that does not change what the recipe means.

    Each may change a run's speed, its memory, its floating-point rounding or what it
    writes on the way, never the losses it minimises: the dtypes, the rematerialisation
    mode, the split of an image over devices, the micro-batch size and the snapshots.
    What stays outside: the inputs (images, the weights file), the devices a command
    runs on (every device; a video's ``devices`` is its own argument, the one place
    that chooses fewer), and the shell's concerns (progress, checkpoints, stop requests).

    From Python, ``jaxstyle.stylize(..., remat="blocks")`` and the other entry points
    take these fields as keywords beside the recipe's, or a whole ``execution=``.
    """

    dtype: str = setting(
        "float32",
        "dtype of the image, Gram matrices and losses; float64 needs jax_enable_x64 (the parity tests use it)",
        EXECUTION,
        choices=("float32", "float64"),
        cli=False,
    )
    compute_dtype: str | None = setting(
        None,
        "run the convolutions in bfloat16; the image, Gram matrices and losses stay in the run's dtype "
        "(unset: the run's dtype)",
        EXECUTION,
        choices=("bfloat16",),
    )
    # JAX's jax_default_matmul_precision for the run's convolutions and matrix products
    # (docs/guide/stylize.md). "default" leaves each platform's own: exact float32 on
    # CPU, TF32 for float32 on NVIDIA GPUs (Ampere on), one bfloat16 pass on TPU.
    matmul_precision: str = setting(
        "default",
        "precision of convolutions and matrix products: default (the platform's: float32 on CPU, TF32 on "
        "NVIDIA GPUs, one bfloat16 pass on TPU), float32, tensorfloat32, bfloat16_3x or bfloat16",
        EXECUTION,
        choices=MATMUL_PRECISIONS,
    )
    remat: str = setting(
        "auto",
        "rematerialisation: none; blocks (jax.checkpoint around each VGG block, recomputed in the backward pass); "
        "bands (the first two blocks computed and recomputed band by band of image rows); "
        "or auto: the fastest whose memory estimate fits the device",
        EXECUTION,
        choices=("auto", *REMAT_MODES),
    )
    # One image over many devices (docs "One image over many devices"): its height is
    # split over a 'space' axis of the device mesh; XLA inserts the convolutions' halos.
    spatial_shards: int = setting(
        0,
        "devices one image's height is split over (0: automatic, as few as make a step fit in a device's memory)",
        EXECUTION,
        bounds=Bounds(0, 4096),
    )
    batch_size: int | None = setting(
        None,
        "settings (sweep), photos (batch) or frames (video, multipass) per compiled micro-batch "
        "(unset: from a memory estimate)",
        EXECUTION,
        bounds=Bounds(1),
        commands=("sweep", "video", "batch"),
    )
    save_every: int | None = setting(
        None,
        "take a snapshot every N global steps, all scales counted (stylize writes OUT.stepNNNNNN.png)",
        EXECUTION,
        bounds=Bounds(1),
        commands=("stylize",),
    )
    # What the files hold, not what is optimised: the image is float until it is written.
    bit_depth: int = setting(
        8,
        "bits per channel of the images written: 16 writes PNG or TIFF straight from the float image, "
        "with an sRGB ICC profile (docs: guide/large-images.md)",
        EXECUTION,
        choices=(8, 16),
        commands=("stylize", "sweep", "batch"),
    )

    def __post_init__(self) -> None:
        for name in EXECUTION_NAMES:
            check_value(name, getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)


FIELDS: tuple[dataclasses.Field, ...] = dataclasses.fields(Settings)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
EXECUTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Execution))
# Every declared field of both, by name (the names are distinct): what info() and the CLI read.
_DECLARED: dict[str, dataclasses.Field] = {f.name: f for cls in (Settings, Execution) for f in dataclasses.fields(cls)}
_TYPES: dict[str, Any] = typing.get_type_hints(Settings) | typing.get_type_hints(Execution)
if undeclared := [name for name, f in _DECLARED.items() if "jaxstyle" not in f.metadata]:
    raise TypeError(f"declare Settings and Execution fields with setting(default, doc, section, ...): {undeclared}")
if misplaced := [name for name in FIELD_NAMES if _DECLARED[name].metadata["jaxstyle"].section not in SECTIONS] + [
    name for name in EXECUTION_NAMES if _DECLARED[name].metadata["jaxstyle"].section != EXECUTION
]:
    raise TypeError(f"a Settings field's section is one of SECTIONS, an Execution field's {EXECUTION!r}: {misplaced}")


def info(name: str) -> SettingInfo:
    """The :class:`SettingInfo` of the field ``name`` (of :class:`Settings` or :class:`Execution`)."""
    return _DECLARED[name].metadata["jaxstyle"]


def value_type(name: str) -> Any:
    """The field's type without ``| None``: ``float``, ``tuple[str, ...]``, ``tuple[int, int]``."""
    hint = _TYPES[name]
    if isinstance(hint, types.UnionType):
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def optional(name: str) -> bool:
    """Whether the field may be ``None`` (unset)."""
    return isinstance(_TYPES[name], types.UnionType) and type(None) in typing.get_args(_TYPES[name])


def unset_value(name: str) -> Any:
    """What a field goes back to when a setting it depends on is given: ``None``, else its default."""
    return None if optional(name) else _DECLARED[name].default


def section_fields(section: str) -> tuple[str, ...]:
    """The recipe's fields in ``section``, in the dataclass's order."""
    return tuple(name for name in FIELD_NAMES if info(name).section == section)


def execution_options(command: str) -> tuple[str, ...]:
    """The fields of :class:`Execution` that ``command`` offers as options, in the dataclass's order."""
    return tuple(
        name
        for name in EXECUTION_NAMES
        if info(name).cli and (info(name).commands is None or command in info(name).commands)
    )


def split_execution(execution: Execution | None, overrides: Mapping[str, Any]) -> tuple[Execution, dict[str, Any]]:
    """``(execution, recipe overrides)`` from keywords of the Python API that mix both.

    The keywords named like a field of :class:`Execution` (``remat="blocks"``,
    ``compute_dtype="bfloat16"``) replace that field of ``execution`` (default:
    ``Execution()``) where they are not ``None``; the others are the recipe's, for :func:`resolve`.
    """
    chosen = {name: value for name, value in overrides.items() if name in EXECUTION_NAMES and value is not None}
    recipe = {name: value for name, value in overrides.items() if name not in EXECUTION_NAMES}
    return dataclasses.replace(execution or Execution(), **chosen), recipe


def option_fields() -> tuple[str, ...]:
    """The fields that are command-line options, in the dataclass's order."""
    return tuple(name for name in FIELD_NAMES if info(name).cli)


SWEPT_FIELDS: tuple[str, ...] = tuple(name for name in FIELD_NAMES if info(name).swept)
# The forms of the output size (size, max_side, pixels), one at a time; see jaxstyle.image.output_size.
SIZE_FORMS: tuple[str, ...] = tuple(name for name in FIELD_NAMES if info(name).group == "size")
CHOICES: dict[str, tuple[str, ...]] = {name: info(name).choices for name in FIELD_NAMES if info(name).choices}
DEPENDENTS: dict[str, tuple[str, ...]] = {
    name: tuple(other for other in FIELD_NAMES if name in info(other).dependencies()) for name in FIELD_NAMES
}


def short_label(name: str) -> str:
    """The label of a swept setting in sweep file names and captions (``sw``); other names are their own."""
    if name in FIELD_NAMES and info(name).short is not None:
        return info(name).short
    return name


def attribute_entry(name: str) -> str:
    """One docstring entry, ``name: doc.``, wrapped."""
    return textwrap.fill(
        f"{name}: {info(name).doc}.", 88, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False
    )


def attributes_doc() -> str:
    """The docstring's attributes, section by section: each section's title, then an
    ``Attributes:`` list of its fields, from each field's ``doc``."""
    parts = [
        f"{title.capitalize()} (section ``{key}``).\n\nAttributes:\n"
        + "\n".join(map(attribute_entry, section_fields(key)))
        for key, title in SECTIONS.items()
    ]
    return "\n\n" + "\n\n".join(parts)


Settings.__doc__ = inspect.cleandoc(Settings.__doc__ or "") + attributes_doc()
Execution.__doc__ = (
    inspect.cleandoc(Execution.__doc__ or "") + "\n\nAttributes:\n" + "\n".join(map(attribute_entry, EXECUTION_NAMES))
)


def check_blend(blend: Sequence[float]) -> None:
    """Raise unless every blend weight is finite and >= 0 and their sum is positive and finite."""
    numbers = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in blend)
    if not numbers or not all(math.isfinite(b) and b >= 0 for b in blend) or not 0 < sum(blend) < math.inf:
        raise SettingError(
            f"$style_blend weights must be finite and >= 0 with a positive, finite sum, not {list(blend)}",
            "style_blend",
        )


def normalised_blend(blend: Sequence[float], n_styles: int) -> tuple[float, ...]:
    """``b_s / sum(b)`` for a checked blend of one weight per style image."""
    check_blend(blend)
    if len(blend) != n_styles:
        raise SettingError(f"{len(blend)} $style_blend weights for {n_styles} style images", "style_blend")
    return tuple(b / sum(blend) for b in blend)


def element_type(name: str) -> Any:
    """The type of the field's value, or of each element of a tuple: ``float``, ``int``, ``str``."""
    kind = value_type(name)
    return typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else kind


def out_of_bounds(name: str, x: Any, where: str = "") -> SettingError:
    """The error for a value ``x`` of setting ``name`` (or an element of it) outside its bounds.

    ``where`` goes before the setting's name, e.g. ``setting 3: `` for one point of a sweep.
    """
    bounds, kind = info(name).bounds, element_type(name)
    if kind is int and not (isinstance(x, int) and not isinstance(x, bool)):
        return SettingError(f"{where}${name} must be a whole number, not {x!r}", name)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return SettingError(f"{where}${name} must be a number, not {x!r}", name)
    why = ""
    if (
        bounds.run_float
        and RUN_FLOAT.get() == "float32"
        and math.isfinite(x)
        and bounds._replace(run_float=False, high=min(bounds.high, FLOAT32_MAX)).contains(x)
    ):
        why = f" (float32, which the run uses, holds it as {as_float32(x):g})"
    text = str(x)
    shown = text if len(text) <= 40 else f"{text[:12]}... ({len(text)} digits)"
    return SettingError(f"{where}${name} must be {bounds.describe()}, not {shown}{why}", name)


def check_value(name: str, value: Any, where: str = "") -> None:
    """Raise a :class:`SettingError` unless ``value`` (each element of a tuple) lies in the
    setting's declared ``choices`` and ``bounds`` (``None``, unset, lies in any bounds)."""
    declared = info(name)
    if declared.choices is not None and value is not None and value not in declared.choices:
        raise SettingError(
            f"{where}${name} must be one of {', '.join(map(str, declared.choices))}, not {value!r}", name
        )
    if declared.bounds is not None and value is not None:
        kind = element_type(name)
        for x in value if isinstance(value, tuple) else (value,):
            if not declared.bounds.contains(x) or (kind is int and isinstance(x, float)):
                raise out_of_bounds(name, x, where)


def check_declared(s: Settings) -> None:
    """Raise unless every field lies in its declared ``choices`` and ``bounds``."""
    for name in FIELD_NAMES:
        check_value(name, getattr(s, name))


def validate(s: Settings) -> None:
    """Raise a :class:`SettingError` naming the first setting that makes no sense."""
    try:
        spec = network(s.network)
    except JaxstyleError as e:
        raise SettingError(str(e), "network") from None
    for name, label in (("content_layers", "content layer"), ("style_layers", "style layer")):
        layers = getattr(s, name)
        if not layers:
            raise SettingError(f"at least one {label} is needed", name)
        try:
            spec.check_layers(layers, label)
        except JaxstyleError as e:
            raise SettingError(str(e), name) from None
    for name, layers in (("content_layer_weights", s.content_layers), ("style_layer_weights", s.style_layers)):
        weights = getattr(s, name)
        if weights is not None and len(weights) != len(layers):
            raise SettingError(f"{len(weights)} ${name} for {len(layers)} layers", name)
    check_declared(s)
    if s.warm_start and s.optimizer != "adam":
        raise SettingError(
            "$warm_start carries Adam's moments from scale to scale; it needs --optimizer adam", "warm_start"
        )
    if s.bounded and s.optimizer not in info("bounded").optimizers:
        raise SettingError(
            "$bounded projects each step into the pixel range, which a line search's own evaluations would "
            "not see; use it with --optimizer lbfgs-fixed or adam",
            "bounded",
        )
    if s.style_blend is not None:
        check_blend(s.style_blend)
    if s.min_side is not None and s.scales != 1:
        raise SettingError("give either a number of $scales or a $min_side, not both", "min_side", "scales")
    forms = {name: getattr(s, name) for name in SIZE_FORMS if getattr(s, name) is not None}
    if not forms:
        raise SettingError("give a $size, a $max_side or $pixels", *SIZE_FORMS)
    if len(forms) > 1:
        given = ", ".join(f"${name} {value!r}" for name, value in forms.items())
        raise SettingError(f"give one of $size, $max_side and $pixels, not several ({given})", *SIZE_FORMS)
    if not s.init:
        raise SettingError(f"$init must be one of {', '.join(INITS)} or an image file", "init")


# Presets of recipes users know. Each differs from its original in what jaxstyle does
# not implement; the preset table of docs/presets.md names every such difference.
PRESETS: dict[str, Settings] = {
    "paper": Settings(),
    # Gatys et al. 2016 as jcjohnson/neural-style and ProGamerGov/neural-style-pt run it,
    # with their optimiser: Torch's and PyTorch's L-BFGS, fixed steps of 1 and no line search
    # (lbfgs-fixed; before 2026-12 this preset used Optax's line-searching lbfgs).
    "gatys": Settings(
        content_layers=("relu4_2",),
        style_layers=GATYS_STYLE_LAYERS,
        content_weight=5.0,
        style_weight=100.0,
        tv_weight=1e-3,
        tv_reduction="sum",
        optimizer="lbfgs-fixed",
        lbfgs_memory=100,
        steps=1000,
        max_side=512,
        pixels=None,
        style_shape="own",
        init="gaussian",
        convention="caffe",
    ),
    # crowsonkb/style-transfer-pytorch as of CROWSONKB_COMMIT (StyleTransfer.__init__ and
    # stylize's defaults): MSE content loss, Wasserstein-2 style loss, nine-point L2 TV,
    # Adam with betas (0.9, 0.99). Its weights apply to the same losses here, except TV
    # and the step size, which it takes in pixels (see below).
    "crowsonkb": Settings(
        content_layers=("relu4_2",),
        style_layers=GATYS_STYLE_LAYERS,
        style_layer_weights=tuple(w / 341 for w in (256, 64, 16, 4, 1)),
        content_weight=0.015,
        # Its style layer weights, normalised to sum 1, are the only style weights.
        style_weight=1.0,
        style_loss="w2",
        # Its TV is taken on pixels in [0, 1]; here on the image in network input units,
        # x_net = (x - mean_c) / std_c, so a squared difference is std_c^2 times smaller in
        # pixels: tv_weight 2 times the channels' mean std^2 (each channel within 2.7%).
        tv_weight=2 * (0.229**2 + 0.224**2 + 0.225**2) / 3,
        tv_reduction="nine",
        # Its step size 0.02 is in pixel units; 0.02 / 0.226 (the mean ImageNet std)
        # is the same step in torchvision's network input units.
        lr=0.0885,
        adam_beta2=0.99,
        ema=0.99,
        warm_start=True,
        steps=500,
        initial_steps=1000,
        min_side=128,
        max_side=512,
        pixels=None,
        style_shape="own",
    ),
}


# Settings that were replaced, each with its successor and the successor's value for each
# old value: resolve() (the Python API) and the command line (--preserve-color) still take them.
DEPRECATED_SETTINGS: dict[str, tuple[str, dict[Any, Any]]] = {
    "preserve_color": ("color", {True: "post", False: "none"}),
}


def replace_deprecated(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with each deprecated setting given (not ``None``) replaced by its successor's value
    (:data:`DEPRECATED_SETTINGS`), with a ``DeprecationWarning``; an error where both are given and differ."""
    replaced = dict(overrides)
    for old, (new, values) in DEPRECATED_SETTINGS.items():
        value = replaced.pop(old, None)
        if value is None:
            continue
        if not isinstance(value, bool) or value not in values:
            raise JaxstyleError(f"{old} must be one of {', '.join(map(repr, values))}, not {value!r}")
        warnings.warn(f"{old}={value} is deprecated; use {new}={values[value]!r}", DeprecationWarning, stacklevel=3)
        if replaced.get(new) is not None and replaced[new] != values[value]:
            raise JaxstyleError(f"{old}={value} means {new} {values[value]}, not {replaced[new]}; give {new} only")
        replaced[new] = values[value]
    return replaced


def resets(given: Sequence[str]) -> set[str]:
    """The settings that giving ``given`` resets: their dependents, transitively, except those given."""
    reset: set[str] = set()
    todo = list(given)
    while todo:
        for dependent in DEPENDENTS[todo.pop()]:
            if dependent not in given and dependent not in reset:
                reset.add(dependent)
                todo.append(dependent)
    return reset


def resolve(preset: str = "paper", **overrides: Any) -> Settings:
    """The preset's settings with every override that is not ``None`` applied.

    Each override also resets the settings that depend on it (their ``depends_on`` and
    ``optimizers``), transitively, to unset unless they are overridden too: new style
    layers drop the preset's style layer weights, another optimiser drops its learning
    rate, Adam's beta2, warm start and L-BFGS memory, new ``steps`` drop ``initial_steps`` and
    ``scale_steps``, each of ``size``, ``max_side`` and ``pixels`` drops the other two, and
    ``scales`` and ``min_side`` drop each other.
    """
    if preset not in PRESETS:
        raise JaxstyleError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    given = {k: v for k, v in replace_deprecated(overrides).items() if v is not None}
    unknown = set(given) - set(FIELD_NAMES)
    if unknown & set(EXECUTION_NAMES):
        raise TypeError(
            f"{', '.join(sorted(unknown & set(EXECUTION_NAMES)))}: run-time choices, not settings of the recipe; "
            "give them to Execution (jaxstyle.stylize, sweep and video take them as keywords too)"
        )
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return override(PRESETS[preset], **given)


def override(settings: Settings, **given: Any) -> Settings:
    """``settings`` with the ``given`` values, and the settings they reset (:func:`resets`) unset."""
    changes = {name: unset_value(name) for name in resets(list(given))}
    for name, value in given.items():
        changes[name] = tuple(value) if typing.get_origin(value_type(name)) is tuple else value
    return dataclasses.replace(settings, **changes)


def value_text(value: Any) -> str:
    """A swept value as labels write it: ``1000``, ``0.1``, ``w2``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_swept_values(settings: Settings, values: Mapping[str, Sequence[Any]]) -> None:
    """Raise a :class:`SettingError` when a sweep gives a value outside a setting's choices or
    bounds (checked as :func:`numbers_checked_as` says), or several values of a setting its
    optimiser ignores.

    ``values`` maps swept settings to the values the sweep takes, one per setting of the
    sweep (``None``: the settings' own); an error names the setting of the sweep by its
    index. A setting that matters only for other optimisers (``optimizers`` in its
    metadata, e.g. ``lr``: Adam's) would give identical runs.
    """
    for name, taken in values.items():
        for k, value in enumerate(taken):
            if value is not None:
                check_value(name, value, where=f"setting {k}: ")
        optimizers = info(name).optimizers
        distinct = list(dict.fromkeys(v for v in taken if v is not None))
        if optimizers and settings.optimizer not in optimizers and len(distinct) > 1:
            raise SettingError(
                f"${name} {','.join(map(value_text, distinct))} with $optimizer {settings.optimizer} sweeps "
                f"identical settings: ${name} matters only with $optimizer {' or '.join(optimizers)}",
                name,
                "optimizer",
            )


def check_convention(settings: Settings, convention: str, path: str | os.PathLike) -> None:
    """Raise unless the weights at ``path`` expect the input ``convention`` the settings are made for.

    ``lr`` and the gaussian init are in network input units, which differ between
    conventions (a pixel step is about 58 times larger in Caffe's than in torchvision's),
    so a preset's values only mean what they say on weights of its own convention.
    """
    if convention == settings.convention:
        return
    made_for = [f"--preset {name}" for name, preset in PRESETS.items() if preset.convention == convention]
    fix = f"use {settings.convention} weights" + (f", or {' or '.join(made_for)}" if made_for else "")
    raise JaxstyleError(
        f"{path}: {convention}-convention weights, but these settings (lr, gaussian init) are in "
        f"{settings.convention} units; {fix} (from Python: convention={convention!r} with values in its units)"
    )


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
            raise SettingError(f"{len(settings.scale_steps)} $scale_steps for {len(sizes)} scales", "scale_steps")
        steps = list(settings.scale_steps)
    else:
        steps = [settings.initial_steps or settings.steps] + [settings.steps] * (len(sizes) - 1)
    return [Stage(s, n) for s, n in zip(sizes, steps, strict=True)]
