"""The ``jaxstyle`` command: a thin shell over :mod:`jaxstyle.api` and :mod:`jaxstyle.weights`.

Every default lives in :class:`jaxstyle.config.Settings`; options here default to
``None``, meaning "the preset's value".
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from jaxstyle.errors import JaxstyleError
from jaxstyle.files import file_digests

if TYPE_CHECKING:
    from jaxstyle.plan import RunPlan


def csv_floats(text: str) -> tuple[float, ...]:
    """``"1,0.5"`` -> ``(1.0, 0.5)``; ``ValueError`` unless every part is a number."""
    return tuple(float(part) for part in text.split(","))


def csv_names(text: str) -> tuple[str, ...]:
    """``"relu1_1,relu2_1"`` -> ``("relu1_1", "relu2_1")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def csv_ints(text: str) -> tuple[int, ...]:
    """``"1000,500"`` -> ``(1000, 500)``; ``ValueError`` unless every part is a whole number."""
    return tuple(int(part) for part in text.split(","))


def height_by_width(text: str) -> tuple[int, int]:
    """``"300x450"`` -> ``(300, 450)``, each side checked (a :class:`JaxstyleError` if not)."""
    from jaxstyle.image import parse_size

    return parse_size(text)


class TextForm(NamedTuple):
    """How a setting of one type is written on the command line.

    Attributes:
      parse: text -> value; raises ``ValueError`` (or a :class:`JaxstyleError`) on bad text.
      write: value -> text that ``parse`` reads back as the same value.
      expected: what ``parse`` accepts, for error messages.
      metavar: the option's placeholder in ``--help`` (``None``: argparse's).
    """

    parse: Callable[[str], Any]
    write: Callable[[Any], str]
    expected: str
    metavar: str | None = None


# One entry per type a Settings field may have (``| None`` aside); bool fields are
# flags (``--warm-start`` / ``--no-warm-start``) instead.
TEXT_FORMS: dict[Any, TextForm] = {
    float: TextForm(float, repr, "a number"),
    int: TextForm(int, str, "a whole number"),
    str: TextForm(str, str, "text"),
    tuple[float, ...]: TextForm(csv_floats, lambda v: ",".join(map(repr, v)), "comma-separated numbers", "X,..."),
    tuple[int, ...]: TextForm(csv_ints, lambda v: ",".join(map(str, v)), "comma-separated whole numbers", "N,..."),
    tuple[str, ...]: TextForm(csv_names, ",".join, "comma-separated names", "NAME,..."),
    tuple[int, int]: TextForm(height_by_width, lambda v: f"{v[0]}x{v[1]}", "HEIGHTxWIDTH, e.g. 300x450", "HxW"),
}


def swept_form(field: str) -> TextForm:
    """How a swept setting's list of values is written: numbers, or names (``--style-loss gram,w2``)."""
    from jaxstyle.config import value_type

    return TEXT_FORMS[tuple[value_type(field), ...]]


def option_name(field: str) -> str:
    """``style_weight`` -> ``--style-weight``."""
    return "--" + field.replace("_", "-")


def parse_text(form: TextForm, option: str, text: str) -> Any:
    """``text`` read by ``form``, or a one-line :class:`JaxstyleError` naming the option."""
    try:
        return form.parse(text)
    except ValueError:
        raise JaxstyleError(f"{option} {text!r}: expected {form.expected}") from None


def option_help(field: str, swept_lists: bool) -> str:
    """The field's help text, with what giving it resets and, in sweeps, that lists are swept."""
    from jaxstyle.config import DEPENDENTS, info

    text = info(field).doc
    if DEPENDENTS[field]:
        text += f" (giving it resets {', '.join(map(option_name, DEPENDENTS[field]))} unless given too)"
    if swept_lists and info(field).swept:
        text += " (comma-separated values are swept)"
    return text


def option_spec(field: str, swept_lists: bool) -> dict[str, Any]:
    """The ``add_argument`` keywords of a field's option, from its type and metadata.

    Values stay text here and are read by :func:`settings_from_args`, so that bad values
    are one-line errors like every other bad input.
    """
    from jaxstyle.config import info, value_type

    spec: dict[str, Any] = {"dest": field, "help": option_help(field, swept_lists)}
    kind, choices = value_type(field), info(field).choices
    if kind is bool:
        spec["action"] = argparse.BooleanOptionalAction
    elif swept_lists and info(field).swept:
        spec["metavar"] = "{" + ",".join(choices) + "},..." if choices else swept_form(field).metavar
    elif swept_lists and field == "style_blend":
        spec["action"], spec["metavar"] = "append", TEXT_FORMS[kind].metavar
        spec["help"] = "weights of a blend of all style images; repeat to sweep blends"
    else:
        spec["metavar"] = "{" + ",".join(choices) + "}" if choices else TEXT_FORMS[kind].metavar
    return spec


