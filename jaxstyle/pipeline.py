"""The one pipeline under ``stylize`` and ``sweep``: inputs, network, targets, and the stage runner.

A run is a batch of settings ("points") that share a schedule: one stylization is a
batch of one point on a one-device mesh that raises on divergence; a sweep is a batch
of many, sharded over every device of every host. :func:`prepare_job` reads and checks
everything first, so that a run fails before it starts; :func:`run_job` then runs the
plan (:mod:`jaxstyle.plan`) stage by stage and chunk by chunk, calling back after
every chunk for progress and snapshots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxstyle import color as colour
from jaxstyle import image as imageio
from jaxstyle import masks as masklib
from jaxstyle import mesh as meshlib
from jaxstyle import nets
from jaxstyle import weights as weightsio
from jaxstyle.batch import Setting, batch_losses_jit, init_batch_jit, run_batch_chunk, stack_content_targets_jit
from jaxstyle.checkpoint import CheckpointOptions, Checkpoints, Position, digest
from jaxstyle.config import (
    INITS,
    STYLE_LOSS_NAMES,
    SWEPT_FIELDS,
    Execution,
    Settings,
    check_convention,
    check_swept_values,
    info,
    normalised_blend,
    numbers_checked_as,
    value_type,
)
from jaxstyle.errors import JaxstyleError, Stopped
from jaxstyle.losses import EditTarget, Guide, LossWeights, Targets, TemporalTarget
from jaxstyle.plan import RunPlan, StagePlan, make_plan, spatial_multiple, split_height
from jaxstyle.preprocess import InputConvention
from jaxstyle.solve import (
    LOSS_NAMES,
    Diverged,
    Recipe,
    SolverState,
    averaged_image,
    blend_statistics,
    content_targets_jit,
    style_statistics_jit,
    style_targets_jit,
    warm_started_adam,
)
from jaxstyle.spatial import own_rows, pad_rows

ImageLike = str | os.PathLike | np.ndarray
MIN_STYLE_SIDE = 16  # relu5_1 lies behind four 2x2 poolings


# --------------------------------------------------------------------------- points


def swept_values(point: Any) -> dict[str, Any]:
    """``{name: value}`` of a point's swept settings."""
    return {key: getattr(point, key) for key in SWEPT_FIELDS}


# One setting of a batch (a single stylization is a batch of one): ``content`` and
# ``style`` index the run's content images and style targets (the style images, or
# the blends); then one field per swept setting (``swept`` in its metadata), ``None``
# meaning the shared settings' value. Generated from the metadata and the settings'
# types (``float``, or ``str`` for the style loss), so that a new swept setting needs
# no edit here.
SweepPoint = dataclasses.make_dataclass(
    "SweepPoint",
    [
        ("content", int),
        ("style", int),
        *((key, value_type(key) | None, dataclasses.field(default=None)) for key in SWEPT_FIELDS),
    ],
    frozen=True,
    namespace={"swept_values": swept_values, "__module__": __name__},
)


def settings_point(settings: Settings, content: int = 0, style: int = 0) -> SweepPoint:
    """The point that runs ``settings``' own values."""
    return SweepPoint(content, style, *(getattr(settings, key) for key in SWEPT_FIELDS))


def check_points(points: Sequence[SweepPoint], n_contents: int, n_styles: int) -> None:
    """Every swept value within its setting's declared bounds; image indexes in range."""
    if not points:
        raise JaxstyleError("no settings to run")
    for k, p in enumerate(points):
        for key, value in swept_values(p).items():
            bounds = info(key).bounds
            if bounds is not None and not bounds.contains(value):
                raise JaxstyleError(f"setting {k}: {key.replace('_', ' ')} must be {bounds.describe()}, not {value}")
        if not (0 <= p.content < n_contents and 0 <= p.style < n_styles):
            raise JaxstyleError(f"setting {k}: no content image {p.content} or style target {p.style}")


# --------------------------------------------------------------------------- inputs


def as_rgb(img: ImageLike) -> np.ndarray:
    """A path (read from disk) or an array (uint8 or float in [0, 1]) as float32 RGB."""
    if isinstance(img, (str, os.PathLike)):
        return imageio.load_image(img)
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise JaxstyleError(f"image array of shape {arr.shape}: expected (H, W, 3)")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return arr.astype(np.float32)


def image_name(img: ImageLike, default: str) -> str:
    """A path's text, or ``default`` for an in-memory image."""
    return str(img) if isinstance(img, (str, os.PathLike)) else default


def blend_matrix(n_styles: int, blends: Sequence[Sequence[float]] | None) -> np.ndarray:
    """Rows of style weights, one per style target: the identity, or each blend normalised to sum 1."""
    if not blends:
        return np.eye(n_styles)
    return np.asarray([normalised_blend(blend, n_styles) for blend in blends], np.float64)


def read_init(settings: Settings) -> np.ndarray | None:
    """The ``init`` image file's pixels, or ``None`` when ``init`` names no file."""
    return None if settings.init in INITS else imageio.load_image(settings.init)


@dataclass
class Inputs:
    """The images of a run, read and checked.

    The images the network sees are those the settings' ``color`` makes of the files
    (:mod:`jaxstyle.color`): under ``luminance`` their luminance, under ``histogram-*`` the
    styles with the first content's colours; the output takes its colours from ``originals``.

    Attributes:
      contents: content images as the network sees them, float32 RGB at their own sizes.
      styles: style images as the network sees them, likewise.
      blends: ``(T, S)`` weights of the style images in each style target (rows sum to 1).
      init_rgb: the ``init`` image file's pixels as the network sees them, if ``init`` names one.
      output_size: ``(height, width)`` of the output.
      originals: the content images as read (the colours of ``--color post`` and ``luminance``).
      masks: regions, style-image masks and the edit mask (:class:`jaxstyle.masks.Masks`), or ``None``.
    """

    contents: list[np.ndarray]
    styles: list[np.ndarray]
    blends: np.ndarray
    init_rgb: np.ndarray | None
    output_size: tuple[int, int]
    originals: list[np.ndarray]
    masks: masklib.Masks | None = None

    def with_contents(self, rgbs: Sequence[np.ndarray], color: str) -> Inputs:
        """These inputs with other content images (a video's frames, one at a time), seen as
        ``color`` says; the style images stay as they were matched (to the first content)."""
        return dataclasses.replace(
            self, contents=[colour.network_view(color, rgb) for rgb in rgbs], originals=list(rgbs)
        )


def read_inputs(
    contents: Sequence[ImageLike],
    styles: Sequence[ImageLike],
    settings: Settings,
    style_blends: Sequence[Sequence[float]] | None = None,
) -> Inputs:
    """Read every image of a run, as the settings' ``color`` has the network see it
    (:class:`Inputs`); the output size follows the first content image."""
    if not contents or not styles:
        raise JaxstyleError("a run needs at least one content and one style image")
    content_rgbs = [as_rgb(c) for c in contents]
    style_rgbs = [as_rgb(s) for s in styles]
    if style_blends is None:
        style_blends = [settings.blend_weights(len(style_rgbs))]
    init_rgb = read_init(settings)
    return Inputs(
        contents=[colour.network_view(settings.color, rgb) for rgb in content_rgbs],
        styles=colour.styles_for(settings.color, style_rgbs, content_rgbs[0]),
        blends=blend_matrix(len(style_rgbs), style_blends),
        init_rgb=None if init_rgb is None else colour.network_view(settings.color, init_rgb),
        output_size=imageio.output_size(content_rgbs[0].shape[:2], settings),
        originals=content_rgbs,
    )


# --------------------------------------------------------------------------- network


@dataclass
class Network:
    """The VGG of a weights file, split for the pure core, with how pixels enter it.

    Attributes:
      graphdef, params: the module's structure and its weights.
      recipe: the static part of the recipe (layers, TV reduction, optimiser).
      convention: how pixels map to the network's input space.
      dtype: dtype of the image, Gram matrices and losses.
      compute_dtype: dtype of the convolutions (``None``: ``dtype``).
      weights_file: the converted weights file.
      weights_info: its provenance (source, source file and SHA-256, convention).
    """

    graphdef: Any
    params: Any
    recipe: Recipe
    convention: InputConvention
    dtype: jnp.dtype
    compute_dtype: str | None
    weights_file: Path
    weights_info: dict[str, str]


def load_weights(settings: Settings, weights: str | os.PathLike | None) -> weightsio.LoadedWeights:
    """The converted weights file named (or the first one found), checked to hold the settings'
    network and to expect their input convention."""
    path = Path(weights) if weights is not None else weightsio.find(settings.network, settings.convention)
    loaded = weightsio.read_converted(path, network=settings.network)
    check_convention(settings, loaded.convention.name, path)
    return loaded


