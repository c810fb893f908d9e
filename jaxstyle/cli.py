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


def add_settings_options(p: argparse.ArgumentParser, swept_lists: bool = False) -> None:
    """Options that override fields of :class:`~jaxstyle.config.Settings` (default: the preset's).

    With ``swept_lists``, the loss weights and learning rate take comma-separated lists
    (the sweep's axes).
    """
    from jaxstyle.config import PRESETS

    number = csv_floats if swept_lists else float
    many = " (comma-separated values are swept)" if swept_lists else ""
    g = p.add_argument_group("recipe (defaults: the preset's; `jaxstyle presets` lists them)")
    g.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="recipe to start from")
    size = g.add_mutually_exclusive_group()
    size.add_argument("--size", help="output size HEIGHTxWIDTH, e.g. 300x450")
    size.add_argument("--max-side", type=int, help="longest output side in pixels, keeping the content's aspect")
    g.add_argument("--steps", type=int, help="optimisation steps")
    g.add_argument("--lr", type=number, help="Adam learning rate (network input units)" + many)
    g.add_argument("--content-weight", type=number, help="content loss weight" + many)
    g.add_argument("--style-weight", type=number, help="style loss weight" + many)
    g.add_argument("--tv-weight", type=number, help="total-variation loss weight" + many)
    g.add_argument("--content-layers", type=csv_names, help="e.g. relu4_2")
    g.add_argument("--style-layers", type=csv_names, help="e.g. relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    g.add_argument("--content-layer-weights", type=csv_floats, help="one weight per content layer")
    g.add_argument("--style-layer-weights", type=csv_floats, help="one weight per style layer")
    g.add_argument("--pool", choices=("max", "avg"))
    g.add_argument("--init", choices=("content", "noise"), help="initial image")
    g.add_argument("--seed", type=int, help="random seed (for --init noise)")
    g.add_argument(
        "--compute-dtype",
        choices=("bfloat16",),
        help="run the convolutions in bfloat16 (Gram matrices and losses stay float32)",
    )


def settings_from_args(args: argparse.Namespace, swept_lists: bool = False):
    """Resolve the preset with the options given on the command line.

    With ``swept_lists`` the loss weights and learning rate are lists; the shared
    settings then keep the preset's values for them.
    """
    from jaxstyle.config import resolve
    from jaxstyle.image import parse_size

    swept = {key: None if swept_lists else getattr(args, key) for key in SWEPT_OPTIONS}
    return resolve(
        args.preset,
        size=parse_size(args.size) if args.size else None,
        max_side=args.max_side,
        steps=args.steps,
        **swept,
        content_layers=args.content_layers,
        style_layers=args.style_layers,
        content_layer_weights=args.content_layer_weights,
        style_layer_weights=args.style_layer_weights,
        pool=args.pool,
        init=args.init,
        seed=args.seed,
    )


SWEPT_OPTIONS = ("content_weight", "style_weight", "tv_weight", "lr")


def command_line(
    settings, content: str, style: str, out: str, weights: str | None, compute_dtype: str | None = None
) -> str:
    """A command that reproduces ``settings`` with every value explicit."""
    s = settings
    parts = ["jaxstyle", "stylize", content, style, "-o", out]
    parts += ["--size", f"{s.size[0]}x{s.size[1]}"] if s.size else ["--max-side", str(s.max_side)]
    parts += ["--steps", str(s.steps), "--lr", repr(s.lr)]
    parts += ["--content-weight", repr(s.content_weight), "--style-weight", repr(s.style_weight)]
    parts += ["--tv-weight", repr(s.tv_weight)]
    parts += ["--content-layers", ",".join(s.content_layers), "--style-layers", ",".join(s.style_layers)]
    content_w, style_w = s.resolved_layer_weights()
    parts += ["--content-layer-weights", ",".join(map(repr, content_w))]
    parts += ["--style-layer-weights", ",".join(map(repr, style_w))]
    parts += ["--pool", s.pool, "--init", s.init, "--seed", str(s.seed)]
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
    problem = prepare(
        args.content, args.style, settings=settings, weights=args.weights, compute_dtype=args.compute_dtype
    )

    # No bar when stderr is not a terminal (disable=None); erased if the run fails.
    with tqdm(total=settings.steps, unit="step", desc="stylize", disable=True if args.quiet else None) as bar:

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
    final = {k: float(v[-1]) for k, v in result.trace.items()}
    metadata = {
        "jaxstyle_version": __version__,
        "settings": settings.to_dict(),
        "content": args.content,
        "style": args.style,
        "content_sha256": sha256_of(args.content),
        "style_sha256": sha256_of(args.style),
        "weights": {"file": str(result.weights_file), **result.weights_info},
        "final_losses": final,
        "seconds": round(result.seconds, 3),
        "compute_dtype": args.compute_dtype or "float32",
        "command": command_line(settings, args.content, args.style, str(out), args.weights, args.compute_dtype),
    }
    save_image(out, result.image, metadata)
    if trace_path:
        write_json(
            trace_path,
            {
                "settings": settings.to_dict(),
                "seconds": result.seconds,
                **{k: v.tolist() for k, v in result.trace.items()},
            },
        )
    if not args.quiet:
        h, w = result.image.shape[:2]
        print(
            f"wrote {out} ({h}x{w}, {settings.steps} steps in {result.seconds:.1f} s, final loss {final['total']:.5g})"
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
        points = read_grid(args.grid, settings, contents, styles)
    else:
        values = [getattr(args, key) or (getattr(settings, key),) for key in SWEPT_OPTIONS]
        points = grid_product(len(contents), len(styles), *values)
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

    dst = convert(Path(args.src), Path(args.output) if args.output else None, convention=args.convention)
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
    )
    print(f"wrote {dst}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from jaxstyle.config import PRESETS

    for name, settings in PRESETS.items():
        print(f"{name}:")
        for key, value in settings.to_dict().items():
            print(f"  {key}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jaxstyle import __version__
    from jaxstyle.weights import SOURCES

    parser = argparse.ArgumentParser(prog="jaxstyle", description="Neural style transfer in JAX.")
    parser.add_argument("--version", action="version", version=f"jaxstyle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stylize", help="stylize one content image with one style image")
    p.add_argument("content", help="content image")
    p.add_argument("style", help="style image")
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

    w = sub.add_parser("weights", help="download, convert and inspect VGG-19 weights")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    c = wsub.add_parser("convert", help="convert a published weights file (.pth, .safetensors, Keras .h5)")
    c.add_argument("src")
    c.add_argument("-o", "--output", help="converted file (default: the user cache)")
    c.add_argument(
        "--convention",
        choices=("torchvision", "caffe"),
        help="input convention, needed for files that match no published hash",
    )
    c.set_defaults(func=cmd_weights_convert)
    i = wsub.add_parser("info", help="show a converted weights file's provenance")
    i.add_argument("file")
    i.set_defaults(func=cmd_weights_info)
    d = wsub.add_parser("download", help="download, verify and convert published weights")
    d.add_argument("--source", default="torchvision", choices=sorted(SOURCES))
    d.add_argument("-o", "--output", help="converted file (default: the user cache)")
    d.add_argument("--url", help="a mirror serving the same file")
    d.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the server")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_weights_download)

    pr = sub.add_parser("presets", help="list the presets with their full settings")
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


if __name__ == "__main__":
    sys.exit(main())
