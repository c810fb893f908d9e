"""``jaxstyle video IN STYLE -o OUT``: a clip stylized with temporal consistency (:mod:`jaxstyle.clips`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from jaxstyle.cli.jobs import aspect_note, run_files
from jaxstyle.cli.options import (
    add_checkpoint_options,
    add_distributed_options,
    add_execution_options,
    add_mask_options,
    add_output_option,
    add_progress_options,
    add_settings_options,
    add_weights_option,
    checkpoint_options,
    csv_ints,
    csv_names,
    execution_from_args,
    mask_inputs,
    progress_reporter,
    settings_from_args,
    start_distributed,
    with_mask_loss,
)

RUNS_A_JOB = True  # main gives it stop requests (SIGINT, SIGTERM) and the compile cache


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="video file (mp4, webm, gif, mov, mkv) or a folder of frames")
    p.add_argument("style", help="style image, or several comma-separated (blended, see --style-blend)")
    add_output_option(p, "video file (frame rate and audio kept) or a new folder")
    add_weights_option(p)
    g = p.add_argument_group("video")
    g.add_argument(
        "--mode",
        choices=("sequential", "multipass"),
        default="sequential",
        help="frame after frame on one device, or all frames as one batch over all devices, pass after pass",
    )
    g.add_argument("--passes", type=int, default=6, help="multipass: passes over the clip (default 6)")
    g.add_argument(
        "--temporal-weight", type=float, help="weight of the temporal loss (default: 200 x the content weight)"
    )
    g.add_argument(
        "--temporal-indices",
        type=csv_ints,
        default=(1,),
        metavar="J,...",
        help="sequential: frames back the temporal terms look, e.g. 1,2,4 adds Ruder et al.'s long-term terms "
        "(default 1: the previous frame only)",
    )
    g.add_argument(
        "--blend-weight", type=float, default=1.0, help="multipass: weight of the warped neighbour in each start"
    )
    g.add_argument("--frames", metavar="START:END", help="the frames to take (END excluded; either may be left out)")
    g.add_argument("--fps", type=float, help="frame rate of a folder of frames (default 24), or to override a file's")
    add_progress_options(p)
    add_checkpoint_options(p)
    add_distributed_options(p, "guide/video.md")
    add_mask_options(p)  # one mask set for every frame
    add_settings_options(p)
    add_execution_options(p, "video")


def run(args: argparse.Namespace, stop: Callable[[], int | None]) -> int:
    """Read the clip, stylize it and write it (process 0 alone writes); ``stop``: the run's stop requests."""
    import jax

    start_distributed(args)
    from jaxstyle.clips import video
    from jaxstyle.videoio import check_output, read_clip

    main_process = jax.process_index() == 0
    masks = mask_inputs(args)
    settings, execution = with_mask_loss(args, settings_from_args(args), masks), execution_from_args(args)
    files = run_files(args, settings, [], csv_names(args.style))
    files.add_input("input video", args.input)
    out = Path(args.output)
    if main_process:  # the one that writes it
        check_output(out)
        if out.suffix:  # a file; a folder output is new or empty, so no input is in it
            files.add_output("-o", out)
    checkpoint = checkpoint_options(args)
    clip = read_clip(args.input, args.frames, args.fps)
    with progress_reporter(args, "video", main_process) as progress:
        result = video(
            clip,
            list(csv_names(args.style)),
            out,
            mode=args.mode,
            passes=args.passes,
            temporal_weight=args.temporal_weight,
            temporal_indices=args.temporal_indices,
            blend_weight=args.blend_weight,
            settings=settings,
            weights=args.weights,
            execution=execution,
            progress=progress,
            checkpoint=checkpoint,
            stop_signal=stop,
            masks=masks,
        )
    if main_process and not args.quiet:
        n, h, w = result.frames.shape[:3]
        devices = 1 if args.mode == "sequential" else len(jax.devices())
        processes = f", {jax.process_count()} processes" if jax.process_count() > 1 else ""
        print(
            f"wrote {out} ({n} frames, {h}x{w}, {result.fps:g} fps; {args.mode} on {devices} device(s){processes}, "
            f"{result.seconds:.1f} s, flow {result.flow_seconds:.1f} s){aspect_note(clip.frames.shape[1:3], settings)}"
        )
    return 0
