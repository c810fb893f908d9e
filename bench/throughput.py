"""Throughput of many photos: ``jaxstyle batch`` against one ``stylize`` per photo, in photos per hour.

``python -m bench.throughput OUT [--photos 64] [--max-side 96] [--steps 20] [--processes 16]``

OUT is a work folder: the photos (crops of ``../shared/images`` at four aspect ratios, so four
output sizes at ``--max-side``) and every run's outputs go there. Four ways of stylizing
them with the same recipe (VGG-16, content relu4_2, style weight 1e5, as ``bench.video``):

- ``batch, in process``: :mod:`jaxstyle.photos` over all the photos, each size's micro-batches
  vmapped (the batch size the planner gives ``jaxstyle batch`` on this device);
- ``stylize, in process``: :func:`jaxstyle.stylize` photo after photo in one process, whose
  compiled programs serve every photo of a size (what start-up costs is left out);
- ``jaxstyle batch``: the command, one process for all the photos, end to end;
- ``jaxstyle stylize``: the command, one process per photo, end to end, on ``--processes`` of the
  photos (as many of each size) with the compilation cache a user has (empty at first; the first
  photo of each size fills it).

In-process runs start with JAX's caches cleared. Steady seconds per photo leave out each size's
first micro-batch (batch) or first photo (stylize), which compile; compile seconds are what that
first one took beyond a steady one of its size. The load average (other jobs' included) is read
before and after each way. Writes ``bench/results/throughput/<device>-<date>.json`` and the
throughput section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import SHARED_IMAGES, cpu_name

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "throughput"
ASPECTS = ((1, 1), (3, 4), (4, 3), (9, 16))  # height:width of the crops
STYLE = SHARED_IMAGES / "starry_night.jpg"
RECIPE = {"network": "vgg16", "content_layers": ("relu4_2",), "style_weight": 1e5}
RECIPE_OPTIONS = ["--network", "vgg16", "--content-layers", "relu4_2", "--style-weight", "1e5"]


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` JPEG crops of the shared photos (not the style), the aspects taking turns, each at a
    random place and scale, 200 to 400 pixels on the longest side."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in SHARED_IMAGES.glob("*.jpg") if p != STYLE)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        ah, aw = ASPECTS[i % len(ASPECTS)]
        with Image.open(sources[i % len(sources)]) as img:
            img = img.convert("RGB")
            scale = min(img.width / aw, img.height / ah) * rng.uniform(0.5, 1.0)
            w, h = round(aw * scale), round(ah * scale)
            left, top = rng.integers(0, img.width - w + 1), rng.integers(0, img.height - h + 1)
            side = int(rng.integers(200, 401))
            crop = img.crop((left, top, left + w, top + h))
            crop = crop.resize((side * aw // max(ah, aw), side * ah // max(ah, aw)), Image.Resampling.LANCZOS)
        paths.append(folder / f"photo{i:03d}.jpg")
        crop.save(paths[-1], quality=95)
    return paths


def load() -> float:
    """The one-minute load average."""
    return os.getloadavg()[0]


def steady_and_compile(
    groups: dict[tuple[int, int], list[tuple[int, float]]],
) -> tuple[float | None, float | None, int]:
    """From each size's ``(photos, seconds)`` in run order: steady seconds per photo (all but each
    size's first), the compile seconds (each size's first beyond its steady cost), and how many
    photos the steady figure counts."""
    steady_s, steady_n, compile_s = 0.0, 0, 0.0
    per_size = {}
    for size, runs in groups.items():
        rest = runs[1:]
        if rest:
            per_size[size] = sum(s for _, s in rest) / sum(n for n, _ in rest)
            steady_s += sum(s for _, s in rest)
            steady_n += sum(n for n, _ in rest)
    for size, runs in groups.items():
        n, s = runs[0]
        compile_s += s - n * per_size.get(size, 0.0)
    if not steady_n:  # one micro-batch (or photo) per size: nothing runs compiled already
        return None, None, 0
    return steady_s / steady_n, compile_s, steady_n


def in_process_batch(paths: list[Path], settings, weights: str) -> dict:
    import jax

    from jaxstyle import photos
    from jaxstyle.config import Execution

    jax.clear_caches()
    execution = Execution()
    before, start = load(), time.perf_counter()
    parts, _ = photos.plan_parts(paths, photos.output_names(paths), settings, execution, jax.device_count())
    groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for output in photos.run_parts(parts, [str(STYLE)], settings, weights=weights, execution=execution):
        groups.setdefault(output.part.size, []).append((len(output.images), output.seconds))
    wall = time.perf_counter() - start
    return {
        **timing_row(len(paths), wall, groups),
        "batch_sizes": {f"{h}x{w}": max(n for n, _ in runs) for (h, w), runs in groups.items()},
        "load": [before, load()],
    }


def timing_row(photos: int, wall: float, groups: dict) -> dict:
    """A way's photos, wall time, and steady and compile seconds (:func:`steady_and_compile` of ``groups``)."""
    steady, compile_s, counted = steady_and_compile(groups)
    return {
        "photos": photos,
        "wall_s": wall,
        "steady_s_per_photo": steady,
        "compile_s": compile_s,
        "steady_photos": counted,
    }