def build_network(
    settings: Settings,
    weights: str | os.PathLike | None,
    execution: Execution | None = None,
    style_losses: Sequence[str] | None = None,
    remat: str = "none",
) -> Network:
    """Load the weights and split the network for the core.

    ``execution`` gives the dtypes: its ``dtype`` is checked (float64 needs
    ``jax_enable_x64``), its ``compute_dtype`` is the dtype of the convolutions
    (``None``: ``dtype``); ``style_losses`` are the style losses the batch's settings use
    (``None``: the settings' own); ``remat`` the resolved rematerialisation mode (the
    plan's, where the execution may say ``auto``).
    """
    execution = execution or Execution()
    dtype, compute_dtype = jnp.dtype(execution.dtype), execution.compute_dtype
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise JaxstyleError("dtype float64 needs jax_enable_x64 (JAX_ENABLE_X64=1)")
    loaded = load_weights(settings, weights)
    graphdef, params = weightsio.split_model(
        loaded.convs, pool=settings.pool, dtype=dtype, compute_dtype=compute_dtype, network=loaded.network
    )
    recipe = Recipe(
        content=tuple(settings.content_layers),
        style=tuple(settings.style_layers),
        tv_reduction=settings.tv_reduction,
        optimizer=settings.optimizer,
        lbfgs_memory=settings.lbfgs_memory,
        lbfgs_step=settings.lbfgs_step,
        lbfgs_first_step=settings.lbfgs_first_step * loaded.convention.level() if settings.lbfgs_first_step else None,
        pixel_bounds=loaded.convention.bounds() if settings.bounded else None,
        style_losses=tuple(name for name in STYLE_LOSS_NAMES if name in (style_losses or (settings.style_loss,))),
        adam_b2=settings.adam_beta2,
        remat=remat,
    )
    info = {k: v for k, v in loaded.attrs.items() if k.startswith(("source", "convention"))}
    return Network(graphdef, params, recipe, loaded.convention, dtype, compute_dtype, loaded.path, info)


# --------------------------------------------------------------------------- targets


def style_size(style_hw: tuple[int, int], output_hw: tuple[int, int], settings: Settings) -> tuple[int, int]:
    """The size a style image is resized to before its features are taken.

    ``style_shape="output"``: ``style_scale`` times the output's height and width (d2l
    resizes the style to the output size). ``"own"``: the style's aspect, its longest
    side ``style_scale`` times the output's longest side (neural-style, style-transfer-pytorch).
    """
    scale = settings.style_scale
    if settings.style_shape == "output":
        h, w = output_hw
    else:
        h, w = style_hw
        scale *= max(output_hw) / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def check_sizes(settings: Settings, inputs: Inputs, plan: RunPlan) -> None:
    """The coarsest scale and every style image at every scale at least :data:`MIN_STYLE_SIDE` a side,
    and no style image larger than an output may be (:data:`jaxstyle.image.MAX_SIDE` a side)."""
    h, w = plan.stages[0].size
    if min(h, w) < MIN_STYLE_SIDE:
        raise JaxstyleError(
            f"coarsest scale {h}x{w} is too small: VGG needs at least {MIN_STYLE_SIDE} pixels a side; "
            "use fewer --scales or a larger --min-side"
        )
    for number, rgb in enumerate(inputs.styles, start=1):
        for stage in plan.stages:
            sh, sw = style_size(rgb.shape[:2], stage.size, settings)
            if min(sh, sw) < MIN_STYLE_SIDE:
                raise JaxstyleError(
                    f"style image {number} would be {sh}x{sw} pixels at style scale {settings.style_scale}; "
                    f"VGG needs at least {MIN_STYLE_SIDE} on each side"
                )
            if max(sh, sw) > imageio.MAX_SIDE:  # checked before it is resized
                raise JaxstyleError(
                    f"style image {number} would be {sh}x{sw} pixels at style scale {settings.style_scale}; "
                    f"at most {imageio.MAX_SIDE} on each side: use a smaller --style-scale"
                )


def to_network_images(rgbs: Sequence[np.ndarray], size: tuple[int, int], network: Network) -> jax.Array:
    """Images resized to ``size`` in network space, ``(N, 1, h, w, 3)``."""
    resized = np.stack([imageio.resize(rgb, size) for rgb in rgbs])
    return network.convention.to_network(jnp.asarray(resized, network.dtype)[:, None])


def stacked_style_statistics(
    network: Network, images: Sequence[jax.Array], guides: Sequence[tuple | None] | None = None
) -> tuple[Any, ...]:
    """Style statistics (:data:`~jaxstyle.losses.LayerStatistics`: for each of the recipe's
    style losses, e.g. Gram matrices, or means and second moments) of every style image at
    every style layer; leaves ``(S, 1, ...)``. ``guides``: each image's guidance channels at
    each style layer (:func:`style_image_guides`), or ``None``.

    Style images may differ in size (one compiled function per size); their statistics do not.
    """
    guides = guides or [None] * len(images)
    stats = [
        style_statistics_jit(network.graphdef, network.params, image, network.recipe, g)
        for image, g in zip(images, guides, strict=True)
    ]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *stats)


def targets_at(
    network: Network,
    settings: Settings,
    inputs: Inputs,
    size: tuple[int, int],
    place: Callable[[jax.Array], jax.Array] | None = None,
) -> Targets:
    """Stacked targets for an output of ``size``: content features ``(Nc, 1, ...)`` per content
    layer, and each style loss's targets ``(T, 1, ...)`` per style layer from the blended
    statistics, ``X_t = sum_s blends[t, s] * X_s`` (:func:`~jaxstyle.solve.blend_statistics`);
    with masks, each content image's guides and edit target (:func:`mask_targets`), and
    with regions the one target of :func:`region_statistics`.

    ``place`` puts each network-space image where its features are computed (a run whose
    images are split over devices computes them split too); by default, the default device.
    """
    place = place or (lambda x: x)
    content = stack_content_targets_jit(
        network.graphdef, network.params, place(to_network_images(inputs.contents, size, network)), network.recipe
    )
    guides, edit, strength = mask_targets(network, settings, inputs, size, range(len(inputs.contents)))
    return Targets(
        content=content,
        style=style_targets_at(network, settings, inputs, size, place),
        guides=guides,
        edit=edit,
        strength=strength,
    )


def style_targets_at(
    network: Network,
    settings: Settings,
    inputs: Inputs,
    size: tuple[int, int],
    place: Callable[[jax.Array], jax.Array] | None = None,
) -> dict[str, tuple[Any, ...]]:
    """:attr:`~jaxstyle.losses.Targets.style` of :func:`targets_at`: each style loss's targets
    ``(T, 1, ...)`` per style layer from :func:`style_statistics_at`."""
    return style_targets_jit(style_statistics_at(network, settings, inputs, size, place), network.recipe)


def style_statistics_at(
    network: Network,
    settings: Settings,
    inputs: Inputs,
    size: tuple[int, int],
    place: Callable[[jax.Array], jax.Array] | None = None,
    blends: np.ndarray | None = None,
) -> tuple[Any, ...]:
    """The statistics every style target is made of, leaves ``(T, 1, ...)``: the blends
    (``blends``, default every row of ``inputs.blends``) of the style images' statistics,
    each restricted to its style-image mask if it has one; with regions, the one target
    whose region ``r`` holds style image ``r``'s (:func:`region_statistics`)."""
    masks = inputs.masks
    images = style_images_at(network, settings, inputs, size, place)
    guides = [style_image_guides(network, settings, masks, s, image.shape[1:3]) for s, image in enumerate(images)]
    stats = stacked_style_statistics(network, images, guides)
    if masks is not None and masks.style is not None:
        return region_statistics(stats)
    return blend_statistics(stats, jnp.asarray(inputs.blends if blends is None else blends, network.dtype))


def region_statistics(stats: tuple[Any, ...]) -> tuple[Any, ...]:
    """The one style target of a run with regions, leaves ``(1, 1, R, ...)``, from the style images'
    guided Gram matrices (leaves ``(S, 1, 1, C, C)``, one guidance channel each): style image
    ``r``'s in region ``r``.

    Each style image is matched in its own region (Gatys et al. 2017, section 4.1); blends
    do not apply."""
    return jax.tree.map(lambda x: jnp.moveaxis(x, 0, 2), stats)


def network_layers(network: Network, settings: Settings) -> tuple[str, ...]:
    """The network's layers from its input to the deepest style layer, in order."""
    spec = nets.network(settings.network)
    return tuple(name for block in spec.blocks_until(spec.deepest(network.recipe.style)) for name in block)


def guides_of(
    network: Network, settings: Settings, masks: masklib.Masks, mask: np.ndarray, size: tuple[int, int]
) -> tuple:
    """The guide pyramid (:func:`jaxstyle.masks.guide_pyramid`) of a mask ``(H, W, R)`` resized to
    ``size``, at each style layer, ``(1, h, w, R)``."""
    resized = jnp.asarray(masklib.resized(mask, size), network.dtype)[None]
    layers = network_layers(network, settings)
    return masklib.guide_pyramid(resized, layers, network.recipe.style, masks.guidance)


def style_image_guides(
    network: Network, settings: Settings, masks: masklib.Masks | None, index: int, size: tuple[int, int]
) -> tuple | None:
    """Style image ``index``'s guides at each style layer (one channel, ``(1, h, w, 1)``) at its
    ``size``: its style-image mask if it has one, else all ones when the run has regions;
    ``None`` otherwise (the style losses' own statistics)."""
    if masks is None or (masks.style is None and masks.style_image is None):
        return None
    mask = None if masks.style_image is None else masks.style_image[index]
    if mask is None:
        if masks.style is None:
            return None
        mask = np.ones((*size, 1), np.float32)
    return guides_of(network, settings, masks, mask.reshape(*mask.shape[:2], 1), size)