def add_settings_options(p: argparse.ArgumentParser, swept_lists: bool = False) -> None:
    """One option per command-line field of :class:`~jaxstyle.config.Settings` (default: the preset's).

    With ``swept_lists``, the swept settings (loss weights, learning rate, EMA decay)
    take comma-separated lists (the sweep's axes), and ``--style-blend`` may be repeated
    (each blend is one style target).
    """
    from jaxstyle.config import PRESETS, info, option_fields

    g = p.add_argument_group("recipe (defaults: the preset's; `jaxstyle presets` lists them)")
    g.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="recipe to start from")
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for field in option_fields():
        group = info(field).group
        if group is not None and group not in exclusive:
            exclusive[group] = g.add_mutually_exclusive_group()
        (g if group is None else exclusive[group]).add_argument(option_name(field), **option_spec(field, swept_lists))
    g.add_argument(
        "--compute-dtype",
        choices=("bfloat16",),
        help="run the convolutions in bfloat16 (Gram matrices and losses stay float32)",
    )


def option_value(args: argparse.Namespace, field: str) -> Any:
    """The value given for ``field`` on the command line, read by its type's form (``None``: not given)."""
    from jaxstyle.config import value_type

    given = getattr(args, field)
    if given is None or isinstance(given, bool):
        return given
    return parse_text(TEXT_FORMS[value_type(field)], option_name(field), given)


def settings_from_args(args: argparse.Namespace, swept_lists: bool = False):
    """Resolve the preset with the options given on the command line.

    With ``swept_lists`` the swept values (and style blends) are lists, read by
    :func:`swept_values` and :func:`style_blends`; the shared settings then keep the
    preset's values for them.
    """
    from jaxstyle.config import SWEPT_FIELDS, option_fields, resolve

    skipped = (*SWEPT_FIELDS, "style_blend") if swept_lists else ()
    values = {field: option_value(args, field) for field in option_fields() if field not in skipped}
    return resolve(args.preset, **values)


def swept_values(args: argparse.Namespace, settings) -> dict[str, tuple[float, ...]]:
    """Each swept setting's values: the option's comma-separated list, else the settings' one value."""
    from jaxstyle.config import SWEPT_FIELDS

    values = {}
    for field in SWEPT_FIELDS:
        given = getattr(args, field)
        form = swept_form(field)
        values[field] = parse_text(form, option_name(field), given) if given else (getattr(settings, field),)
    return values


def style_blends(args: argparse.Namespace) -> list[tuple[float, ...]] | None:
    """The sweep's ``--style-blend`` options, each a tuple of weights (``None``: none given)."""
    form = TEXT_FORMS[tuple[float, ...]]
    return [parse_text(form, "--style-blend", text) for text in args.style_blend] if args.style_blend else None


def command_line(
    settings,
    content: str,
    style: str,
    out: str,
    weights: str | None,
    compute_dtype: str | None = None,
    preset: str = "paper",
) -> str:
    """A command that reproduces ``settings`` with every value that is set explicit.

    Unset (``None``) values cannot be written; each is reset by an option that is
    written (e.g. ``max_side`` by ``--size``), so the command resolves to ``settings``
    as long as ``preset`` has the settings' ``convention``.
    """
    from jaxstyle.config import option_fields, value_type

    parts = ["jaxstyle", "stylize", content, style, "-o", out, "--preset", preset]
    for field in option_fields():
        value = getattr(settings, field)
        if isinstance(value, bool):
            parts.append(option_name(field) if value else option_name(field).replace("--", "--no-", 1))
        elif value is not None:
            parts += [option_name(field), TEXT_FORMS[value_type(field)].write(value)]
    if weights:
        parts += ["--weights", weights]
    if compute_dtype:
        parts += ["--compute-dtype", compute_dtype]
    return shlex.join(parts)


