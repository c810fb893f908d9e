"""``python -m bench``: jaxstyle against PyTorch on the same recipe, on this machine.

1. A parity gate: from the same image, per-term losses and the gradient of one step
   agree between jaxstyle and ``bench/torch_recipe.py`` to 1e-5 relative in float32,
   or nothing is timed. It runs in this process, which stays on the CPU (configured for
   this process only, so that the measuring children still find the GPU, and no GPU
   memory is held here): on a GPU, JAX's default TF32 would miss 1e-5 by far (the
   device's own numerics are ``python -m bench.gpu``'s first step).
2. Each (mode, size) runs in a fresh process (``bench.measure``): compile / first
   call, then per-step seconds of every repetition after warm-up, peak memory, and
   FLOPs per step from XLA's cost analysis, set against the device's measured matmul peak.
3. Sweep throughput: K settings vmapped against K runs one after another.
4. ``bench/results/<device>-<date>.json`` and a regenerated ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import bench_images, bench_weights, child_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARITY_RTOL = 1e-5
FLOOR = "float32 gradient floor (reference vs float64)"
CONFIGS = {
    # name: sizes, repetitions, steps per scan chunk, (sweep size, K values), modes
    "tiny": ([(48, 64)], 2, 2, ((48, 64), (1, 2)), ("jax-jit", "jax-scan", "torch-eager")),
    "quick": (
        [(150, 225), (300, 450), (512, 512)],
        3,
        3,
        ((150, 225), (1, 4, 16)),
        ("jax-jit", "jax-scan", "torch-eager", "torch-compile"),
    ),
    "full": (
        [(150, 225), (300, 450), (512, 512)],
        5,
        10,
        ((150, 225), (1, 4, 16)),
        ("jax-jit", "jax-scan", "torch-eager", "torch-compile"),
    ),
}
GPU_SIZES = [(1024, 1024), (2048, 2048)]


class ParityError(RuntimeError):
    """The two implementations disagree: timing them would compare different programs."""


def gradients(weights_file: Path, size: tuple[int, int], dtype: str, normalise_gram: bool) -> tuple:
    """Per-term losses and the gradient, jaxstyle and PyTorch, at the same noise image (NCHW numpy)."""
    import jax
    import jax.numpy as jnp
    import torch

    from bench import torch_recipe
    from jaxstyle.api import prepare
    from jaxstyle.solve import objective

    content, style = bench_images(size)
    p = prepare(content, style, weights=weights_file, size=size, dtype=dtype)
    # Seed 1: bench_images' stand-in content (when ../shared/images is absent) is seed 0's
    # first draw, and a noise image equal to the content would make the content loss 0.
    pixels = np.random.default_rng(1).uniform(0, 1, content.shape)
    x = p.convention.to_network(jnp.asarray(pixels, dtype)[None])
    (_, terms), grad = jax.value_and_grad(objective, has_aux=True)(
        x, p.graphdef, p.params, p.recipe, p.targets, p.loss_weights
    )
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    features = torch_recipe.vgg19_features()
    convention = torch_recipe.load_converted(features, str(weights_file))
    s = p.settings
    recipe = torch_recipe.Recipe(
        features.to(tdtype),
        torch_recipe.preprocess(content, convention, tdtype),
        torch_recipe.preprocess(style, convention, tdtype),
        s.content_layers,
        s.style_layers,
        (s.content_weight, s.style_weight, s.tv_weight),
        normalise_gram,
    )
    ref_terms, ref_grad = recipe.loss_and_grad(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()))
    ours = {k: float(v) for k, v in terms.items()}
    return ours, np.asarray(grad, np.float64).transpose(0, 3, 1, 2), ref_terms, ref_grad.astype(np.float64)


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def parity_gate(weights_file: Path, size: tuple[int, int], normalise_gram: bool = True) -> dict:
    """jaxstyle against the PyTorch reference, from the same image, before anything is timed.

    float64: every loss term and the gradient agree to 1e-10 relative (the recipe is
    the same). float32: the loss terms agree to 1e-5 relative; the gradient to 1e-5 or,
    where float32 itself cannot resolve it that finely, to a tenth of the reference's
    own float32 error against float64 (measured: at 150x225 both float32 gradients
    lie 1.5e-3 from the float64 one and 3e-5 from each other). ``normalise_gram=False``
    breaks the PyTorch side on purpose: the gate must stop the run.
    """
    import jax

    jax.config.update("jax_enable_x64", True)  # this process only measures parity; timings run elsewhere
    report, limits = {}, {}
    ours64, grad64, ref64, ref_grad64 = gradients(weights_file, size, "float64", normalise_gram)
    ours32, grad32, ref32, ref_grad32 = gradients(weights_file, size, "float32", normalise_gram)
    for name in ref64:
        report[f"float64 {name}"] = abs(ours64[name] - ref64[name]) / abs(ref64[name])
        limits[f"float64 {name}"] = 1e-10
        report[f"float32 {name}"] = abs(ours32[name] - ref32[name]) / abs(ref32[name])
        limits[f"float32 {name}"] = PARITY_RTOL
    report["float64 gradient"], limits["float64 gradient"] = rel(grad64, ref_grad64), 1e-10
    float32_floor = rel(ref_grad32, ref_grad64)
    report["float32 gradient"] = rel(grad32, ref_grad32)
    limits["float32 gradient"] = max(PARITY_RTOL, 0.1 * float32_floor)
    report["float32 gradient floor (reference vs float64)"] = float32_floor
    failed = [k for k in limits if not report[k] <= limits[k]]
    if failed:
        worst = max(failed, key=lambda k: report[k] / limits[k])
        raise ParityError(
            f"parity gate failed at {size[0]}x{size[1]}: {worst} differs by {report[worst]:.3g} relative "
            f"(limit {limits[worst]:.3g})"
        )
    return report


def gpu_child(step: str, args: dict, timeout: float = 300) -> dict:
    """A step of ``bench.gpu`` in a fresh process (which finds the device this one leaves alone)."""
    cmd = [sys.executable, "-m", "bench.gpu", "--child", step, json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    result = child_result(proc.stdout)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"bench.gpu {step}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return result


def matmul_peak_flops(n: int, dtype: str, platform_name: str) -> float:
    """Measured matrix-product rate of the measurements' device in ``dtype``, in a child process
    (``bench.gpu``'s peaks): float32 at the precision jaxstyle runs it by default (TF32 on a GPU)."""
    rates = gpu_child("peaks", {"n": n})["flops_per_s"]
    return rates["bfloat16" if dtype == "bfloat16" else "tf32" if platform_name == "gpu" else "fp32"]


def keep_to_the_cpu() -> None:
    """This process (the parity gate, the tables) on the CPU; children are not affected."""
    import jax

    jax.config.update("jax_platforms", "cpu")


def run_child(mode: str, size, steps: int, reps: int, weights: Path, timeout: float, dtype: str = "float32") -> dict:
    cmd = [sys.executable, "-m", "bench.measure", mode, f"{size[0]}x{size[1]}", str(steps), str(reps), str(weights)]
    cmd.append(dtype)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    result = child_result(proc.stdout)
    if proc.returncode != 0 or result is None:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])
        return {"mode": mode, "size": list(size), "error": f"exit {proc.returncode}: {tail[:300]}"}
    return result


