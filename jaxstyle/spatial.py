"""One image's rows over the ``space`` axis of a mesh: the network with explicit halo exchanges.

With ``--spatial-shards N`` each of N devices holds a band of the image's rows. The
features the losses read are computed in a ``jax.shard_map`` over the mesh's ``space``
axis: before every 3x3 convolution each device sends its first row to the device above
and its last row to the device below (``lax.ppermute``; the image's first and last
devices receive zeros, which is the convolution's zero padding), convolves its rows with
the two borrowed ones and keeps its own rows of the result. Poolings need nothing: a
split height holds whole 2x2 windows on every device (:func:`jaxstyle.plan.spatial_multiple`).
The style layers' statistics (Gram matrices, W2's moments, whatever a registered style
loss reads: :class:`jaxstyle.losses.StyleLoss`) are sums over pixels, taken on each
device and summed over ``space`` inside the map; content features leave it split
by rows, and the losses outside it are XLA's to partition.

An image of any height is split: a height that is not a multiple of the split's is
padded with zero rows below the image's own (:func:`pad_rows`, to
:func:`jaxstyle.plan.split_height`), and the padded rows are masked out at every layer,
so that each layer's own rows are exactly the whole image's: before every convolution the
rows past the layer's own are zeroed (the unsplit network's zero padding), the pooling
windows the whole image's 2x2 pooling floors away (an odd height's last row) are masked with
them, and every sum over positions counts the layer's own (:func:`local_features`; the
content and TV losses likewise, :func:`jaxstyle.losses.loss_terms`). A layer behind ``k``
poolings keeps ``rows // 2^k`` of the image's ``rows``. With nothing padded nothing is masked.

Why not XLA's sharding propagation alone (the image placed split, the network unchanged)?
It computes the same values in about the same time, but needs more memory per device,
the more the larger the image (``python -m bench.halo``, bench/RESULTS.md). And it leaves
the partitioner to decide: it may gather activations, which once made a run several
times slower.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxstyle.losses import Guide, LayerStatistics, flat_positions, keep_rows, layer_sums, sums_statistics
from jaxstyle.mesh import AXIS, SPACE


def pad_rows(x: Array | np.ndarray, rows: int) -> Array | np.ndarray:
    """``x`` ``(..., h, W, C)`` with ``rows - h`` zero rows added below its own ``h``.

    The one place a split stage's arrays get their padded height: the images and every
    array shaped like them, the content features of each level, guidance channels of each
    level of a pyramid (zero rows weigh nothing). ``rows``: the padded height at ``x``'s
    level, :func:`jaxstyle.plan.split_height` of the image divided by ``2^level``. A
    numpy array stays on the host; ``x`` itself when nothing is added.
    """
    extra = rows - x.shape[-3]
    if extra == 0:
        return x
    if extra < 0:
        raise ValueError(f"cannot pad {x.shape[-3]} rows to {rows}")
    widths = [(0, 0)] * x.ndim
    widths[x.ndim - 3] = (0, extra)
    return np.pad(x, widths) if isinstance(x, np.ndarray) else jnp.pad(x, widths)


def own_rows(x: Array | np.ndarray, rows: int) -> Array | np.ndarray:
    """The first ``rows`` rows of ``x`` ``(..., H, W, C)``: an array of a split stage without its padding."""
    return x if x.shape[-3] == rows else x[..., :rows, :, :]


def exchange_rows(x: Array, shards: int) -> Array:
    """``x`` (N, h, W, C), this device's rows, with the row above and the row below it added.

    Row 0 of the result is the last row of the device above (zeros on the first device),
    its last row the first row of the device below (zeros on the last device): what a 3x3
    convolution with zero padding 1 reads beyond this device's rows.
    """
    down = [(i, i + 1) for i in range(shards - 1)]  # device i's last row is device i+1's row above
    up = [(i + 1, i) for i in range(shards - 1)]
    above = jax.lax.ppermute(x[:, -1:], SPACE, down)
    below = jax.lax.ppermute(x[:, :1], SPACE, up)
    return jnp.concatenate([above, x, below], axis=1)


def local_features(
    model: nnx.Module,
    image: Array,
    shards: int,
    content: Sequence[str],
    style: Sequence[str],
    style_losses: Sequence[str],
    remat: str,
    rows: int | None = None,
    guides: dict[str, Guide] | None = None,
) -> tuple[dict[str, Array], dict[str, LayerStatistics]]:
    """Inside ``shard_map``: this device's content features and every device's style statistics.

    A convolution runs on this device's rows plus one borrowed row above and below
    (:func:`exchange_rows`) with the network's own layer (padding 1 in both directions),
    and keeps the inner rows: ``y = conv(halo(x))[1:-1]``, each of them the unsplit
    network's row. A style layer's statistics are each style loss's sums over this
    device's rows (:func:`~jaxstyle.losses.layer_sums`, e.g. ``F_d^T F_d`` for a Gram
    matrix), summed over the devices (``psum``) and normalised by the layer's ``h w``
    positions (:func:`~jaxstyle.losses.sums_statistics`). With ``remat="blocks"`` each block is a
    ``jax.checkpoint`` (:func:`jaxstyle.remat.block_features`).

    ``rows``: the image's own rows when the split height was padded below them (``None``:
    every row is the image's). A layer behind ``k`` poolings then has ``h = rows // 2^k``
    own rows; the rest are zeroed before every convolution and in every feature the losses
    read (content features and the style sums), and ``h w`` counts only the own positions.
    A pooling window across the last own row and a padded one (an odd ``h``: the whole
    image's pooling floors that row away) gives a row past the next level's own, masked
    with them.
    """
    graphdef, params = nnx.split(model)
    spec, layers = model.spec, (*content, *style)

    def own(x: Array, level: int) -> Array:
        """``x`` with the rows past its level's own zeroed (nothing when nothing is padded)."""
        if rows is None:
            return x
        return keep_rows(x, rows // 2**level, jax.lax.axis_index(SPACE) * x.shape[1])

    def block(x: Array, params: nnx.State, names: tuple[str, ...], level: int) -> tuple[Array, dict, dict]:
        net = nnx.merge(graphdef, params)
        found_content, found_style = {}, {}
        for name in names:
            if name.startswith("conv"):
                x = net.run(exchange_rows(own(x, level), shards), (name,), ())[0][:, 1:-1]
            else:
                x = net.run(x, (name,), ())[0]
            level += name.startswith("pool")
            if name in content:
                found_content[name] = own(x, level)
            if name in style:
                n, h, w, c = x.shape
                g = None if name not in (guides or {}) else flat_positions(guides[name])  # this device's rows
                sums = jax.lax.psum(layer_sums(own(x, level).reshape(n, h * w, c), style_losses, g), SPACE)
                own_height = h * shards if rows is None else rows // 2**level
                found_style[name] = sums_statistics(sums, own_height * w)
        return x, found_content, found_style

    found_content, found_style, x, level = {}, {}, image, 0
    for names in spec.blocks_until(spec.deepest(layers)):
        run = jax.checkpoint(block, static_argnums=(2, 3)) if remat == "blocks" else block
        x, c, s = run(x, params, names, level)
        level += sum(name.startswith("pool") for name in names)
        found_content.update(c)
        found_style.update(s)
    return found_content, found_style


def split_features(
    model: nnx.Module,
    image: Array,
    mesh: Mesh,
    content: Sequence[str],
    style: Sequence[str],
    style_losses: Sequence[str],
    remat: str = "none",
    rows: int | None = None,
    guides: dict[str, Guide] | None = None,
) -> tuple[dict[str, Array], dict[str, LayerStatistics]]:
    """:func:`local_features` of ``image`` (N, H, W, 3), its rows split over ``mesh``'s ``space`` axis.

    Returns the content features (split by rows) and the style layers' statistics
    (replicated). ``rows``: the image's own rows when ``H`` was padded below them
    (:func:`pad_rows`); the content features then hold zeros past their level's own rows.
    Under ``jax.vmap(..., spmd_axis_name="settings")`` the batch runs split over the mesh's
    ``settings`` axis as well.
    """
    graphdef, params = nnx.split(model)
    shards = mesh.shape[SPACE]
    names = tuple(content)
    if rows is not None and not 0 < rows <= image.shape[1]:
        raise ValueError(f"{rows} own rows do not fit an image of {image.shape[1]}")
    rows = None if rows == image.shape[1] else rows

    def local(params: nnx.State, image: Array, guides: dict | None) -> tuple[tuple[Array, ...], dict]:
        model = nnx.merge(graphdef, params)
        c, s = local_features(model, image, shards, content, style, style_losses, remat, rows, guides)
        return tuple(c[n] for n in names), s

    spec = P(None, SPACE)
    # Guides (computed on the whole image, padded as it is) are split by rows as the features are.
    guide_specs = None if guides is None else {name: spec for name in guides}
    mapped = jax.shard_map(
        local, mesh=mesh, in_specs=(P(), spec, guide_specs), out_specs=(tuple(spec for _ in names), P())
    )
    found_content, found_style = mapped(params, image, guides)
    return dict(zip(names, found_content, strict=True)), found_style


def settings_vmap(fn, space_mesh: Mesh | None):
    """``jax.vmap(fn)`` over a batch of settings. With a split image the batch lies along
    the mesh's ``settings`` axis (``spmd_axis_name``): the ``shard_map`` inside then keeps
    each device's own settings instead of gathering the batch onto every device."""
    return jax.vmap(fn, spmd_axis_name=AXIS if space_mesh is not None else None)
