"""Output files: checked before any work, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jaxstyle.errors import JaxstyleError


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before any work, if a file cannot be created at ``path``.

    A file is created in the directory and removed again: permission bits alone
    mislead for root and for read-only mounts.
    """
    path = Path(path)
    if path.is_dir():
        raise JaxstyleError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise JaxstyleError(f"{path}: directory {parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise JaxstyleError(f"{path}: not writable")
    try:
        fd, probe = tempfile.mkstemp(prefix=".jaxstyle-probe-", dir=parent)
    except OSError as e:
        raise JaxstyleError(f"{path}: not writable ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)
    return path


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    Readers never see a half-written file, and a failure leaves nothing behind.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise JaxstyleError(f"{path}: cannot write ({e.strerror or e})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))