def sha256_of(path: str) -> str | None:
    """SHA-256 of a file, or ``None`` for an in-memory input."""
    try:
        return file_digests(path)[0]
    except OSError:
        return None


def weights_file(given: str | None, settings) -> str | None:
    """The weights file a run reads: the one given, else the first on the search path (``None``: none found)."""
    if given:
        return given
    from jaxstyle.weights import find

    try:
        return str(find(settings.network, settings.convention))
    except JaxstyleError:  # the run itself says how to get weights
        return None


def run_files(args: argparse.Namespace, settings, contents: Sequence[str], styles: Sequence[str]):
    """A :class:`~jaxstyle.files.RunFiles` holding every file a run reads: images, init image, weights, grid."""
    from jaxstyle.config import INITS
    from jaxstyle.files import RunFiles

    files = RunFiles()
    for content in contents:
        files.add_input("content image", content)
    for style in styles:
        files.add_input("style image", style)
    if settings.init not in INITS:
        files.add_input("init image", settings.init)
    files.add_input("weights file", weights_file(args.weights, settings))
    files.add_input("grid file", getattr(args, "grid", None))
    return files


def stylize_files(args: argparse.Namespace, settings) -> tuple[Path, Path | None, str]:
    """Check every file ``stylize`` writes, before any work: ``(output, trace, snapshot name pattern)``.

    Each is writable, none is an input or another output, and no input or output has
    a name a snapshot takes (``OUT.stepNNNNNN.png``).
    """
    from jaxstyle.image import check_output_path

    files = run_files(args, settings, [args.content], csv_names(args.style))
    out = files.add_output("-o", check_output_path(args.output))
    trace = files.add_output("--trace", args.trace) if args.trace else None
    snapshot_name = str(out.with_name(f"{out.stem}.step{{:06d}}{out.suffix}"))
    if args.save_every is not None:
        pattern = re.escape(out.stem) + r"\.step\d{6,}" + re.escape(out.suffix)
        # 12 scales of 10^6 steps: global step numbers have at most 8 digits.
        files.add_family("--save-every snapshots", out.parent, pattern, Path(snapshot_name.format(10**8 - 1)).name)
    return out, trace, snapshot_name


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


def run_options(p: argparse.ArgumentParser) -> None:
    """Options of a long run: progress reporting, checkpoints, resume."""
    from jaxstyle.progress import MODES

    g = p.add_argument_group("long runs (see README, 'Running on clusters')")
    g.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="a bar on a terminal, else a line every --progress-interval seconds (log), JSON lines (json), or none",
    )
    g.add_argument("--progress-interval", type=float, default=30.0, help="seconds between progress lines (log, json)")
    g.add_argument("--checkpoint-dir", help="save the run's state here at chunk boundaries, and at once on SIGTERM")
    g.add_argument("--checkpoint-every", type=int, help="save at least every N steps (default: by time only)")
    g.add_argument("--checkpoint-minutes", type=float, default=10.0, help="save at least every M minutes")
    g.add_argument("--resume", action="store_true", help="go on from the newest checkpoint in --checkpoint-dir")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary line (--progress none)")


def checkpoint_options(args: argparse.Namespace):
    """The run's :class:`~jaxstyle.checkpoint.CheckpointOptions`, or ``None`` without ``--checkpoint-dir``."""
    from jaxstyle.checkpoint import CheckpointOptions

    if args.checkpoint_dir is None:
        if args.resume or args.checkpoint_every is not None:
            raise JaxstyleError("--resume and --checkpoint-every need a --checkpoint-dir")
        return None
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise JaxstyleError(f"--checkpoint-every must be at least 1, not {args.checkpoint_every}")
    if not (math.isfinite(args.checkpoint_minutes) and args.checkpoint_minutes > 0):
        raise JaxstyleError(f"--checkpoint-minutes must be a finite number > 0, not {args.checkpoint_minutes}")
    from jaxstyle.files import check_writable, make_directory

    directory = make_directory(args.checkpoint_dir)  # checked before any work, like every output
    check_writable(directory / "checkpoint")
    return CheckpointOptions(directory, args.checkpoint_every, args.checkpoint_minutes, args.resume)


