"""VGG weights: the published files, their readers, jaxstyle's converted file, loading.

Three published layouts are read, each checked key by key and shape by shape against
the network's spec (:mod:`jaxstyle.nets`):

* torchvision state dicts (``vgg19-dcbb9e9d.pth``; also the Caffe weights converted
  to that layout, ``vgg19-d01eb7cb.pth``), as ``.pth`` or ``.safetensors``;
* the Keras applications file ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``.

All are converted into one HDF5 file of our own: a group per conv layer holding
``kernel`` (HWIO float32) and ``bias``, and attributes naming the network, the
source, the source file's SHA-256 and the input convention the weights expect.
Preprocessing is always taken from that file. No JAX is imported until
:func:`split_model`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from jaxstyle.errors import JaxstyleError
from jaxstyle.files import atomic_output
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
class Source:
    """A published VGG-19 weights file.

    Attributes:
      name: short name used on the command line.
      url: where the publisher serves it.
      filename: the published file name.
      md5: the published MD5 (Keras), or ``None``.
      sha256_prefix: the SHA-256 prefix in the file name (torch.hub convention), or ``None``.
      convention: the input convention the weights expect.
      size_mb: approximate download size.
    """

    name: str
    url: str
    filename: str
    md5: str | None
    sha256_prefix: str | None
    convention: str
    size_mb: int


SOURCES: dict[str, Source] = {
    "torchvision": Source(
        name="torchvision",
        url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        filename="vgg19-dcbb9e9d.pth",
        md5=None,
        sha256_prefix="dcbb9e9d",
        convention="torchvision",
        size_mb=548,
    ),
    "keras": Source(
        name="keras",
        url="https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        filename="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        md5="253f8cb515780f3b799900260a226db6",
        sha256_prefix=None,
        convention="caffe",
        size_mb=80,
    ),
    "caffe": Source(
        name="caffe",
        url="https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth",
        filename="vgg19-d01eb7cb.pth",
        md5=None,
        sha256_prefix="d01eb7cb",
        convention="caffe",
        size_mb=548,
    ),
}

# Which published file to suggest for weights of each input convention.
SOURCE_FOR_CONVENTION = {"torchvision": "torchvision", "caffe": "keras"}


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
    """The published source whose hash matches, if any."""
    for source in SOURCES.values():
        if source.md5 == md5 or (source.sha256_prefix and sha256.startswith(source.sha256_prefix)):
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
    convs = {}
    for name in spec.conv_names:
        weight = np.asarray(tensors[f"{spec.torchvision_key(name)}.weight"], dtype=np.float32)
        bias = np.asarray(tensors[f"{spec.torchvision_key(name)}.bias"], dtype=np.float32)
        convs[name] = (np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), bias)  # OIHW -> HWIO
    return convs


def read_pth(path: Path, spec: NetworkSpec) -> ConvArrays:
    """Read a torchvision-layout ``.pth`` with ``torch.load(weights_only=True)`` (no code runs)."""
    try:
        import torch
    except ImportError:
        raise JaxstyleError(
            f"{path}: reading .pth files needs PyTorch: pip install 'jaxstyle[torch]' "
            "(or convert the file on a machine that has it)"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for corrupt or unsafe files
        raise JaxstyleError(f"{path}: not a readable PyTorch state dict ({one_line(e)})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(hasattr(v, "numpy") for v in obj.values()):
        raise JaxstyleError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {k: v.detach().float().numpy() for k, v in obj.items()}
    return from_state_dict(tensors, path, spec)


def read_safetensors(path: Path, spec: NetworkSpec) -> ConvArrays:
    """Read a torchvision-layout ``.safetensors`` file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise JaxstyleError(f"{path}: not a readable safetensors file ({one_line(e)})") from None
    return from_state_dict(tensors, path, spec)


