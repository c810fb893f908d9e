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
from flax import nnx
from jax import Array
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxstyle.losses import Guide, LayerStatistics, flat_positions, layer_sums, sums_statistics
from jaxstyle.mesh import AXIS, SPACE


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
    guides: dict[str, Guide] | None = None,
) -> tuple[dict[str, Array], dict[str, LayerStatistics]]:
    """Inside ``shard_map``: this device's content features and every device's style statistics.

    A convolution runs on this device's rows plus one borrowed row above and below
    (:func:`exchange_rows`) with the network's own layer (padding 1 in both directions),
    and keeps the inner rows: ``y = conv(halo(x))[1:-1]``, each of them the unsplit
    network's row. A style layer's statistics are each style loss's sums over this
    device's rows (:func:`~jaxstyle.losses.layer_sums`, e.g. ``F_d^T F_d`` for a Gram
    matrix), summed over the devices (``psum``) and normalised by the whole layer's
    ``H W`` positions (:func:`~jaxstyle.losses.sums_statistics`). With ``remat="blocks"`` each block is a
    ``jax.checkpoint`` (:func:`jaxstyle.remat.block_features`).
    """
    graphdef, params = nnx.split(model)
    spec, layers = model.spec, (*content, *style)

    def block(x: Array, params: nnx.State, names: tuple[str, ...]) -> tuple[Array, dict, dict]:
        net = nnx.merge(graphdef, params)
        found_content, found_style = {}, {}
        for name in names:
            if name.startswith("conv"):
                x = net.run(exchange_rows(x, shards), (name,), ())[0][:, 1:-1]
            else:
                x = net.run(x, (name,), ())[0]
            if name in content:
                found_content[name] = x
            if name in style:
                n, h, w, c = x.shape
                g = None if name not in (guides or {}) else flat_positions(guides[name])  # this device's rows
                sums = jax.lax.psum(layer_sums(x.reshape(n, h * w, c), style_losses, g), SPACE)
                found_style[name] = sums_statistics(sums, h * shards * w)
        return x, found_content, found_style

    found_content, found_style, x = {}, {}, image
    for names in spec.blocks_until(spec.deepest(layers)):
        run = jax.checkpoint(block, static_argnums=2) if remat == "blocks" else block
        x, c, s = run(x, params, names)
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
    guides: dict[str, Guide] | None = None,
) -> tuple[dict[str, Array], dict[str, LayerStatistics]]:
    """:func:`local_features` of ``image`` (N, H, W, 3), its rows split over ``mesh``'s ``space`` axis.

    Returns the content features (split by rows) and the style layers' statistics
    (replicated). Under ``jax.vmap(..., spmd_axis_name="settings")`` the batch runs
    split over the mesh's ``settings`` axis as well.
    """
    graphdef, params = nnx.split(model)
    shards = mesh.shape[SPACE]
    names = tuple(content)

    def local(params: nnx.State, image: Array, guides: dict | None) -> tuple[tuple[Array, ...], dict]:
        c, s = local_features(nnx.merge(graphdef, params), image, shards, content, style, style_losses, remat, guides)
        return tuple(c[n] for n in names), s

    rows = P(None, SPACE)
    # Guides (computed on the whole image) are split by rows as the features are.
    guide_rows = None if guides is None else {name: rows for name in guides}
    specs = (P(), rows, guide_rows)
    mapped = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=(tuple(rows for _ in names), P()))
    found_content, found_style = mapped(params, image, guides)
    return dict(zip(names, found_content, strict=True)), found_style


def settings_vmap(fn, space_mesh: Mesh | None):
    """``jax.vmap(fn)`` over a batch of settings. With a split image the batch lies along
    the mesh's ``settings`` axis (``spmd_axis_name``): the ``shard_map`` inside then keeps
    each device's own settings instead of gathering the batch onto every device."""
    return jax.vmap(fn, spmd_axis_name=AXIS if space_mesh is not None else None)
