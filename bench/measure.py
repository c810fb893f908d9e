"""One measurement in a fresh process:
``python -m bench.measure MODE HxW STEPS REPS WEIGHTS [DTYPE [REMAT [AUTODIFF]]]``.

DTYPE (optional): ``float32`` (default: each framework's own precision on the device),
``fp32`` (full float32 convolutions and matrix products on both sides: JAX at
``highest``, PyTorch with TF32 off), ``tf32`` (TF32 on both sides), ``float64``, or
``bfloat16`` (bfloat16 convolutions with float32 image, Gram matrices and losses;
PyTorch under autocast). REMAT (optional, JAX modes): ``none`` (default) or ``blocks``
(``--remat``). AUTODIFF (optional, JAX modes): ``custom`` (default) or ``plain``
(:func:`jaxstyle.vgg.set_autodiff`).

Modes: ``jax-jit`` (one jitted Adam step per call), ``jax-scan`` (a jitted
``lax.scan`` chunk of STEPS steps, its state donated), ``torch-eager``,
``torch-eager-cl`` (channels_last), ``torch-compile``, and ``jax-sweep-K`` /
``jax-seq-K`` (K settings vmapped in micro-batches, or K separate runs). Prints one
JSON line: compile/first-call seconds, per-step seconds of every repetition after
warm-up (device synchronised), peak memory (the device's too: JAX's
``peak_bytes_in_use``, PyTorch's ``max_memory_allocated`` reset after warm-up), the
FLOPs per step counted analytically (:func:`analytic_flops`) and, on CPU, XLA's cost
analysis of one step. A fresh process per measurement keeps peak memory per mode.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import bench_images


def peak_host_mib() -> float:
    """Peak resident memory of this process.

    ``VmHWM`` belongs to this process image; ``ru_maxrss`` is inherited across
    fork and exec on Linux and would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# JAX's jax_default_matmul_precision for each DTYPE (None: the platform's own).
JAX_PRECISION = {"fp32": "float32", "tf32": "tensorfloat32"}
WARMUP_CALLS = 3  # calls before timing: compilation, cuDNN / XLA autotuning, torch.compile's recompiles


def analytic_flops(size: tuple[int, int], settings=None) -> dict[str, float]:
    """FLOPs of one optimisation step, counted from the network spec (not from XLA).

    Convolutions: ``2 * C_in * C_out * (3 H_l - 2) * (3 W_l - 2)`` per 3x3 layer (the
    kernel taps that fall inside the zero-padded image, as XLA's HLO cost analysis
    counts them; about ``2 * 9 * C_in * C_out * H_l * W_l``) up to the deepest layer the
    recipe uses, once forward and once more for the input gradient (the weights are
    frozen: no weight gradient). Gram products: ``2 * C^2 * H_l * W_l`` per style layer
    forward, and as much again backward (``dF = F dG`` for symmetric ``dG``).
    Elementwise work (bias, ReLU, pooling, losses, Adam) is left out. For VGG-19 up to
    ``relu5_1`` at 512x512: 0.71 MFLOP per pixel forward, 1.43 per step (1.44 counting
    the padding's taps), plus 0.07 for the Gram products.
    """
    from jaxstyle.config import resolve
    from jaxstyle.nets import network

    s = settings or resolve("paper")
    spec = network(s.network)
    deepest = spec.deepest((*s.content_layers, *s.style_layers))
    shapes = spec.conv_shapes()
    h, w = size
    conv, gram, channels = 0.0, 0.0, 3
    for name in spec.layer_names[: spec.layer_names.index(deepest) + 1]:
        if name.startswith("conv"):
            _, _, cin, channels = shapes[name]
            conv += 2 * cin * channels * (3 * h - 2) * (3 * w - 2)  # kernel taps that fall inside the image
        elif name.startswith("pool"):
            h, w = h // 2, w // 2
        if name in s.style_layers:
            gram += 2 * channels * channels * h * w
    return {"convolutions": 2 * conv, "gram": 2 * gram, "total": 2 * conv + 2 * gram}


def jax_problem(size, weights_file, dtype, remat="none"):
    """The ``paper`` problem; ``dtype="bfloat16"`` means bfloat16 convolutions, float32 image and losses."""
    import jax.numpy as jnp

    from jaxstyle.api import prepare

    content, style = bench_images(size)
    compute = "bfloat16" if dtype == "bfloat16" else None
    dtype = "float32" if compute or dtype in JAX_PRECISION else dtype
    p = prepare(content, style, weights=weights_file, size=size, dtype=dtype, compute_dtype=compute, remat=remat)
    return p, jnp


def jax_device_peak_mib() -> float | None:
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None


def flops_of(compiled) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0]
    return float(cost["flops"]) if cost and "flops" in cost else None