def _decode(names: np.ndarray | list) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_keras_h5(f: h5py.File, path: Path, spec: NetworkSpec) -> ConvArrays:
    """Read the Keras applications layout through its ``layer_names``/``weight_names`` attributes."""
    layer_names = _decode(f.attrs["layer_names"])
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
        if layer not in f:
            raise JaxstyleError(f"{path}: not a Keras {spec.title} weights file: layer {layer} is missing")
        group = f[layer]
        weight_names = _decode(group.attrs.get("weight_names", []))
        kernels = [w for w in weight_names if "kernel" in w]
        biases = [w for w in weight_names if "bias" in w]
        if len(kernels) != 1 or len(biases) != 1:
            raise JaxstyleError(f"{path}: layer {layer} lists weights {weight_names}, expected a kernel and a bias")
        kernel, bias = np.asarray(group[kernels[0]], np.float32), np.asarray(group[biases[0]], np.float32)
        if kernel.shape != shapes[name] or bias.shape != (shapes[name][3],):
            raise JaxstyleError(
                f"{path}: layer {layer} has kernel {kernel.shape} and bias {bias.shape}, "
                f"expected {shapes[name]} and {(shapes[name][3],)}"
            )
        convs[name] = (kernel, bias)
    return convs


def is_converted(f: h5py.File) -> bool:
    """Whether an open HDF5 file is jaxstyle's own converted file (of any format version)."""
    return f.attrs.get("format") in (FORMAT, LEGACY_FORMAT)


def read_source(path: Path, spec: NetworkSpec) -> ConvArrays:
    """Read a published weights file of network ``spec`` in any supported layout, by its extension."""
    suffix = path.suffix.lower()
    if suffix in (".pth", ".pt", ".bin"):
        return read_pth(path, spec)
    if suffix == ".safetensors":
        return read_safetensors(path, spec)
    if suffix in (".h5", ".hdf5"):
        with open_h5(path) as f:
            if is_converted(f):
                raise JaxstyleError(f"{path}: already a converted jaxstyle weights file; use it with --weights")
            if "layer_names" not in f.attrs:
                raise JaxstyleError(f"{path}: an HDF5 file without Keras 'layer_names'; not a Keras weights file")
            return read_keras_h5(f, path, spec)
    raise JaxstyleError(f"{path}: unknown weights format {suffix!r}; expected .pth, .safetensors or Keras .h5")


def open_h5(path: Path) -> h5py.File:
    """Open an HDF5 file for reading, with a one-line error if it is not one."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise JaxstyleError(f"{path}: no such file") from None
    except OSError as e:
        raise JaxstyleError(f"{path}: not a readable HDF5 file ({one_line(e)})") from None


def one_line(e: BaseException) -> str:
    """An exception's message on one line, without the noise of long reprs."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) < 200 else text[:197] + "..."


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
    dst.parent.mkdir(parents=True, exist_ok=True)
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
    source: str | None = None,
    network: str | None = None,
) -> Path:
    """Convert a published weights file into jaxstyle's file and return its path.

    The input convention comes from the file's identity (its hash matches a published
    file, or ``source`` names one whose hash the caller verified; Keras files are
    always Caffe-convention), or else from ``convention``. The network is ``network``
    (default VGG-19). ``dst`` defaults to ``<network>-<convention>.h5`` in the user
    cache, where :func:`find` looks.
    """
    src = Path(src)
    if not src.is_file():
        raise JaxstyleError(f"{src}: no such file")
    spec = network_spec(network or DEFAULT_NETWORK)
    sha256, md5 = file_digests(src)
    known = SOURCES[source] if source else identify(sha256, md5)
    convs = read_source(src, spec)  # a file that is no weights file at all is the first problem
    check_finite(convs, src)
    is_keras = src.suffix.lower() in (".h5", ".hdf5")
    inferred = known.convention if known else ("caffe" if is_keras else None)
    if convention is not None and convention not in CONVENTIONS:
        raise JaxstyleError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    if convention and inferred and convention != inferred:
        raise JaxstyleError(f"{src}: these weights expect {inferred!r} input, not {convention!r}")
    convention = convention or inferred
    if convention is None:
        raise JaxstyleError(
            f"{src}: its SHA-256 matches no published {spec.title} file, so its input convention is unknown; "
            "pass --convention torchvision (RGB, ImageNet mean/std) or --convention caffe (BGR 0-255 minus means)"
        )
    dst = Path(dst) if dst is not None else default_path(spec.name, convention)
    write_converted(
        dst,
        convs,
        CONVENTIONS[convention],
        {"source": known.name if known else "unknown", "source_file": src.name, "source_sha256": sha256},
        spec,
    )
    return dst


