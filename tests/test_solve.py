"""The solver against the independent PyTorch implementation of the same recipe.

float64: 10 Adam steps agree to 1e-10 in every per-step loss and in the final image.
float32: Adam amplifies rounding differences (DESIGN.md section 6), so implementations
are compared one step at a time from the same image: losses and gradient to 1e-5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bench import torch_recipe
from jaxstyle.config import Settings
from jaxstyle.losses import LossWeights
from jaxstyle.preprocess import TORCHVISION
from jaxstyle.solve import (
    Diverged,
    Recipe,
    compute_targets_jit,
    init_state,
    objective,
    optimizer_step,
    run_chunk_jit,
    solve,
)
from jaxstyle.weights import read_converted, split_model

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
    state = init_state(c, PAPER.lr)
    state, trace = solve(graphdef, params, LAYERS, targets, paper_weights(jnp.float64), state, steps=10, chunk_size=5)
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
def test_float32_single_step_loss_and_gradient_match_pytorch(weight_files, rng, path_key):
    content, style = images(rng)
    graphdef, params, _, targets = jax_problem(weight_files[path_key], content, style, jnp.float32)
    recipe, _ = torch_problem(weight_files[path_key], content, style, torch.float32)
    # Compare away from the content image (perturbed in pixel space, so both input
    # conventions see the same relative change), keeping a flat region.
    pixels = np.clip(content + rng.normal(0, 0.05, size=content.shape), 0, 1)
    pixels[10:30, 8:40, :] = 0.5
    x = read_converted(weight_files[path_key]).convention.to_network(jnp.asarray(pixels, jnp.float32)[None])
    weights = paper_weights(jnp.float32)
    (total, terms), grad = jax.value_and_grad(objective, has_aux=True)(x, graphdef, params, LAYERS, targets, weights)
    assert grad.dtype == jnp.float32 and total.dtype == jnp.float32
    terms_ref, grad_ref = recipe.loss_and_grad(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()))
    for name in ("content", "style", "tv", "total"):
        assert float(terms[name]) == pytest.approx(terms_ref[name], rel=1e-5), name
    assert rel_err(np.asarray(grad).transpose(0, 3, 1, 2), grad_ref) < 1e-5


def test_float32_one_adam_step_from_same_image_matches_pytorch(weight_files, rng):
    content, style = images(rng)
    graphdef, params, c, targets = jax_problem(weight_files["torchvision"], content, style, jnp.float32)
    recipe, c_torch = torch_problem(weight_files["torchvision"], content, style, torch.float32)
    state = init_state(c, PAPER.lr)
    new_state, terms = jax.jit(optimizer_step, static_argnames=("graphdef", "recipe"))(
        graphdef, LAYERS, params, targets, paper_weights(jnp.float32), state
    )
    image_ref, trace_ref = recipe.run_adam(c_torch, PAPER.lr, steps=1)
    assert float(terms["total"]) == pytest.approx(float(trace_ref["total"][0]), rel=1e-5)
    # The first Adam step moves every pixel with a non-zero gradient by exactly lr:
    # the two agree wherever the gradient's sign agrees, which is almost everywhere,
    # and flat regions with zero TV subgradient stay where they are in both.
    moved = np.asarray(new_state.image - c).transpose(0, 3, 1, 2)
    moved_ref = image_ref - c_torch.numpy()
    agree = np.isclose(moved, moved_ref, atol=1e-5)
    assert agree.mean() > 0.999


def test_changing_weights_lr_or_running_again_does_not_recompile(weight_files, rng):
    content, style = images(rng)
    graphdef, params, c, targets = jax_problem(weight_files["torchvision"], content, style, jnp.float32)
    jax.clear_caches()
    state = init_state(c, 0.1)
    state, _ = run_chunk_jit(graphdef, LAYERS, 2, params, targets, paper_weights(jnp.float32), state)
    assert run_chunk_jit._cache_size() == 1
    other = LossWeights(*(w * 3 for w in paper_weights(jnp.float32)))
    state, _ = run_chunk_jit(graphdef, LAYERS, 2, params, targets, other, state)  # second chunk, new weights
    state2, _ = run_chunk_jit(graphdef, LAYERS, 2, params, targets, other, init_state(c, 0.02))  # new lr
    assert run_chunk_jit._cache_size() == 1
    assert not np.allclose(np.asarray(state.image), np.asarray(state2.image))


def test_style_targets_are_computed_once(weight_files, rng, monkeypatch):
    import jaxstyle.solve as solve_module

    content, style = images(rng)
    graphdef, params, c, targets = jax_problem(weight_files["torchvision"], content, style, jnp.float32)
    calls = []
    monkeypatch.setattr(solve_module, "gram_matrix", lambda f: calls.append(f) or f)
    solve(graphdef, params, LAYERS, targets, paper_weights(jnp.float32), init_state(c, 0.1), steps=4, chunk_size=2)
    assert calls == []  # the loop never recomputes the style targets' Gram matrices


def test_divergence_is_reported_with_its_step(weight_files, rng):
    content, style = images(rng)
    graphdef, params, c, targets = jax_problem(weight_files["torchvision"], content, style, jnp.float32)
    with pytest.raises(Diverged) as excinfo:
        solve(graphdef, params, LAYERS, targets, paper_weights(jnp.float32), init_state(c, 1e30), steps=6, chunk_size=3)
    assert 0 < excinfo.value.step < 6
    assert not np.isfinite(excinfo.value.losses["total"])


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
    assert all(g.dtype == jnp.float32 for g in p16.targets.style_gram)  # Gram sums in float32
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
