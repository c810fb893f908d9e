"""Rematerialisation: the features the losses read, computed so that the backward pass keeps less.

Every mode gives the same loss and gradient as computing the features once (the same
arithmetic, summed in another order at most); they differ in what the backward pass
keeps and recomputes (``--remat``):

* ``blocks``: each VGG block is a ``jax.checkpoint``; only the block inputs and the
  small statistics of its style layers are kept, one block is recomputed at a time.
* ``bands``: the first two blocks run over horizontal bands of the image, one band
  after another in a ``lax.scan`` whose body is a ``jax.checkpoint``: the full-size
  activations of those blocks (64 and 128 channels at full and half resolution, the
  largest of the network) never exist at once, in the forward or the backward pass.
  Each band carries a halo of rows wide enough for its convolutions, and rows outside
  the image are zeroed before every convolution, so each band's inner rows are exactly
  the unbanded network's. The rest of the network runs on the assembled output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from jaxstyle.losses import (
    Guide,
    LayerStatistics,
    add_sums,
    as_guide,
    flat_positions,
    layer_statistics,
    layer_sums,
    sums_statistics,
    zero_sums,
)

BAND_ROWS = 128  # image rows per band (rounded up to a multiple of the bands' pooling factor)
BANDED_BLOCKS = 2  # blocks computed in bands: VGG's widest activations (full and half resolution)


def block_features(
    model: nnx.Module,
    image: Array,
    content: Sequence[str],
    style: Sequence[str],
    style_losses: Sequence[str],
    guides: dict[str, Guide] | None = None,
) -> tuple[dict[str, Array], dict[str, LayerStatistics]]:
    """``remat="blocks"``: each block a ``jax.checkpoint`` returning its output, content features
    and style statistics (``guides``: the guidance channels of each style layer, or ``None``)."""
    guides = guides or {}
    graphdef, params = nnx.split(model)
    spec, layers = model.spec, (*content, *style)
    found_content, found_style, x = {}, {}, image
    for names in spec.blocks_until(spec.deepest(layers)):

        def block(x: Array, params: nnx.State, names: tuple[str, ...] = names) -> tuple[Array, dict, dict]:
            y, acts = nnx.merge(graphdef, params).run(x, names, layers)
            c = {n: a for n, a in acts.items() if n in content}
            s = {n: layer_statistics(a, style_losses, guides.get(n)) for n, a in acts.items() if n in style}
            return y, c, s

        x, c, s = jax.checkpoint(block)(x, params)
        found_content.update(c)
        found_style.update(s)
    return found_content, found_style


def band_geometry(names: Sequence[str], height: int, band_rows: int | None = None) -> tuple[int, int, int, int]:
    """``(scale, halo, rows, count)`` of the bands over the layers ``names``.

    ``scale``: 2 to the number of poolings; ``halo``: rows each band reads above and
    below, the rows its convolutions reach (``sum 2^level`` over the convolutions at
    their pooling level) rounded up to a multiple of ``scale`` so that pooling windows
    stay aligned; ``rows``: ``band_rows`` (default :data:`BAND_ROWS`) rounded up to a multiple of ``scale``;
    ``count``: bands covering ``height``.
    """
    level, reach = 0, 0
    for name in names:
        if name.startswith("conv"):
            reach += 2**level
        elif name.startswith("pool"):
            level += 1
    scale = 2**level
    halo = math.ceil(reach / scale) * scale
    rows = math.ceil((band_rows or BAND_ROWS) / scale) * scale
    return scale, halo, rows, max(1, math.ceil(height / rows))


def _rows_inside(x: Array, first_row: Array, height: int) -> Array:
    """``x`` with its rows outside ``[0, height)`` zeroed; its row ``i`` is row ``first_row + i``."""
    rows = first_row + jnp.arange(x.shape[1])
    return jnp.where(((rows >= 0) & (rows < height))[None, :, None, None], x, jnp.zeros((), x.dtype))


def banded_features(
    model: nnx.Module,
    image: Array,
    names: Sequence[str],
    content: Sequence[str],
    style: Sequence[str],
    style_losses: Sequence[str],
    band_rows: int | None = None,
    guides: dict[str, Guide] | None = None,
) -> tuple[Array, dict[str, Array], dict[str, LayerStatistics]]:
    """The layers ``names`` (from the network's input) applied to ``image`` band by band.

    Returns their output, the content features among them and the style statistics:
    each style loss's sums over positions (:func:`~jaxstyle.losses.layer_sums`, e.g.
    ``sum_p f_p f_p^T`` for Gram matrices) added over the bands' own rows, then normalised
    by the layer's ``H W`` positions (:func:`~jaxstyle.losses.sums_statistics`).
    ``guides``: each style layer's guidance channels ``(N, h, w, R)``, cut into the same
    bands as its features (zero rows past the layer's end weigh nothing), or ``None``.
    """
    guides = guides or {}
    graphdef, params = nnx.split(model)
    n, height, width, _ = image.shape
    scale, halo, rows, count = band_geometry(names, height, band_rows)
    padded = jnp.pad(image, ((0, 0), (halo, count * rows - height + halo), (0, 0), (0, 0)))
    heights, widths = [height], [width]  # each pooling level's true size (VGG drops odd edges)
    for name in names:
        if name.startswith("pool"):
            heights.append(heights[-1] // 2)
            widths.append(widths[-1] // 2)
    taps = [n_ for n_ in names if n_ in content or n_ in style]
    band_guides = {}  # each guided style layer's guide (every leaf), its rows padded to the bands' end
    for name, guide in guides.items():
        if name in names:
            rows_here = count * rows // 2 ** _level(names, name)
            band_guides[name] = jax.tree.map(
                lambda g, r=rows_here: jnp.pad(g, ((0, 0), (0, r - g.shape[1]), (0, 0), (0, 0))), as_guide(guide)
            )

    def band(sums: dict, index: Array) -> tuple[dict, tuple[Array, dict]]:
        net = nnx.merge(graphdef, params)
        x = jax.lax.dynamic_slice_in_dim(padded, index * rows, rows + 2 * halo, axis=1)
        level, first = 0, index * rows - halo  # x's row 0 is row `first` of its level
        inner, new_sums = {}, dict(sums)
        for name in names:
            if name.startswith("conv"):
                x = _rows_inside(x, first, heights[level])
            x = net.run(x, (name,), ())[0]
            if name.startswith("pool"):
                level, first = level + 1, first // 2
            if name in taps:
                lo = halo // 2**level
                f = _rows_inside(x[:, lo : lo + rows // 2**level], index * rows // 2**level, heights[level])
                if name in content:
                    inner[name] = f
                if name in style:
                    g = band_guides.get(name)
                    if g is not None:
                        first_row, band = index * rows // 2**level, rows // 2**level
                        g = jax.tree.map(
                            lambda x, a=first_row, b=band: jax.lax.dynamic_slice_in_dim(x, a, b, axis=1), g
                        )
                        g = flat_positions(g)
                    new_sums[name] = add_sums(sums[name], layer_sums(f.reshape(n, -1, f.shape[-1]), style_losses, g))
        lo = halo // scale
        return new_sums, (x[:, lo : lo + rows // scale], inner)

    sums0 = {}
    for name in style:
        if name in names:
            c = _channels(names, name, model.spec.conv_shapes())
            regions = as_guide(guides.get(name)).regions
            channels = None if regions is None else regions.shape[-1]
            sums0[name] = zero_sums(style_losses, n, c, jnp.dtype(model.conv1_1.dtype or image.dtype), channels)
    sums, (outs, inners) = jax.lax.scan(jax.checkpoint(band), sums0, jnp.arange(count))
    out = _assemble(outs, heights[-1])
    found_content = {name: _assemble(inners[name], heights[_level(names, name)]) for name in inners}
    found_style = {}
    for name, acc in sums.items():
        level = _level(names, name)
        found_style[name] = sums_statistics(acc, heights[level] * widths[level])
    return out, found_content, found_style


def _channels(names: Sequence[str], layer: str, conv_shapes: dict) -> int:
    """Channels of ``layer``'s output: those of the last convolution up to it among ``names``."""
    convs = [n for n in names[: list(names).index(layer) + 1] if n.startswith("conv")]
    return conv_shapes[convs[-1]][3] if convs else 3


def _assemble(stacked: Array, height: int) -> Array:
    """``(bands, N, rows, W, C)`` band outputs as one ``(N, height, W, C)`` array."""
    bands, n, rows, w, c = stacked.shape
    return jnp.moveaxis(stacked, 0, 1).reshape(n, bands * rows, w, c)[:, :height]


def _level(names: Sequence[str], layer: str) -> int:
    """The pooling level of ``layer``'s output: poolings among ``names`` up to and including it."""
    return sum(1 for n in names[: list(names).index(layer) + 1] if n.startswith("pool"))


def banded_network_features(
    model: nnx.Module,
    image: Array,
    content: Sequence[str],
    style: Sequence[str],
    style_losses: Sequence[str],
    guides: dict[str, Guide] | None = None,
) -> tuple[dict[str, Array], dict[str, LayerStatistics]]:
    """``remat="bands"``: the first :data:`BANDED_BLOCKS` blocks by bands
    (:func:`banded_features`), the rest of the network on their output."""
    guides = guides or {}
    spec, layers = model.spec, (*content, *style)
    blocks = spec.blocks_until(spec.deepest(layers))
    head = tuple(n for block in blocks[:BANDED_BLOCKS] for n in block)
    x, found_content, found_style = banded_features(model, image, head, content, style, style_losses, None, guides)
    tail = tuple(n for block in blocks[BANDED_BLOCKS:] for n in block)
    if tail:
        _, acts = model.run(x, tail, layers)
        found_content.update({n: a for n, a in acts.items() if n in content})
        found_style.update({n: layer_statistics(a, style_losses, guides.get(n)) for n, a in acts.items() if n in style})
    return found_content, found_style