def file_network(f: h5py.File, path: Path) -> NetworkSpec:
    """The network a converted file holds: its ``network`` attribute; VGG-19 for format version 1 files."""
    fmt = f.attrs.get("format")
    if fmt not in (FORMAT, LEGACY_FORMAT):
        keras = "layer_names" in f.attrs
        hint = " (a Keras file: convert it first with `jaxstyle weights convert`)" if keras else ""
        raise JaxstyleError(f"{path}: not a converted jaxstyle weights file{hint}")
    version = int(f.attrs.get("format_version", -1))
    if (fmt, version) == (LEGACY_FORMAT, LEGACY_FORMAT_VERSION):
        return network_spec(LEGACY_NETWORK)
    if (fmt, version) != (FORMAT, FORMAT_VERSION):
        raise JaxstyleError(
            f"{path}: weights format version {version}; this jaxstyle reads versions "
            f"{LEGACY_FORMAT_VERSION} and {FORMAT_VERSION}"
        )
    name = f.attrs.get("network")
    return network_spec(name.decode() if isinstance(name, bytes) else str(name), path)


def read_converted(path: Path, network: str | NetworkSpec | None = None) -> LoadedWeights:
    """Read and check a converted file: format, network, every layer's shapes, finite values.

    With ``network``, the file must hold that network's weights.
    """
    path = Path(path)
    if not path.is_file():
        raise JaxstyleError(f"{path}: no such weights file")
    with open_h5(path) as f:
        spec = file_network(f, path)
        if network is not None and network_spec(network) != spec:
            wanted = network_spec(network)
            raise JaxstyleError(
                f"{path}: holds {spec.title} weights, not {wanted.title}; pass --network {spec.name} "
                f"or a {wanted.title} weights file"
            )
        name = str(f.attrs.get("convention"))
        if name not in CONVENTIONS:
            raise JaxstyleError(f"{path}: unknown input convention {name!r}")
        convs: ConvArrays = {}
        for conv, shape in spec.conv_shapes().items():
            if conv not in f or "kernel" not in f[conv] or "bias" not in f[conv]:
                raise JaxstyleError(f"{path}: layer {conv} is missing")
            kernel, bias = np.asarray(f[conv]["kernel"], np.float32), np.asarray(f[conv]["bias"], np.float32)
            if kernel.shape != shape or bias.shape != (shape[3],):
                raise JaxstyleError(f"{path}: layer {conv} has kernel {kernel.shape}, expected {shape}")
            convs[conv] = (kernel, bias)
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    check_finite(convs, path)
    attrs = {k: str(v) for k, v in attrs.items()}
    attrs.setdefault("network", spec.name)  # format version 1: VGG-19, by definition
    return LoadedWeights(convs=convs, convention=CONVENTIONS[name], attrs=attrs, path=path, network=spec)


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
    source = SOURCES[SOURCE_FOR_CONVENTION[convention]]
    network_flag = "" if spec.name == DEFAULT_NETWORK else f" --network {spec.name}"
    raise JaxstyleError(
        f"no {spec.title} weights ({convention} convention) found in {', '.join(map(str, paths))}. "
        f"Online: `jaxstyle weights download{network_flag} --source {source.name}`. "
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
