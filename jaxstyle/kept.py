"""A finished result is never lost to a failed write: what cannot be written is kept, to be written later.

A run's outputs are written last, after what may be hours of work. When one cannot be
written (``No space left on device``, a file system gone read-only, a quota),
:func:`write_or_keep` keeps every output not yet written in one small file, a *kept
result*, in the first of several places that takes it (:func:`places`: the output's
directory, the checkpoint directory, ``$TMPDIR``, ``~/.cache/jaxstyle/kept``), and
raises one line that names the file that failed, the kept result and the command that
writes it::

    jaxstyle: out.png: cannot write (No space left on device); the finished result is kept
    in /tmp/out.png.kept.npz: once there is room, `jaxstyle write /tmp/out.png.kept.npz`
    writes it (-o elsewhere), with no step redone

``jaxstyle write KEPT [-o OUT]`` (:mod:`jaxstyle.cli.write`, :func:`write_kept`) writes
the outputs exactly as the run would have (the same bytes), then removes the kept file.

An output is an :class:`Output`: an image (float RGB, its metadata and bit depth, written
by :func:`jaxstyle.image.save_image`) or a file already encoded (bytes: a JSON summary, a
contact sheet). A command that writes several files (a sweep, a batch of photos) hands
them all to :func:`write_or_keep` at once; a command with outputs of another kind adds
a kind to :data:`WRITERS`.

A kept result is an ``.npz`` (NumPy's zip of arrays, read without pickle): a JSON
``manifest`` (format version, the command, each output's path, kind and metadata) and
one array per output (the float image, or the bytes as ``uint8``). An image is kept as
floats, not as its encoded file, so that it can still be written at another depth or in
another format (``-o print.tif``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.files import atomic_output

KEPT_SUFFIX = ".kept.npz"
FORMAT_VERSION = 1


@dataclass
class Output:
    """One file a run writes.

    Attributes:
      path: where it goes.
      kind: ``image`` (``rgb``, ``metadata``, ``bit_depth``) or ``bytes`` (``data``); see :data:`WRITERS`.
      rgb: float RGB in [0, 1], ``(H, W, 3)``.
      metadata: what the image file stores (``None``: nothing).
      bit_depth: 8 or 16.
      data: the file's bytes.
    """

    path: Path
    kind: str
    rgb: np.ndarray | None = None
    metadata: dict[str, Any] | None = None
    bit_depth: int = 8
    data: bytes = field(default=b"", repr=False)

    @classmethod
    def image(
        cls, path: str | os.PathLike, rgb: np.ndarray, metadata: dict | None = None, bit_depth: int = 8
    ) -> Output:
        return cls(Path(path), "image", rgb=rgb, metadata=metadata, bit_depth=bit_depth)

    @classmethod
    def file(cls, path: str | os.PathLike, data: bytes) -> Output:
        return cls(Path(path), "bytes", data=data)

    @classmethod
    def video(cls, path: str | os.PathLike, frames: np.ndarray, clip: Any) -> Output:
        """A clip's stylized ``frames`` ``(T, H, W, 3)``, written at ``clip``'s frame rate with its audio."""
        meta = {"fps": clip.fps, "source": str(clip.source), "start": clip.start, "has_audio": bool(clip.has_audio)}
        return cls(Path(path), "video", rgb=frames, metadata=meta)


def write_image(output: Output, path: Path) -> None:
    from jaxstyle.image import save_image

    save_image(path, output.rgb, output.metadata, bit_depth=output.bit_depth)


def write_bytes(output: Output, path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(output.data)


def write_video(output: Output, path: Path) -> None:
    """A clip's frames ``rgb`` ``(T, H, W, 3)`` at ``metadata["fps"]``, with the audio of the source
    (``metadata["source"]``, from frame ``metadata["start"]``) where it had some and is still there."""
    from jaxstyle.videoio import Clip, write_clip

    meta = output.metadata or {}
    source = Path(meta["source"]) if meta.get("source") else None
    audio = None
    if meta.get("has_audio") and source is not None and source.is_file():
        audio = Clip(output.rgb[:0], float(meta["fps"]), source, int(meta["start"]), True)
    try:
        write_clip(path, output.rgb, float(meta["fps"]), audio)
    except OSError as e:  # the encoder's own writes (FFmpeg), e.g. No space left on device
        raise JaxstyleError(f"{path}: cannot write ({one_line(e)})") from None


# How each kind of output is written to a path, atomically, raising JaxstyleError on failure.
WRITERS: dict[str, Callable[[Output, Path], None]] = {"image": write_image, "bytes": write_bytes, "video": write_video}


def places(output_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where a kept result may go, in order: the output's directory, the checkpoint directory,
    ``$TMPDIR`` (:func:`tempfile.gettempdir`) and ``$XDG_CACHE_HOME/jaxstyle/kept`` (default
    ``~/.cache/jaxstyle/kept``, the weights' cache, :func:`jaxstyle.weights.store.cache_dir`)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxstyle" / "kept"
    candidates = [
        Path(output_dir),
        *([Path(checkpoint_dir)] if checkpoint_dir else []),
        Path(tempfile.gettempdir()),
        cache,
    ]
    return list(dict.fromkeys(candidates))


def write_or_keep(outputs: Sequence[Output], command: str, name: str, where: Sequence[Path]) -> None:
    """Write every output in order; if one fails, keep it and those after it and raise one line.

    ``command`` names the command in the kept result; ``name`` is the kept file's name
    (``NAME.kept.npz``, e.g. the output's file name); ``where`` the places to try
    (:func:`places`). The :class:`~jaxstyle.errors.JaxstyleError` raised names the file that
    failed and why, the kept result and the command that writes it; or, where no place
    took it either, says so.
    """
    for number, output in enumerate(outputs):
        try:
            WRITERS[output.kind](output, output.path)
        except JaxstyleError as e:
            failed = str(e)
            kept = keep(outputs[number:], command, name, where)
            if kept is None:
                tried = ", ".join(map(str, where))
                raise JaxstyleError(f"{failed}; the result could not be kept either (tried {tried})") from None
            raise JaxstyleError(
                f"{failed}; the finished result is kept in {kept}: once there is room, "
                f"`jaxstyle write {kept}` writes it (-o elsewhere), with no step redone"
            ) from None


def encode(outputs: Sequence[Output], command: str) -> bytes:
    """A kept result's bytes: the ``.npz`` of a JSON manifest and one array per output."""
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for number, output in enumerate(outputs):
        key = f"output{number}"
        entry: dict[str, Any] = {"path": str(output.path), "kind": output.kind, "array": key}
        if output.kind == "image":
            rgb = np.asarray(output.rgb)  # as computed (float32, or float64): written again, it rounds alike
            arrays[key] = rgb if np.issubdtype(rgb.dtype, np.floating) else rgb.astype(np.float32)
            entry |= {"metadata": output.metadata, "bit_depth": output.bit_depth}
        elif output.kind == "video":  # a clip is encoded through 8 bits anyway: kept as them, a quarter of floats
            from jaxstyle.image import to_uint8

            arrays[key] = to_uint8(np.asarray(output.rgb))
            entry |= {"metadata": output.metadata}
        else:
            arrays[key] = np.frombuffer(output.data, np.uint8)
        entries.append(entry)
    manifest = {"format": "jaxstyle kept result", "version": FORMAT_VERSION, "command": command, "outputs": entries}
    buffer = io.BytesIO()
    np.savez(buffer, manifest=np.array(json.dumps(manifest)), **arrays)
    return buffer.getvalue()


def keep(outputs: Sequence[Output], command: str, name: str, where: Sequence[Path]) -> Path | None:
    """Write the kept result ``NAME.kept.npz`` to the first place in ``where`` that takes it; its path,
    or ``None`` where none did."""
    data = encode(outputs, command)
    for directory in where:
        path = directory / f"{name}{KEPT_SUFFIX}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp:
                tmp.write_bytes(data)
        except (JaxstyleError, OSError):
            continue
        return path
    return None


def read_kept(path: str | os.PathLike) -> list[Output]:
    """The outputs of a kept result, or a one-line error naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            manifest = json.loads(str(npz["manifest"]))
            if manifest.get("format") != "jaxstyle kept result" or manifest.get("version") != FORMAT_VERSION:
                raise JaxstyleError(f"{path}: not a jaxstyle kept result of format version {FORMAT_VERSION}")
            outputs = []
            for entry in manifest["outputs"]:
                array = npz[entry["array"]]
                if entry["kind"] == "image":
                    outputs.append(Output.image(entry["path"], array, entry["metadata"], entry["bit_depth"]))
                elif entry["kind"] == "video":
                    frames = array.astype(np.float32) / 255.0  # written again, rounds to the same 8 bits
                    outputs.append(Output(Path(entry["path"]), "video", rgb=frames, metadata=entry["metadata"]))
                else:
                    outputs.append(Output.file(entry["path"], array.tobytes()))
    except JaxstyleError:
        raise
    except FileNotFoundError:
        raise JaxstyleError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise JaxstyleError(f"{path}: not a jaxstyle kept result ({one_line(e)})") from None
    return outputs


def retarget(outputs: Sequence[Output], to: str | os.PathLike | None) -> list[Output]:
    """``outputs`` with new paths: ``to`` a file for a single output, a directory (the same names)
    for several; ``None``: where the run meant them to go."""
    if to is None:
        return list(outputs)
    to = Path(to)
    if len(outputs) == 1:
        return [dataclasses.replace(outputs[0], path=to)]
    if not to.is_dir():
        raise JaxstyleError(f"{to}: a kept result of {len(outputs)} files is written into a directory; create it first")
    return [dataclasses.replace(o, path=to / o.path.name) for o in outputs]


def write_kept(
    path: str | os.PathLike, to: str | os.PathLike | None = None, bit_depth: int | None = None
) -> list[Path]:
    """Write a kept result's outputs (to ``to``: see :func:`retarget`; images at ``bit_depth``, default
    the run's), then remove it; the paths written.

    Each is written as the run would have written it; a failure is one line and leaves
    the kept result in place, with the outputs written so far.
    """
    outputs = retarget(read_kept(path), to)
    if bit_depth is not None:
        outputs = [dataclasses.replace(o, bit_depth=bit_depth) if o.kind == "image" else o for o in outputs]
    for output in outputs:
        if output.kind == "image":
            from jaxstyle.image import check_output_path

            check_output_path(output.path, output.bit_depth)
        WRITERS[output.kind](output, output.path)
    Path(path).unlink()
    return [output.path for output in outputs]
