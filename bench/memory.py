"""``python -m bench.memory``: the memory model of one step, fitted and checked; large images.

* ``fit``: XLA's compiled memory analysis (arguments + outputs + temporaries) of one
  Adam step of the ``paper`` recipe at :data:`FIT_SIZES`, per network, compute dtype
  and remat mode; least squares of ``fixed + factor * A(H, W)`` (see
  :func:`jaxstyle.plan.step_bytes`); prints this platform's ``MEMORY_MODEL`` table for plan.py.
* ``check``: the model against the compiled analysis at sizes it was not fitted on;
  ``check-w2``: the same for the Wasserstein-2 style loss (the model is fitted on Gram).
* ``runs``: fresh processes (``bench.measure``) at :data:`RUN_SIDES` for each jaxstyle
  mode and PyTorch eager: seconds per step and peak resident memory; the log-log slope
  of seconds against pixels; a host model ``RSS = base + scale * estimate`` fitted on
  256² and 512² and checked on the larger ones; the largest square whose step
  fits :data:`BUDGET_GIB`, each against PyTorch eager's, then one real run at each.
* ``markdown``: the section of ``bench/RESULTS.md`` (``python -m bench`` appends it).

Results go to ``bench/results/memory/<what>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.common import child_result, cpu_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "results" / "memory"
FIT_SIZES = [(128, 128), (256, 256), (384, 384)]
CHECK_SIZES = [(200, 300), (512, 512)]
CONFIGS = [(n, d, r) for n in ("vgg19", "vgg16") for d in ("float32", "bfloat16") for r in ("none", "blocks", "bands")]
RUN_SIDES = [256, 512, 1024, 2048]
HOST_FIT_SIDES = (256, 2048)
# jaxstyle modes of the fresh-process runs: (label, dtype, remat).
RUN_MODES = [
    ("none", "float32", "none"),
    ("blocks", "float32", "blocks"),
    ("bfloat16", "bfloat16", "none"),
    ("bands", "float32", "bands"),
]
BUDGET_GIB = 8.0


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load": os.getloadavg()[0], "date": now()}


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def weights_file(net: str, workdir: Path) -> Path:
    """Seeded random weights of ``net`` (memory and time do not depend on the values)."""
    from jaxstyle.preprocess import TORCHVISION
    from jaxstyle.weights import random_convs, write_converted

    path = workdir / f"{net}-random.h5"
    if not path.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        write_converted(path, random_convs(0, net), TORCHVISION, {"source": "random (benchmark)"}, net)
    return path


def recipe(net: str) -> dict:
    """The ``paper`` recipe's settings on ``net`` (VGG-16 has no relu4_4: content relu4_2, as Gatys et al.)."""
    return {"network": net} if net == "vgg19" else {"network": net, "content_layers": ("relu4_2",)}


def compiled_step(net: str, size: tuple[int, int], compute: str, remat: str, weights: Path, style_loss: str = "gram"):
    """The compiled Adam step of the ``paper`` recipe on ``net`` at ``size`` (noise images), with
    ``style_loss`` (``gram`` or ``w2``)."""
    import jax

    from jaxstyle.api import prepare
    from jaxstyle.solve import optimizer_step

    rng = np.random.default_rng(0)
    content, style = rng.uniform(0, 1, (2, *size, 3)).astype(np.float32)
    compute_dtype = None if compute == "float32" else compute
    p = prepare(
        content,
        style,
        weights=weights,
        size=size,
        remat=remat,
        compute_dtype=compute_dtype,
        style_loss=style_loss,
        **recipe(net),
    )
    step = jax.jit(optimizer_step, static_argnames=("graphdef", "recipe"))
    return step.lower(p.graphdef, p.recipe, p.params, p.targets, p.loss_weights, p.state).compile(), p