def in_process_stylize(paths: list[Path], settings, weights: str) -> dict:
    import jax

    from jaxstyle.api import stylize

    jax.clear_caches()
    groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
    before, start = load(), time.perf_counter()
    for path in paths:
        t = time.perf_counter()
        result = stylize(path, STYLE, settings=settings, weights=weights)
        groups.setdefault(result.image.shape[:2], []).append((1, time.perf_counter() - t))
    wall = time.perf_counter() - start
    return {
        **timing_row(len(paths), wall, groups),
        "load": [before, load()],
    }


def command(args: list[str], cache: Path) -> float:
    """Wall seconds of ``jaxstyle ARGS`` in a fresh process whose compilation cache is ``cache``."""
    env = {**os.environ, "JAXSTYLE_COMPILE_CACHE": str(cache), "PYTHONPATH": str(HERE.parent)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jaxstyle", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jaxstyle {' '.join(args[:1])}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return time.perf_counter() - start


def batch_command(paths: list[Path], out: Path, options: list[str], work: Path) -> dict:
    before = load()
    wall = command(["batch", str(paths[0].parent), str(STYLE), "-o", str(out), *options, "-q"], work / "cache-batch")
    summary = json.loads((out / "summary.json").read_text())
    return {"photos": summary["done"], "wall_s": wall, "s_per_photo": wall / summary["done"], "load": [before, load()]}


def stylize_commands(paths: list[Path], out: Path, options: list[str], work: Path, count: int) -> dict:
    """``count`` of the photos (the same number of each aspect), one process each, one compile cache."""
    chosen = paths[:count]  # the aspects take turns
    out.mkdir(parents=True, exist_ok=True)
    before, walls = load(), []
    for path in chosen:
        walls.append(
            command(
                ["stylize", str(path), str(STYLE), "-o", str(out / f"{path.stem}.png"), *options, "-q"],
                work / "cache-stylize",
            )
        )
    first = walls[: len(ASPECTS)]  # the aspects take turns: the first of each size compiles
    return {
        "photos": len(chosen),
        "wall_s": sum(walls),
        "s_per_photo": sum(walls) / len(walls),
        "first_of_size_s": statistics.mean(first),
        "cached_s": statistics.mean(walls[len(ASPECTS) :]) if len(walls) > len(ASPECTS) else None,
        "load": [before, load()],
    }


def measure(args: argparse.Namespace) -> dict:
    import jax

    from bench.harness import machine, versions
    from bench.video import vgg16_weights
    from jaxstyle.config import resolve

    work = Path(args.out)
    paths = make_photos(work / "photos", args.photos)
    weights, kind = vgg16_weights(args.weights)
    settings = resolve("paper", max_side=args.max_side, steps=args.steps, **RECIPE)
    options = [*RECIPE_OPTIONS, "--max-side", str(args.max_side), "--steps", str(args.steps), "--weights", weights]
    cache = Path(tempfile.mkdtemp(prefix="jaxstyle-throughput-", dir=work))
    print(f"{len(paths)} photos in {work / 'photos'}; load {load():.1f}", flush=True)
    rows = {}
    rows["batch, in process"] = in_process_batch(paths, settings, weights)
    print("batch, in process:", json.dumps(rows["batch, in process"]), flush=True)
    rows["stylize, in process"] = in_process_stylize(paths, settings, weights)
    print("stylize, in process:", json.dumps(rows["stylize, in process"]), flush=True)
    rows["jaxstyle batch"] = batch_command(paths, work / "batched", options, cache)
    print("jaxstyle batch:", json.dumps(rows["jaxstyle batch"]), flush=True)
    rows["jaxstyle stylize"] = stylize_commands(paths, work / "single", options, cache, args.processes)
    print("jaxstyle stylize:", json.dumps(rows["jaxstyle stylize"]), flush=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine(), "name": cpu_name() if jax.devices()[0].platform == "cpu" else None},
        "versions": versions(),
        "weights": kind,
        "photos": len(paths),
        "sizes": sorted(rows["batch, in process"]["batch_sizes"]),
        "max_side": args.max_side,
        "steps": args.steps,
        "uptime": uptime,
        "rows": rows,
    }


