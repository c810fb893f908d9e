"""The memory of one step: rematerialisation keeps the numerics, the model holds, the Gram gradient copies nothing.

The model (``jaxstyle.plan.step_bytes``) is checked against XLA's compiled memory
analysis at sizes it was not fitted on (compilation only, nothing runs), and, in a
fresh process, against the peak resident memory of a real step (``slow``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench.common import child_result
from jaxstyle import remat
from jaxstyle.api import prepare
from jaxstyle.config import Execution, resolve
from jaxstyle.losses import gram_matrix
from jaxstyle.nets import VGG19
from jaxstyle.plan import MEMORY_FILL, choose_remat, host_peak_bytes, step_bytes
from jaxstyle.solve import content_targets, objective, optimizer_step, style_statistics

ROOT = Path(__file__).resolve().parents[1]
MODEL_TOLERANCE = 0.15  # the bound: the model within 15% of the measured peak


def noise_problem(weights: Path, size: tuple[int, int], **overrides):
    rng = np.random.default_rng(3)
    content, style = rng.uniform(0, 1, (2, *size, 3)).astype(np.float32)
    return prepare(content, style, weights=weights, size=size, **overrides)


# A layer list whose content and style taps fall inside the banded blocks, a pooling among them.
INSIDE = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu1_2", "pool1", "relu2_2", "relu3_1")}


@pytest.mark.parametrize(
    ("mode", "style_loss", "layers"),
    [
        ("blocks", "gram", {}),
        pytest.param("bands", "gram", {}, marks=pytest.mark.slow),
        ("bands", "gram", INSIDE),
        pytest.param("blocks", "w2", {}, marks=pytest.mark.slow),
        pytest.param("bands", "w2", INSIDE, marks=pytest.mark.slow),
    ],
)
def test_remat_gives_the_same_loss_and_gradient_float64(weight_files, monkeypatch, mode, style_loss, layers):
    """``--remat blocks|bands`` recompute in the backward pass: the same loss and gradient, to 1e-10.

    37x50 (odd: VGG's poolings drop an edge row and column) in bands of 8 rows: 5 bands,
    with their halos, image borders and the dropped rows all exercised.
    """
    monkeypatch.setattr(remat, "BAND_ROWS", 8)
    p = noise_problem(weight_files["torchvision"], (37, 50), dtype="float64", style_loss=style_loss, **layers)
    assert remat.band_geometry(VGG19.layer_names[:10], 37)[3] == 5  # the first two blocks, in 5 bands
    x = p.state.image + 0.1 * jnp.asarray(np.random.default_rng(4).normal(size=p.state.image.shape))
    out = {}
    for m in ("none", mode):
        recipe = p.recipe._replace(remat=m)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (value, terms), grad = grad_fn(x, p.graphdef, p.params, recipe, p.targets, p.loss_weights)
        out[m] = value, terms, grad
    (v0, t0, g0), (v1, t1, g1) = out["none"], out[mode]
    assert g0.dtype == jnp.float64
    assert abs(float(v1 - v0)) <= 1e-10 * abs(float(v0))
    for name in ("content", "style", "tv"):
        assert abs(float(t1[name] - t0[name])) <= 1e-10 * abs(float(t0[name]))
    assert float(jnp.linalg.norm(g1 - g0)) <= 1e-10 * float(jnp.linalg.norm(g0))
    # The targets are computed the same way (with bands, no full-size activation there either).
    for m in ("none", mode):
        recipe = p.recipe._replace(remat=m)
        out[m] = style_statistics(p.graphdef, p.params, x, recipe), content_targets(p.graphdef, p.params, x, recipe)
    for a, b in zip(jax.tree.leaves(out["none"]), jax.tree.leaves(out[mode]), strict=True):
        assert float(jnp.max(jnp.abs(b - a))) <= 1e-10 * float(jnp.max(jnp.abs(a)))


def compiled_total(p, mode: str = "none") -> tuple[int, int]:
    """``(arguments + outputs + temporaries, temporaries)`` of one compiled Adam step."""
    step = jax.jit(optimizer_step, static_argnames=("graphdef", "recipe"))
    lowered = step.lower(p.graphdef, p.recipe._replace(remat=mode), p.params, p.targets, p.loss_weights, p.state)
    m = lowered.compile().memory_analysis()
    total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    return total, m.temp_size_in_bytes


# Fitted at 128, 256 and 384 square (bench/memory.py): two sizes it never saw.
UNFITTED = [(192, 288), (448, 448)]


@pytest.mark.parametrize("size", UNFITTED)
def test_memory_model_holds_at_unfitted_sizes(weight_files, size):
    """VGG-19 float32, the ``paper`` recipe: the model within 15% of XLA's compiled memory analysis."""
    p = noise_problem(weight_files["torchvision"], size)
    total, _ = compiled_total(p)
    model = step_bytes(size, p.settings, "float32", "none")
    assert abs(model / total - 1) <= MODEL_TOLERANCE, (size, model / 2**20, total / 2**20)


@pytest.mark.slow
@pytest.mark.parametrize(("compute", "mode"), [("bfloat16", "none"), ("float32", "bands"), ("bfloat16", "bands")])
def test_memory_model_holds_for_bfloat16_and_remat(weight_files, compute, mode):
    size = UNFITTED[1]
    p = noise_problem(weight_files["torchvision"], size, compute_dtype=None if compute == "float32" else compute)
    total, _ = compiled_total(p, mode)
    model = step_bytes(size, p.settings, "float32", mode, compute)
    assert abs(model / total - 1) <= MODEL_TOLERANCE, (compute, mode, model / 2**20, total / 2**20)


def test_gram_gradient_makes_no_copy_of_the_features():
    """The Gram matrix's gradient is one ``(HW, C) x (C, C)`` product written as the output:
    the temporaries hold only ``C x C`` arrays, not a copy of the ``H*W*C`` features
    (autodiff of the einsum needed three: ``dG F^T``, ``dG^T F^T``, their transposed sum)."""
    h, w, c = 128, 128, 64
    features = jnp.ones((1, h, w, c), jnp.float32)
    target = jnp.zeros((1, c, c), jnp.float32)

    def loss(f):
        return jnp.mean(jnp.square(gram_matrix(f) - target))

    m = jax.jit(jax.grad(loss)).lower(features).compile().memory_analysis()
    feature_bytes = h * w * c * 4
    assert m.output_size_in_bytes == feature_bytes
    assert m.temp_size_in_bytes <= 0.1 * feature_bytes


def test_step_temporaries_are_bounded_by_the_largest_layer(weight_files):
    """A whole VGG-19 step at 256x256: temporaries at most 12.5x the largest activation
    (relu1_1, H*W*64 floats); measured 11.7x (13.5x with autodiff's Gram gradient)."""
    size = (256, 256)
    p = noise_problem(weight_files["torchvision"], size)
    _, temp = compiled_total(p)
    assert temp <= 12.5 * size[0] * size[1] * 64 * 4


def test_auto_remat_takes_the_fastest_mode_that_fits():
    s = resolve("paper")
    size = (1024, 1024)
    none = step_bytes(size, s, "float32", "none")
    assert choose_remat(s, size, 100 * none)[0] == "none"
    mode, estimate, line = choose_remat(s, size, 10 * 2**20)  # fits nowhere: the smallest estimate
    assert estimate == min(step_bytes(size, s, "float32", m) for m in ("none", "blocks", "bands"))
    assert "nothing fits" in line and f"{mode}" in line
    bands = step_bytes(size, s, "float32", "bands")
    assert bands < none / 2  # the first two blocks never whole: less than half the memory
    assert choose_remat(s, size, (bands + none) / 2 / MEMORY_FILL)[0] == "bands"
    forced = Execution(remat="blocks")
    assert choose_remat(s, size, 100 * none, forced)[:2] == ("blocks", step_bytes(size, s, "float32", "blocks"))
    assert f"{MEMORY_FILL:.0%}" in choose_remat(s, size, 100 * none)[2]


@pytest.mark.slow
@pytest.mark.parametrize("side", [320, 448])
def test_host_model_holds_for_a_fresh_process(weight_files, side):
    """Peak resident memory of a fresh process running a VGG-19 step (``bench.measure``)
    within 15% of :func:`jaxstyle.plan.host_peak_bytes` (fitted on 256 and 512 squares)."""
    args = [sys.executable, "-m", "bench.measure", "jax-jit", f"{side}x{side}", "1", "1"]
    args += [str(weight_files["torchvision"]), "float32", "none"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # compiled as in a user's run (conftest's test cache)
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    measured = child_result(proc.stdout)["host_peak_mib"] * 2**20
    model = host_peak_bytes((side, side), resolve("paper"), "float32", "none")
    assert abs(model / measured - 1) <= MODEL_TOLERANCE, (side, model / 2**20, measured / 2**20)


# --------------------------------------------------------------------------- devices and platforms


class FakeDevice:
    def __init__(self, platform: str, kind: str, local_hardware_id: int = 0) -> None:
        self.platform, self.device_kind, self.local_hardware_id = platform, kind, local_hardware_id


def test_usable_memory_is_the_devices_never_the_hosts_on_a_gpu():
    """A GPU's allocator pool when it reports one (said to be 75% of the device); with
    ``XLA_PYTHON_CLIENT_ALLOCATOR=platform`` (no stats) nvidia-smi's total; else a one-line error."""
    from jaxstyle.errors import JaxstyleError
    from jaxstyle.mesh import host_memory_bytes, usable_memory

    h200 = FakeDevice("gpu", "NVIDIA H200", 1)
    limit, why = usable_memory(h200, {"bytes_limit": 105 << 30, "bytes_in_use": 0}, 8)
    assert limit == 105 << 30 and "NVIDIA H200 memory" in why and "75%" in why
    asked = []
    limit, why = usable_memory(h200, None, 8, gpu_total=lambda d: asked.append(d.local_hardware_id) or 141 << 30)
    assert (limit, asked) == (141 << 30, [1]) and "nvidia-smi" in why
    with pytest.raises(JaxstyleError, match=r"^NVIDIA H200 reports no memory limit \(XLA_PYTHON_CLIENT_ALLOCATOR"):
        usable_memory(h200, None, 8, gpu_total=lambda d: None)
    with pytest.raises(JaxstyleError, match="reports no memory limit"):
        usable_memory(FakeDevice("tpu", "TPU v5e"), {}, 4)
    limit, why = usable_memory(FakeDevice("cpu", "cpu"), None, 2)
    assert why == "available host memory per CPU device" and 0 < limit <= host_memory_bytes() // 2


def test_memory_model_and_chunks_are_the_platforms():
    """The memory model is keyed by platform, the CPU fit standing in (and said so) where a
    platform has none; chunks are longer on accelerators, unchanged on CPU."""
    from jaxstyle.plan import (
        ACCELERATOR_CHUNK_STEPS,
        CHUNK_STEPS,
        MEMORY_MODEL,
        make_plan,
        memory_model,
        memory_model_note,
    )

    s = resolve("paper")
    assert memory_model("gpu") is MEMORY_MODEL["cpu"] and step_bytes((256, 256), s, platform="gpu") == step_bytes(
        (256, 256), s
    )
    assert memory_model_note("cpu") == "" and "none fitted on gpu" in memory_model_note("gpu")
    cpu = make_plan(s, (64, 64), 1)
    gpu = make_plan(s, (64, 64), 1, platform="gpu", device_memory=80 << 30)
    assert cpu.stages[-1].chunks == (CHUNK_STEPS,) * (s.steps // CHUNK_STEPS)
    assert gpu.stages[-1].chunks == (ACCELERATOR_CHUNK_STEPS,) * (s.steps // ACCELERATOR_CHUNK_STEPS)
    assert "fitted on CPU" in gpu.memory_reason and "fitted on CPU" not in cpu.memory_reason


def test_a_donated_chunk_writes_the_new_state_over_the_old(weight_files):
    """Donating the solver state to a chunk: XLA aliases every byte of it to the output
    (memory_analysis' alias bytes), so input and output states do not coexist; same results."""
    from jaxstyle.batch import init_batch_jit
    from jaxstyle.pipeline import run_batch_chunk_donated
    from jaxstyle.solve import run_chunk_donated, run_chunk_jit

    p = noise_problem(weight_files["torchvision"], (32, 48))
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(p.state))
    args = (p.graphdef, p.recipe, 3, p.params, p.targets, p.loss_weights, p.state)
    donated = run_chunk_donated.lower(*args).compile().memory_analysis()
    assert donated.alias_size_in_bytes == state_bytes
    assert run_chunk_jit.lower(*args).compile().memory_analysis().alias_size_in_bytes == 0
    expected = run_chunk_jit(*args)
    state = jax.tree.map(lambda x: x.copy(), p.state)
    got = run_chunk_donated(*args[:-1], state)
    assert all(x.is_deleted() for x in jax.tree.leaves(state))
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The runner's chunk (jaxstyle.pipeline.StageStep): the batched state, donated likewise.
    setting, images, lrs, emas, tols = jax.tree.map(jnp.asarray, p.job.per_setting())
    targets = p.job.targets_at((32, 48))
    batch = init_batch_jit(p.graphdef, p.recipe, p.params, targets, setting, images, lrs, emas, tols)
    lowered = run_batch_chunk_donated.lower(p.graphdef, p.recipe, 3, p.params, targets, setting, batch, 3)
    assert lowered.compile().memory_analysis().alias_size_in_bytes == sum(x.nbytes for x in jax.tree.leaves(batch))