def mask_targets(
    network: Network, settings: Settings, inputs: Inputs, size: tuple[int, int], contents: Sequence[int]
) -> tuple[tuple[Guide, ...] | None, EditTarget | None, jax.Array | None]:
    """What the masks of the content images ``contents`` make at ``size``, stacked ``(Nc, 1, ...)``:
    a :class:`~jaxstyle.losses.Guide` at each style layer (region guides ``(Nc, 1, h, w, R)``,
    strength ratios ``(Nc, 1, h, w, 1)``), the edit target (content image and mask,
    ``(Nc, 1, H, W, 3)`` and ``(Nc, 1, H, W, 1)``) and the mean strength at each style layer
    ``(Nc, 1, L)``; ``None`` where no such masks are given."""
    masks = inputs.masks
    if masks is None:
        return None, None, None
    layers, style = network_layers(network, settings), network.recipe.style
    regions = strength = means = edit = None
    if masks.style is not None:
        regions = stacked([guides_of(network, settings, masks, masks.for_content("style", c), size) for c in contents])
    if masks.strength is not None:
        maps = [jnp.asarray(masklib.resized(masks.for_content("strength", c), size), network.dtype) for c in contents]
        pyramids = [masklib.strength_pyramid(m[None, :, :, None], layers, style) for m in maps]
        strength, means = stacked([p[0] for p in pyramids]), stacked([p[1] for p in pyramids])
    guides = None
    if regions is not None or strength is not None:
        guides = tuple(
            Guide(None if regions is None else regions[i], None if strength is None else strength[i])
            for i in range(len(style))
        )
    if masks.edit is not None:
        image = to_network_images([inputs.contents[c] for c in contents], size, network)
        mask = np.stack([masklib.resized(masks.for_content("edit", c), size) for c in contents])
        edit = EditTarget(image, jnp.asarray(mask, network.dtype)[:, None, :, :, None])
    return guides, edit, means


def stacked(trees: Sequence[Any]) -> Any:
    """Pytrees of the same structure stacked leaf by leaf along a new first axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def style_images_at(
    network: Network,
    settings: Settings,
    inputs: Inputs,
    size: tuple[int, int],
    place: Callable[[jax.Array], jax.Array] | None = None,
) -> list[jax.Array]:
    """Each style image in network space, ``(1, h, w, 3)``, at its size for an output of ``size``
    (:func:`style_size`), put where ``place`` says (default: the default device)."""
    place = place or (lambda x: x)
    return [
        place(to_network_images([rgb], style_size(rgb.shape[:2], size, settings), network)[0]) for rgb in inputs.styles
    ]


def point_targets(network: Network, settings: Settings, inputs: Inputs, size: tuple[int, int], point: Any) -> Targets:
    """The targets of one point (:class:`~jaxstyle.sweep.SweepPoint`) at ``size``, leaves ``(1, ...)``:
    the content features of its content image, and its style target, ``X = sum_s blends[t, s] * X_s``
    for its style target ``t`` (with regions, the one target of :func:`region_statistics`), and its
    content image's masks. What :func:`targets_at` stacks for every content and target of a
    batch, and :func:`~jaxstyle.batch.select_targets` picks from, computed for the one alone."""
    recipe = network.recipe
    content = to_network_images([inputs.contents[point.content]], size, network)[0]
    stats = style_statistics_at(network, settings, inputs, size, blends=inputs.blends[point.style])
    if inputs.masks is not None and inputs.masks.style is not None:
        stats = jax.tree.map(lambda x: x[0], stats)
    guides, edit, strength = mask_targets(network, settings, inputs, size, [point.content])
    return Targets(
        content=content_targets_jit(network.graphdef, network.params, content, recipe),
        style=style_targets_jit(stats, recipe),
        guides=jax.tree.map(lambda x: x[0], guides),
        edit=jax.tree.map(lambda x: x[0], edit),
        strength=None if strength is None else strength[0],
    )


# --------------------------------------------------------------------------- images


def initial_image(
    settings: Settings, content: jax.Array, to_network: Callable, init_rgb: np.ndarray | None = None
) -> jax.Array:
    """The starting image in network space, shaped like ``content`` (network space, NHWC).

    ``content``: the content image; ``noise``: uniform random pixels; ``gaussian``:
    ``0.001 * N(0, 1)`` in network space (neural-style's ``-init random``, near the
    mean colour); a file: ``init_rgb`` resized to the content's size. Random draws use
    ``settings.seed``.
    """
    key = jax.random.key(settings.seed)
    if settings.init == "content":
        return content
    if settings.init == "noise":
        return to_network(jax.random.uniform(key, content.shape, content.dtype))
    if settings.init == "gaussian":
        return 0.001 * jax.random.normal(key, content.shape, content.dtype)
    rgb = imageio.resize(init_rgb, content.shape[-3:-1])
    return to_network(jnp.asarray(rgb, content.dtype).reshape(content.shape))


def to_pixels(image: jax.Array, convention: InputConvention) -> np.ndarray:
    """Network-space images (channels last, any leading axes) to float RGB in [0, 1], clipped only here."""
    return np.asarray(jnp.clip(convention.from_network(image), 0.0, 1.0))


def output_pixels(
    images: jax.Array | np.ndarray,
    settings: Settings,
    convention: InputConvention,
    content_rgbs: Sequence[np.ndarray],
    edit_masks: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """Network-space images ``(B, H, W, 3)`` as RGB in [0, 1]; where the settings' ``color``
    gives the output the content's colours (``post``, ``luminance``), row ``b`` takes those of
    ``content_rgbs[b]`` (the content as read, resized to the output: :func:`jaxstyle.color.recolour`);
    with ``edit_masks[b]`` (``(H', W')``, any size of the output's aspect), row ``b`` is
    :func:`restored`."""
    rgb = to_pixels(jnp.asarray(images), convention)
    if settings.color in ("post", "luminance"):
        rgb = np.stack(
            [
                colour.recolour(settings.color, x, imageio.resize(content, x.shape[:2]))
                for x, content in zip(rgb, content_rgbs, strict=True)
            ]
        )
    if edit_masks is not None:
        rgb = np.stack([restored(x, c, m) for x, c, m in zip(rgb, content_rgbs, edit_masks, strict=True)])
    return rgb


def restored(rgb: np.ndarray, content: np.ndarray, edit_mask: np.ndarray | None) -> np.ndarray:
    """``q + m (x - q)``: the output ``x`` with the pixels outside the edit mask ``m`` (resized to
    it) the content's own 8-bit pixels ``q`` at the output's size, so that an 8-bit file
    written from it holds the content's values there, bit for bit (``m = 0``: exactly ``q``).

    The objective saw ``c + m (x - c)`` with ``c`` the content in float
    (:func:`jaxstyle.losses.edited_image`); ``q`` is ``c`` rounded to 8 bits."""
    if edit_mask is None:
        return rgb
    q = imageio.to_uint8(imageio.resize(content, rgb.shape[:2])).astype(np.float32) / 255.0
    m = masklib.resized(edit_mask, rgb.shape[:2])[:, :, None]
    return q + m * (rgb - q)


def upsample(images: jax.Array, size: tuple[int, int], convention: InputConvention) -> jax.Array:
    """Network-space images ``(..., h, w, 3)`` resized to the next scale on the device: Keys'
    bicubic (a = -0.5) on pixels, clipped to [0, 1], as style-transfer-pytorch clips there too.

    The resizer is ``jax.image.resize``, as for Adam's moments when warm-starting
    (:func:`jaxstyle.solve.warm_started_adam`). Pillow's bicubic (the input images',
    :func:`jaxstyle.image.resize`) is the same filter with the same pixel centres and edges;
    when upsampling, as here, the two agree to float32 rounding (2e-6). Unlike Pillow's,
    which works in float32, this one keeps the run's dtype (float64 stays float64).
    """
    pixels = convention.from_network(images)
    resized = jax.image.resize(pixels, (*pixels.shape[:-3], *size, 3), "cubic", antialias=True)
    return convention.to_network(jnp.clip(resized, 0.0, 1.0))


def upsample_rows(
    images: jax.Array, rows: int, size: tuple[int, int], padded: int, convention: InputConvention
) -> jax.Array:
    """:func:`upsample` of the first ``rows`` rows of ``images`` (a split stage's, the rest its
    padding) to ``size``, padded with zero rows to ``padded`` rows (:func:`~jaxstyle.spatial.pad_rows`).
    With nothing padded, :func:`upsample` itself."""
    return pad_rows(upsample(own_rows(images, rows), size, convention), padded)


upsample_rows_jit = jax.jit(upsample_rows, static_argnames=("rows", "size", "padded", "convention"))


def warm_started_rows(previous: Any, fresh: Any, rows: int, fresh_rows: int, padded: int) -> Any:
    """:func:`~jaxstyle.solve.warm_started_adam` between states whose images may be padded below
    their own rows (split stages): the moments' ``rows`` own rows resized to ``fresh``'s
    ``fresh_rows``, padded with zero rows to ``padded``. With nothing padded, the warm start itself."""

    def image_leaves(tree: Any, change: Callable[[jax.Array], jax.Array]) -> Any:
        return jax.tree.map(lambda x: change(x) if x.ndim >= 5 else x, tree)  # (B, 1, H, W, 3) moments

    warm = warm_started_adam(
        image_leaves(previous, lambda x: own_rows(x, rows)), image_leaves(fresh, lambda x: own_rows(x, fresh_rows))
    )
    return image_leaves(warm, lambda x: pad_rows(x, padded))


warm_started_rows_jit = jax.jit(warm_started_rows, static_argnames=("rows", "fresh_rows", "padded"))


# --------------------------------------------------------------------------- the job


class SettingArrays(NamedTuple):
    """Per-setting arrays of a batch: host arrays with a leading axis K, or a micro-batch's B on the mesh.

    Attributes:
      setting: loss weights, image indexes, temporal targets (:class:`~jaxstyle.batch.Setting`).
      images: each setting's starting image at the first stage, network space ``(K, 1, h, w, 3)``.
      lr, ema, tol: learning rates, EMA decays and tolerances, ``(K,)``.
    """

    setting: Setting
    images: Any
    lr: Any
    ema: Any
    tol: Any


@dataclass
class FrameTargets:
    """Per-point inputs of video frames (:mod:`jaxstyle.clips`), host arrays at the output size.

    Attributes:
      init: each point's starting image, RGB ``(K, H, W, 3)`` (the previous stylized
        frame warped, or a blend of neighbours); ``None``: the settings' ``init``.
      warped: the ``J`` earlier (or neighbouring) stylized frames warped into each point's
        frame, closest first, RGB ``(K, J, H, W, 3)`` (:class:`~jaxstyle.losses.TemporalTarget`).
      mask: their per-pixel weights in [0, 1], ``(K, J, H, W)``.
      weight: each point's temporal loss weight, ``(K,)`` (0 where a frame has no neighbour).
    """

    init: np.ndarray | None
    warped: np.ndarray
    mask: np.ndarray
    weight: np.ndarray


@dataclass
class Job:
    """A run ready to start: settings, network, inputs, points and plan, all checked.

    Attributes:
      settings: the settings every point shares.
      network: the network and its weights.
      inputs: the images.
      points: the settings of the batch, in order.
      plan: stages, chunks, snapshots and micro-batches.
      execution: how the run is carried out, as asked (the plan holds what it resolved:
        the remat mode, the split, the batch size).
      frames: per-point temporal targets and starting images of video frames (``None``: still images).
    """

    settings: Settings
    network: Network
    inputs: Inputs
    points: list[SweepPoint]
    plan: RunPlan
    execution: Execution
    frames: FrameTargets | None = None

    def targets_at(self, size: tuple[int, int], place: Callable[[jax.Array], jax.Array] | None = None) -> Targets:
        """Stacked content and style targets at ``size`` (see :func:`targets_at`)."""
        return targets_at(self.network, self.settings, self.inputs, size, place)

    def style_targets_at(self, size: tuple[int, int], place: Callable[[jax.Array], jax.Array] | None = None) -> dict:
        """The style targets alone at ``size`` (see :func:`style_targets_at`)."""
        return style_targets_at(self.network, self.settings, self.inputs, size, place)

    def point_targets(self, size: tuple[int, int], k: int = 0) -> Targets:
        """The targets of point ``k`` alone at ``size`` (see :func:`point_targets`)."""
        return point_targets(self.network, self.settings, self.inputs, size, self.points[k])

    def per_setting(self) -> SettingArrays:
        """The per-setting host arrays, leading axis K."""
        dtype, points, k = self.network.dtype, self.points, len(self.points)
        content_layers, style_layers = self.settings.resolved_layer_weights()
        style_losses = self.network.recipe.style_losses

        def column(key: str) -> np.ndarray:
            return np.asarray([getattr(p, key) for p in points], dtype)

        weights = LossWeights(
            content=column("content_weight"),
            style=column("style_weight"),
            tv=column("tv_weight"),
            content_layers=np.tile(np.asarray(content_layers, dtype), (k, 1)),
            style_layers=np.tile(np.asarray(style_layers, dtype), (k, 1)),
            style_loss=np.asarray([[p.style_loss == name for name in style_losses] for p in points], dtype),
        )
        content_index = np.asarray([p.content for p in points], np.int32)
        setting = Setting(weights, content_index, np.asarray([p.style for p in points], np.int32))
        # Every setting of a content image starts from the same image (the same noise
        # too), so settings differ only in what the batch varies.
        to_network = self.network.convention.to_network
        first = self.plan.stages[0].size
        starts = np.stack(
            [
                np.asarray(initial_image(self.settings, image, to_network, self.inputs.init_rgb))
                for image in to_network_images(self.inputs.contents, first, self.network)
            ]
        )[content_index]
        if self.frames is not None:
            setting, starts = self.with_frames(setting, starts)
        return SettingArrays(setting, starts, column("lr"), column("ema"), np.full(k, self.settings.tol, dtype))

    def with_frames(self, setting: Setting, starts: np.ndarray) -> tuple[Setting, np.ndarray]:
        """``setting`` with each video frame's temporal weight and target; its own starting images."""
        frames, dtype = self.frames, self.network.dtype
        to_network = self.network.convention.to_network
        view = self.settings.color  # the network sees the stylized frames as it sees the contents
        warped = np.asarray(to_network(jnp.asarray(colour.network_view(view, frames.warped), dtype)))[:, None]
        temporal = TemporalTarget(warped, np.asarray(frames.mask, dtype)[:, None, ..., None])
        weights = setting.weights._replace(temporal=np.asarray(frames.weight, dtype))
        if frames.init is not None:
            init = [colour.network_view(view, rgb) for rgb in frames.init]
            starts = np.asarray(to_network_images(init, self.plan.stages[0].size, self.network))
        return setting._replace(weights=weights, temporal=temporal), starts