def analysed_bytes(compiled) -> dict[str, int]:
    """Arguments, outputs, temporaries and their sum (less aliased bytes) from the compiled memory analysis."""
    m = compiled.memory_analysis()
    out = {k: int(getattr(m, f"{k}_size_in_bytes")) for k in ("argument", "output", "temp", "alias")}
    out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def activation_bytes(net: str, size: tuple[int, int]) -> int:
    """``A(H, W)`` of the ``paper`` recipe (:func:`jaxstyle.plan.step_bytes`)."""
    from jaxstyle.config import resolve
    from jaxstyle.nets import network

    s = resolve("paper", **recipe(net))
    spec = network(net)
    return 4 * spec.activation_count(*size, spec.deepest((*s.content_layers, *s.style_layers)))


def fit(workdir: Path, only: list[str]) -> dict:
    """Fit every configuration (``only``: those remat modes, the others' rows kept from the last fit)."""
    previous = load("fit") or {"rows": []}
    rows = [r for r in previous["rows"] if only and r["remat"] not in only]
    for net, compute, remat in CONFIGS:
        if only and remat not in only:
            continue
        w = weights_file(net, workdir)
        for size in FIT_SIZES:
            b = analysed_bytes(compiled_step(net, size, compute, remat, w)[0])
            rows.append({"network": net, "dtype": compute, "remat": remat, "size": size, **b})
            print(net, compute, remat, size, f"{b['total'] / 2**20:.1f} MiB", flush=True)
    model = {}
    for net, compute, remat in CONFIGS:
        pts = [r for r in rows if (r["network"], r["dtype"], r["remat"]) == (net, compute, remat)]
        a = np.array([activation_bytes(net, tuple(r["size"])) for r in pts], float)
        y = np.array([r["total"] for r in pts], float)
        factor, fixed = np.polyfit(a, y, 1)
        model[f"{net},{compute},{remat}"] = [round(float(fixed)), round(float(factor), 4)]
    result = {"machine": machine(), "sizes": FIT_SIZES, "rows": rows, "model": model}
    save("fit", result)
    import jax

    print(f'MEMORY_MODEL["{jax.devices()[0].platform}"] = {{  # plan.MEMORY_MODEL is keyed by platform')
    for key, (fixed, factor) in model.items():
        net, compute, remat = key.split(",")
        print(f'    ("{net}", "{compute}", "{remat}"): ({fixed}, {factor}),')
    print("}")
    return result


def check(workdir: Path, only: list[str]) -> dict:
    from jaxstyle.config import resolve
    from jaxstyle.plan import step_bytes

    previous = load("check") or {"rows": []}
    rows = [r for r in previous["rows"] if only and r["remat"] not in only and r.get("style_loss") != "w2"]
    for net, compute, remat in CONFIGS:
        if only and remat not in only:
            continue
        if net != "vgg19" and (compute, remat) != ("float32", "none"):
            continue  # VGG-16: float32 without remat only (each check compiles a step)
        w = weights_file(net, workdir)
        large = [(1024, 1024), (2048, 2048)] if (net, remat) == ("vgg19", "none") else []
        for size in CHECK_SIZES + large:
            b = analysed_bytes(compiled_step(net, size, compute, remat, w)[0])
            model = step_bytes(size, resolve("paper", **recipe(net)), "float32", remat, compute)
            rows.append({"network": net, "dtype": compute, "remat": remat, "size": size, "model": model, **b})
            print(net, compute, remat, size, f"{b['total'] / 2**20:.1f} MiB, model {model / 2**20:.1f}", flush=True)
    rows += [r for r in previous["rows"] if r.get("style_loss") == "w2"]  # check-w2's rows
    result = {"machine": machine(), "rows": rows}
    save("check", result)
    return result


def measure(mode: str, side: int, dtype: str, remat: str, weights: Path, reps: int) -> dict:
    """One fresh ``bench.measure`` process; the parsed result or ``{"error": ...}``."""
    args = [sys.executable, "-m", "bench.measure", mode, f"{side}x{side}", "1", str(reps), str(weights), dtype, remat]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = child_result(proc.stdout)
    if result is None:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200], "rc": proc.returncode}
    return result


