"""Reading HDF5 files whose every fault is a one-line error naming the file.

h5py raises many kinds of exception for corrupt files, values of unexpected types and
links to nowhere; these helpers check what a weights file holds before using it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.weights.params import check_float_dtype, float32_array

# h5py raises these for corrupt files, values it cannot convert, and links to nowhere.
H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)


@contextmanager
def h5_errors(path: Path) -> Iterator[None]:
    """Turn whatever h5py raises while reading ``path`` into a one-line :class:`JaxstyleError`."""
    try:
        yield
    except H5_ERRORS as e:
        raise JaxstyleError(f"{path}: unreadable HDF5 content ({one_line(e)})") from None


def open_h5(path: Path) -> h5py.File:
    """Open an HDF5 file for reading, with a one-line error if it is not one."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise JaxstyleError(f"{path}: no such file") from None
    except OSError as e:
        raise JaxstyleError(f"{path}: not a readable HDF5 file ({one_line(e)})") from None


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

    Values beyond float32's range become infinite here, for :func:`~jaxstyle.weights.params.check_finite` to refuse.
    """
    check_float_dtype(dataset, path, where)
    return float32_array(dataset[()])