@dataclass(frozen=True)
class MaskInputs:
    """The masks a run is given, as files or arrays, before they are read (:func:`jaxstyle.masks.read_masks`).

    Attributes:
      style: one region mask per style image, in the content's coordinates (``--style-masks``).
      style_image: one mask per style image (or ``None``), in its own coordinates (``--style-image-masks``).
      edit: the mask of the pixels optimised (``--edit-mask``).
      guidance: ``simple`` or ``inside`` (``--guidance``).
      strength: the strength of the style at each pixel (``--strength-map``).
    """

    style: Sequence[masklib.MaskLike] | None = None
    style_image: Sequence[masklib.MaskLike | None] | None = None
    edit: masklib.MaskLike | None = None
    guidance: str = "simple"
    strength: masklib.MaskLike | None = None

    def given(self) -> bool:
        return any(x is not None for x in (self.style, self.style_image, self.edit, self.strength))

    def per_frame(self) -> dict[str, masklib.PerFrame]:
        """The masks given one per frame (:class:`~jaxstyle.masks.PerFrame`), by option."""
        found = {"--edit-mask": self.edit, "--strength-map": self.strength}
        found |= {f"--style-masks {k}": m for k, m in enumerate(self.style or [], start=1)}
        return {option: m for option, m in found.items() if isinstance(m, masklib.PerFrame)}

    def frame(self, index: int) -> MaskInputs:
        """The masks of frame ``index``: each per-frame mask's ``index``-th, the others as they are."""

        def pick(mask: Any) -> Any:
            return mask[index] if isinstance(mask, masklib.PerFrame) else mask

        style = None if self.style is None else [pick(m) for m in self.style]
        return dataclasses.replace(self, style=style, edit=pick(self.edit), strength=pick(self.strength))


def with_masks(inputs: Inputs, given: MaskInputs, style_blends: Sequence[Sequence[float]] | None) -> Inputs:
    """``inputs`` with their masks read and checked. With regions the run has one style target
    (each style image in its own region), so the style images are not blended."""
    per_frame = given.per_frame()
    if per_frame:  # a video hands each frame its own (jaxstyle.clips)
        raise JaxstyleError(f"{next(iter(per_frame))}: masks one per frame are for a video's frames")
    masks = masklib.read_masks(
        [c.shape[:2] for c in inputs.contents],
        [s.shape[:2] for s in inputs.styles],
        given.style,
        given.style_image,
        given.edit,
        given.guidance,
        given.strength,
    )
    if masks is not None and masks.style is not None:
        if style_blends is not None and len(style_blends) > 1:
            raise JaxstyleError("--style-masks give each style image its own region: they take no style blends")
        return dataclasses.replace(inputs, masks=masks, blends=np.ones((1, len(inputs.styles))) / len(inputs.styles))
    return dataclasses.replace(inputs, masks=masks)


def check_mask_losses(inputs: Inputs, points: Sequence[SweepPoint]) -> None:
    """Region and style-image masks are guidance channels: they need the ``guided`` style loss."""
    masks = inputs.masks
    if masks is None or (masks.style is None and masks.style_image is None):
        return
    others = sorted({p.style_loss for p in points} - {"guided"})
    if others:
        raise JaxstyleError(
            "--style-masks and --style-image-masks weight the guided Gram matrices: "
            f"they need --style-loss guided, not {', '.join(others)}"
        )