def progress_reporter(args: argparse.Namespace, label: str, main_process: bool = True):
    """The :class:`~jaxstyle.progress.Progress` the options ask for (only process 0 reports)."""
    from jaxstyle.progress import Progress

    if not (math.isfinite(args.progress_interval) and args.progress_interval >= 0):
        raise JaxstyleError(f"--progress-interval must be a finite number >= 0, not {args.progress_interval}")
    mode = "none" if args.quiet or not main_process else args.progress
    return Progress(label, mode, args.progress_interval)


def plan_memory_line(plan: RunPlan) -> str | None:
    """The plan's memory line where it changes how the step runs (a remat mode, a split image); else None.

    A small image on one device needs no word about memory, and stays out of a log that
    would otherwise hold only progress, or only a one-line error.
    """
    return plan.memory_reason if plan.remat != "none" or plan.spatial_shards > 1 else None


def aspect_note(content_hw: tuple[int, int], settings) -> str:
    """What the output line adds where an explicit ``--size`` changes the content's aspect beyond a
    rounding pixel, `` (--size 300x450 changes the content's width:height 1:2 to 3:2)``; else nothing.

    No preset gives a size (each keeps the content's aspect), so a size was given.
    """
    from jaxstyle.image import aspect_text, keeps_aspect

    if settings.size is None or keeps_aspect(content_hw, settings.size):
        return ""
    h, w = settings.size
    return f" (--size {h}x{w} changes the content's width:height {aspect_text(*content_hw)} to {aspect_text(h, w)})"


def cmd_stylize(args: argparse.Namespace, stop: Callable[[], int | None]) -> int:
    from jaxstyle import __version__
    from jaxstyle.api import optimize, prepare
    from jaxstyle.files import write_json
    from jaxstyle.image import save_image

    settings = settings_from_args(args)
    out, trace_path, snapshot_name = stylize_files(args, settings)
    checkpoint = checkpoint_options(args)
    if args.save_every is not None and args.save_every < 1:
        raise JaxstyleError(f"--save-every must be at least 1, not {args.save_every}")
    styles = list(csv_names(args.style))
    problem = prepare(args.content, styles, settings=settings, weights=args.weights, compute_dtype=args.compute_dtype)
    memory_line = plan_memory_line(problem.job.plan)
    if memory_line and not args.quiet:
        print(f"stylize: {memory_line}", file=sys.stderr)

    def snapshot(step: int, rgb) -> None:
        save_image(snapshot_name.format(step), rgb)

    with progress_reporter(args, "stylize") as progress:
        result = optimize(
            problem,
            progress=progress,
            save_every=args.save_every,
            on_snapshot=snapshot,
            checkpoint=checkpoint,
            stop_signal=stop,
        )
    final = result.final_losses
    metadata = {
        "jaxstyle_version": __version__,
        "settings": settings.to_dict(),
        "content": args.content,
        "style": args.style,
        "content_sha256": sha256_of(args.content),
        "style_sha256": [sha256_of(style) for style in styles] if len(styles) > 1 else sha256_of(args.style),
        "scales": [{"size": list(stage.size), "steps": stage.steps} for stage in result.stages],
        "weights": {"file": str(result.weights_file), **result.weights_info},
        "final_losses": final,
        "seconds": round(result.seconds, 3),
        "compute_dtype": args.compute_dtype or "float32",
        "command": command_line(
            settings, args.content, args.style, str(out), args.weights, args.compute_dtype, args.preset
        ),
    }
    save_image(out, result.image, metadata)
    if trace_path:
        write_json(
            trace_path,
            {
                "settings": settings.to_dict(),
                "seconds": result.seconds,
                **{k: v.tolist() for k, v in result.trace.items()},
                "final": final,
            },
        )
    if not args.quiet:
        h, w = result.image.shape[:2]
        print(
            f"wrote {out} ({h}x{w}, {sum(s.steps for s in result.stages)} steps in {result.seconds:.1f} s, "
            f"final loss {final['total']:.5g}){aspect_note(problem.job.inputs.contents[0].shape[:2], settings)}"
        )
    return 0


