"""One image split by rows: XLA's sharding propagation against ``shard_map`` with explicit halos.

``python -m bench.halo [--devices 4] [--sides 256,512,1024]`` answers the question of
issue 13 ("use XLA's sharding propagation or ``shard_map`` with explicit halo exchange,
whichever measures faster") on ``--devices`` forced CPU devices, each side in a fresh
process. Both programs compute the loss and the image gradient of the ``paper`` recipe
(VGG-19, float32, random weights: time does not depend on them) with the image split by
rows over a ``space`` mesh axis:

* ``propagation``: :func:`jaxstyle.solve.total_loss` with the image placed
  ``P(None, 'space')`` and nothing else said: XLA's sharding propagation splits the
  activations and places the halo exchanges (what ``--spatial-shards`` ran before this
  comparison).
* ``shard_map``: the same function with ``recipe.space_mesh`` set, so that the network runs
  in :func:`jaxstyle.spatial.split_features` (what ``--spatial-shards`` runs): before every
  3x3 convolution each device borrows one row from each neighbour (``lax.ppermute``), the
  style layers' statistics are ``psum``-ed over ``space`` inside the map, and the losses
  (the TV term's one-row halo included) are XLA's to partition, as in ``propagation``.

Per side: the two programs' loss and gradient against each other, the per-device bytes
of each compiled program (XLA's memory analysis) and seconds per call (median of
``--reps`` after a warm-up call; the forced devices share this machine's cores, so the
time is that of all devices' work on these cores, not of a real multi-device step).
Writes ``bench/results/halo/<machine>.json`` and regenerates ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import child_result, cpu_name

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "halo"


def measure(side: int, devices: int, reps: int) -> dict:
    """Both programs at ``side x side`` on this process's forced devices (see the module docstring)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from bench.common import bench_images, bench_weights
    from jaxstyle.api import prepare
    from jaxstyle.mesh import SPACE, single_run_mesh
    from jaxstyle.solve import total_loss

    weights, _ = bench_weights(Path(tempfile.mkdtemp(prefix="jaxstyle-bench-halo-")))
    content, style = bench_images((side, side))
    problem = prepare(content, style, weights=str(weights), size=(side, side))
    graphdef, params, recipe = problem.graphdef, problem.params, problem.recipe
    targets, loss_weights = problem.targets, problem.loss_weights
    mesh = single_run_mesh(devices)  # settings x space, 1 x devices
    split = NamedSharding(mesh, P(None, SPACE))
    image = jax.device_put(jnp.asarray(problem.state.image), split)
    whole = NamedSharding(mesh, P())
    params, targets, loss_weights = jax.device_put((params, targets, loss_weights), whole)

    split_recipe = recipe._replace(space_mesh=mesh)
    programs = {
        "propagation": lambda p, x: total_loss(x, graphdef, p, recipe, targets, loss_weights),
        "shard_map": lambda p, x: total_loss(x, graphdef, p, split_recipe, targets, loss_weights),
    }
    out, values = {}, {}
    for name, loss in programs.items():
        step = jax.jit(jax.value_and_grad(loss, argnums=1), out_shardings=(whole, split))
        start = time.perf_counter()
        compiled = step.lower(params, image).compile()
        compile_s = time.perf_counter() - start
        m = compiled.memory_analysis()
        value, grad = jax.block_until_ready(compiled(params, image))
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            jax.block_until_ready(compiled(params, image))
            times.append(time.perf_counter() - start)
        hlo = compiled.as_text()
        values[name] = (float(value), np.asarray(grad, np.float64))
        out[name] = {
            "compile_s": compile_s,
            "seconds": statistics.median(times),
            "times": times,
            "bytes": m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes,
            "temp_bytes": m.temp_size_in_bytes,
            "collectives": {op: hlo.count(f" {op}(") for op in ("collective-permute", "all-reduce", "all-gather")},
            "loss": float(value),
        }
    (a, ga), (b, gb) = values["propagation"], values["shard_map"]
    out["agreement"] = {
        "loss_relative": abs(a - b) / abs(a),
        "gradient_relative": float(np.max(np.abs(ga - gb)) / np.max(np.abs(ga))),
    }
    return {"side": side, "devices": devices, "load": os.getloadavg()[0], **out}


def child(side: int, devices: int, reps: int) -> dict:
    """:func:`measure` in a fresh process with ``devices`` forced CPU devices."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    argv = [sys.executable, "-m", "bench.halo", "--child", str(side), str(devices), str(reps)]
    done = subprocess.run(argv, env=env, cwd=HERE.parent, capture_output=True, text=True, timeout=3600)
    row = child_result(done.stdout)
    if done.returncode or row is None:
        raise RuntimeError(f"{side}x{side} over {devices}: {done.stderr.strip().splitlines()[-1:]}")
    p, s = row["propagation"], row["shard_map"]
    print(
        f"  {side}x{side} over {devices}: propagation {p['seconds']:.2f} s, {p['bytes'] / 2**20:.0f} MiB/device; "
        f"shard_map {s['seconds']:.2f} s, {s['bytes'] / 2**20:.0f} MiB/device; "
        f"loss differs by {row['agreement']['loss_relative']:.1e}",
        flush=True,
    )
    return row


def section(path: Path) -> list[str]:
    """The markdown section of ``bench/RESULTS.md`` drawn from one halo result file."""
    d = json.loads(path.read_text())
    out = [
        "## Split images: sharding propagation against shard_map (`python -m bench.halo`)",
        "",
        f"`halo/{path.name}`, {d['date']}; {d['machine']}. Loss and image gradient of the `paper` recipe "
        f"(VGG-19, float32), the image split by rows over {d['devices']} forced CPU devices that share the "
        "machine's cores: seconds per call (median after a warm-up; all devices' work on these cores), per-device "
        "bytes of the compiled program (XLA's memory analysis), collectives in the compiled program, and how far "
        "the two programs' loss and gradient differ (relative; gradient: max abs difference over max abs value).",
        "",
        "| side | propagation s | shard_map s | shard_map / propagation time | propagation MiB/device "
        "| shard_map MiB/device | collectives (permute, all-reduce, all-gather) | loss, gradient differ | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        p, s, a = r["propagation"], r["shard_map"], r["agreement"]

        def ops(x: dict) -> str:
            c = x["collectives"]
            return f"{c['collective-permute']}, {c['all-reduce']}, {c['all-gather']}"

        out.append(
            f"| {r['side']}² | {p['seconds']:.2f} | {s['seconds']:.2f} | {s['seconds'] / p['seconds']:.2f} | "
            f"{p['bytes'] / 2**20:.0f} | {s['bytes'] / 2**20:.0f} | {ops(p)} / {ops(s)} | "
            f"{a['loss_relative']:.0e}, {a['gradient_relative']:.0e} | {r['load']:.1f} |"
        )
    return [*out, ""]


def markdown(results_dir: Path) -> list[str]:
    """The sections of every halo result under ``results_dir / "halo"`` (none: nothing)."""
    return [line for path in sorted((results_dir / "halo").glob("*.json")) for line in section(path)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.halo", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--sides", default="256,512,1024", help="square sides, multiples of 16 x devices")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("SIDE", "DEVICES", "REPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, devices, reps = map(int, args.child)
        print("RESULT " + json.dumps(measure(side, devices, reps)))
        return 0
    from bench.harness import write_result

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_name(),
        "devices": args.devices,
        "rows": [child(int(side), args.devices, args.reps) for side in args.sides.split(",")],
    }
    print("\n".join(section(write_result(RESULTS, result))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