def prepare_job(
    contents: Sequence[ImageLike],
    styles: Sequence[ImageLike],
    settings: Settings,
    points: Sequence[SweepPoint] | None = None,
    *,
    style_blends: Sequence[Sequence[float]] | None = None,
    weights: str | os.PathLike | None = None,
    execution: Execution | None = None,
    device_count: int = 1,
    space_devices: int | None = None,
    masks: MaskInputs | None = None,
) -> Job:
    """Read and check everything a run needs, so that a run fails before it starts.

    ``points`` default to every content with every style target at the settings' values;
    ``execution`` (default ``Execution()``) says how the run is carried out;
    ``device_count`` devices hold the batch, and one image may be split over
    ``space_devices`` (default ``device_count``; see :func:`jaxstyle.plan.make_plan`);
    ``masks``: regions, style-image masks, the edit mask (:func:`with_masks`).
    """
    inputs = read_inputs(contents, styles, settings, style_blends)
    if masks is not None:
        inputs = with_masks(inputs, masks, style_blends)
    if points is None:
        points = [
            settings_point(settings, c, s) for c in range(len(inputs.contents)) for s in range(len(inputs.blends))
        ]
    points = [
        dataclasses.replace(p, **{k: getattr(settings, k) for k, v in swept_values(p).items() if v is None})
        for p in points
    ]
    execution = execution or Execution()
    with numbers_checked_as(execution.dtype):  # loss weights, lr, EMA as the run will hold them
        check_points(points, len(inputs.contents), len(inputs.blends))
        check_swept_values(settings, {key: [getattr(p, key) for p in points] for key in SWEPT_FIELDS})
    memory, _ = meshlib.device_memory_bytes()
    plan = make_plan(
        settings,
        inputs.output_size,
        len(points),
        execution=execution,
        device_count=device_count,
        device_memory=memory,
        platform=jax.devices()[0].platform,
        space_devices=space_devices,
    )
    check_sizes(settings, inputs, plan)
    check_mask_losses(inputs, points)
    network = build_network(settings, weights, execution, [p.style_loss for p in points], plan.remat)
    return Job(settings, network, inputs, points, plan, execution)


# --------------------------------------------------------------------------- results


class ChunkReport(NamedTuple):
    """What the runner reports after every chunk.

    Attributes:
      step: global steps done per setting of this micro-batch (all stages counted).
      steps: global steps per setting in all.
      stage, stages: the stage (scale) the chunk ran in, counted from 0, and how many there are.
      micro_batch, micro_batches: likewise for micro-batches.
      losses: the chunk's per-step losses, each ``(n, B)``; ``n`` is less than the chunk's
        length when every setting stopped within it.
    """

    step: int
    steps: int
    stage: int
    stages: int
    micro_batch: int
    micro_batches: int
    losses: dict[str, np.ndarray]

    @property
    def done(self) -> int:
        """Setting-steps done over the whole run, counting micro-batches before this one as full."""
        return self.micro_batch * self.steps + self.step


