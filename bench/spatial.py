"""The largest square image whose Adam step fits a memory budget: jaxstyle split over 4 devices against PyTorch eager.

``python -m bench.spatial [--budget-gib 8] [--devices 4]`` measures, each in a fresh process:

* jaxstyle (the ``paper`` recipe, VGG-19, float32), its image split by rows over ``--devices``
  forced CPU devices, and over 1 for comparison: per-device bytes of the compiled step
  (XLA's memory analysis of the partitioned program: arguments, outputs and temporaries,
  less what outputs reuse), for square sides that are multiples of ``devices * 16``. The
  program is only compiled, never run, so sizes far beyond the machine's memory can be asked.
* PyTorch eager (the same recipe, ``bench/torch_recipe.py``) on one CPU device: the growth of
  the process's peak resident memory (``VmHWM``) over two Adam steps, from its resident
  memory after the imports (weights, targets, activations, gradients and Adam's state).

Each side's bytes are fitted as ``a + b * side**2`` (activations grow with pixels) over three
sides, and the largest side within the budget is read from the fit, then checked (jaxstyle:
compiled at that side and the next one; PyTorch: measured at a side near it when it is small
enough to run here). Writes ``bench/results/spatial/<machine>.json`` and regenerates
``bench/RESULTS.md``, whose section "One image over many devices" is drawn from it.

``python -m bench.spatial --padding [--devices 4]`` measures what padding a height costs
(:func:`jaxstyle.plan.split_height`) and adds it to this machine's result file: the
compiled step's per-device FLOPs (XLA's cost analysis) and bytes over ``--devices``, at a
width of 512 and the heights ``7m``, ``7m + 1`` (padded by ``m - 1`` rows to ``8m``) and
``8m``, ``m`` the split's multiple.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import child_result, cpu_name

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "spatial"
POOLS = 4  # relu5_1 lies behind four poolings


def jax_step_bytes(size: tuple[int, int], shards: int, weights: str) -> dict:
    """Per-device bytes (and FLOPs) of one compiled Adam step of the paper recipe at ``size``
    split over ``shards``."""
    import jax

    from bench.common import bench_images
    from jaxstyle.batch import run_batch_chunk_jit, stack_content_targets
    from jaxstyle.config import Execution, resolve
    from jaxstyle.mesh import image_sharding, single_run_mesh
    from jaxstyle.pipeline import DeviceLayout, StageStep, prepare_job

    content, style = bench_images((64, 64))  # resized to the size inside the run
    # remat "none" for every side: "auto" would pick by the RAM free at the moment of the run.
    settings = resolve("paper", size=size, steps=1)
    execution = Execution(spatial_shards=shards, remat="none")
    job = prepare_job(
        [content], [style], settings, weights=weights, execution=execution, space_devices=jax.device_count()
    )
    layout = DeviceLayout.of(job, single_run_mesh(shards))

    def abstract(tree, sharding):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding(x)), tree)

    params = abstract(job.network.params, lambda _: layout.replicated)
    # Shapes only: the targets' and the state's arrays are never computed.
    targets = jax.eval_shape(lambda: job.targets_at(size))
    split, recipe = layout.split[0], layout.recipe(job.network.recipe, 0)
    contents = jax.ShapeDtypeStruct((1, 1, *layout.device_size(0), 3), job.network.dtype)  # padded where split
    content = jax.eval_shape(
        lambda c: stack_content_targets(job.network.graphdef, job.network.params, c, recipe), contents
    )
    targets = targets._replace(
        content=abstract(content, lambda x: image_sharding(layout.mesh, x.ndim, split, batched=False))
    )
    targets = targets._replace(style=abstract(targets.style, lambda _: layout.replicated))
    host = abstract(job.per_setting(), lambda x: layout.by_setting)
    images = jax.ShapeDtypeStruct((1, 1, *layout.device_size(0), 3), job.network.dtype, sharding=layout.images(0))
    host = host._replace(images=images)
    step = StageStep(job.network.graphdef, recipe, params, targets, host.setting, 1)
    state = jax.eval_shape(lambda d: step.start(d, d.images), host)
    state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, layout.state_shardings(0, state)
    )
    start = time.perf_counter()
    compiled = run_batch_chunk_jit.lower(job.network.graphdef, recipe, 1, params, targets, host.setting, state)
    executable = compiled.compile()
    m = executable.memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    cost = executable.cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost).get("flops", 0.0)
    return {
        "bytes": total,
        "temp_bytes": m.temp_size_in_bytes,
        "flops": flops,
        "compile_s": time.perf_counter() - start,
    }


def torch_step_bytes(side: int, weights: str) -> dict:
    """Growth of the peak resident memory over two PyTorch eager Adam steps at ``side x side``."""
    import torch  # noqa: F401  (the library's own memory is not the step's)

    from bench import torch_recipe  # noqa: F401
    from bench.measure import measure_torch, peak_host_mib

    before = resident_mib()
    start = time.perf_counter()
    measure_torch("torch-eager", (side, side), 1, weights)
    return {"bytes": int((peak_host_mib() - before) * 2**20), "run_s": time.perf_counter() - start}


def resident_mib() -> float:
    """This process's resident memory now (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status")