def runs(workdir: Path, sides: list[int], labels: list[str] | None = None, name: str = "runs") -> dict:
    """Fresh-process step time and peak RSS per mode and size (torch eager included); ``labels``: only these.

    Saved to ``<name>.json`` (``runs*.json`` are read together: two chains of runs may
    write their own files at once)."""
    w = weights_file("vgg19", workdir)
    path = OUT / f"{name}.json"
    result = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    result["machine"] = machine()
    for side in sides:
        for label, dtype, remat in [*RUN_MODES, ("torch-eager", "float32", "none")]:
            if labels and label not in labels:
                continue
            reps = 1 if side > 1024 else 3
            mode = "torch-eager" if label == "torch-eager" else "jax-jit"
            load = os.getloadavg()[0]
            r = measure(mode, side, dtype, remat, w, reps)
            row = {"label": label, "side": side, "load_before": load, **r}
            result["rows"] = [x for x in result["rows"] if (x["label"], x["side"]) != (label, side)] + [row]
            print(label, side, r.get("host_peak_mib"), r.get("step_s"), r.get("error", ""), flush=True)
            save(name, result)
    return result


def check_w2(workdir: Path) -> dict:
    """The model (fitted on Gram style losses) against the compiled analysis of a Wasserstein-2 step.

    W2 reads each style layer's mean and second moment and keeps ``C x C`` covariances and
    their square roots: small beside the activations, so the Gram model should hold."""
    from jaxstyle.config import resolve
    from jaxstyle.plan import step_bytes

    previous = load("check") or {"rows": []}
    rows = [r for r in previous["rows"] if r.get("style_loss") != "w2"]
    w = weights_file("vgg19", workdir)
    for size in [*CHECK_SIZES, (1024, 1024)]:
        b = analysed_bytes(compiled_step("vgg19", size, "float32", "none", w, style_loss="w2")[0])
        model = step_bytes(size, resolve("paper", style_loss="w2"), "float32", "none")
        row = {"network": "vgg19", "dtype": "float32", "remat": "none", "style_loss": "w2", "size": size}
        rows.append({**row, "model": model, **b})
        print("vgg19 w2", size, f"{b['total'] / 2**20:.1f} MiB, model {model / 2**20:.1f}", flush=True)
    result = {"machine": machine(), "rows": rows}
    save("check", result)
    return result


