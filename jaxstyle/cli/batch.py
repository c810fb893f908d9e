"""``jaxstyle batch INPUTS STYLE -o OUTDIR``: thousands of photos in one job, each at its own aspect
(:mod:`jaxstyle.photos`), one PNG per photo with its settings, a summary and a contact sheet."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jaxstyle.cli.jobs import weights_file
from jaxstyle.cli.options import (
    add_checkpoint_options,
    add_distributed_options,
    add_execution_options,
    add_output_option,
    add_progress_options,
    add_settings_options,
    add_weights_option,
    checkpoint_options,
    command_line,
    csv_names,
    execution_from_args,
    progress_reporter,
    settings_from_args,
    start_distributed,
)
from jaxstyle.errors import JaxstyleError

if TYPE_CHECKING:
    import numpy as np

    from jaxstyle.checkpoint import CheckpointOptions
    from jaxstyle.photos import Failure, PartOutput, Photo

RUNS_A_JOB = True  # main gives it stop requests (SIGINT, SIGTERM) and the compile cache

CHECKPOINT_FOLDER = ".jaxstyle-checkpoints"  # inside OUTDIR unless --checkpoint-dir says otherwise
SAMPLE = 16  # photos on the contact sheet, spread evenly over the run's
THUMBNAIL = 192  # their longest side
EXIT_SOME_FAILED = 3  # some photos failed (failures.json); the others' outputs are written


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", help="the photos: a folder, a glob (quoted), or a text file of paths, one a line")
    p.add_argument("style", help="style image, or several comma-separated (blended, see --style-blend)")
    add_output_option(p, "output folder: <stem>.png per photo, failures.json, summary.json, contact_sheet.png")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="run only the I-th of N disjoint parts of the sorted photos (0 <= I < N; for job arrays)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="redo photos whose output an earlier run left in the output folder (otherwise refused; "
        "--resume skips them)",
    )
    add_weights_option(p)
    add_progress_options(p)
    add_checkpoint_options(p)
    add_distributed_options(p, "guide/batch.md")
    add_settings_options(p)
    add_execution_options(p, "batch")


def own_files(shard: tuple[int, int] | None) -> tuple[str, str, str]:
    """The names of the failures list, the summary and the contact sheet; a shard's carry its
    number (``summary-2-of-8.json``), so that the shards of one job share an output folder."""
    tail = f"-{shard[0]}-of-{shard[1]}" if shard else ""
    return f"failures{tail}.json", f"summary{tail}.json", f"contact_sheet{tail}.png"


def check_outputs(
    args: argparse.Namespace, settings, photos: Sequence[Path], names: dict[Path, str], out_dir: Path
) -> list[Path]:
    """Refuse, before any work, outputs that would overwrite a file the run reads, and an earlier
    run's outputs unless ``--resume`` (which skips them) or ``--overwrite``; the photos whose
    output exists (to skip with ``--resume``)."""
    from jaxstyle.config import INITS
    from jaxstyle.files import aliases, check_writable

    if args.resume and args.overwrite:
        raise JaxstyleError("--resume skips the outputs an earlier run wrote and --overwrite redoes them: give one")
    read = {"style image": csv_names(args.style), "weights file": [weights_file(args.weights, settings)]}
    if settings.init not in INITS:
        read["init image"] = [settings.init]
    sources = {a: (label, path) for label, paths in read.items() for path in paths if path for a in aliases(path)}
    sources |= {a: ("photo", path) for path in photos for a in aliases(path)}
    for path in photos:
        out = out_dir / names[path]
        clash = next((sources[a] for a in aliases(out) if a in sources), None)
        if clash is not None:
            raise JaxstyleError(
                f"{out}: the output of {path} would overwrite the {clash[0]} {clash[1]}; use another -o"
            )
    check_writable(out_dir / names[photos[0]])
    done = [path for path in photos if (out_dir / names[path]).exists()]
    if done and not (args.resume or args.overwrite):
        shown = ", ".join(names[p] for p in done[:3]) + (", ..." if len(done) > 3 else "")
        raise JaxstyleError(
            f"{out_dir}: holds {len(done)} output(s) of an earlier run ({shown}); pass --resume to skip them, "
            "or --overwrite to redo them"
        )
    return done if args.resume else []


def photo_metadata(args, settings, execution, photo: Photo, out: Path, output: PartOutput) -> dict:
    """What a photo's PNG holds: the metadata ``jaxstyle stylize`` writes, its command reproducing this
    photo's single run, and the seconds of its part shared out over the part's photos."""
    from jaxstyle import __version__
    from jaxstyle.cli.stylize import sha256_of

    styles = list(csv_names(args.style))
    return {
        "jaxstyle_version": __version__,
        "settings": settings.to_dict(),
        "content": str(photo.path),
        "style": args.style,
        "content_sha256": sha256_of(str(photo.path)),
        "style_sha256": [sha256_of(style) for style in styles] if len(styles) > 1 else sha256_of(args.style),
        "scales": [{"size": list(size), "steps": steps} for size, steps in output.stages],
        "weights": {"file": str(output.weights_file), **output.weights_info},
        "final_losses": output.final_losses[photo],
        "seconds": round(output.seconds / len(output.part.photos), 3),
        "compute_dtype": execution.compute_dtype or execution.dtype,
        "execution": execution.to_dict(),
        "command": command_line(settings, str(photo.path), args.style, str(out), args.weights, execution, args.preset),
        "batch": {"inputs": args.inputs, "shard": args.shard, "photos_in_micro_batch": len(output.part.photos)},
    }


def failure_line(failure: Failure) -> str:
    """``jaxstyle: batch: PATH: why`` (the path once, whether or not the reason names it)."""
    text = failure.error if failure.error.startswith(str(failure.path)) else f"{failure.path}: {failure.error}"
    return f"jaxstyle: batch: {text}"


def write_sheet(path: Path, thumbs: dict[int, tuple[str, np.ndarray]]) -> None:
    """The contact sheet: the sample's thumbnails in a square grid, each captioned with its output's name."""
    import math

    from jaxstyle.files import atomic_output
    from jaxstyle.report import draw_sheet, thumbnail

    keys = sorted(thumbs)
    width = math.ceil(math.sqrt(len(keys)))
    cells = {k: divmod(i, width) for i, k in enumerate(keys)}
    images = {k: thumbnail(thumbs[k][1], THUMBNAIL) for k in keys}
    captions = {k: (thumbs[k][0], (90, 90, 90)) for k in keys}
    rows = math.ceil(len(keys) / width)
    sheet, _ = draw_sheet(images, cells, [""] * rows, [""] * width, captions)
    with atomic_output(path) as tmp:
        sheet.save(tmp, format="PNG")


@dataclass
class Tally:
    """What the run has done so far: each output written, each failure (logged at once by process 0),
    and the thumbnails of the contact sheet's sample (``sample``: path -> its place in the run)."""

    sample: dict[Path, int]
    main_process: bool
    done: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    thumbs: dict[int, tuple[str, np.ndarray]] = field(default_factory=dict)

    def failed(self, failure: Failure) -> None:
        self.failures.append(failure)
        if self.main_process:
            print(failure_line(failure), file=sys.stderr, flush=True)

    def wrote(self, photo: Photo, rgb: np.ndarray) -> None:
        self.done[str(photo.path)] = photo.name
        if photo.path in self.sample:
            self.thumbs[self.sample[photo.path]] = (photo.name, rgb)


