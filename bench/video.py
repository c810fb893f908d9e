"""Video: seconds per frame, sequential against multi-pass batched at K frames; and the long-term loss.

``python -m bench.video [--size 96x128] [--frames 8] [--steps 20] [--reps 2] [--weights FILE]``
``python -m bench.video --long-term [--size 48x64] [--frames 60] [--steps 20] [--indices 1,2,4]``

Both schedules run the same synthetic clip (:mod:`jaxstyle.synthetic`, the Tübingen photo
panned and zoomed) with the VGG-16 recipe of the README's first command. Each is run once
to compile, then ``--reps`` more times, and the median is kept (compilation excluded).
Sequential: the clip frame after frame on one device. Multi-pass: one pass over all K
frames as one vmapped batch (micro-batches as ``jaxstyle video --mode multipass``
plans them on this device). Both are per frame and per ``--steps`` Adam steps, so one
sequential frame costs what one multi-pass frame-pass costs when the batch gains nothing.
Flow is timed separately. Writes ``bench/results/video/<device>-<date>.json`` and the
Video section of ``bench/RESULTS.md``.

``--long-term``: how steady a long clip stays, short-term temporal loss only against short
plus long-term (``--indices``), both sequential. The clip is the pan and zoom with a
textured bar (a strip of another photo) sweeping back and forth in front of it: each
background pixel it passes is hidden for a frame or two, then seen again, which is where
the long-term terms pull it back to how it was stylized before (Ruder et al. 2016,
§3.3). Reported: :func:`jaxstyle.clips.temporal_error` against the previous frame and
against frames 2 and 4 back (flows and masks of the unstylized clip, the same for both
runs), the mean style loss, and the seconds. Writes
``bench/results/video-long-term/<device>-<date>.json``; the figures are quoted by hand in
``bench/results/notes.md`` and ``docs/guide/video.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

from bench.common import cpu_model

HERE = Path(__file__).resolve().parent
VIDEO_RESULTS = HERE / "results" / "video"
LONG_TERM_RESULTS = HERE / "results" / "video-long-term"
# The bar of the long-term clip: its width and its speed, as fractions of the frame's width.
BAR_WIDTH, BAR_SPEED = 0.1, 0.05


def vgg16_weights(given: str | None) -> tuple[str, str]:
    """The real VGG-16 when found (given, the search path, the test cache), else seeded random weights."""
    import os

    from jaxstyle.errors import JaxstyleError
    from jaxstyle.preprocess import TORCHVISION
    from jaxstyle.weights import find, random_convs, write_converted

    if given:
        return given, "given"
    try:
        return str(find("vgg16", "torchvision")), "real"
    except JaxstyleError:
        pass
    cached = Path(os.environ.get("JAXSTYLE_TEST_CACHE", Path.home() / ".cache" / "jaxstyle-test"))
    if (cached / "vgg16-torchvision.h5").is_file():
        return str(cached / "vgg16-torchvision.h5"), "real"
    path = HERE / "results" / "vgg16-random.h5"
    if not path.is_file():
        write_converted(path, random_convs(0, "vgg16"), TORCHVISION, {"source": "random (benchmark)"}, "vgg16")
    return str(path), "random (seeded)"


def measure(args: argparse.Namespace) -> dict:

    from jaxstyle.clips import Motion, video
    from jaxstyle.synthetic import PanZoom, photo_rgb, render

    size = tuple(int(x) for x in args.size.split("x"))
    weights, kind = vgg16_weights(args.weights)
    photo = photo_rgb(str(HERE.parents[1] / "shared" / "images" / "tubingen.jpg"))
    frames = render(photo, PanZoom(size=size, pan=(1.5 * size[1] / 64, 0.75 * size[1] / 64)), args.frames)
    style = str(HERE.parents[1] / "shared" / "images" / "starry_night.jpg")
    recipe = {"network": "vgg16", "content_layers": ("relu4_2",), "style_weight": 1e5, "size": size}
    common = {"weights": weights, "steps": args.steps, **recipe}
    import os

    rows = {mode: {"all_s_per_frame": [], "load_average": []} for mode in ("sequential", "multipass")}
    # The modes take turns, so that a machine whose load changes (a shared one) weighs on both alike.
    for rep in range(args.reps + 1):
        for mode, row in rows.items():
            result = video(frames, style, mode=mode, passes=1, **common)
            if rep:  # the first run compiles
                row["all_s_per_frame"].append(result.seconds / args.frames)
                row["load_average"].append(os.getloadavg()[0])
    for row in rows.values():
        row["median_s_per_frame"] = statistics.median(row["all_s_per_frame"])
    start = time.perf_counter()
    Motion.of(frames)
    flow_s = (time.perf_counter() - start) / args.frames
    return {
        **run_header(args, kind, size),
        "flow_s_per_frame": flow_s,
        **rows,
        "speedup": rows["sequential"]["median_s_per_frame"] / rows["multipass"]["median_s_per_frame"],
    }


def run_header(args, kind: str, size: tuple[int, int]) -> dict:
    """What every video result records first: when, on what machine and versions, and the run's shape."""
    import jax

    from bench.harness import machine, versions

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine(), "cpu_model": cpu_model()},
        "versions": versions(),
        "devices": len(jax.devices()),
        "weights": kind,
        "size": list(size),
        "frames": args.frames,
        "steps": args.steps,
    }


