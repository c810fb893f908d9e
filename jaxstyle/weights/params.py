"""The conv weights of a network as arrays (:data:`ConvArrays`): checked against the
network's spec, identified, drawn at random for tests, and put into the Flax model.

No JAX is imported until :func:`split_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.errors import JaxstyleError
from jaxstyle.nets import DEFAULT_NETWORK, NETWORKS, TEST_NETWORKS, NetworkSpec, network

# conv name -> (kernel HWIO, bias)
ConvArrays = dict[str, tuple[np.ndarray, np.ndarray]]


def network_spec(name: NetworkSpec | str, path: Path | None = None) -> NetworkSpec:
    """:func:`jaxstyle.nets.network`, with the file named in the error when the name is unknown."""
    try:
        return network(name)
    except JaxstyleError as e:
        if path is None:
            raise
        raise JaxstyleError(f"{path}: {e}") from None


def check_convs(convs: ConvArrays, network: NetworkSpec | str, where: Path | str) -> NetworkSpec:
    """``network``'s spec, after checking that ``convs`` has exactly its layers and shapes.

    ``where`` names the file (or the caller) in the error.
    """
    spec = network_spec(network)
    shapes = spec.conv_shapes()
    if set(convs) != set(shapes):
        raise JaxstyleError(f"{where}: conv layers {sorted(convs)} are not those of {spec.title}")
    for name, shape in shapes.items():
        kernel, bias = convs[name]
        if kernel.shape != shape or bias.shape != (shape[3],):
            raise JaxstyleError(f"{where}: layer {name} has kernel {kernel.shape}, {spec.title} has {shape}")
    return spec


def check_finite(convs: ConvArrays, path: Path) -> None:
    """Raise if any weight is NaN or infinite (a corrupt file)."""
    for name, (kernel, bias) in convs.items():
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise JaxstyleError(f"{path}: layer {name} holds NaN or infinite values; the file is corrupt")


def network_of(convs: ConvArrays) -> NetworkSpec:
    """The network whose conv layers and kernel shapes are exactly those of ``convs``."""
    shapes = {name: kernel.shape for name, (kernel, _) in convs.items()}
    for spec in (*NETWORKS.values(), *TEST_NETWORKS.values()):
        if spec.conv_shapes() == shapes:
            return spec
    raise JaxstyleError(f"conv layers {sorted(shapes)} with these shapes are no known network's")


def check_float_dtype(array: Any, path: Path, where: str) -> None:
    """Raise unless ``array`` holds floating-point numbers: weights stored as integers or text are no weights."""
    dtype = np.dtype(getattr(array, "dtype", object))
    if dtype.kind != "f":
        raise JaxstyleError(f"{path}: {where} holds {dtype_words(dtype)} values, expected floating-point numbers")


def float32_array(array: Any) -> np.ndarray:
    """A floating-point array as float32; values beyond its range become infinite, for :func:`check_finite`."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(array, np.float32)


def dtype_words(dtype: np.dtype) -> str:
    """``int32``, ``text``: what a dataset's values are, for messages."""
    return {"S": "text", "U": "text", "O": "object", "V": "compound", "b": "boolean"}.get(dtype.kind, str(dtype))


def random_convs(seed: int = 0, network: str | NetworkSpec = DEFAULT_NETWORK) -> ConvArrays:
    """Seeded random weights of ``network`` for tests and benchmarks (never for stylizing).

    Kernels are He-scaled, ``N(0, 2 / fan_in)``, so activations keep their scale
    through all layers; biases are ``N(0, 0.05)``, non-zero so that a dropped or
    misplaced bias shows.
    """
    rng = np.random.default_rng(seed)
    convs = {}
    for name, shape in network_spec(network).conv_shapes().items():
        fan_in = shape[0] * shape[1] * shape[2]
        kernel = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(np.float32)
        convs[name] = (kernel, rng.normal(0.0, 0.05, size=shape[3]).astype(np.float32))
    return convs


def split_model(
    convs: ConvArrays,
    pool: str = "max",
    dtype: np.dtype | str = "float32",
    compute_dtype: str | None = None,
    network: NetworkSpec | str | None = None,
) -> tuple:
    """``(graphdef, params)`` of a :class:`~jaxstyle.vgg.VGG` holding ``convs``.

    ``network`` defaults to the one whose layers and shapes ``convs`` has (see
    :func:`network_of`). The module is built abstractly (no random initialisation),
    then filled with the given arrays cast to ``dtype``. ``compute_dtype`` (e.g.
    ``"bfloat16"``) is the dtype the convolutions run in; ``None`` runs them in the
    input's dtype.
    """
    import jax.numpy as jnp
    from flax import nnx

    from jaxstyle.vgg import VGG

    spec = network_of(convs) if network is None else check_convs(convs, network, "split_model")
    compute = jnp.dtype(compute_dtype) if compute_dtype else None
    abstract = nnx.eval_shape(
        lambda: VGG(spec, pool=pool, dtype=compute, param_dtype=jnp.dtype(dtype), rngs=nnx.Rngs(0))
    )
    graphdef, params = nnx.split(abstract)
    arrays = {
        name: {"kernel": jnp.asarray(kernel, dtype), "bias": jnp.asarray(bias, dtype)}
        for name, (kernel, bias) in convs.items()
    }
    nnx.replace_by_pure_dict(params, arrays)
    return graphdef, params