def measure_jax(mode: str, size, steps: int, reps: int, weights_file: str, dtype: str, remat: str = "none") -> dict:
    import jax

    from jaxstyle.solve import optimizer_step, run_chunk_donated

    p, _ = jax_problem(size, weights_file, dtype, remat)
    static = ("graphdef", "recipe")
    if mode == "jax-jit":
        fn = jax.jit(optimizer_step, static_argnames=static, donate_argnames=("state",))
        args = (p.graphdef, p.recipe, p.params, p.targets, p.loss_weights)
        per_call = 1
    else:
        fn = run_chunk_donated
        args = (p.graphdef, p.recipe, steps, p.params, p.targets, p.loss_weights)
        per_call = steps
    on_cpu = jax.devices()[0].platform == "cpu"
    # XLA's cost analysis of a compiled step: kept on CPU (the harness's figures); on GPU it
    # miscounts (jax#16008, #20184, #22249) and costs one more compilation.
    compiled_step = (
        jax.jit(optimizer_step, static_argnames=static)
        .lower(p.graphdef, p.recipe, p.params, p.targets, p.loss_weights, p.state)
        .compile()
        if on_cpu
        else None
    )
    state = jax.tree.map(lambda x: x.copy(), p.state)  # donated: p.state's buffers stay
    t0 = time.perf_counter()
    state, losses = fn(*args, state)
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    for _ in range(WARMUP_CALLS - 1 if not on_cpu else 0):  # on CPU: the figures as before
        state, losses = fn(*args, state)
    jax.block_until_ready(state)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        state, losses = fn(*args, state)
        jax.block_until_ready(state)
        times.append((time.perf_counter() - t0) / per_call)
    total = losses["total"]
    return {
        "first_call_s": first,
        "step_s": times,
        "flops_per_step": flops_of(compiled_step) if compiled_step is not None else None,
        "analytic_flops_per_step": analytic_flops(size, p.settings)["total"],
        "device_peak_mib": jax_device_peak_mib(),
        "final_loss": float(np.asarray(total).reshape(-1)[-1]),
    }


def measure_jax_sweep(mode: str, size, steps: int, reps: int, weights_file: str, dtype: str) -> dict:
    """K settings: vmapped (``jax-sweep-K``) or K runs one after another (``jax-seq-K``).

    The vmapped run uses the micro-batch ``jaxstyle sweep`` would choose by default
    (all K on a GPU with room for them; at most 8 per device on CPU): ``ceil(K / B)``
    chunks of B settings, one compiled program.
    """
    import jax

    from jaxstyle.batch import init_batch_jit, run_batch_chunk, run_batch_chunk_jit
    from jaxstyle.pipeline import prepare_job
    from jaxstyle.solve import run_chunk_jit
    from jaxstyle.sweep import grid_product

    k = int(mode.rsplit("-", 1)[1])
    p, jnp = jax_problem(size, weights_file, dtype)
    flops_per_setting_step = None
    if mode.startswith("jax-seq"):

        def run(state):
            out = None
            for _ in range(k):
                out, _ = run_chunk_jit(p.graphdef, p.recipe, steps, p.params, p.targets, p.loss_weights, state)
            return out

        state = p.state
    else:
        # The job `jaxstyle sweep` would run: its default micro-batch, its per-setting arrays.
        points = grid_product(1, 1, [1.0], list(np.geomspace(1e2, 1e4, k)), [10.0], [0.1])
        job = prepare_job(
            list(bench_images(size)[:1]),
            list(bench_images(size)[1:]),
            p.settings,
            points,
            weights=weights_file,
            execution=p.execution,
        )
        batch, micro_batches = job.plan.batch_size, len(job.plan.micro_batches)
        setting, images, lrs, emas, tols = jax.tree.map(lambda x: jnp.asarray(x[:batch]), job.per_setting())
        targets = job.targets_at(size)
        state = init_batch_jit(p.graphdef, p.recipe, p.params, targets, setting, images, lrs, emas, tols)

        def run(state):
            out = None
            for _ in range(micro_batches):
                out = run_batch_chunk_jit(p.graphdef, p.recipe, steps, p.params, targets, setting, state)[0]
            return out

        # FLOPs of one vmapped step of a micro-batch (XLA counts a scan body once).
        one_step = jax.jit(run_batch_chunk, static_argnames=("graphdef", "recipe", "num_steps"))
        compiled = one_step.lower(p.graphdef, p.recipe, 1, p.params, targets, setting, state).compile()
        flops = flops_of(compiled)
        flops_per_setting_step = flops / batch if flops else None

    t0 = time.perf_counter()
    jax.block_until_ready(run(state))
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(run(state))
        times.append((time.perf_counter() - t0) / (steps * k))  # seconds per setting-step
    return {
        "first_call_s": first,
        "step_s": times,
        "settings": k,
        "batch_size": 1 if mode.startswith("jax-seq") else batch,
        "flops_per_step": flops_per_setting_step,
        "analytic_flops_per_step": analytic_flops(size, p.settings)["total"],
        "device_peak_mib": jax_device_peak_mib(),
    }