def machine(device: dict | None = None) -> dict:
    """This machine; ``device``: the measurements' device as ``bench.gpu``'s ``devices`` child saw it
    (default: this process's)."""
    if device is None:
        import jax

        first = jax.devices()[0]
        device = {"platform": first.platform, "device_kind": first.device_kind, "device_count": jax.device_count()}
    return {
        "platform": device["platform"],
        "device_kind": device["device_kind"],
        "device_count": device["device_count"],
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    import importlib.metadata as md

    return {name: md.version(name) for name in ("jax", "jaxlib", "flax", "optax", "torch", "numpy")}


def write_result(directory: Path, result: dict) -> Path:
    """``result`` as ``directory/<device>.json`` (this machine's device slug); bench/RESULTS.md
    regenerated from every result under bench/results."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{device_slug(machine())}.json"
    path.write_text(json.dumps(result, indent=1))
    (HERE / "RESULTS.md").write_text(results_markdown(HERE / "results"))
    return path


def device_slug(m: dict) -> str:
    if m["platform"] == "cpu":
        return f"cpu-{m['cpu_count']}core"
    return m["device_kind"].lower().replace(" ", "-")


def summarise(row: dict, peak_flops: float, torch_eager: dict | None) -> dict:
    """Median and min per step, achieved FLOP/s and fraction of peak, ratio to torch eager."""
    if "error" in row:
        return row
    steps = row["step_s"]
    row["median_s"], row["min_s"] = statistics.median(steps), min(steps)
    if row.get("flops_per_step"):
        row["achieved_flops"] = row["flops_per_step"] / row["median_s"]
        row["fraction_of_peak"] = row["achieved_flops"] / peak_flops
    if torch_eager and "median_s" in torch_eager:
        row["speedup_vs_torch_eager"] = torch_eager["median_s"] / row["median_s"]
    return row


def run(config: str, out_dir: Path, normalise_gram: bool = True, timeout: float = 1200, dtype: str = "float32") -> dict:
    """Run a configuration; returns the results (also written to ``out_dir``).

    ``dtype="bfloat16"``: bfloat16 convolutions in both frameworks (Gram matrices and
    losses in float32), sweeps at K = 1 and 8, each size's final loss compared with a
    float32 run of the same steps, and the peak measured with a bfloat16 matrix product.
    """
    device = gpu_child("devices", {})  # before this process touches JAX
    keep_to_the_cpu()
    sizes, reps, chunk, (sweep_size, ks), modes = CONFIGS[config]
    if dtype == "bfloat16":
        ks = (1, 8)
    on_gpu = device["platform"] == "gpu"
    if on_gpu and config == "full":
        sizes = sizes + GPU_SIZES
    workdir = Path(tempfile.mkdtemp(prefix="jaxstyle-bench-"))
    weights, weights_kind = bench_weights(workdir)
    started = time.perf_counter()
    print(f"parity gate at {sizes[0][0]}x{sizes[0][1]} ...", flush=True)
    parity = parity_gate(weights, sizes[0], normalise_gram)
    print("  passed: " + ", ".join(f"{k} {v:.2g}" for k, v in parity.items()), flush=True)
    import jax

    jax.config.update("jax_enable_x64", False)
    peak = matmul_peak_flops(8192 if on_gpu else 2048, dtype, device["platform"])
    print(f"measured {dtype} matmul peak: {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows = []
    for size in sizes:
        by_mode = {}
        for mode in modes:
            row = run_child(mode, size, chunk, reps, weights, timeout, dtype)
            by_mode[mode] = row
            print(
                f"  {size[0]}x{size[1]} {mode}: "
                + (row.get("error") or f"median {statistics.median(row['step_s']):.3f} s/step"),
                flush=True,
            )
        if dtype == "bfloat16" and "final_loss" in by_mode.get("jax-scan", {}):
            reference = run_child("jax-scan", size, chunk, reps, weights, timeout, "float32")
            if "final_loss" in reference:
                diff = abs(by_mode["jax-scan"]["final_loss"] - reference["final_loss"]) / abs(reference["final_loss"])
                by_mode["jax-scan"]["final_loss_float32"] = reference["final_loss"]
                by_mode["jax-scan"]["final_loss_rel_diff_vs_float32"] = diff
                print(f"  {size[0]}x{size[1]} bfloat16 final loss vs float32: {diff:.2e} relative", flush=True)
        torch_eager = summarise(by_mode.get("torch-eager", {"error": "not run"}), peak, None)
        rows += [summarise(by_mode[m], peak, torch_eager) for m in modes]
    sweep_rows = []
    for k in ks:
        vmapped = summarise(run_child(f"jax-sweep-{k}", sweep_size, chunk, reps, weights, timeout, dtype), peak, None)
        sequential = summarise(run_child(f"jax-seq-{k}", sweep_size, chunk, reps, weights, timeout, dtype), peak, None)
        entry = {"settings": k, "size": list(sweep_size), "vmapped": vmapped, "sequential": sequential}
        if "median_s" in vmapped and "median_s" in sequential:
            entry["speedup"] = sequential["median_s"] / vmapped["median_s"]
            print(
                f"  sweep K={k}: vmapped {vmapped['median_s']:.3f}, sequential {sequential['median_s']:.3f} "
                f"s per setting-step",
                flush=True,
            )
        sweep_rows.append(entry)
    lbfgs = summarise(run_child("jax-lbfgs", sweep_size, chunk, reps, weights, timeout, dtype), peak, None)
    if "median_s" in lbfgs:
        print(
            f"  L-BFGS {sweep_size[0]}x{sweep_size[1]}: {lbfgs['median_s']:.3f} s/step, "
            f"{lbfgs['evaluations_per_step']:.2f} line-search evaluations per step",
            flush=True,
        )
    m = machine(device)
    results = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "config": config,
        "machine": m,
        "versions": versions(),
        "weights": weights_kind,
        "dtype": dtype,
        "parity": parity,
        "matmul_peak_flops": peak,
        "rows": rows,
        "sweep": sweep_rows,
        "lbfgs": lbfgs,
        "wall_s": time.perf_counter() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if dtype == "float32" else f"-{dtype}"
    path = out_dir / f"{device_slug(m)}-{dt.date.today().isoformat()}-{config}{suffix}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
    return results


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def results_markdown(results_dir: Path) -> str:
    """One table per device (its newest full or quick run), plus the sweep table."""
    newest: dict[str, tuple[str, dict]] = {}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if data["config"] == "tiny":
            continue
        key = device_slug(data["machine"]) + ("" if data["dtype"] == "float32" else f", {data['dtype']}")
        newest[key] = (path.name, data)
    out = [
        "# Benchmark results",
        "",
        "Written by `python -m bench`; do not edit by hand. Seconds per Adam step of the `paper` recipe",
        "(median over repetitions after warm-up, device synchronised); `vs torch eager` is torch eager's",
        "median over this row's (above 1: jaxstyle is faster). FLOPs from XLA's cost analysis of one step.",
        "",
    ]
    for key, (name, d) in sorted(newest.items()):
        m, v = d["machine"], d["versions"]
        out += [
            f"## {m['device_kind']} ({key})",
            "",
            f"`{name}`, {d['date']}; jax {v['jax']}, flax {v['flax']}, optax {v['optax']}, torch {v['torch']}; "
            f"{m['cpu_count']} CPU cores; weights: {d['weights']}; {d['dtype']}. "
            f"Parity gate (jaxstyle vs PyTorch, same image): float64 gradient {d['parity']['float64 gradient']:.1e}, "
            f"float32 total loss {d['parity']['float32 total']:.1e}, float32 gradient "
            f"{d['parity']['float32 gradient']:.1e} (float32's own error {d['parity'][FLOOR]:.1e}). "
            f"Measured {d['dtype']} matmul peak {d['matmul_peak_flops'] / 1e9:.1f} GFLOP/s."
            + "".join(
                f" bfloat16 final loss after the jax-scan run at {r['size'][0]}x{r['size'][1]}: "
                f"{r['final_loss_rel_diff_vs_float32']:.1e} relative to float32."
                for r in d["rows"]
                if "final_loss_rel_diff_vs_float32" in r
            ),
            "",
            "| size | mode | first call s | median s/step | min s/step | peak MiB (host) | GFLOP/step | "
            "GFLOP/s | % of peak | vs torch eager |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in d["rows"]:
            size = f"{r['size'][0]}x{r['size'][1]}"
            if "error" in r:
                out.append(f"| {size} | {r['mode']} | error: {r['error'][:80]} | | | | | | | |")
                continue
            flops = r.get("flops_per_step")
            out.append(
                f"| {size} | {r['mode']} | {r['first_call_s']:.2f} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                f"{r['host_peak_mib']:.0f} | {fmt(flops and flops / 1e9, '.1f')} | "
                f"{fmt(r.get('achieved_flops') and r['achieved_flops'] / 1e9, '.1f')} | "
                f"{fmt(r.get('fraction_of_peak') and 100 * r['fraction_of_peak'], '.0f')} | "
                f"{fmt(r.get('speedup_vs_torch_eager'), '.2f')} |"
            )
        out += [
            "",
            "Sweeps: seconds per setting-step, K settings vmapped (in micro-batches of B, the "
            "default of `jaxstyle sweep` on this device) against K separate runs one after another.",
            "",
            "| size | K | B | vmapped s | sequential s | speedup | vmapped GFLOP/s | % of peak |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for s in d["sweep"]:
            v = s["vmapped"]
            out.append(
                f"| {s['size'][0]}x{s['size'][1]} | {s['settings']} | {v.get('batch_size', s['settings'])} | "
                f"{fmt(v.get('median_s'), '.3f')} | {fmt(s['sequential'].get('median_s'), '.3f')} | "
                f"{fmt(s.get('speedup'), '.2f')} | "
                f"{fmt(v.get('achieved_flops') and v['achieved_flops'] / 1e9, '.1f')} | "
                f"{fmt(v.get('fraction_of_peak') and 100 * v['fraction_of_peak'], '.0f')} |"
            )
        out += lbfgs_lines(d)
        out.append("")
    from bench import gpu, halo, memory, peers, spatial, throughput, video

    out += throughput.markdown(results_dir)  # results of `python -m bench.throughput`
    out += video.markdown(results_dir / video.VIDEO_RESULTS.name)
    out += spatial.markdown(results_dir)
    out += halo.markdown(results_dir)
    out += peers.markdown(results_dir)  # results of `python -m bench.peers`
    out += memory.markdown(results_dir / "memory")  # results of `python -m bench.memory`
    out += gpu.results_lines(results_dir / "gpu")  # runs of `python -m bench.gpu`, kept
    notes = results_dir / "notes.md"  # kept by hand: the figures behind the code's choices
    if notes.exists():
        out += ["", *notes.read_text().rstrip("\n").splitlines()]
    return "\n".join(out)


def lbfgs_lines(d: dict) -> list[str]:
    """The L-BFGS paragraph: seconds per step against Adam's at the same size, evaluations per step."""
    lbfgs = d.get("lbfgs", {})
    if "median_s" not in lbfgs:
        return []
    size = lbfgs["size"]
    adam = next((r for r in d["rows"] if r["mode"] == "jax-scan" and r["size"] == size and "median_s" in r), None)
    versus = f" ({lbfgs['median_s'] / adam['median_s']:.2f}x an Adam step, {adam['median_s']:.3f} s)" if adam else ""
    return [
        "",
        f"L-BFGS (`--optimizer lbfgs`, the `paper` losses) at {size[0]}x{size[1]}: {lbfgs['median_s']:.3f} s per "
        f"step{versus}; its zoom line search evaluated loss and gradient {lbfgs['evaluations_per_step']:.2f} times "
        f"per step over {lbfgs['steps_counted']} steps, and each step adds one forward pass for the trace's "
        "per-term losses (the line search's stored loss and gradient are reused, not evaluated again).",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="config",
        help="3 sizes, 3 repetitions (under 15 minutes on 2 CPU cores)",
    )
    size.add_argument("--tiny", action="store_const", const="tiny", dest="config", help="smoke test")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="bfloat16: convolutions in bfloat16, Gram matrices and losses in float32, in both frameworks",
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="results directory")
    parser.add_argument("--markdown", default=str(HERE / "RESULTS.md"), help="regenerated table")
    parser.add_argument(
        "--inject-wrong-gram",
        action="store_true",
        help="drop the Gram normalisation on the PyTorch side (the parity gate must stop the run)",
    )
    args = parser.parse_args(argv)
    config = args.config or "full"
    try:
        run(config, Path(args.out), normalise_gram=not args.inject_wrong_gram, dtype=args.dtype)
    except ParityError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    Path(args.markdown).write_text(results_markdown(Path(args.out)))
    print(f"wrote {args.markdown}")
    return 0