def child(kind: str, side: int, shards: int, weights: str, devices: int, height: int | None = None) -> dict:
    """One measurement in a fresh process (``devices`` forced CPU devices for jaxstyle), at
    ``side x side`` or ``height x side``."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if kind == "jax":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    size = f"{height or side}x{side}"
    argv = [sys.executable, "-m", "bench.spatial", "--child", kind, size, str(shards), weights]
    done = subprocess.run(argv, env=env, cwd=HERE.parent, capture_output=True, text=True, timeout=3600)
    out = child_result(done.stdout)
    if done.returncode or out is None:
        raise RuntimeError(f"{kind} at {size}: {done.stderr.strip().splitlines()[-1:]}")
    print(f"  {kind} {size} over {shards}: {out['bytes'] / 2**30:.3f} GiB", flush=True)
    return {"side": side, **({"height": height} if height else {}), **out}


def fit(points: list[dict]) -> tuple[float, float]:
    """Least squares ``bytes = a + b * side**2`` over the measured points."""
    xs = [p["side"] ** 2 for p in points]
    ys = [p["bytes"] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def largest_side(a: float, b: float, budget: float, multiple: int) -> int:
    """The largest multiple of ``multiple`` whose fitted bytes are within ``budget``."""
    return int(math.sqrt((budget - a) / b)) // multiple * multiple


def measure_jax(shards: int, budget: float, weights: str, devices: int, sides: tuple[int, ...]) -> dict:
    multiple = shards * 2**POOLS
    points = [child("jax", side // multiple * multiple, shards, weights, devices) for side in sides]
    a, b = fit(points)
    side = largest_side(a, b, budget, multiple)
    # Checked by compiling: the side fits and the next one does not; stepped until both hold.
    while (at := child("jax", side, shards, weights, devices))["bytes"] > budget:
        side -= multiple
    while (above := child("jax", side + multiple, shards, weights, devices))["bytes"] <= budget:
        side, at = side + multiple, above
    return {"shards": shards, "multiple": multiple, "fit": [a, b], "points": points, "largest": at, "next": above}


def measure_torch(budget: float, weights: str, sides: tuple[int, ...]) -> dict:
    points = [child("torch", side, 1, weights, 1) for side in sides]
    a, b = fit(points)
    worst = max(abs(a + b * p["side"] ** 2 - p["bytes"]) / p["bytes"] for p in points)
    return {"fit": [a, b], "fit_error": worst, "points": points, "largest_side": largest_side(a, b, budget, 16)}


def measure_padding(devices: int, weights: str, width: int = 512) -> dict:
    """Per-device FLOPs and bytes of the step at heights ``7m``, ``7m + 1`` and ``8m`` split over ``devices``."""
    multiple = devices * 2**POOLS
    heights = (7 * multiple, 7 * multiple + 1, 8 * multiple)
    return {
        "multiple": multiple,
        "width": width,
        "points": [child("jax", width, devices, weights, devices, h) for h in heights],
    }


def padding_lines(d: dict) -> list[str]:
    """The padding table of a result file's ``padding`` entry."""
    pad, devices = d["padding"], d["devices"]
    m, points = pad["multiple"], pad["points"]
    base = points[-1]
    out = [
        f"What padding costs, over {devices} forced CPU devices at a width of {pad['width']} (the same recipe, "
        f"compiled only): a height that is not a multiple of {m} is padded to the next one "
        "(`jaxstyle.plan.split_height`) and masked; per-device FLOPs from XLA's cost analysis.",
        "",
        "| height | rows on the devices | GFLOP per device | vs the padded height unpadded | GiB per device |",
        "|---|---|---|---|---|",
    ]
    for p in points:
        rows = -(-p["height"] // m) * m
        out.append(
            f"| {p['height']} | {rows} | {p['flops'] / 1e9:.1f} | {p['flops'] / base['flops']:.3f} | "
            f"{p['bytes'] / 2**30:.2f} |"
        )
    return [*out, ""]


def section(path: Path) -> list[str]:
    """The markdown section of ``bench/RESULTS.md`` drawn from one spatial result file."""
    d = json.loads(path.read_text())
    budget, devices = d["budget_gib"], d["devices"]
    jax_rows = {r["shards"]: r for r in d["jax"]}
    split, whole, torch = jax_rows[devices], jax_rows[1], d["torch"]
    t_side = torch["largest_side"]
    out = [
        "## One image over many devices",
        "",
        f"`spatial/{path.name}`, {d['date']}; {d['machine']}. The largest square image whose Adam step of the "
        f"`paper` recipe (VGG-19, float32) fits {budget:g} GiB per device. jaxstyle: per-device bytes of the "
        "compiled, partitioned step from XLA's memory analysis (arguments, outputs and temporaries, never run), "
        f"its image split by rows over {devices} forced CPU devices (sides a multiple of {split['multiple']}), "
        "checked by compiling at the side and the next one. PyTorch eager: growth of the process's peak resident "
        "memory over two steps on one device, fitted as a + b*side^2 over the measured sides "
        f"({', '.join(str(p['side']) for p in torch['points'])}: "
        f"{', '.join(format(p['bytes'] / 2**30, '.2f') for p in torch['points'])} GiB; the fit within "
        f"{100 * torch['fit_error']:.1f}% of each) and extrapolated to the budget.",
        "",
        "| run | devices | largest side | GiB per device at it | pixels vs torch eager |",
        "|---|---|---|---|---|",
    ]
    for name, row in ((f"jaxstyle, split over {devices}", split), ("jaxstyle, whole", whole)):
        side = row["largest"]["side"]
        out.append(
            f"| {name} | {row['shards']} | {side} | {row['largest']['bytes'] / 2**30:.2f} | "
            f"{(side / t_side) ** 2:.2f} |"
        )
    fitted = (torch["fit"][0] + torch["fit"][1] * t_side**2) / 2**30
    out += [f"| PyTorch eager | 1 | {t_side} | {fitted:.2f} (fitted) | 1.00 |", ""]
    return out + (padding_lines(d) if "padding" in d else [])


def markdown(results_dir: Path) -> list[str]:
    """The sections of every spatial result under ``results_dir / "spatial"`` (none: nothing)."""
    return [line for path in sorted((results_dir / "spatial").glob("*.json")) for line in section(path)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spatial", description=__doc__.splitlines()[0])
    parser.add_argument("--budget-gib", type=float, default=8.0)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--padding", action="store_true", help="measure what padding a height costs only")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "SIZE", "SHARDS", "WEIGHTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, size, shards, weights = args.child
        h, w = map(int, size.split("x"))
        out = jax_step_bytes((h, w), int(shards), weights) if kind == "jax" else torch_step_bytes(w, weights)
        print("RESULT " + json.dumps(out))
        return 0
    from bench.common import bench_weights
    from bench.harness import device_slug, machine, write_result

    weights, _ = bench_weights(Path(tempfile.mkdtemp(prefix="jaxstyle-bench-")))  # never beside the results
    if args.padding:
        path = RESULTS / f"{device_slug(machine())}.json"
        result = json.loads(path.read_text())
        result["padding"] = measure_padding(result["devices"], str(weights))
        print("\n".join(section(write_result(RESULTS, result))))
        return 0
    budget = args.budget_gib * 2**30
    print(f"largest square step within {args.budget_gib:g} GiB per device", flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_name(),
        "budget_gib": args.budget_gib,
        "devices": args.devices,
        "jax": [
            measure_jax(shards, budget, str(weights), args.devices, (512, 1024, 1536)) for shards in (args.devices, 1)
        ],
        # PyTorch's steps run for real: sides this 2-core machine steps through in a few minutes.
        "torch": measure_torch(budget, str(weights), (512, 768, 1024)),
        "padding": measure_padding(args.devices, str(weights)),
    }
    print("\n".join(section(write_result(RESULTS, result))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