def cmd_sweep(args: argparse.Namespace, stop: Callable[[], int | None]) -> int:
    import jax

    from jaxstyle import mesh as meshlib
    from jaxstyle.config import SWEPT_FIELDS, check_swept_values

    if args.distributed or args.coordinator is not None or args.num_processes is not None:
        meshlib.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    from jaxstyle.report import write_outputs
    from jaxstyle.sweep import grid_product, read_grid, sweep

    contents, styles = list(csv_names(args.content)), list(csv_names(args.style))
    settings = settings_from_args(args, swept_lists=True)
    blends = style_blends(args)
    if args.grid:
        if any(getattr(args, field) for field in SWEPT_FIELDS):
            raise JaxstyleError("give the swept values either as options or in --grid, not both")
        if blends:
            raise JaxstyleError("style blends cannot be combined with --grid")
        points = read_grid(args.grid, settings, contents, styles)
    else:
        points = grid_product(len(contents), len(blends or styles), **swept_values(args, settings))
    check_swept_values(settings, {field: [getattr(p, field) for p in points] for field in SWEPT_FIELDS})
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
            batch_size=args.batch_size,
            compute_dtype=args.compute_dtype,
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


def cmd_video(args: argparse.Namespace, stop: Callable[[], int | None]) -> int:
    """``jaxstyle video IN STYLE -o OUT``: a clip stylized with temporal consistency (:mod:`jaxstyle.clips`)."""
    import jax

    from jaxstyle.clips import check_output, read_clip, video

    settings = settings_from_args(args)
    files = run_files(args, settings, [], csv_names(args.style))
    files.add_input("input video", args.input)
    out = check_output(args.output)
    if out.suffix:  # a file; a folder output is new or empty, so no input is in it
        files.add_output("-o", out)
    clip = read_clip(args.input, args.frames, args.fps)
    with progress_reporter(args, "video") as progress:
        result = video(
            clip,
            list(csv_names(args.style)),
            out,
            mode=args.mode,
            passes=args.passes,
            temporal_weight=args.temporal_weight,
            blend_weight=args.blend_weight,
            settings=settings,
            weights=args.weights,
            batch_size=args.batch_size,
            progress=progress,
            compute_dtype=args.compute_dtype,
        )
    if not args.quiet:
        n, h, w = result.frames.shape[:3]
        devices = 1 if args.mode == "sequential" else len(jax.devices())
        print(
            f"wrote {out} ({n} frames, {h}x{w}, {result.fps:g} fps; {args.mode} on {devices} device(s), "
            f"{result.seconds:.1f} s, flow {result.flow_seconds:.1f} s){aspect_note(clip.frames.shape[1:3], settings)}"
        )
    return 0


def cmd_weights_convert(args: argparse.Namespace) -> int:
    from jaxstyle.weights import convert

    dst = convert(
        Path(args.src), Path(args.output) if args.output else None, convention=args.convention, network=args.network
    )
    print(f"wrote {dst}")
    return 0


def cmd_weights_info(args: argparse.Namespace) -> int:
    from jaxstyle.weights import read_converted

    loaded = read_converted(Path(args.file))
    for key in sorted(loaded.attrs):
        print(f"{key}: {loaded.attrs[key]}")
    n = sum(k.size + b.size for k, b in loaded.convs.values())
    print(f"layers: {len(loaded.convs)} convolutions, {n:,} parameters")
    return 0


def cmd_weights_download(args: argparse.Namespace) -> int:
    from jaxstyle.weights import download

    dst = download(
        args.source,
        Path(args.output) if args.output else None,
        url=args.url,
        timeout=args.timeout,
        progress=not args.quiet,
        network=args.network,
    )
    print(f"wrote {dst}")
    return 0


def table_value(field: str, value) -> str:
    """A setting's value for the presets table: ``300x450``, ``0.7507,0.1877``, ``-`` for unset."""
    from jaxstyle.config import value_type

    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value_type(field) == tuple[float, ...]:
        return ",".join(f"{v:.4g}" for v in value)
    return str(value) if isinstance(value, bool) else TEXT_FORMS[value_type(field)].write(value)


def cmd_presets(args: argparse.Namespace) -> int:
    """A table: one row per setting, one column per preset."""
    from jaxstyle.config import FIELD_NAMES, PRESETS

    names = [args.preset] if args.preset else list(PRESETS)
    rows = {field: [table_value(field, getattr(PRESETS[name], field)) for name in names] for field in FIELD_NAMES}
    widths = [max(len(name), *(len(values[i]) for values in rows.values())) for i, name in enumerate(names)]
    first = max(len(field) for field in rows)
    for label, values in [("setting", names), *rows.items()]:
        print(" ".join([label.ljust(first), *(v.ljust(w) for v, w in zip(values, widths, strict=True))]).rstrip())
    return 0