def sizes_of(parts: Sequence) -> list[dict]:
    """Each output size's photos, micro-batches and largest micro-batch, for the summary."""
    sizes: dict[tuple[int, int], dict] = {}
    for part in parts:
        entry = sizes.setdefault(part.size, {"size": list(part.size), "photos": 0, "micro_batches": 0})
        entry["photos"] += len(part.photos)
        entry["micro_batches"] += 1
        entry["batch_size"] = max(entry.get("batch_size", 0), len(part.photos))
    return list(sizes.values())


def run(args: argparse.Namespace, stop: Callable[[], int | None]) -> int:
    """Stylize every photo, writing each output as its part finishes; then the failures, the summary and
    the contact sheet. Exit status 0, or :data:`EXIT_SOME_FAILED` where some photos failed."""
    start_distributed(args)
    import jax

    from jaxstyle import photos
    from jaxstyle.kept import Output, places, write_or_keep

    shard = photos.parse_shard(args.shard) if args.shard is not None else None
    settings, execution = settings_from_args(args), execution_from_args(args)
    everything = photos.list_inputs(args.inputs)
    names = photos.output_names(everything)  # over every shard's photos: the shards name them alike
    mine = photos.shard(everything, *shard) if shard else everything
    if not mine:
        raise JaxstyleError(f"--shard {args.shard}: the part is empty ({len(everything)} photo(s) in {shard[1]} parts)")
    out_dir, skipped, checkpoints = check_files(args, settings, mine, names)

    # The parts are cut from every photo of the shard, done or not, so that a resumed run cuts the same
    # ones; a part whose outputs all exist is skipped, one with some missing runs whole (and writes those).
    tally = Tally({}, jax.process_index() == 0)
    parts, _ = photos.plan_parts(mine, names, settings, execution, jax.device_count(), on_failure=tally.failed)
    parts = [part for part in parts if any(photo.path not in skipped for photo in part.photos)]
    todo = [photo.path for part in parts for photo in part.photos if photo.path not in skipped]
    tally.sample = {path: todo.index(path) for path in todo[:: max(1, len(todo) // SAMPLE)][:SAMPLE]}
    start = time.perf_counter()
    with progress_reporter(args, "batch", tally.main_process) as progress:
        if tally.main_process and not args.quiet:
            sizes = len({part.size for part in parts})
            progress.write(
                f"batch: {len(todo)} photo(s) in {len(parts)} micro-batch(es) of {sizes} size(s), "
                f"{len(skipped)} done before"
            )
        outputs = photos.run_parts(
            parts,
            list(csv_names(args.style)),
            settings,
            weights=args.weights,
            execution=execution,
            checkpoints=checkpoints,
            progress=progress,
            stop_signal=stop,
        )
        for output in outputs:
            for failure in output.failures:
                tally.failed(failure)
            for photo, rgb in output.images.items():
                if photo.path in skipped:
                    continue
                if tally.main_process:
                    out = out_dir / photo.name
                    image = Output.image(
                        out, rgb, photo_metadata(args, settings, execution, photo, out, output), execution.bit_depth
                    )
                    # A failed write (a full disk) keeps the photo for `jaxstyle write` and stops the batch in
                    # one line; its micro-batch's checkpoint stays, so --resume then goes on with no step redone.
                    write_or_keep([image], "batch", out.name, places(out_dir, checkpoints.directory))
                tally.wrote(photo, rgb)
    seconds = time.perf_counter() - start
    if tally.main_process:
        report(args, out_dir, shard, len(mine), len(skipped), sizes_of(parts), tally, seconds)
    remove_empty(checkpoints.directory)
    return EXIT_SOME_FAILED if tally.failures else 0


def check_files(
    args: argparse.Namespace, settings, photos: Sequence[Path], names: dict[Path, str]
) -> tuple[Path, set[Path], CheckpointOptions]:
    """Before any photo: the output folder and every output checked (:func:`check_outputs`; the photos
    done before, to skip), the checkpoint folder (default: inside the output folder), and what every
    part reads: the style images, the init image, the weights."""
    from jaxstyle.files import make_directory
    from jaxstyle.pipeline import as_rgb, load_weights, read_init

    out_dir = make_directory(args.output)
    skipped = set(check_outputs(args, settings, photos, names, out_dir))
    if args.checkpoint_dir is None:
        args.checkpoint_dir = str(out_dir / CHECKPOINT_FOLDER)
    checkpoints = checkpoint_options(args)
    for style in csv_names(args.style):
        as_rgb(style)
    read_init(settings)
    load_weights(settings, args.weights)
    return out_dir, skipped, checkpoints


def report(
    args: argparse.Namespace,
    out_dir: Path,
    shard: tuple[int, int] | None,
    photos: int,
    skipped: int,
    sizes: list[dict],
    tally: Tally,
    seconds: float,
) -> None:
    """Write the failures, the contact sheet and the summary (:func:`own_files`); print the last line."""
    import jax

    from jaxstyle import __version__
    from jaxstyle.files import write_json

    failures_file, summary_file, sheet_file = own_files(shard)
    failed = [{"input": str(f.path), "error": f.error} for f in tally.failures]
    write_json(out_dir / failures_file, {"failures": failed, "count": len(failed)})
    if tally.thumbs:
        write_sheet(out_dir / sheet_file, tally.thumbs)
    done = len(tally.done)
    per_photo = seconds / done if done else None
    summary = {
        "jaxstyle_version": __version__,
        "settings": settings_from_args(args).to_dict(),
        "execution": execution_from_args(args).to_dict(),
        "inputs": args.inputs,
        "style": args.style,
        "shard": list(shard) if shard else None,
        "photos": photos,
        "done": done,
        "failed": len(failed),
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "seconds_per_photo": per_photo,
        "photos_per_hour": 3600 / per_photo if per_photo else None,
        "sizes": sizes,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "outputs": tally.done,
        "failures_file": failures_file,
        "contact_sheet": sheet_file if tally.thumbs else None,
    }
    write_json(out_dir / summary_file, summary)
    if not args.quiet:
        rate = f", {per_photo:.2f} s per photo" if per_photo else ""
        print(
            f"wrote {done} photo(s) to {out_dir} ({len(failed)} failed, {skipped} skipped) in {seconds:.1f} s{rate} "
            f"on {jax.device_count()} device(s), {jax.process_count()} process(es)"
        )


def remove_empty(directory: Path) -> None:
    """Remove the checkpoint folder once no part's checkpoint is left in it."""
    with contextlib.suppress(OSError):  # not empty (a part of another shard still running), or gone
        directory.rmdir()
