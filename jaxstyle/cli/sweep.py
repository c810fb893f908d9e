"""``jaxstyle sweep CONTENTS STYLES -o DIR``: many settings in one compiled run, with a contact
sheet (:mod:`jaxstyle.sweep`, :mod:`jaxstyle.report`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from jaxstyle.cli.jobs import aspect_note, run_files
from jaxstyle.cli.options import (
    add_checkpoint_options,
    add_execution_options,
    add_output_option,
    add_progress_options,
    add_settings_options,
    add_weights_option,
    checkpoint_options,
    csv_ints,
    csv_names,
    execution_from_args,
    option_name,
    progress_reporter,
    settings_from_args,
    style_blends,
    swept_values,
)
from jaxstyle.errors import JaxstyleError, SettingError

RUNS_A_JOB = True  # main gives it stop requests (SIGINT, SIGTERM) and the compile cache


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("content", help="content image(s), comma-separated (one size: all are resized alike)")
    p.add_argument("style", help="style image(s), comma-separated (crossed with the settings)")
    add_output_option(p, "output directory")
    p.add_argument("--grid", help="settings from a JSON list or a TOML file of [[setting]] tables")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier sweep's outputs in the output directory (otherwise refused)",
    )
    add_weights_option(p)
    add_progress_options(p)
    add_checkpoint_options(p)
    dist = p.add_argument_group("several hosts (see the docs: guide/sweeps.md)")
    dist.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run configured by the cluster's environment (SLURM, TPU pods)",
    )
    dist.add_argument("--coordinator", help="HOST:PORT of process 0")
    dist.add_argument("--num-processes", type=int)
    dist.add_argument("--process-id", type=int)
    dist.add_argument(
        "--local-device-ids",
        type=csv_ints,
        help="with --coordinator: the local GPUs this process uses, e.g. 0 or 0,1 (one process per GPU); "
        "unset: every local device (one process per host)",
    )
    add_settings_options(p, swept_lists=True)
    add_execution_options(p, "sweep")


def sweep_points(
    args: argparse.Namespace,
    settings,
    contents: Sequence[str],
    styles: Sequence[str],
    blends: list[tuple[float, ...]] | None,
) -> list:
    """The sweep's settings, from ``--grid`` or from the swept options' lists (and ``blends``), each value checked.

    A value refused in a grid file is named by the file and its key there (``style_weight``);
    one given as an option, by the option (``--style-weight``, as :func:`jaxstyle.cli.main` does).
    """
    from jaxstyle.config import SWEPT_FIELDS, check_swept_values
    from jaxstyle.sweep import grid_product, read_grid

    if args.grid:
        if any(getattr(args, field) for field in SWEPT_FIELDS):
            raise JaxstyleError("give the swept values either as options or in --grid, not both")
        if blends:
            raise JaxstyleError("style blends cannot be combined with --grid")
        points = read_grid(args.grid, settings, contents, styles)
    else:
        points = grid_product(len(contents), len(blends or styles), **swept_values(args, settings))
    try:
        check_swept_values(settings, {field: [getattr(p, field) for p in points] for field in SWEPT_FIELDS})
    except SettingError as e:
        if not args.grid:
            raise
        in_grid = e.naming(lambda name: name if name in SWEPT_FIELDS else option_name(name))
        raise JaxstyleError(f"{args.grid}: {in_grid}") from None
    return points


def sweep_files(args: argparse.Namespace, settings, contents: Sequence[str], styles: Sequence[str]) -> Path:
    """Check the sweep's output directory and every file the sweep writes there, before any work.

    The directory is created if missing; one that holds an earlier sweep's outputs is
    refused unless ``--overwrite`` (see :func:`jaxstyle.report.check_output_dir`); no
    input may be one of the sweep's outputs or have a name its images take.
    """
    from jaxstyle.files import make_directory
    from jaxstyle.report import SETTING_FILE, SETTING_NAME_MAX, SWEEP_FILES, check_output_dir

    files = run_files(args, settings, contents, styles)
    out_dir = make_directory(args.output)
    files.add_family("the sweep's images", out_dir, SETTING_FILE, "0" * (SETTING_NAME_MAX - 5) + "_.png")
    for name in SWEEP_FILES:
        files.add_output(name, out_dir / name)
    check_output_dir(out_dir, args.overwrite)
    return out_dir


def run(args: argparse.Namespace, stop: Callable[[], int | None]) -> int:
    """Run the sweep and write its images, summary, contact sheet and loss plot; ``stop``: its stop requests."""
    import jax

    from jaxstyle import mesh as meshlib

    if args.distributed or args.coordinator is not None or args.num_processes is not None or args.local_device_ids:
        ids = None if args.local_device_ids is None else list(args.local_device_ids)
        meshlib.initialize_distributed(args.coordinator, args.num_processes, args.process_id, ids)
    from jaxstyle.report import write_outputs
    from jaxstyle.sweep import sweep

    contents, styles = list(csv_names(args.content)), list(csv_names(args.style))
    settings, execution = settings_from_args(args, swept_lists=True), execution_from_args(args)
    blends = style_blends(args)
    points = sweep_points(args, settings, contents, styles, blends)
    out_dir = sweep_files(args, settings, contents, styles)
    checkpoint = checkpoint_options(args)
    main_process = jax.process_index() == 0
    with progress_reporter(args, "sweep", main_process) as progress:
        result = sweep(
            contents,
            styles,
            points,
            style_blends=blends,
            settings=settings,
            weights=args.weights,
            execution=execution,
            progress=progress,
            on_plan=lambda line: progress.write(f"sweep: {line}"),
            checkpoint=checkpoint,
            stop_signal=stop,
        )
    write_outputs(result, out_dir, jax.process_index(), replace=args.overwrite)
    if main_process and not args.quiet:
        diverged = int((result.diverged_at >= 0).sum())
        print(
            f"wrote {len(points)} settings to {out_dir} ({len(points) - diverged} finished, {diverged} diverged) "
            f"in {result.seconds:.1f} s on {result.device_count} device(s), {result.process_count} process(es)"
            f"{aspect_note(result.content_size, settings)}"
        )
    return 0
