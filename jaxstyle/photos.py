"""Many photos in one job (``jaxstyle batch``): listed, sharded, grouped by output size, run as vmapped batches.

Each photo keeps its own aspect: its output size is the one :func:`jaxstyle.stylize`
gives it with the same settings (:func:`jaxstyle.image.output_size`). Photos of one
output size form a *bucket*; a bucket is cut into *parts* of one micro-batch each (the
batch size the memory planner gives a sweep of the bucket's size), and each part is one
run of the pipeline (:func:`jaxstyle.pipeline.prepare_job`, :func:`~jaxstyle.pipeline.run_job`):
the part's photos are the run's content images, one setting each, vmapped and spread
over every device of every host as a sweep's settings are. A part is what is
checkpointed and resumed, in a directory of its own named by its photos.

Buckets hold photos of exactly one output size: no padding, so that each output equals
the photo's single run (float64, to rounding). Parts are formed from the sorted list
of readable photos, never from what is left to do, so that a resumed run cuts the same
parts and finds the unfinished one's checkpoint.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from jaxstyle import image as imageio
from jaxstyle.checkpoint import CheckpointOptions
from jaxstyle.config import Execution, Settings
from jaxstyle.errors import JaxstyleError, one_line

__all__ = [
    "Failure",
    "Part",
    "PartOutput",
    "Photo",
    "list_inputs",
    "output_names",
    "parse_shard",
    "plan_parts",
    "run_parts",
    "shard",
]

# The files ``jaxstyle batch`` reads in a folder (and writes: ``.png``).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
# A file list larger than this is refused before it is read (a million paths take about 100 MiB).
MAX_LIST_BYTES = 256 << 20
# The stems of the files the batch writes beside the photos' outputs: no photo's output takes them.
RESERVED = re.compile(r"(failures|summary|contact_sheet)(-\d+-of-\d+)?")
EXIF_ORIENTATION = 0x0112  # values 5 to 8 turn the image a quarter: height and width swap


# --------------------------------------------------------------------------- inputs


def list_inputs(spec: str) -> list[Path]:
    """The photos ``spec`` names, sorted and without repeats: a folder (its image files, not
    recursively), a glob (``photos/**/*.jpg``), one image file, or a text file listing one path a
    line (blank lines and ``#`` comments skipped; relative paths from the list's folder).

    Raises a one-line :class:`JaxstyleError` when ``spec`` names nothing, or no photo.
    """
    path = Path(spec)
    try:
        if path.is_dir():
            found = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
            what = f"{spec}: the folder holds no image ({', '.join(IMAGE_SUFFIXES)})"
        elif glob.has_magic(spec) and not path.exists():
            found = [Path(p) for p in glob.glob(spec, recursive=True) if not os.path.isdir(p)]
            what = f"{spec}: the pattern matches no file"
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            found, what = [path], ""
        elif path.is_file():
            found, what = read_list(path), f"{spec}: the list names no file"
        else:
            raise JaxstyleError(f"{spec}: no such folder, file or list of files, and no file matches it as a pattern")
    except (OSError, ValueError) as e:  # a name too long, a NUL byte, a folder that cannot be listed
        raise JaxstyleError(f"{spec}: cannot read ({one_line(e)})") from None
    if not found:
        raise JaxstyleError(what)
    return sorted({Path(os.path.normpath(p)) for p in found}, key=str)


def read_list(path: Path) -> list[Path]:
    """The paths a text file lists, one a line; relative ones from the list's folder."""
    size = path.stat().st_size
    if size > MAX_LIST_BYTES:
        raise JaxstyleError(f"{path}: {size:,} bytes; lists of up to {MAX_LIST_BYTES >> 20} MiB are read")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise JaxstyleError(f"{path}: not a text file of paths (nor an image: its name ends {path.suffix!r})") from None
    lines = (line.strip() for line in text.splitlines())
    return [path.parent / line for line in lines if line and not line.startswith("#")]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: part ``i`` of ``n``, counted from 0 (SLURM's ``--array=0-7``)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise JaxstyleError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4 (the first of four parts)")
    return index, count


def shard(paths: Sequence[Path], index: int, count: int) -> list[Path]:
    """Part ``index`` of ``count`` of the sorted ``paths``: every ``count``-th from the ``index``-th.

    The parts are disjoint and together hold every path; taking every ``count``-th gives
    each part a like mix of sizes (and of the buckets' remainders).
    """
    return list(paths[index::count])


def output_names(paths: Sequence[Path]) -> dict[Path, str]:
    """Each photo's output file name, ``<stem>.png``, unique (case-insensitively) over ``paths``.

    A stem that several photos share (``a/x.jpg``, ``b/x.jpg``, ``x.png``), or that one of
    the batch's own files takes (:data:`RESERVED`), is numbered in the paths' order:
    ``x.png``, ``x-2.png``, ``x-3.png``. Computed over the whole sorted list (not a shard's),
    so that every shard names every photo alike.
    """
    count: dict[str, int] = {}
    for p in paths:
        count[p.stem.casefold()] = count.get(p.stem.casefold(), 0) + 1
    taken = {stem for stem, n in count.items() if n == 1 and not RESERVED.fullmatch(stem)}
    names = {}
    for p in paths:
        stem = p.stem
        if count[stem.casefold()] > 1 or RESERVED.fullmatch(stem.casefold()):
            number = 1 if not RESERVED.fullmatch(stem.casefold()) else 2
            while (candidate := stem if number == 1 else f"{stem}-{number}").casefold() in taken:
                number += 1
            stem = candidate
            taken.add(stem.casefold())
        names[p] = stem + ".png"
    return names


def photo_size(path: Path) -> tuple[int, int]:
    """A photo's ``(height, width)`` as :func:`jaxstyle.image.load_image` reads it (EXIF orientation
    honoured), from its header alone; a file the header does not settle is read whole, which
    raises the one-line error that reading it gives."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            turned = img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
        if w * h <= imageio.MAX_INPUT_PIXELS:
            return (w, h) if turned else (h, w)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        pass
    return imageio.load_image(path).shape[:2]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Photo:
    """One input photo: its file, its output's name, and its output size ``(height, width)``."""

    path: Path
    name: str
    size: tuple[int, int]


@dataclass(frozen=True)
class Failure:
    """A photo that produced no output, and why (one line)."""

    path: Path
    error: str


@dataclass(frozen=True)
class Part:
    """One micro-batch of photos of one output size: a run of the pipeline, checkpointed as one.

    Attributes:
      photos: the part's photos, in order.
      size: their output size.
      key: ``HxW-<digest of the photos' paths>``, its checkpoint directory's name.
    """

    photos: tuple[Photo, ...]
    size: tuple[int, int]

    @property
    def key(self) -> str:
        names = "\n".join(str(photo.path) for photo in self.photos).encode()
        return f"{self.size[0]}x{self.size[1]}-{hashlib.sha256(names).hexdigest()[:16]}"


def plan_parts(
    paths: Sequence[Path],
    names: dict[Path, str],
    settings: Settings,
    execution: Execution | None = None,
    device_count: int = 1,
    on_failure: Callable[[Failure], None] | None = None,
) -> tuple[list[Part], list[Failure]]:
    """The parts of a run over ``paths`` (buckets by output size, smallest first; each cut into
    micro-batches of the batch size :func:`jaxstyle.plan.make_plan` gives its bucket on
    ``device_count`` devices), and the photos that failed before any work: unreadable, or
    whose output size the settings refuse. ``on_failure`` hears each at once."""
    import jax

    from jaxstyle import mesh as meshlib
    from jaxstyle.plan import make_plan

    failures: list[Failure] = []
    buckets: dict[tuple[int, int], list[Photo]] = {}
    for path in paths:
        try:
            size = imageio.output_size(photo_size(path), settings)
        except JaxstyleError as e:
            failures.append(Failure(path, str(e)))
            if on_failure is not None:
                on_failure(failures[-1])
            continue
        buckets.setdefault(size, []).append(Photo(path, names[path], size))
    memory, _ = meshlib.device_memory_bytes()
    platform = jax.devices()[0].platform
    parts = []
    for size, photos in sorted(buckets.items()):
        plan = make_plan(
            settings,
            size,
            len(photos),
            execution=execution,
            device_count=device_count,
            device_memory=memory,
            platform=platform,
        )
        b = plan.batch_size
        parts += [Part(tuple(photos[i : i + b]), size) for i in range(0, len(photos), b)]
    return parts, failures


# --------------------------------------------------------------------------- the run


@dataclass
class PartOutput:
    """A finished part (every process holds all of it).

    Attributes:
      part: the part.
      images: ``{photo: float32 RGB in [0, 1]}`` of the photos that finished.
      failures: the part's photos that produced no image (unreadable once read whole, or diverged).
      final_losses: ``{photo: {content, style, tv, total}}`` of each image written.
      stages: the schedule, ``[(size, steps)]`` per scale.
      seconds: wall time of the part's run, compilation included.
      weights_file, weights_info: the converted weights used and their provenance.
    """

    part: Part
    images: dict[Photo, np.ndarray]
    failures: list[Failure]
    final_losses: dict[Photo, dict[str, float]]
    stages: list[tuple[tuple[int, int], int]]
    seconds: float
    weights_file: Path
    weights_info: dict[str, str]


def run_parts(
    parts: Sequence[Part],
    styles: Sequence[str],
    settings: Settings,
    *,
    weights: str | os.PathLike | None = None,
    execution: Execution | None = None,
    checkpoints: CheckpointOptions | None = None,
    progress: Callable | None = None,
    stop_signal: Callable[[], int | None] | None = None,
) -> Iterator[PartOutput]:
    """Run each part in turn and yield its output; ``checkpoints.directory`` holds one folder per
    part (:attr:`Part.key`), removed once the caller has taken the part's output (asked for the next).

    ``progress`` gets each chunk's :class:`~jaxstyle.pipeline.ChunkReport`, its micro-batch
    counted over all the parts. A stop request raises :class:`~jaxstyle.errors.Stopped` after
    the part's checkpoint is saved; with ``checkpoints.resume``, a part starts from its newest
    checkpoint, if it has one.
    """
    import shutil

    import jax

    from jaxstyle import mesh as meshlib
    from jaxstyle.pipeline import ChunkReport, prepare_job, run_job

    for number, part in enumerate(parts):
        readable, failures = read_photos(part, settings)
        try:
            if not readable:
                raise JaxstyleError("")
            # The whole part fails where a single run of each photo would: a scale too small, a style too large.
            job = prepare_job(
                [rgb for _, rgb in readable],
                styles,
                settings,
                weights=weights,
                execution=execution,
                device_count=jax.device_count(),
            )
        except JaxstyleError as e:
            failures += [Failure(photo.path, str(e)) for photo, _ in readable]
            yield PartOutput(part, {}, failures, {}, [], 0.0, Path(), {})
            continue

        def report(chunk: ChunkReport, number: int = number) -> None:
            progress(chunk._replace(micro_batch=number, micro_batches=len(parts)))

        options = None
        if checkpoints is not None:
            options = CheckpointOptions(
                checkpoints.directory / part.key, checkpoints.every_steps, checkpoints.every_minutes, checkpoints.resume
            )
        start = time.perf_counter()
        out = run_job(
            job,
            meshlib.settings_mesh(job.plan.spatial_shards),
            on_chunk=report if progress is not None else None,
            checkpoint=options,
            stop_signal=stop_signal,
        )
        seconds = time.perf_counter() - start
        images, losses, trace = {}, {}, out.trace()
        for k, (photo, _) in enumerate(readable):
            if out.diverged_at[k] >= 0:
                total = float(trace["total"][-1, k])
                failures.append(
                    Failure(
                        photo.path,
                        f"the optimisation diverged at step {out.diverged_at[k]} (loss {total}); "
                        f"try a lower --lr (now {settings.lr}) or smaller loss weights",
                    )
                )
                continue
            images[photo] = out.images[k]
            losses[photo] = {name: float(v[k]) for name, v in out.final_losses.items()}
        stages = [(stage.size, stage.steps) for stage in job.plan.stages]
        network = job.network
        yield PartOutput(part, images, failures, losses, stages, seconds, network.weights_file, network.weights_info)
        if options is not None and jax.process_index() == 0:
            shutil.rmtree(options.directory, ignore_errors=True)


def read_photos(part: Part, settings: Settings) -> tuple[list[tuple[Photo, np.ndarray]], list[Failure]]:
    """The part's photos read whole, and those that cannot be (a truncated file whose header read)."""
    readable, failures = [], []
    for photo in part.photos:
        try:
            rgb = imageio.load_image(photo.path)
        except JaxstyleError as e:
            failures.append(Failure(photo.path, str(e)))
            continue
        if imageio.output_size(rgb.shape[:2], settings) != part.size:  # the file changed since it was listed
            failures.append(Failure(photo.path, f"{photo.path}: changed size while the batch ran"))
            continue
        readable.append((photo, rgb))
    return readable, failures