def markdown(results_dir: Path) -> list[str]:
    """The throughput section of ``bench/RESULTS.md``: the newest run per device (none: nothing)."""
    from bench.harness import device_slug

    newest: dict[str, tuple[str, dict]] = {}
    for path in sorted((results_dir / "throughput").glob("*.json")):
        data = json.loads(path.read_text())
        newest[device_slug(data["machine"])] = (path.name, data)
    if not newest:
        return []
    out = [
        "## Many photos (`python -m bench.throughput OUT`)",
        "",
        "Photos per hour of `jaxstyle batch` against one `stylize` per photo, on crops of the shared photos at "
        "four aspect ratios (four output sizes), VGG-16 (content relu4_2, style weight 1e5), Adam. In process: "
        "JAX's caches cleared first; steady figures leave out each size's first micro-batch or photo, and "
        "compile s is what those took beyond a steady one. Commands: whole processes, start-up, weights and "
        "compilation included (the compilation cache empty at first, as a user's); `jaxstyle stylize` on a "
        "subset, as many photos of each size. Load: the one-minute load average before and after, other jobs' "
        "included.",
        "",
    ]
    for key, (name, d) in sorted(newest.items()):
        m, rows = d["machine"], d["rows"]
        base = rows["stylize, in process"]["steady_s_per_photo"] or math.nan
        out += [
            f"`throughput/{name}`, {d['date']}; {m.get('name') or m['device_kind']} ({key}), "
            f"{m['device_count']} device(s); jax {d['versions']['jax']}; weights {d['weights']}; {d['photos']} photos, "
            f"sizes {', '.join(d['sizes'])} (`--max-side {d['max_side']}`), {d['steps']} steps; "
            f"`uptime` at the end: {d['uptime'].split('load average:')[-1].strip()}.",
            "",
            "| how | photos | wall s | steady s/photo | compile s | photos/hour, steady | photos/hour, end to end "
            "| steady vs stylize in process | load |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for how, r in rows.items():
            steady = r.get("steady_s_per_photo")
            end = r.get("s_per_photo", r["wall_s"] / r["photos"])
            detail = ""
            if how == "batch, in process":
                detail = " (micro-batches: " + ", ".join(f"{s} of {b}" for s, b in r["batch_sizes"].items()) + ")"
            if how == "jaxstyle stylize" and r.get("cached_s") is not None:
                detail = f" (first of a size {r['first_of_size_s']:.1f} s, then {r['cached_s']:.1f} s)"
            out.append(
                f"| {how}{detail} | {r['photos']} | {r['wall_s']:.1f} | "
                f"{'—' if steady is None else format(steady, '.2f')} | "
                f"{'—' if r.get('compile_s') is None else format(r['compile_s'], '.1f')} | "
                f"{'—' if steady is None else format(3600 / steady, '.0f')} | {3600 / end:.0f} | "
                f"{'—' if steady is None else format(base / steady, '.2f')} | "
                f"{r['load'][0]:.1f} → {r['load'][1]:.1f} |"
            )
        out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="work folder: the photos and every run's outputs")
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--max-side", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--processes", type=int, default=16, help="photos stylized one process each")
    parser.add_argument("--weights", help="a converted VGG-16 (default: the real one if found)")
    args = parser.parse_args(argv)
    data = measure(args)
    from bench.harness import device_slug, results_markdown

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{device_slug(data['machine'])}-{data['date'][:10]}.json"
    (RESULTS / name).write_text(json.dumps(data, indent=1))
    (HERE / "RESULTS.md").write_text(results_markdown(HERE / "results"))
    print("\n".join(markdown(HERE / "results")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