def measure_jax_lbfgs(size, steps: int, reps: int, weights_file: str, dtype: str) -> dict:
    """The ``paper`` recipe with L-BFGS: seconds per step in scanned chunks, and evaluations per step.

    Each step reuses the loss and gradient that the previous line search stored for
    the point it accepted; its own line search evaluates value and gradient
    ``num_linesearch_steps`` times (Optax's ``ZoomLinesearchInfo``), and one forward
    pass gives the trace's per-term losses.
    """
    import jax
    import optax

    from jaxstyle.api import prepare
    from jaxstyle.solve import optimizer_step, run_chunk_jit

    content, style = bench_images(size)
    p = prepare(content, style, weights=weights_file, size=size, dtype=dtype, optimizer="lbfgs")
    step = jax.jit(optimizer_step, static_argnames=("graphdef", "recipe"))
    state, evaluations = p.state, []
    for _ in range(steps * reps):
        state, _ = step(p.graphdef, p.recipe, p.params, p.targets, p.loss_weights, state)
        evaluations.append(int(optax.tree.get(state.opt_state, "num_linesearch_steps")))
    state = p.state
    t0 = time.perf_counter()
    state, losses = jax.block_until_ready(
        run_chunk_jit(p.graphdef, p.recipe, steps, p.params, p.targets, p.loss_weights, state)
    )
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        state, losses = jax.block_until_ready(
            run_chunk_jit(p.graphdef, p.recipe, steps, p.params, p.targets, p.loss_weights, state)
        )
        times.append((time.perf_counter() - t0) / steps)
    return {
        "first_call_s": first,
        "step_s": times,
        "evaluations_per_step": float(np.mean(evaluations)),
        "steps_counted": len(evaluations),
        "device_peak_mib": jax_device_peak_mib(),
        "final_loss": float(np.asarray(losses["total"])[-1]),
    }


def measure_torch(mode: str, size, reps: int, weights_file: str, dtype: str = "float32") -> dict:
    """PyTorch set up fairly (:func:`bench.torch_recipe.configure`): cuDNN autotuning on, the
    precision asked for, ``WARMUP_CALLS`` calls before timing (cuDNN autotuning and
    torch.compile happen in the first ones), peak device memory counted after them;
    ``torch-eager-cl`` runs the network and the image in channels_last (NHWC in memory,
    as XLA lays out convolutions on recent GPUs)."""
    import torch

    from bench import torch_recipe

    device = "cuda" if torch.cuda.is_available() else "cpu"
    setup = torch_recipe.configure(device, "tf32" if dtype == "float32" and device == "cuda" else dtype)
    content, style = bench_images(size)
    features = torch_recipe.vgg19_features()
    convention = torch_recipe.load_converted(features, weights_file)
    layout = torch.channels_last if mode == "torch-eager-cl" else torch.contiguous_format
    features = features.to(device, memory_format=layout)
    c = torch_recipe.preprocess(content, convention).to(device).contiguous(memory_format=layout)
    s = torch_recipe.preprocess(style, convention).to(device).contiguous(memory_format=layout)
    recipe = torch_recipe.Recipe(
        features,
        c,
        s,
        ["relu4_4"],
        ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
        (1.0, 1000.0, 10.0),
        conv_dtype=torch.bfloat16 if dtype == "bfloat16" else None,
    )
    x = c.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=0.1)
    backend = None
    if mode == "torch-compile":
        # On CPU (the smoke run) inductor would spend minutes in the C++ compiler: the
        # same graph capture with aot_eager, recorded as such.
        backend = "inductor" if device == "cuda" else "aot_eager"
        loss_fn = torch.compile(recipe.losses, backend=backend)
    else:
        loss_fn = recipe.losses

    def step() -> float:
        optimizer.zero_grad()
        total = loss_fn(x)["total"]
        total.backward()
        optimizer.step()
        return total

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    for _ in range(WARMUP_CALLS - 1 if device == "cuda" else 0):
        step()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        total = step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return {
        "first_call_s": first,
        "step_s": times,
        "device_peak_mib": peak,
        "final_loss": float(total.detach()),
        "analytic_flops_per_step": analytic_flops(size)["total"],
        "torch_setup": {**setup, "memory_format": str(layout).removeprefix("torch."), "compile_backend": backend},
    }


def main(argv: list[str]) -> None:
    mode, size_text, steps, reps, weights_file = argv[:5]
    dtype = argv[5] if len(argv) > 5 else "float32"
    remat = argv[6] if len(argv) > 6 else "none"
    autodiff = argv[7] if len(argv) > 7 else "custom"
    size = tuple(int(v) for v in size_text.split("x"))
    steps, reps = int(steps), int(reps)
    if mode.startswith("torch"):
        out = measure_torch(mode, size, reps, weights_file, dtype)
    else:
        import contextlib

        import jax

        from jaxstyle.vgg import set_autodiff

        set_autodiff(autodiff)
        precision = JAX_PRECISION.get(dtype)
        with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
            if mode == "jax-lbfgs":
                out = measure_jax_lbfgs(size, steps, reps, weights_file, dtype)
            elif mode.startswith(("jax-sweep", "jax-seq")):
                out = measure_jax_sweep(mode, size, steps, reps, weights_file, dtype)
            else:
                out = measure_jax(mode, size, steps, reps, weights_file, dtype, remat)
        out.update(matmul_precision=precision or "default", autodiff=autodiff)
    out.update(mode=mode, size=list(size), dtype=dtype, remat=remat, host_peak_mib=peak_host_mib())
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