def repeat_last(losses: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Per-step losses ``(n, B)`` carried on to ``rows`` steps by repeating the last: what a
    stopped setting reports at every step it does not take (its state no longer changes)."""
    return {name: np.concatenate([v, np.repeat(v[-1:], rows - len(v), axis=0)]) for name, v in losses.items()}


def joined(chunks: Sequence[dict[str, np.ndarray]], axis: int = 0) -> dict[str, np.ndarray]:
    """Per-step losses one after the other (``axis=0``), or side by side (``axis=1``)."""
    return {name: np.concatenate([c[name] for c in chunks], axis=axis) for name in LOSS_NAMES}


@dataclass
class RunOutput:
    """What :func:`run_job` returns; every process holds all of it.

    Attributes:
      images: final images, float32 RGB in [0, 1], ``(K, H, W, 3)``.
      traces: each stage's per-step losses ``{content, style, tv, total}``, each ``(n, K)``,
        the losses before each step the stage ran: all its steps, or fewer when every
        setting stopped early (through the step that stopped the last one). A setting
        that stopped before the others repeats its last losses.
      final_losses: the losses of each final image (what is written, before 8-bit
        rounding), each ``(K,)``.
      diverged_at: global step at which each setting diverged, -1 for the others.
      stage_steps: ``(K, stages)`` steps each setting took at each stage (fewer than
        planned where it diverged or converged).
      converged_at: ``(K, stages)`` step within each stage at which it converged, -1 if not.
      local: indexes of the settings whose shards this process computed.
      seconds: wall time of the optimisation, compilation included.
    """

    images: np.ndarray
    traces: list[dict[str, np.ndarray]]
    final_losses: dict[str, np.ndarray]
    diverged_at: np.ndarray
    stage_steps: np.ndarray
    converged_at: np.ndarray
    local: list[int]
    seconds: float

    def trace(self) -> dict[str, np.ndarray]:
        """The stages' losses one after the other, each ``(rows, K)``."""
        return joined(self.traces)

    def trace_grid(self, stages: Sequence[StagePlan]) -> dict[str, np.ndarray]:
        """The losses before every planned step, each ``(steps, K)``: a stage that every
        setting left early repeats its last losses to the stage's end."""
        return joined([repeat_last(t, stage.steps) for t, stage in zip(self.traces, stages, strict=True)])


# --------------------------------------------------------------------------- run progress


class MicroBatchProgress(NamedTuple):
    """Where the micro-batch in flight stands between chunks, host arrays; with its solver
    state and the :class:`~jaxstyle.checkpoint.Position`, enough to go on.

    Attributes:
      traces: losses of each stage done, ``{name: (n, B)}`` (as :attr:`RunOutput.traces`).
      chunks: losses of each chunk done at the stage in flight, ``{name: (n, B)}``.
      diverged_at: global step at which each setting diverged, -1 for the others.
      stage_steps, converged_at: ``(B, stages)``, as in :class:`RunOutput`.
    """

    traces: list[dict[str, np.ndarray]]
    chunks: list[dict[str, np.ndarray]]
    diverged_at: np.ndarray
    stage_steps: np.ndarray
    converged_at: np.ndarray

    @classmethod
    def start(cls, batch: int, stages: int) -> MicroBatchProgress:
        return cls([], [], np.full(batch, -1), np.zeros((batch, stages), np.int64), np.full((batch, stages), -1))

    def with_chunk(self, losses: dict[str, np.ndarray]) -> MicroBatchProgress:
        return self._replace(chunks=[*self.chunks, losses])

    def end_stage(self, index: int, first_step: int, state: SolverState) -> MicroBatchProgress:
        """The stage ``index`` (first global step ``first_step``) done: its chunks make its trace; the
        state's stop flags and step count are recorded."""
        diverged, converged, taken = meshlib.to_host((state.diverged_at, state.converged_at, state.step))
        newly = (self.diverged_at < 0) & (diverged >= 0)
        stage_steps, converged_at = self.stage_steps.copy(), self.converged_at.copy()
        stage_steps[:, index], converged_at[:, index] = taken, converged
        return MicroBatchProgress(
            traces=[*self.traces, joined(self.chunks)],
            chunks=[],
            diverged_at=np.where(newly, first_step + diverged, self.diverged_at),
            stage_steps=stage_steps,
            converged_at=converged_at,
        )


class MicroBatchOutput(NamedTuple):
    """A finished micro-batch: the fields of :class:`RunOutput` for its ``B`` settings (padding
    included). Not ``local``: it differs between processes, and a checkpoint's host arrays are
    written by process 0 alone."""

    images: np.ndarray
    traces: list[dict[str, np.ndarray]]
    final_losses: dict[str, np.ndarray]
    diverged_at: np.ndarray
    stage_steps: np.ndarray
    converged_at: np.ndarray


class RunProgress(NamedTuple):
    """The host side of a run between chunks: what a checkpoint saves beside the solver state.

    Orbax writes the nested tuples, lists and dicts as they are, and reads them back as
    dicts and lists (:meth:`from_tree`).

    Attributes:
      done: the finished micro-batches, in order.
      now: the micro-batch in flight.
    """

    done: list[MicroBatchOutput]
    now: MicroBatchProgress

    @classmethod
    def from_tree(cls, tree: dict[str, Any]) -> RunProgress:
        """A run's progress from the nested dicts and lists Orbax restores."""
        return cls([MicroBatchOutput(**done) for done in tree["done"]], MicroBatchProgress(**tree["now"]))


def join_micro_batches(outputs: Sequence[MicroBatchOutput], k: int, local: list[int], seconds: float) -> RunOutput:
    """The run's output from its micro-batches, without the padding settings beyond ``k``.

    A stage that one micro-batch left earlier than another is carried on by repeating its
    last losses (its settings had all stopped)."""

    def cat(part: str) -> Any:
        return jax.tree.map(lambda *xs: np.concatenate(xs)[:k], *(getattr(o, part) for o in outputs))

    traces = []
    for stage in zip(*(o.traces for o in outputs), strict=True):
        rows = max(len(t["total"]) for t in stage)
        traces.append({name: v[:, :k] for name, v in joined([repeat_last(t, rows) for t in stage], axis=1).items()})
    return RunOutput(
        images=cat("images"),
        traces=traces,
        final_losses=cat("final_losses"),
        diverged_at=cat("diverged_at"),
        stage_steps=cat("stage_steps"),
        converged_at=cat("converged_at"),
        local=local,
        seconds=seconds,
    )


# --------------------------------------------------------------------------- device layout


@dataclass(frozen=True)
class DeviceLayout:
    """Where a run's arrays live on its ``settings x space`` mesh (:mod:`jaxstyle.mesh`).

    Per-setting arrays are split over ``settings``; the network and the style targets are
    replicated. With ``space`` longer than 1 every stage's image is split: image-shaped
    arrays (the image, Adam's moments, the moving average) and the content features have
    their rows split over ``space``, their height padded with zero rows to the stage's
    ``rows`` (:func:`jaxstyle.plan.split_height`), which the network masks out
    (:mod:`jaxstyle.spatial`). The padded rows never leave the devices: images come to the
    host without them (:meth:`to_host`) and go back with them (:meth:`to_device`).

    Attributes:
      mesh: the ``settings x space`` mesh.
      sizes: each stage's ``(height, width)``.
      split: whether each stage's image is split over ``space``.
      multiple: what a height is padded to a multiple of (:func:`jaxstyle.plan.spatial_multiple`).
      rows: each stage's height on the devices, padded (its height where not split).
    """

    mesh: Mesh
    sizes: tuple[tuple[int, int], ...]
    split: tuple[bool, ...]
    multiple: int
    rows: tuple[int, ...]

    @classmethod
    def of(cls, job: Job, mesh: Mesh) -> DeviceLayout:
        """The layout of ``job`` on ``mesh``, whose ``settings`` axis must divide the batch size."""
        groups, shards = mesh.shape[meshlib.AXIS], mesh.shape[meshlib.SPACE]
        if job.plan.batch_size % groups:
            raise JaxstyleError(f"batch size {job.plan.batch_size} is not a multiple of the {groups} device(s)")
        sizes = tuple(stage.size for stage in job.plan.stages)
        rows = tuple(split_height(h, job.settings, shards) for h, _ in sizes)
        return cls(mesh, sizes, (shards > 1,) * len(sizes), spatial_multiple(job.settings, shards), rows)

    @property
    def replicated(self) -> jax.sharding.NamedSharding:
        return meshlib.replicated(self.mesh)

    @property
    def by_setting(self) -> jax.sharding.NamedSharding:
        return meshlib.batch_sharding(self.mesh)

    def device_size(self, stage: int) -> tuple[int, int]:
        """``(rows, width)``: the size of ``stage``'s images on the devices, padding included."""
        return self.rows[stage], self.sizes[stage][1]

    def valid_rows(self, stage: int) -> int | None:
        """``stage``'s own rows where its height is padded on the devices; ``None`` where it is not."""
        height = self.sizes[stage][0]
        return height if self.rows[stage] != height else None

    def images(self, stage: int, ndim: int = 5) -> jax.sharding.NamedSharding:
        """Where image-shaped arrays ``(B, ..., H, W, 3)`` of ``stage`` live."""
        return meshlib.image_sharding(self.mesh, ndim, self.split[stage])

    def to_device(self, stage: int, images: Any) -> jax.Array:
        """Host images ``(B, ..., H, W, 3)`` of ``stage`` on the mesh, padded to its rows."""
        return meshlib.to_global(pad_rows(np.asarray(images), self.rows[stage]), self.images(stage, np.ndim(images)))

    def to_host(self, stage: int, images: jax.Array) -> np.ndarray:
        """Image-shaped arrays of ``stage`` as host arrays in every process, without their padding."""
        return own_rows(meshlib.to_host(images), self.sizes[stage][0])

    def place_settings(self, host: SettingArrays) -> SettingArrays:
        """A micro-batch's per-setting host arrays on the mesh; its images as those of stage 0."""
        placed = meshlib.to_global(host._replace(images=None), self.by_setting)
        return placed._replace(images=self.to_device(0, host.images))

    def state_shardings(self, stage: int, state: Any) -> Any:
        """Each leaf's sharding at ``stage``: image-shaped leaves as the image, the rest by setting."""

        def sharding(leaf: Any) -> jax.sharding.NamedSharding:
            if leaf.ndim >= 5 and tuple(leaf.shape[-3:]) == (*self.device_size(stage), 3):
                return self.images(stage, leaf.ndim)
            return self.by_setting

        return jax.tree.map(sharding, state)

    def place_state(self, stage: int, state: SolverState) -> SolverState:
        """``state`` with every leaf where :meth:`state_shardings` puts it (Adam's fresh moments
        would otherwise be whole on every device)."""
        return jax.device_put(state, self.state_shardings(stage, state))

    def targets(self, job: Job, stage: int) -> Targets:
        """The targets of ``stage``: replicated, or at a split stage the content features computed
        as the step computes the image's (:meth:`recipe`), from content images split by rows and
        padded like it, and left so; the style targets replicated."""
        size = self.sizes[stage]
        if not self.split[stage]:
            return meshlib.to_global(job.targets_at(size), self.replicated)

        def place(images: jax.Array) -> jax.Array:
            # A style image whose height cannot be split is taken whole on every device.
            split = images.shape[-3] % self.multiple == 0
            return meshlib.to_global(images, meshlib.image_sharding(self.mesh, images.ndim, split, batched=False))

        style = job.style_targets_at(size, place)
        contents = np.asarray(to_network_images(job.inputs.contents, size, job.network))
        placed = self.by_rows(contents, self.rows[stage])
        recipe = self.recipe(job.network.recipe, stage)
        content = stack_content_targets_jit(job.network.graphdef, job.network.params, placed, recipe)
        content = tuple(jax.device_put(t, meshlib.image_sharding(self.mesh, t.ndim, batched=False)) for t in content)
        guides, edit, strength = self.split_masks(job, stage)
        return Targets(
            content=content,
            style=jax.device_put(style, self.replicated),
            guides=guides,
            edit=edit,
            strength=None if strength is None else jax.device_put(strength, self.replicated),
        )

    def split_masks(self, job: Job, stage: int) -> tuple[tuple[Guide, ...] | None, EditTarget | None, jax.Array | None]:
        """:func:`mask_targets` at a split stage: the guides of each style layer padded to that
        level's rows (zero rows weigh nothing) and the edit target to the stage's, both split
        by rows as the image is; the mean strengths as they are."""
        inputs, network = job.inputs, job.network
        guides, edit, strength = mask_targets(
            network, job.settings, inputs, self.sizes[stage], range(len(inputs.contents))
        )
        rows = self.rows[stage]
        if guides is not None:
            spec = nets.network(job.settings.network)
            guides = tuple(
                self.by_rows(g, rows // 2 ** spec.pool_level(name))
                for g, name in zip(guides, network.recipe.style, strict=True)
            )
        return guides, None if edit is None else self.by_rows(edit, rows), strength

    def by_rows(self, tree: Any, rows: int) -> Any:
        """Every leaf ``(K, ..., h, W, C)`` of ``tree`` (images of each content, not of each setting)
        padded to ``rows`` rows (:func:`~jaxstyle.spatial.pad_rows`) and split by rows over ``space``."""
        return jax.tree.map(
            lambda x: meshlib.to_global(pad_rows(x, rows), meshlib.image_sharding(self.mesh, x.ndim, batched=False)),
            tree,
        )

    def recipe(self, recipe: Recipe, stage: int) -> Recipe:
        """The recipe at ``stage``: a split stage's network runs over the mesh's ``space`` axis
        (:mod:`jaxstyle.spatial`), with its own rows where its height is padded."""
        if not self.split[stage]:
            return recipe._replace(space_mesh=None, valid_rows=None)
        return recipe._replace(space_mesh=self.mesh, valid_rows=self.valid_rows(stage))


# --------------------------------------------------------------------------- stage step and transition


# A chunk with its input state donated: XLA writes the new state into the old one's buffers
# (memory_analysis()'s alias bytes) instead of holding both while the chunk runs. The
# runner hands each chunk a state no other array shares buffers with (own_buffers).
run_batch_chunk_donated = jax.jit(
    run_batch_chunk, static_argnames=("graphdef", "recipe", "num_steps"), donate_argnames=("state",)
)


def dispatch_ahead(platform: str) -> bool:
    """Whether the runner queues the next chunk before reading the last one's results
    (:meth:`Runner.stage`): on accelerators, where the device would otherwise idle while
    the host reads them; not on CPU, whose cores compute the chunk themselves."""
    return platform != "cpu"


def own_buffers(state: Any) -> Any:
    """``state`` with every leaf copied into buffers of its own, so that donating it frees
    nothing another array still holds (``device_put`` and the stage transition share buffers)."""
    return jax.tree.map(lambda x: x.copy(), state)


@jax.jit
def stop_flags(state: SolverState) -> jax.Array:
    """``(2, B)``: each setting's ``diverged_at`` and ``converged_at``, in buffers of their own
    (read after the state itself has been donated to the next chunk)."""
    return jnp.stack([state.diverged_at, state.converged_at])


class StageStep(NamedTuple):
    """One stage of one micro-batch on the device: ``state -> (state, losses, steps run)``, the pure
    part of the chunk loop, and what the stage starts from and ends with.

    Every chunk of the stage runs one compiled program, ``length`` steps long (the stage's
    longest chunk); a shorter chunk stops early (:func:`jaxstyle.batch.run_batch_chunk`).
    """

    graphdef: Any
    recipe: Recipe
    params: Any
    targets: Targets
    setting: Setting
    length: int

    def __call__(self, state: SolverState, steps: int) -> tuple[SolverState, dict[str, jax.Array], jax.Array]:
        """``steps`` steps of every setting (fewer when all have stopped); losses ``(length, B)``.
        ``state`` is donated: it must not be used afterwards."""
        args = (self.params, self.targets, self.setting, state, steps)
        return run_batch_chunk_donated(self.graphdef, self.recipe, self.length, *args)

    def start(self, per_setting: SettingArrays, images: jax.Array) -> SolverState:
        """The fresh solver state of every setting from ``images`` ``(B, 1, h, w, 3)``."""
        args = (self.params, self.targets, self.setting, images, per_setting.lr, per_setting.ema, per_setting.tol)
        return init_batch_jit(self.graphdef, self.recipe, *args)

    def losses(self, images: jax.Array) -> dict[str, jax.Array]:
        """The losses of each setting's image in ``images``, each ``(B,)``."""
        return batch_losses_jit(self.graphdef, self.recipe, self.params, self.targets, self.setting, images)


def next_stage_state(
    step: StageStep,
    layout: DeviceLayout,
    stage: int,
    per_setting: SettingArrays,
    previous: SolverState | None,
    warm_start: bool,
    convention: InputConvention,
) -> SolverState:
    """The state ``stage`` starts from: the first images; or, after a stage, each setting's
    averaged iterate upsampled on the device (:func:`upsample_rows`: the own rows of a split
    stage's, padded again), with Adam's step count and moments carried over when ``warm_start``
    (:func:`warm_started_rows`). A setting that diverged at an earlier scale stays frozen.
    """
    if previous is None:
        return layout.place_state(stage, step.start(per_setting, per_setting.images))
    (rows, _), size, padded = layout.sizes[stage - 1], layout.sizes[stage], layout.rows[stage]
    images = upsample_rows_jit(averaged_image(previous), rows, size, padded, convention)
    fresh = step.start(per_setting, jax.device_put(images, layout.images(stage)))
    if warm_start:
        opt_state = warm_started_rows_jit(previous.opt_state, fresh.opt_state, rows, size[0], padded)
        fresh = fresh._replace(opt_state=opt_state)
    return layout.place_state(stage, fresh._replace(diverged_at=previous.diverged_at))


# --------------------------------------------------------------------------- the runner


def single_device_mesh(spatial_shards: int = 1) -> Mesh:
    """The mesh of a single run: the first local device, or ``spatial_shards`` devices its image is split over."""
    return meshlib.single_run_mesh(spatial_shards)


def fingerprint(job: Job) -> dict[str, str]:
    """What a checkpoint of ``job`` is bound to: settings, inputs, weights, execution choices,
    dtypes and plan, each digested.

    Of the execution, the dtypes and the plan (batch size, snapshot steps) are bound as
    they were before :class:`~jaxstyle.config.Execution` held them; so are the remat mode
    and the split as asked (once settings): a resume must ask for the same.
    """
    network, inputs, execution = job.network, job.inputs, job.execution
    return {
        "settings": digest(job.settings.to_dict(), [dataclasses.astuple(p) for p in job.points]),
        "execution choices": digest(execution.remat, execution.spatial_shards),
        "inputs": digest(*inputs.contents, *inputs.styles, inputs.blends, inputs.init_rgb is None)
        + (digest(inputs.init_rgb) if inputs.init_rgb is not None else "")
        # The masks are inputs: a masked run's digest has theirs too (an unmasked run's is as before).
        + (mask_digest(inputs.masks) if inputs.masks is not None else ""),
        "weights": weightsio.file_digests(network.weights_file)[0],
        # A precision other than the platform's own is bound too (an unchanged run's digest is as before).
        "dtypes": digest(str(network.dtype), str(network.compute_dtype))
        + (digest(execution.matmul_precision) if execution.matmul_precision != "default" else ""),
        # Not the batch plan's reason: it quotes the memory free at the time. A split run's state
        # is held padded to its devices' rows (jaxstyle.spatial): the split chosen is bound too.
        "plan": digest(repr(job.plan.stages), sorted(job.plan.snapshot_steps), job.plan.batch_size)
        + (digest(job.plan.spatial_shards) if job.plan.spatial_shards > 1 else ""),
    }


def mask_digest(masks: masklib.Masks) -> str:
    """A digest of a run's masks: which kinds are given, their arrays, and the guidance."""
    kinds = [masks.style is not None, masks.style_image is not None, masks.edit is not None]
    kinds += [masks.strength is not None] if masks.strength is not None else []  # older digests unchanged
    present = [m is not None for m in masks.style_image or []]
    return digest(kinds, present, masks.guidance, *masks.arrays())


def matmul_precision(name: str) -> contextlib.AbstractContextManager:
    """The run's precision of convolutions and matrix products: JAX's ``default_matmul_precision``
    context (part of every jit's cache key), or nothing at all for ``"default"`` (the
    platform's own: programs are unchanged)."""
    return contextlib.nullcontext() if name == "default" else jax.default_matmul_precision(name)


def run_job(
    job: Job,
    mesh: Mesh,
    on_chunk: Callable[[ChunkReport], None] | None = None,
    on_snapshot: Callable[[int, range, np.ndarray], None] | None = None,
    raise_on_divergence: bool = False,
    checkpoint: CheckpointOptions | None = None,
    stop_signal: Callable[[], int | None] | None = None,
) -> RunOutput:
    """Run every micro-batch of ``job`` through every stage of its plan on ``mesh``.

    After each chunk ``on_chunk`` gets a :class:`ChunkReport`; at each snapshot step
    ``on_snapshot(step, settings, images)`` gets the micro-batch's current output
    images (RGB in [0, 1]). A setting whose loss or image stops being finite is frozen
    at its last finite state and reported; with ``raise_on_divergence`` the run stops
    with :class:`~jaxstyle.solve.Diverged` instead.

    With ``checkpoint``, the run starts from the newest checkpoint in its directory
    (when it resumes) and saves one whenever one is due; when ``stop_signal()`` returns a signal number after
    a chunk, it saves one at once and raises :class:`Stopped`. A resumed run computes
    exactly what an uninterrupted one does: the same chunks, from the same states.
    """
    checkpoints = Checkpoints(checkpoint, fingerprint(job)) if checkpoint is not None else None
    runner = Runner(
        job, DeviceLayout.of(job, mesh), on_chunk, on_snapshot, raise_on_divergence, checkpoints, stop_signal
    )
    try:
        with matmul_precision(job.execution.matmul_precision):
            return runner.run()
    except jax.errors.JaxRuntimeError as e:
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        h, w = job.plan.stages[-1].size
        raise JaxstyleError(
            f"out of device memory at {h}x{w} with micro-batches of {job.plan.batch_size} setting(s); "
            "use a smaller --size or --max-side, a smaller --batch-size, or more --spatial-shards"
        ) from None


class Runner:
    """The host side of :func:`run_job`: micro-batch by micro-batch, stage by stage, chunk by chunk;
    between chunks, divergence, progress, snapshots, checkpoints and stop requests."""

    def __init__(
        self,
        job: Job,
        layout: DeviceLayout,
        on_chunk: Callable[[ChunkReport], None] | None,
        on_snapshot: Callable[[int, range, np.ndarray], None] | None,
        raise_on_divergence: bool,
        checkpoints: Checkpoints | None,
        stop_signal: Callable[[], int | None] | None,
    ) -> None:
        self.job, self.plan, self.layout = job, job.plan, layout
        self.on_chunk, self.on_snapshot, self.raise_on_divergence = on_chunk, on_snapshot, raise_on_divergence
        self.checkpoints, self.stop_signal = checkpoints, stop_signal
        self.batch = self.plan.batch_size
        self.done: list[MicroBatchOutput] = []
        self.offsets: list[int] = []  # this process's rows of a micro-batch: the same in every one
        self.ahead = dispatch_ahead(layout.mesh.devices.flat[0].platform)

    def run(self) -> RunOutput:
        job, plan, layout = self.job, self.plan, self.layout
        k = len(job.points)
        per_setting = meshlib.pad_leading(job.per_setting(), meshlib.padded_length(k, self.batch))
        self.params = meshlib.to_global(job.network.params, layout.replicated)
        # Targets are computed once per stage, before any optimisation.
        self.targets = [layout.targets(job, index) for index in range(len(plan.stages))]
        resumed = self.resume(per_setting)
        start = time.perf_counter()
        for number, rows in enumerate(plan.micro_batches):
            if number < len(self.done):
                continue
            host = jax.tree.map(lambda x, first=rows.start: x[first : first + self.batch], per_setting)
            self.done.append(self.micro_batch(host, rows, number, resumed if number == len(self.done) else None))
            resumed = None
        seconds = time.perf_counter() - start
        local = [rows.start + r for rows in plan.micro_batches for r in self.offsets if rows.start + r < rows.stop]
        return join_micro_batches(self.done, k, local, seconds)

    def stage_step(self, stage: int, setting: Setting) -> StageStep:
        """The device side of ``stage`` for a micro-batch's ``setting``."""
        network, length = self.job.network, max(self.plan.stages[stage].chunks)
        recipe = self.layout.recipe(network.recipe, stage)
        return StageStep(network.graphdef, recipe, self.params, self.targets[stage], setting, length)

    def resume(self, per_setting: SettingArrays) -> tuple[Position, SolverState, MicroBatchProgress] | None:
        """Load the newest checkpoint, if any: the finished micro-batches, and the one in flight."""
        found = self.checkpoints.latest() if self.checkpoints is not None else None
        if found is None:
            return None
        done, position = found
        rows = self.plan.micro_batches[position.micro_batch]
        host = jax.tree.map(lambda x: x[rows.start : rows.start + self.batch], per_setting)
        device = self.layout.place_settings(host)
        step = self.stage_step(position.stage, device.setting)
        images = jax.ShapeDtypeStruct((self.batch, 1, *self.layout.device_size(position.stage), 3), host.images.dtype)
        abstract = jax.eval_shape(step.start, device, images)
        shardings = self.layout.state_shardings(position.stage, abstract)
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
        state, tree = self.checkpoints.restore(done, abstract)
        progress = RunProgress.from_tree(tree)
        self.done = progress.done
        self.offsets = meshlib.local_rows(state.image)
        return position, state, progress.now

    def micro_batch(
        self,
        host: SettingArrays,
        rows: range,
        number: int,
        resumed: tuple[Position, SolverState, MicroBatchProgress] | None,
    ) -> MicroBatchOutput:
        """All stages of one micro-batch (``rows`` are its real settings; the rest is padding)."""
        plan, settings, convention = self.plan, self.job.settings, self.job.network.convention
        device = self.layout.place_settings(host)
        if resumed is not None:
            position, state, progress = resumed
            first_stage, chunks_done = position.stage, position.chunks_done
        else:
            state, progress = None, MicroBatchProgress.start(self.batch, len(plan.stages))
            first_stage, chunks_done = 0, 0
        for index in range(first_stage, len(plan.stages)):
            step = self.stage_step(index, device.setting)
            if chunks_done == 0:
                state = next_stage_state(step, self.layout, index, device, state, settings.warm_start, convention)
            state, progress = self.stage(step, state, progress, rows, number, index, chunks_done)
            chunks_done = 0
        # Each row's content image as read (for --color, --edit-mask); padding rows repeat the last setting.
        points, contents = self.job.points, self.job.inputs.originals
        indexes = [points[min(rows.start + r, rows.stop - 1)].content for r in range(self.batch)]
        content_rgbs = [contents[c] for c in indexes]
        last = len(plan.stages) - 1
        final = output_pixels(
            self.layout.to_host(last, averaged_image(state))[:, 0],
            settings,
            convention,
            content_rgbs,
            self.edit_masks(indexes),
        )
        # The final losses are those of the image written (clipped to [0, 1], with the
        # content's colours where asked), not of the iterate before the last step.
        seen = colour.network_view(settings.color, final)  # as the network saw the image optimised
        written = convention.to_network(jnp.asarray(seen, self.job.network.dtype))[:, None]
        final_losses = step.losses(self.layout.to_device(last, written))
        self.offsets = meshlib.local_rows(state.image)
        return MicroBatchOutput(
            images=final,
            traces=progress.traces,
            final_losses=meshlib.to_host(final_losses),
            diverged_at=progress.diverged_at,
            stage_steps=progress.stage_steps,
            converged_at=progress.converged_at,
        )

    def stage(
        self,
        step: StageStep,
        state: SolverState,
        progress: MicroBatchProgress,
        rows: range,
        number: int,
        index: int,
        chunks_done: int,
    ) -> tuple[SolverState, MicroBatchProgress]:
        """The chunks of stage ``index`` from the ``chunks_done``-th on, until every setting has stopped.

        On an accelerator (:func:`dispatch_ahead`) the host does not wait between chunks:
        chunk ``i + 1`` is dispatched before chunk ``i``'s losses and stop flags are read.
        That is safe because a stopped setting's state is frozen
        (:func:`~jaxstyle.solve.optimizer_step`): when the flags show every setting stopped
        after chunk ``i``, chunk ``i + 1`` has changed no bit of the state, and its result is
        dropped unreported. Where the host needs chunk ``i``'s state (a snapshot, a checkpoint,
        a stop request: polled before the next dispatch) the next chunk waits; a stop request
        that comes later is taken at the end of the chunk already queued. On CPU each chunk is
        dispatched after the last one's results are handled, as the chunk's own computation
        leaves nothing to overlap.
        """
        stage = self.plan.stages[index]
        chunks = list(zip(stage.chunks, stage.chunk_ends, strict=True))[chunks_done:]
        if chunks_done and chunks and self.all_stopped(meshlib.to_host(stop_flags(state))):
            chunks = []  # resumed within a stage whose settings had all stopped
        ahead = step(own_buffers(state), chunks[0][0]) if chunks else None
        for chunk, (n, end) in enumerate(chunks, start=chunks_done):
            state, losses, ran = ahead
            flags, ahead = stop_flags(state), None
            position = Position(number, index, chunk + 1, end)
            following = chunk + 1 < chunks_done + len(chunks)
            if self.ahead:
                signum, due = self.stop_or_save(position)
                snapshot = self.on_snapshot is not None and end in self.plan.snapshot_steps
                if following and not (signum is not None or due or snapshot):
                    ahead = step(state, chunks[chunk + 1 - chunks_done][0])  # state donated: not read after
            losses, ran, flags = meshlib.to_host((losses, ran, flags))
            losses = {name: v[:ran] for name, v in losses.items()}
            progress = progress.with_chunk(losses)
            if self.raise_on_divergence:
                self.check_divergence(flags[0], losses, rows, stage.first_step, end - n)
            if self.on_chunk is not None:
                micro_batches = len(self.plan.micro_batches)
                self.on_chunk(
                    ChunkReport(end, self.plan.steps, index, len(self.plan.stages), number, micro_batches, losses)
                )
            if self.on_snapshot is not None and end in self.plan.snapshot_steps:
                self.snapshot(end, rows, index, state)
            if not self.ahead:
                signum, due = self.stop_or_save(position)
            self.save_or_stop(position, state, progress, signum, due)
            if self.all_stopped(flags):
                state = ahead[0] if ahead is not None else state  # frozen: the same bits
                break
            if following and ahead is None:
                ahead = step(state, chunks[chunk + 1 - chunks_done][0])
        return state, progress.end_stage(index, stage.first_step, state)

    @staticmethod
    def all_stopped(flags: np.ndarray) -> bool:
        """Whether every setting (padding included) has diverged or converged, from :func:`stop_flags`."""
        return bool(((flags[0] >= 0) | (flags[1] >= 0)).all())

    def check_divergence(
        self, diverged: np.ndarray, losses: dict[str, np.ndarray], rows: range, stage_first: int, chunk_first: int
    ) -> None:
        """Raise :class:`~jaxstyle.solve.Diverged` if a real setting diverged (``diverged``: each setting's
        ``diverged_at`` after the chunk that began at global step ``chunk_first``, of the stage that began at
        ``stage_first``), with its losses at that step."""
        diverged = diverged[: len(rows)]
        if (diverged >= 0).any():
            row = int(np.argmax(diverged >= 0))
            step = stage_first + int(diverged[row])
            raise Diverged(step, {k: float(v[step - chunk_first, row]) for k, v in losses.items()})

    def snapshot(self, end: int, rows: range, stage: int, state: SolverState) -> None:
        """Hand the micro-batch's current output images (at ``stage``) to ``on_snapshot``."""
        settings, inputs, points = self.job.settings, self.job.inputs, self.job.points
        current = self.layout.to_host(stage, averaged_image(state))[: len(rows), 0]
        indexes = [points[r].content for r in rows]
        contents = [inputs.originals[c] for c in indexes]
        edit = self.edit_masks(indexes)
        self.on_snapshot(end, rows, output_pixels(current, settings, self.job.network.convention, contents, edit))

    def edit_masks(self, contents: Sequence[int]) -> list[np.ndarray | None] | None:
        """The edit mask of each of the content images ``contents`` (``None``: no edit masks)."""
        masks = self.job.inputs.masks
        if masks is None or masks.edit is None:
            return None
        return [masks.for_content("edit", c) for c in contents]

    def stop_or_save(self, position: Position) -> tuple[int | None, bool]:
        """Whether the run is asked to stop (the signal, agreed by every process) and whether a
        checkpoint is due at ``position``: polled before the next chunk is dispatched."""
        signum = self.stop_signal() if self.stop_signal is not None else None
        return meshlib.agreed(signum, self.checkpoints is not None and self.checkpoints.due(self.steps_done(position)))

    def steps_done(self, position: Position) -> int:
        """The run's steps done at ``position``, the micro-batches before it counted whole."""
        return position.micro_batch * self.plan.steps + position.step

    def save_or_stop(
        self, position: Position, state: SolverState, progress: MicroBatchProgress, signum: int | None, due: bool
    ) -> None:
        """Save a checkpoint when one is due or a signal asks the run to stop (:meth:`stop_or_save`);
        then stop if asked."""
        if self.checkpoints is not None and (signum is not None or due):
            self.checkpoints.save(self.steps_done(position), position, state, RunProgress(self.done, progress))
        if signum is not None:
            directory = self.checkpoints.directory if self.checkpoints is not None else None
            raise Stopped(signum, position.step, directory)