def occluded_clip(frames, bar_source):
    """``frames`` with a vertical bar cut from ``bar_source`` (RGB) sweeping across them, back and forth."""

    from jaxstyle.image import resize

    n, h, w = frames.shape[:3]
    bar_w, speed = max(2, round(BAR_WIDTH * w)), max(1, round(BAR_SPEED * w))
    bar = resize(bar_source, (h, bar_w))
    travel = w - bar_w
    out = frames.copy()
    for t in range(n):
        x = (t * speed) % (2 * travel)
        x = x if x <= travel else 2 * travel - x  # back and forth
        out[t, :, x : x + bar_w] = bar
    return out


def long_term(args: argparse.Namespace) -> dict:
    """Short-term only against short plus long-term on the occluded clip (see the module's docstring)."""
    import os

    import numpy as np

    from jaxstyle.clips import Motion, temporal_error, video
    from jaxstyle.synthetic import PanZoom, photo_rgb, render

    size = tuple(int(x) for x in args.size.split("x"))
    indices = tuple(int(j) for j in args.indices.split(","))
    weights, kind = vgg16_weights(args.weights)
    images = HERE.parents[1] / "shared" / "images"
    photo = photo_rgb(str(images / "tubingen.jpg"))
    frames = render(photo, PanZoom(size=size, pan=(0.75 * size[1] / 64, 0.4 * size[1] / 64)), args.frames)
    frames = occluded_clip(frames, photo_rgb(str(images / "golden_gate.jpg")))
    style = str(images / "starry_night.jpg")
    recipe = {"network": "vgg16", "content_layers": ("relu4_2",), "style_weight": 1e5, "size": size}
    motion = Motion.of(frames, sorted({1, 2, 4, *indices}))
    rows = {}
    for name, terms in (("short-term", (1,)), ("long-term", indices)):
        result = video(frames, style, temporal_indices=terms, weights=weights, steps=args.steps, **recipe)
        rows[name] = {
            "temporal_indices": list(terms),
            "temporal_error": {str(j): temporal_error(result.frames, motion, j) for j in (1, 2, 4)},
            "style_loss_mean": float(np.mean(result.final_losses["style"])),
            "seconds": result.seconds,
            "load_average": os.getloadavg()[0],
        }
        print(json.dumps({name: rows[name]}), flush=True)
    unstylized = {str(j): temporal_error(frames, motion, j) for j in (1, 2, 4)}
    return {
        **run_header(args, kind, size),
        "bar": {"width": BAR_WIDTH, "speed": BAR_SPEED},
        "unstylized_temporal_error": unstylized,
        **rows,
    }


def markdown(results_dir: Path = VIDEO_RESULTS) -> list[str]:
    """The Video section of RESULTS.md: the newest run per device."""
    from bench.harness import device_slug

    newest: dict[str, tuple[str, dict]] = {}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        newest[device_slug(data["machine"])] = (path.name, data)
    if not newest:
        return []
    out = [
        "## Video",
        "",
        "`python -m bench.video`: seconds per frame of `jaxstyle video` on the synthetic pan-and-zoom clip "
        "(VGG-16, content relu4_2, style weight 1e5), per frame and per STEPS Adam steps, compilation "
        "excluded (median of the repetitions after a first run; the modes take turns; the load average is "
        "the highest seen after a repetition, other jobs' included): sequential (frame after frame, one device) "
        "against one multi-pass pass (all K frames as one vmapped batch). Flow: DIS both ways and the masks.",
        "",
        "| device | file | weights | size | K frames | steps | sequential s/frame | multi-pass s/frame | "
        "speedup | flow s/frame | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, (name, d) in sorted(newest.items()):
        out.append(
            f"| {d['machine']['device_kind']} ({key}, {d['machine'].get('cpu_model', '?')}, "
            f"{d['devices']} device(s)) | `{name}` | {d['weights']} | "
            f"{d['size'][0]}x{d['size'][1]} | {d['frames']} | {d['steps']} | "
            f"{d['sequential']['median_s_per_frame']:.2f} | {d['multipass']['median_s_per_frame']:.2f} | "
            f"{d['speedup']:.2f} | {d['flow_s_per_frame']:.3f} | "
            f"{max(d['sequential'].get('load_average', [0]) + d['multipass'].get('load_average', [0])):.1f} |"
        )
    return [*out, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="96x128")
    parser.add_argument("--frames", type=int, default=8, help="K, the frames of the clip (the batch)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--weights", help="a converted VGG-16 (default: the real one if found)")
    parser.add_argument("--markdown", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--long-term", action="store_true", help="short-term only against short plus long-term")
    parser.add_argument("--indices", default="1,2,4", help="--long-term: the temporal indices of the long-term run")
    args = parser.parse_args(argv)
    if args.long_term:
        return write_long_term(long_term(args))
    data = measure(args)
    VIDEO_RESULTS.mkdir(parents=True, exist_ok=True)
    from bench.harness import device_slug

    name = f"{device_slug(data['machine'])}-{data['date'][:10]}.json"
    (VIDEO_RESULTS / name).write_text(json.dumps(data, indent=1))
    from bench.harness import results_markdown

    Path(args.markdown).write_text(results_markdown(HERE / "results"))
    print(json.dumps({k: data[k] for k in ("size", "frames", "steps", "speedup", "flow_s_per_frame")}))
    return 0


def write_long_term(data: dict) -> int:
    """Keep a ``--long-term`` run's figures in ``bench/results/video-long-term/``."""
    from bench.harness import device_slug

    LONG_TERM_RESULTS.mkdir(parents=True, exist_ok=True)
    path = LONG_TERM_RESULTS / f"{device_slug(data['machine'])}-{data['date'][:10]}.json"
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
