"""``jaxstyle stylize CONTENT STYLE -o OUT``: one content image in one style (:mod:`jaxstyle.api`)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from jaxstyle.cli.jobs import aspect_note, plan_memory_line, run_files
from jaxstyle.cli.options import (
    add_checkpoint_options,
    add_execution_options,
    add_mask_options,
    add_output_option,
    add_progress_options,
    add_settings_options,
    add_weights_option,
    checkpoint_options,
    command_line,
    csv_names,
    execution_from_args,
    mask_inputs,
    progress_reporter,
    settings_from_args,
    with_mask_loss,
)
from jaxstyle.files import file_digests

RUNS_A_JOB = True  # main gives it stop requests (SIGINT, SIGTERM) and the compile cache


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("content", help="content image")
    p.add_argument("style", help="style image, or several comma-separated (blended, see --style-blend)")
    add_output_option(p, "output image (.png keeps the settings as metadata)")
    add_weights_option(p)
    p.add_argument("--trace", help="write per-step losses to this JSON file")
    add_progress_options(p)
    add_checkpoint_options(p)
    add_mask_options(p)
    add_settings_options(p)
    add_execution_options(p, "stylize")


def sha256_of(path: str) -> str | None:
    """SHA-256 of a file, or ``None`` for an in-memory input."""
    try:
        return file_digests(path)[0]
    except OSError:
        return None


def stylize_files(args: argparse.Namespace, settings, execution) -> tuple[Path, Path | None, str]:
    """Check every file ``stylize`` writes, before any work: ``(output, trace, snapshot name pattern)``.

    Each is writable, none is an input or another output, and no input or output has
    a name a snapshot takes (``OUT.stepNNNNNN.png``).
    """
    from jaxstyle.image import check_output_path

    files = run_files(args, settings, [args.content], csv_names(args.style))
    out = files.add_output("-o", check_output_path(args.output, execution.bit_depth))
    trace = files.add_output("--trace", args.trace) if args.trace else None
    snapshot_name = str(out.with_name(f"{out.stem}.step{{:06d}}{out.suffix}"))
    if execution.save_every is not None:
        pattern = re.escape(out.stem) + r"\.step\d{6,}" + re.escape(out.suffix)
        # 12 scales of 10^6 steps: global step numbers have at most 8 digits.
        files.add_family("--save-every snapshots", out.parent, pattern, Path(snapshot_name.format(10**8 - 1)).name)
    return out, trace, snapshot_name


def run(args: argparse.Namespace, stop: Callable[[], int | None]) -> int:
    """Stylize, write the image (with its settings as metadata) and the trace; ``stop``: the run's stop requests."""
    from jaxstyle import __version__
    from jaxstyle.api import optimize, prepare
    from jaxstyle.files import json_bytes
    from jaxstyle.image import save_image
    from jaxstyle.kept import Output, places, write_or_keep

    masks = mask_inputs(args)
    settings, execution = with_mask_loss(args, settings_from_args(args), masks), execution_from_args(args)
    out, trace_path, snapshot_name = stylize_files(args, settings, execution)
    checkpoint = checkpoint_options(args)
    styles = list(csv_names(args.style))
    problem = prepare(args.content, styles, settings=settings, execution=execution, weights=args.weights, masks=masks)
    memory_line = plan_memory_line(problem.job.plan)
    if memory_line and not args.quiet:
        print(f"stylize: {memory_line}", file=sys.stderr)

    def snapshot(step: int, rgb) -> None:
        save_image(snapshot_name.format(step), rgb, bit_depth=execution.bit_depth)

    with progress_reporter(args, "stylize") as progress:
        result = optimize(
            problem,
            progress=progress,
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
        "compute_dtype": execution.compute_dtype or execution.dtype,
        "execution": execution.to_dict(),
        "command": command_line(settings, args.content, args.style, str(out), args.weights, execution, args.preset),
    }
    if masks is not None:
        metadata["masks"] = {
            "style_masks": args.style_masks,
            "style_image_masks": args.style_image_masks,
            "edit_mask": args.edit_mask,
            "strength_map": args.strength_map,
            "guidance": args.guidance,
        }
    outputs = [Output.image(out, result.image, metadata, execution.bit_depth)]
    if trace_path:
        trace = {
            "settings": settings.to_dict(),
            "seconds": result.seconds,
            **{k: v.tolist() for k, v in result.trace.items()},
            "final": final,
        }
        outputs.append(Output.file(trace_path, json_bytes(trace)))
    # A failed write keeps the result (beside the output, in the checkpoint directory, ...) for `jaxstyle write`.
    write_or_keep(outputs, "stylize", out.name, places(out.parent, args.checkpoint_dir))
    if not args.quiet:
        h, w = result.image.shape[:2]
        print(
            f"wrote {out} ({h}x{w}, {sum(s.steps for s in result.stages)} steps in {result.seconds:.1f} s, "
            f"final loss {final['total']:.5g}){aspect_note(problem.job.inputs.contents[0].shape[:2], settings)}"
        )
    return 0