class SourceNames(Sequence[str]):
    """The published weights' names, read from :mod:`jaxstyle.weights` (which imports JAX)
    only when argparse checks a ``--source`` or prints ``weights download --help``."""

    def names(self) -> tuple[str, ...]:
        from jaxstyle.weights import source_names

        return source_names()

    def __getitem__(self, index):
        return self.names()[index]

    def __len__(self) -> int:
        return len(self.names())


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line like every other bad input (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"jaxstyle: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from jaxstyle import __version__
    from jaxstyle.config import CONVENTION_NAMES, PRESETS
    from jaxstyle.nets import NETWORKS

    parser = Parser(prog="jaxstyle", description="Neural style transfer in JAX.")
    parser.add_argument("--version", action="version", version=f"jaxstyle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stylize", help="stylize one content image with one style image")
    p.add_argument("content", help="content image")
    p.add_argument("style", help="style image, or several comma-separated (blended, see --style-blend)")
    p.add_argument("-o", "--output", required=True, help="output image (.png keeps the settings as metadata)")
    p.add_argument("--weights", help="converted weights file (default: search path, see README)")
    p.add_argument("--save-every", type=int, help="write OUT.stepNNNNNN.png every N steps")
    p.add_argument("--trace", help="write per-step losses to this JSON file")
    run_options(p)
    add_settings_options(p)
    p.set_defaults(func=cmd_stylize)

    sw = sub.add_parser("sweep", help="many weight settings in one compiled run, with a contact sheet")
    sw.add_argument("content", help="content image(s), comma-separated (one size: all are resized alike)")
    sw.add_argument("style", help="style image(s), comma-separated (crossed with the settings)")
    sw.add_argument("-o", "--output", required=True, help="output directory")
    sw.add_argument("--grid", help="settings from a JSON list or a TOML file of [[setting]] tables")
    sw.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier sweep's outputs in the output directory (otherwise refused)",
    )
    sw.add_argument("--weights", help="converted weights file (default: search path, see README)")
    sw.add_argument("--batch-size", type=int, help="settings per compiled micro-batch (default: from memory)")
    run_options(sw)
    dist = sw.add_argument_group("several hosts (see README)")
    dist.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run configured by the cluster's environment (SLURM, TPU pods)",
    )
    dist.add_argument("--coordinator", help="HOST:PORT of process 0")
    dist.add_argument("--num-processes", type=int)
    dist.add_argument("--process-id", type=int)
    add_settings_options(sw, swept_lists=True)
    sw.set_defaults(func=cmd_sweep)

    v = sub.add_parser("video", help="stylize a video with temporal consistency (Ruder et al. 2016)")
    v.add_argument("input", help="video file (mp4, webm, gif, mov, mkv) or a folder of frames")
    v.add_argument("style", help="style image, or several comma-separated (blended, see --style-blend)")
    v.add_argument("-o", "--output", required=True, help="video file (frame rate and audio kept) or a new folder")
    v.add_argument("--weights", help="converted weights file (default: search path, see README)")
    vg = v.add_argument_group("video")
    vg.add_argument(
        "--mode",
        choices=("sequential", "multipass"),
        default="sequential",
        help="frame after frame on one device, or all frames as one batch over all devices, pass after pass",
    )
    vg.add_argument("--passes", type=int, default=6, help="multipass: passes over the clip (default 6)")
    vg.add_argument(
        "--temporal-weight", type=float, help="weight of the temporal loss (default: 200 x the content weight)"
    )
    vg.add_argument(
        "--blend-weight", type=float, default=1.0, help="multipass: weight of the warped neighbour in each start"
    )
    vg.add_argument("--frames", metavar="START:END", help="the frames to take (END excluded; either may be left out)")
    vg.add_argument("--fps", type=float, help="frame rate of a folder of frames (default 24), or to override a file's")
    vg.add_argument("--batch-size", type=int, help="multipass: frames per compiled micro-batch (default: from memory)")
    vp = v.add_argument_group("progress")
    from jaxstyle.progress import MODES

    vp.add_argument("--progress", choices=MODES, default="auto", help="as for stylize")
    vp.add_argument("--progress-interval", type=float, default=30.0, help="seconds between progress lines")
    vp.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary line")
    add_settings_options(v)
    v.set_defaults(func=cmd_video)

    w = sub.add_parser("weights", help="download, convert and inspect VGG weights")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    c = wsub.add_parser("convert", help="convert a published weights file (.pth, .safetensors, Keras .h5)")
    c.add_argument("src")
    c.add_argument("-o", "--output", help="converted file (default: the user cache)")
    c.add_argument(
        "--convention",
        choices=CONVENTION_NAMES,
        help="input convention, needed for files that match no published hash",
    )
    c.add_argument("--network", choices=tuple(NETWORKS), help="the network the file holds (default: vgg19)")
    c.set_defaults(func=cmd_weights_convert)
    i = wsub.add_parser("info", help="show a converted weights file's provenance")
    i.add_argument("file")
    i.set_defaults(func=cmd_weights_info)
    d = wsub.add_parser("download", help="download, verify and convert published weights")
    d.add_argument(
        "--source", default="torchvision", choices=SourceNames(), metavar="SOURCE", help="one of %(choices)s"
    )
    d.add_argument("--network", default="vgg19", choices=tuple(NETWORKS), help="default vgg19")
    d.add_argument("-o", "--output", help="converted file (default: the user cache)")
    d.add_argument("--url", help="a mirror serving the same file")
    d.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the server")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_weights_download)

    pr = sub.add_parser("presets", help="list the presets with their full settings")
    pr.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="show only this preset")
    pr.set_defaults(func=cmd_presets)
    return parser