def host_models(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """Per mode, ``RSS MiB = base + scale * x`` fitted on :data:`HOST_FIT_SIDES`; ``x`` the compiled
    estimate in MiB for jaxstyle, the pixel count in Mpx for PyTorch eager."""
    out = {}
    for label in [m[0] for m in RUN_MODES] + ["torch-eager"]:
        pts = [r for r in rows if r["label"] == label and r["side"] in HOST_FIT_SIDES and "host_peak_mib" in r]
        if len(pts) < 2:
            continue
        x = np.array([model_x(label, r["side"]) for r in pts])
        y = np.array([r["host_peak_mib"] for r in pts])
        scale, base = np.polyfit(x, y, 1)
        out[label] = (float(base), float(scale))
    return out


def model_x(label: str, side: int) -> float:
    """The host model's variable: the step estimate in MiB (jaxstyle), or Mpx (PyTorch eager)."""
    from jaxstyle.config import resolve
    from jaxstyle.plan import step_bytes

    if label == "torch-eager":
        return side * side / 1e6
    _, dtype, remat = next(m for m in RUN_MODES if m[0] == label)
    return step_bytes((side, side), resolve("paper"), "float32", remat, dtype) / 2**20


def largest_side(label: str, models: dict, budget_mib: float) -> int:
    """The largest square side (a multiple of 16) whose predicted peak RSS fits ``budget_mib``."""
    base, scale = models[label]
    lo, hi = 16, 16
    while base + scale * model_x(label, hi) <= budget_mib:
        lo, hi = hi, hi * 2
    while hi - lo > 16:
        mid = (lo + hi) // 32 * 16
        lo, hi = (mid, hi) if base + scale * model_x(label, mid) <= budget_mib else (lo, mid)
    return lo


def budget(workdir: Path, verify: list[str]) -> dict:
    """The largest square per mode in :data:`BUDGET_GIB`, from the host models, checked by one real run
    for the modes in ``verify``."""
    runs_data = load("runs")
    models = host_models(runs_data["rows"])
    w = weights_file("vgg19", workdir)
    rows = []
    for label in models:
        side = largest_side(label, models, BUDGET_GIB * 1024)
        row = {
            "label": label,
            "side": side,
            "predicted_mib": models[label][0] + models[label][1] * model_x(label, side),
        }
        if label in verify:
            dtype, remat = next(((m[1], m[2]) for m in RUN_MODES if m[0] == label), ("float32", "none"))
            mode = "torch-eager" if label == "torch-eager" else "jax-jit"
            row["load_before"] = os.getloadavg()[0]
            row["run"] = measure(mode, side, dtype, remat, w, 1)
            print(label, side, row["predicted_mib"], row["run"].get("host_peak_mib"), flush=True)
        rows.append(row)
    result = {"machine": machine(), "budget_gib": BUDGET_GIB, "host_models": models, "rows": rows}
    save("budget", result)
    return result


def save(what: str, result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{what}.json").write_text(json.dumps(result, indent=1))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``log(seconds)`` against ``log(pixels)``."""
    x, y = np.log([p for p, _ in points]), np.log([s for _, s in points])
    return float(np.polyfit(x, y, 1)[0])


def load(what: str, directory: Path = OUT) -> dict | None:
    """``<what>.json``; for ``runs``, the rows of every ``runs*.json`` together (the newest file's machine)."""
    if what == "runs":
        files = sorted(directory.glob("runs*.json"), key=lambda p: p.stat().st_mtime)
        if not files:
            return None
        parts = [json.loads(p.read_text()) for p in files]
        return {"machine": parts[-1]["machine"], "rows": [r for part in parts for r in part["rows"]]}
    path = directory / f"{what}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def markdown(directory: Path = OUT) -> list[str]:
    """The memory section of ``bench/RESULTS.md`` from ``directory``'s JSON (``bench/results/memory``)."""
    fitted, checked, run, fits = (load(what, directory) for what in ("fit", "check", "runs", "budget"))
    if not (fitted or checked or run or fits):
        return []
    out = ["## Memory and large images (`python -m bench.memory`)", ""]
    if fitted:
        m = fitted["machine"]
        out += [
            f"Memory model `fixed + factor * A(H, W)` (`jaxstyle/plan.py`), fitted on XLA's compiled memory "
            f"analysis at {', '.join(f'{h}x{w}' for h, w in fitted['sizes'])}; {m['cpu']}, {m['cores']} cores, "
            f"{m['date']}. A: float32 bytes of the forward activations to the deepest layer used.",
            "",
            "| network | compute dtype | remat | fixed MiB | factor |",
            "|---|---|---|---|---|",
        ]
        for key, (fixed, factor) in fitted["model"].items():
            net, compute, remat = key.split(",")
            out.append(f"| {net} | {compute} | {remat} | {fixed / 2**20:.1f} | {factor:.3f} |")
        out.append("")
    if checked:
        out += [
            "The model against the compiled analysis at sizes it was not fitted on:",
            "",
            "| network | style loss | dtype | remat | size | compiled MiB | model MiB | error |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in checked["rows"]:
            err = r["model"] / r["total"] - 1
            out.append(
                f"| {r['network']} | {r.get('style_loss', 'gram')} | {r['dtype']} | {r['remat']} | "
                f"{r['size'][0]}x{r['size'][1]} | "
                f"{r['total'] / 2**20:.0f} | {r['model'] / 2**20:.0f} | {100 * err:+.1f}% |"
            )
        out.append("")
    if run:
        m = run["machine"]
        models = host_models(run["rows"])
        labels = [x[0] for x in RUN_MODES] + ["torch-eager"]
        out += [
            f"Fresh processes (`bench.measure`, VGG-19 `paper` recipe, one Adam step per call, compilation "
            f"excluded; median of 3 steps up to 1024², 1 step above): seconds per step and peak resident "
            f"memory (VmHWM). {m['cpu']}, {m['cores']} cores, {m['date']}; load average before each run in "
            "brackets. jaxstyle modes: `none` float32, `blocks` float32 with `--remat blocks`, `bfloat16` "
            "convolutions (no remat).",
            "",
            "| side | " + " | ".join(f"{lb} s/step | {lb} peak MiB" for lb in labels) + " |",
            "|---|" + "---|---|" * len(labels),
        ]
        sides = sorted({r["side"] for r in run["rows"]})
        for side in sides:
            cells = []
            for lb in labels:
                r = next((x for x in run["rows"] if x["label"] == lb and x["side"] == side), None)
                if r is None or "error" in r:
                    cells += ["—" if r is None else f"error: {r['error'][:40]}", ""]
                    continue
                cells += [f"{np.median(r['step_s']):.2f} ({r['load_before']:.1f})", f"{r['host_peak_mib']:.0f}"]
            out.append(f"| {side}x{side} | " + " | ".join(cells) + " |")
        slopes = []
        for lb in labels:
            pts = [
                (r["side"] ** 2, float(np.median(r["step_s"])))
                for r in run["rows"]
                if r["label"] == lb and "step_s" in r and r["side"] >= 256
            ]
            if len(pts) >= 2:
                slopes.append(f"{lb} {slope(pts):.2f}")
        out += ["", f"Log-log slope of seconds per step against pixels, 256² to 2048²: {', '.join(slopes)}.", ""]
        at_2048 = [r for r in run["rows"] if r["label"] == "none" and r["side"] == 2048 and "step_s" in r]
        pts = [
            (r["side"] ** 2, float(np.median(r["step_s"])))
            for r in run["rows"]
            if r["label"] == "none" and "step_s" in r
        ]
        # In proportion to the pixels (slope 1; measured on a quiet machine: 1.04, 1.09 from 512² up).
        prints = prints_lines(float(np.median(at_2048[0]["step_s"])) if at_2048 else None, 1.0 if pts else None)
        unfitted = [side for side in sides if side not in HOST_FIT_SIDES]
        if models:
            out += [
                "Host model `peak RSS = base + scale * x` fitted on "
                f"{', '.join(str(s) for s in HOST_FIT_SIDES)}-px squares (x: jaxstyle's step estimate in MiB; "
                "PyTorch eager: Mpx), against the runs above it was not fitted on:",
                "",
                "| mode | base MiB | scale | " + " | ".join(f"{s}² predicted / measured" for s in unfitted) + " |",
                "|---|---|---|" + "---|" * len(unfitted),
            ]
            for lb, (base, scale) in models.items():
                cells = []
                for side in unfitted:
                    r = next((x for x in run["rows"] if x["label"] == lb and x["side"] == side), None)
                    pred = base + scale * model_x(lb, side)
                    meas = f"{r['host_peak_mib']:.0f}" if r and "host_peak_mib" in r else "—"
                    cells.append(f"{pred:.0f} / {meas}")
                out.append(f"| {lb} | {base:.0f} | {scale:.3f} | " + " | ".join(cells) + " |")
            out.append("")
    if fits:
        torch_side = next((r["side"] for r in fits["rows"] if r["label"] == "torch-eager"), None)
        checked = any("run" in r for r in fits["rows"])
        out += [
            f"Largest square whose step fits {fits['budget_gib']:.0f} GiB of resident memory (host model above"
            + (
                ", checked by one real step at that size"
                if checked
                else "; no run at exactly these sides: the model is checked on the runs above it was not fitted on"
            )
            + "), VGG-19 `paper` recipe, CPU:",
            "",
            "| mode | side | pixels vs PyTorch eager | predicted MiB | measured MiB | s/step |",
            "|---|---|---|---|---|---|",
        ]
        for r in fits["rows"]:
            ratio = f"{(r['side'] / torch_side) ** 2:.2f}x" if torch_side else "—"
            run_r = r.get("run", {})
            meas = f"{run_r['host_peak_mib']:.0f}" if "host_peak_mib" in run_r else run_r.get("error", "—")
            secs = f"{np.median(run_r['step_s']):.1f}" if "step_s" in run_r else "—"
            out.append(f"| {r['label']} | {r['side']} | {ratio} | {r['predicted_mib']:.0f} | {meas} | {secs} |")
        out += [
            "| sharded over 4 forced devices | — | — | — | — | — |",
            "",
            "The sharded row belongs to the spatial-sharding work (`--spatial-shards`). No GPU was available "
            "in this session: there is no GPU 4096² row.",
            "",
        ]
    out += fits_lines()
    if run:
        out += prints
    return out


def largest_square(budget_bytes: float, compute: str, remat: str = "none") -> int:
    """The largest square side (a multiple of 16) whose step estimate (:func:`jaxstyle.plan.step_bytes`)
    fits ``budget_bytes`` of device memory, VGG-19 ``paper`` recipe."""
    from jaxstyle.config import resolve
    from jaxstyle.plan import step_bytes

    s = resolve("paper")
    side = 16
    while step_bytes((side + 16, side + 16), s, "float32", remat, compute) <= budget_bytes:
        side += 16
    return side


def fits_lines() -> list[str]:
    """What fits where: the model's largest square per memory size, float32 and bfloat16."""
    budgets = [8, 12, 16, 24, 40, 80, 141]
    out = [
        "What fits where (device memory for one step of one setting, VGG-19 `paper` recipe, from the model; "
        "a GPU's estimate is the CPU-fitted model, not measured on a GPU; keep 30% free, as the planner does):",
        "",
        "| mode | " + " | ".join(f"{b} GiB" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for compute, remat in (("float32", "none"), ("bfloat16", "none"), ("float32", "bands"), ("bfloat16", "bands")):
        sides = [largest_square(0.7 * b * 2**30, compute, remat) for b in budgets]
        out.append(f"| {compute}, remat {remat} | " + " | ".join(f"{s}²" for s in sides) + " |")
    return [*out, ""]


def prints_lines(seconds_at_2048: float | None, slope_value: float | None) -> list[str]:
    """The scales of coarse-to-fine print runs (``--scales``, each sqrt(2) larger) with their step memory
    (model) and seconds per step on this CPU (extrapolated from 2048² with the measured log-log slope)."""
    from jaxstyle.config import resolve
    from jaxstyle.plan import step_bytes

    s = resolve("paper")
    out = [
        "Coarse-to-fine print runs: the last scales of a square print, the step memory of each (model) and "
        "seconds per step on this CPU, extrapolated from the measured 2048² step in proportion to the pixels:",
        "",
        "| side | float32 GiB | bfloat16 GiB | float32, remat bands GiB | s/step here (float32) |",
        "|---|---|---|---|---|",
    ]
    for side in (1024, 1448, 2048, 2896, 4096, 5793, 8192):
        f32 = step_bytes((side, side), s, "float32", "none") / 2**30
        bf16 = step_bytes((side, side), s, "float32", "none", "bfloat16") / 2**30
        bands = step_bytes((side, side), s, "float32", "bands") / 2**30
        secs = f"{seconds_at_2048 * (side / 2048) ** (2 * slope_value):.0f}" if seconds_at_2048 and slope_value else "—"
        out.append(f"| {side} | {f32:.1f} | {bf16:.1f} | {bands:.1f} | {secs} |")
    return [*out, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("fit", "check", "check-w2", "runs", "budget", "markdown"))
    parser.add_argument("--sides", default=",".join(map(str, RUN_SIDES)), help="runs: square sides")
    parser.add_argument("--remat", default="", help="fit, check: only these remat modes (comma-separated)")
    parser.add_argument("--name", default="runs", help="runs: results file name (runs*.json are read together)")
    parser.add_argument("--labels", default="", help="runs: only these modes (comma-separated)")
    parser.add_argument("--verify", default="", help="budget: modes checked by a real run at the predicted size")
    parser.add_argument("--workdir", default="/tmp/jaxstyle-bench-memory", help="random weights files")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    only = [x for x in args.remat.split(",") if x]
    if args.what == "fit":
        fit(workdir, only)
    elif args.what == "check":
        check(workdir, only)
    elif args.what == "check-w2":
        check_w2(workdir)
    elif args.what == "runs":
        runs(workdir, [int(s) for s in args.sides.split(",")], [x for x in args.labels.split(",") if x], args.name)
    elif args.what == "budget":
        budget(workdir, [x for x in args.verify.split(",") if x])
    else:
        print("\n".join(markdown()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
