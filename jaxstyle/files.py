"""Output files: checked before any work, written atomically, never over an input or each other;
and the digests that identify a file."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from jaxstyle.errors import JaxstyleError, one_line

TEMPORARY_SUFFIX = ".part"
# mkstemp's random part, and the name length most file systems allow (ext4, XFS, tmpfs, NTFS).
RANDOM_CHARACTERS, DEFAULT_NAME_MAX = 8, 255


def name_max(directory: str | os.PathLike) -> int:
    """The longest file name, in bytes, the file system of ``directory`` allows."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def temporary_prefix(path: Path) -> str:
    """``.NAME.``: the prefix of the temporary file beside ``path``.

    NAME is the output's name, cut short where ``.NAME.xxxxxxxx.part`` would pass the
    file system's name limit: a temporary name is never longer than that limit, even
    for an output whose own name is close to it.
    """
    room = name_max(path.parent) - 2 - RANDOM_CHARACTERS - len(TEMPORARY_SUFFIX)
    name = path.name
    while name and len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}."


def existing_file(path: str | os.PathLike, missing: str = "no such file") -> Path:
    """``path`` as a :class:`Path`, or a one-line error: ``missing`` where it is no file, and
    ``cannot read`` where it cannot even be looked up (a name too long, a NUL byte)."""
    path = Path(path)
    try:
        is_file = path.is_file()
    except (OSError, ValueError) as e:
        raise JaxstyleError(f"{path}: cannot read ({one_line(e)})") from None
    if not is_file:
        raise JaxstyleError(f"{path}: {missing}")
    return path


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before any work, if a file cannot be created at ``path``.

    Checks that ``path`` is no directory, device or other non-file, that its directory
    exists, that its name fits the file system's limit, and then creates (and removes)
    the temporary file :func:`atomic_output` would create: permission bits alone
    mislead for root and for read-only mounts.
    """
    path = Path(path)
    parent = path.parent
    limit, length = name_max(parent), len(os.fsencode(path.name))
    if length > limit:
        raise JaxstyleError(f"{path}: the file name is {length} bytes long; this file system allows at most {limit}")
    try:
        if path.is_dir():
            raise JaxstyleError(f"{path}: is a directory")
        if path.exists() and not path.is_file():
            raise JaxstyleError(f"{path}: exists and is not a regular file")
        if not parent.is_dir():
            raise JaxstyleError(f"{path}: directory {parent} does not exist")
    except (OSError, ValueError) as e:  # a path too long to look up, a NUL byte
        raise JaxstyleError(f"{path}: {one_line(e)}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise JaxstyleError(f"{path}: not writable")
    try:
        fd, probe = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=parent)
    except (OSError, ValueError) as e:
        raise JaxstyleError(f"{path}: not writable ({one_line(e)})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def make_directory(directory: str | os.PathLike) -> Path:
    """Create ``directory`` and its parents where missing; a one-line error if that fails."""
    directory = Path(directory)
    try:
        if directory.exists() and not directory.is_dir():
            raise JaxstyleError(f"{directory}: exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        raise JaxstyleError(f"{directory}: cannot create directory ({one_line(e)})") from None
    return directory


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    Readers never see a half-written file, and a failure leaves nothing behind. An
    operating-system error (a full or read-only file system) is a one-line error.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=path.parent)
    except (OSError, ValueError) as e:
        raise JaxstyleError(f"{path}: cannot write ({one_line(e)})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise JaxstyleError(f"{path}: cannot write ({one_line(e)})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_digests(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> tuple[str, str]:
    """``(sha256 hex, md5 hex)`` of a file, read once in chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def json_bytes(data: dict) -> bytes:
    """``data`` as the indented JSON :func:`write_json` writes."""
    return json.dumps(data, indent=1).encode()


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(json_bytes(data))


# --------------------------------------------------------------------------- the files of a run


def aliases(path: str | os.PathLike) -> set[str]:
    """The names a file goes by: its absolute path and, with symbolic links resolved, its real path."""
    return {os.path.abspath(path), os.path.realpath(path)}


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path, through symbolic links, or hard links to one inode."""
    if aliases(a) & aliases(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # either does not exist (yet)
        return False


@dataclass
class Family:
    """Outputs named by a pattern in one directory (``out.step000010.png``, a sweep's ``003_sw10.png``)."""

    label: str
    directory: Path
    pattern: re.Pattern

    def matches(self, path: str | os.PathLike) -> bool:
        """Whether a file of this family could be ``path``."""
        folders = aliases(self.directory)
        return any(os.path.dirname(a) in folders and self.pattern.fullmatch(os.path.basename(a)) for a in aliases(path))


@dataclass
class RunFiles:
    """The files one run reads and writes, checked before any work.

    Every output is checked writable (:func:`check_writable`); no output may be one
    of the run's inputs or another of its outputs (compared through symbolic and hard
    links), and no input or single output may have a name a family of outputs
    (snapshots, a sweep's images) can take.

    Attributes:
      inputs, outputs: ``(label, path)`` in the order added; labels name them in errors.
      families: outputs named by a pattern.
    """

    inputs: list[tuple[str, Path]] = field(default_factory=list)
    outputs: list[tuple[str, Path]] = field(default_factory=list)
    families: list[Family] = field(default_factory=list)

    def add_input(self, label: str, path: str | os.PathLike | None) -> None:
        """Record a file the run reads (``None``: none)."""
        if path is None:
            return
        for out_label, out in self.outputs:
            if same_file(out, path):
                raise JaxstyleError(f"{out}: the {out_label} output would overwrite the {label}; give it another name")
        self.check_families(label, Path(path))
        self.inputs.append((label, Path(path)))

    def add_output(self, label: str, path: str | os.PathLike) -> Path:
        """Check and record a file the run writes; returns it as a :class:`Path`."""
        path = check_writable(path)
        for in_label, source in self.inputs:
            if same_file(path, source):
                raise JaxstyleError(f"{path}: the {label} output would overwrite the {in_label}; give it another name")
        for other_label, other in self.outputs:
            if same_file(path, other):
                raise JaxstyleError(f"{path}: both the {other_label} and the {label} output; give each its own name")
        self.check_families(label, path)
        self.outputs.append((label, path))
        return path

    def add_family(self, label: str, directory: str | os.PathLike, pattern: str, longest: str) -> None:
        """Record outputs whose names match the regular expression ``pattern`` in ``directory``.

        ``longest`` is the longest name the family will take, checked writable.
        """
        family = Family(label, Path(directory), re.compile(pattern))
        check_writable(family.directory / longest)
        for file_label, path in (*self.inputs, *self.outputs):
            if family.matches(path):
                raise clash(path, file_label, label)
        self.families.append(family)

    def check_families(self, label: str, path: Path) -> None:
        """Raise if a file of a recorded family could be ``path``."""
        for family in self.families:
            if family.matches(path):
                raise clash(path, label, family.label)


def clash(path: Path, label: str, family: str) -> JaxstyleError:
    """The error for a file whose name a family of outputs takes."""
    return JaxstyleError(f"{path}: the {label} has a name that {family} take; give it another name")