COMPILE_CACHE_ENV = "JAXSTYLE_COMPILE_CACHE"


def use_compile_cache() -> None:
    """Keep compiled programs between runs: JAX's persistent compilation cache in
    ``$JAXSTYLE_COMPILE_CACHE`` (default ``~/.cache/jaxstyle/xla``; ``off`` turns it off).

    A second run of the same recipe at the same size loads its programs instead of
    compiling them (XLA's own autotuning results are cached with them where JAX does
    so). A cached program is the program XLA compiled: results are unchanged. JAX's own
    ``JAX_COMPILATION_CACHE_DIR``, where set, is left in charge.
    """
    import jax

    from jaxstyle.weights import cache_dir

    choice = os.environ.get(COMPILE_CACHE_ENV, "")
    if choice.lower() == "off" or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", choice or str(cache_dir() / "xla"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command; a :class:`JaxstyleError` becomes one line and exit status 2.

    SIGINT and SIGTERM during a run stop it at the next chunk boundary, after saving a
    checkpoint where a directory is set (:mod:`jaxstyle.signals` gives the exit statuses);
    a second SIGINT stops at once. Nothing half-written is left behind either way.
    """
    from jaxstyle.signals import StopRequests, exit_status

    try:
        args = build_parser().parse_args(argv)
        runs = args.func in (cmd_stylize, cmd_sweep, cmd_video)
        with StopRequests() as stop:
            if runs:  # it imports JAX: inside, so that a Ctrl-C meanwhile is one of the run's stop requests
                use_compile_cache()
            status = args.func(args, stop) if runs else args.func(args)
        if stop() is not None:  # the signal came after the last chunk: the outputs are complete
            print(f"jaxstyle: interrupted ({signal_name(stop())}) after writing the outputs", file=sys.stderr)
            return exit_status(stop(), saved=True)
        return status
    except JaxstyleError as e:
        print(f"jaxstyle: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # A second Ctrl-C, or one before the run started. XLA may still be computing in
        # its own threads, which tearing the interpreter down under them would crash:
        # leave at once (temporary files were removed as the exception passed).
        print("jaxstyle: interrupted", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    except BrokenPipeError:  # e.g. `jaxstyle presets | head`
        sys.stderr.close()
        return 141
    except MemoryError:
        print("jaxstyle: out of host memory; try a smaller --size or --max-side, or a --batch-size", file=sys.stderr)
        return 2
    except Exception as e:
        from jaxstyle.pipeline import Stopped

        if not isinstance(e, Stopped):
            raise
        saved = f"; its state is saved in {e.checkpoint}: run the same command with --resume to go on"
        print(
            f"jaxstyle: stopped by {signal_name(e.signum)} after step {e.step}{saved if e.checkpoint else ''}",
            file=sys.stderr,
        )
        return exit_status(e.signum, saved=e.checkpoint is not None)


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``."""
    import signal

    return signal.Signals(signum).name


if __name__ == "__main__":
    sys.exit(main())
