"""The network as data (specs, derived names and shapes, the module built from a spec), and the
hand-written gradients of VGG's convolution and max pooling against autodiff and PyTorch."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxstyle.config import PRESETS, Settings, resolve
from jaxstyle.errors import JaxstyleError
from jaxstyle.nets import NETWORKS, TINY, VGG16, VGG19, network
from jaxstyle.vgg import VGG, autodiff, conv3x3, max_pool_2x2, set_autodiff
from jaxstyle.weights import random_convs, split_model
from tests.torch_vgg import CFGS, torch_features


def autodiff_max_pool(x):
    window = (1, 2, 2, 1)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID")


def with_ties(rng, shape):
    """Values on a coarse grid, half of them zero (as after a ReLU): many equal maxima per window."""
    return np.maximum(np.round(rng.normal(size=shape) * 2) / 2, 0.0)


@pytest.mark.parametrize("shape", [(1, 8, 10, 3), (2, 7, 9, 4), (1, 5, 3, 2)])
def test_max_pool_gradient_goes_to_the_first_maximum_like_pytorch(rng, shape):
    x = with_ties(rng, shape)
    n, h, w, c = shape
    dy = rng.normal(size=(n, h // 2, w // 2, c))
    y, vjp = jax.vjp(max_pool_2x2, jnp.asarray(x))
    (dx,) = vjp(jnp.asarray(dy))

    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 2)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(np.asarray(dx), xt.grad.numpy().transpose(0, 2, 3, 1))
    # ... and exactly what autodiff (select_and_scatter) gives.
    (auto,) = jax.vjp(autodiff_max_pool, jnp.asarray(x))[1](jnp.asarray(dy))
    np.testing.assert_array_equal(np.asarray(dx), np.asarray(auto))
    assert np.count_nonzero(np.asarray(dx)) <= dy.size  # one element per window at most


def test_max_pool_gradient_under_vmap_equals_one_image_at_a_time(rng):
    x = jnp.asarray(with_ties(rng, (3, 1, 6, 6, 2)))
    loss = lambda x: jnp.sum(max_pool_2x2(x) ** 2)  # noqa: E731
    batched = jax.vmap(jax.grad(loss))(x)
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(jax.grad(loss)(x[i])))


def test_conv3x3_gradients_equal_autodiff(rng):
    x = jnp.asarray(rng.normal(size=(2, 6, 7, 3)))
    kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 5)))
    dy = jnp.asarray(rng.normal(size=(2, 6, 7, 5)))

    def plain(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    ours = jax.vjp(conv3x3, x, kernel)[1](dy)
    reference = jax.vjp(plain, x, kernel)[1](dy)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- the network is data


def cfg_layers(cfg) -> tuple[list[str], dict[str, tuple[int, int, int, int]]]:
    """Layer names (torchvision ``features`` order) and HWIO conv shapes read off a cfg."""
    names, shapes, block, n, channels = [], {}, 1, 1, 3
    for item in cfg:
        if item == "M":
            names.append(f"pool{block}")
            block, n = block + 1, 1
        else:
            names += [f"conv{block}_{n}", f"relu{block}_{n}"]
            shapes[f"conv{block}_{n}"] = (3, 3, channels, item)
            channels, n = item, n + 1
    return names, shapes


@pytest.mark.parametrize("spec", [VGG19, VGG16, TINY], ids=lambda s: s.name)
def test_layer_names_and_shapes_derive_from_the_block_table(spec):
    names, shapes = cfg_layers(CFGS[spec.name])
    assert spec.layer_names == tuple(names)
    assert spec.conv_shapes() == shapes
    assert spec.conv_names == tuple(shapes)
    for i, name in enumerate(names):
        assert spec.torchvision_index(name) == i
    assert network(spec.name) is spec


def test_published_indexes_and_keras_names():
    # vgg16-397923af.pth holds features.{0,2,5,7,10,12,14,17,19,21,24,26,28} (torchvision/models/vgg.py,
    # cfgs["D"]: a conv and its ReLU take two indexes, a pooling one)
    assert [VGG16.torchvision_key(c) for c in VGG16.conv_names] == [
        f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    ]
    # d2l's content layer (d2l.ai, "Neural Style Transfer": content_layers = [25]) and Gatys et al.'s
    # (2016, conv4_2): indexes 25 and 21 of VGG-19's features
    assert VGG19.torchvision_index("conv4_4") == 25 and VGG19.torchvision_index("conv4_2") == 21
    # keras-applications vgg16.py: block{b}_conv{n} and block{b}_pool
    assert VGG16.keras_layer_names()[:4] == ("block1_conv1", "block1_conv2", "block1_pool", "block2_conv1")
    assert VGG16.keras_layer_names()[-2:] == ("block5_conv3", "block5_pool")
    assert len(VGG19.keras_layer_names()) == 16 + 5
    assert set(NETWORKS) == {"vgg19", "vgg16"}  # the test network is not offered to users


def test_activation_count_by_hand():
    # tiny at 32x48 up to pool2: conv1_1, relu1_1, conv1_2, relu1_2 (4 ch), pool1 (16x24),
    # conv2_1, relu2_1, conv2_2, relu2_2 (8 ch), pool2 (8x12)
    expected = 4 * 32 * 48 * 4 + 16 * 24 * 4 + 4 * 16 * 24 * 8 + 8 * 12 * 8
    assert TINY.activation_count(32, 48, "pool2") == expected
    assert VGG19.activation_count(10, 10, "relu1_1") == 2 * 100 * 64
    # VGG-16 lacks conv3_4: up to relu4_1 it has two layers of 256 channels fewer
    assert VGG19.activation_count(64, 64, "relu4_1") - VGG16.activation_count(64, 64, "relu4_1") == 2 * 16 * 16 * 256


def test_a_layer_the_network_lacks_is_a_one_line_error_naming_its_layers():
    with pytest.raises(JaxstyleError) as excinfo:
        Settings(network="vgg16")  # the paper preset's content layer relu4_4
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("unknown content layer 'relu4_4': VGG-16 has conv1_1, relu1_1, conv1_2")
    assert "relu4_3" in message and message.endswith("pool5")
    assert resolve("paper", network="vgg16", content_layers=("relu4_2",)).network == "vgg16"
    with pytest.raises(JaxstyleError, match="unknown style layer 'relu3_4': VGG-16 has"):
        resolve("paper", network="vgg16", content_layers=("relu4_2",), style_layers=("relu3_4",))
    with pytest.raises(JaxstyleError, match="unknown network 'vgg11'; choose from vgg19, vgg16"):
        Settings(network="vgg11")
    model = nnx.eval_shape(lambda: VGG(VGG16, rngs=nnx.Rngs(0)))  # the module, without initialising 15 M weights
    with pytest.raises(JaxstyleError, match="unknown layer 'relu4_4': VGG-16 has"):
        model(jnp.zeros((1, 32, 32, 3)), ["relu4_4"])


def test_settings_nets_and_the_command_line_parser_import_no_jax():
    code = (
        "import sys, jaxstyle.nets, jaxstyle.config, jaxstyle.preprocess, jaxstyle.cli; "
        "jaxstyle.cli.build_parser(); print('jax' in sys.modules, 'flax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("spec", [TINY, VGG16], ids=lambda s: s.name)
def test_module_built_from_a_spec_matches_pytorch(spec, rng):
    convs = random_convs(seed=3, network=spec)
    graphdef, params = split_model(convs, dtype="float64")  # the network is read off the arrays
    x = rng.normal(size=(1, 32, 48, 3))
    layers = [n for n in spec.layer_names if not n.startswith("conv")]
    ours = nnx.merge(graphdef, params)(jnp.asarray(x), layers)
    features = torch_features(CFGS[spec.name], convs)
    with torch.no_grad():
        t = torch.from_numpy(x.transpose(0, 3, 1, 2))
        for i, module in enumerate(features):
            t = module(t)
            name = spec.layer_names[i]
            if name in ours:
                ref = t.numpy().transpose(0, 2, 3, 1)
                np.testing.assert_allclose(np.asarray(ours[name]), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    assert len(ours) == len(layers)


def test_plain_autodiff_switch_gives_the_custom_gradients_of_the_network(rng):
    """``set_autodiff("plain")`` (bench/gpu.py compares the two on an accelerator): JAX's own
    gradients of the convolution, ReLU and max pool, equal to the custom VJPs' in float64."""
    convs = random_convs(seed=5, network=VGG16)
    graphdef, params = split_model(convs, dtype="float64")
    x = jnp.asarray(rng.normal(size=(1, 20, 24, 3)))
    layers = ["relu1_2", "relu3_1", "relu4_2"]

    def loss(image):
        acts = nnx.merge(graphdef, params)(image, layers)
        return sum(jnp.sum(jnp.sin(a)) for a in acts.values())

    custom = jax.grad(loss)(x)
    try:
        set_autodiff("plain")
        plain_jaxpr = str(jax.make_jaxpr(jax.grad(loss))(x))
        plain = jax.grad(loss)(x)
    finally:
        set_autodiff("custom")
    assert "custom_vjp_call" not in plain_jaxpr and "custom_vjp_call" in str(jax.make_jaxpr(jax.grad(loss))(x))
    assert autodiff() == "custom"
    np.testing.assert_allclose(np.asarray(plain), np.asarray(custom), rtol=1e-10, atol=1e-10 * np.abs(custom).max())
    with pytest.raises(ValueError, match="autodiff must be one of custom, plain"):
        set_autodiff("fast")


def test_tiny_network_runs_every_preset_through_stylize(tiny_weights, rng):
    """The plumbing (settings, weights file, network, solver) with the tiny test network, which
    has every layer the presets name."""
    import jaxstyle

    content, style = (rng.uniform(0, 1, size=(40, 48, 3)).astype(np.float32) for _ in range(2))
    result = jaxstyle.stylize(content, style, weights=tiny_weights, network="tiny", size=(40, 48), steps=3)
    assert result.image.shape == (40, 48, 3) and np.isfinite(result.trace["total"]).all()
    assert result.settings.network == "tiny" and result.settings.content_layers == ("relu4_4",)
    for preset in PRESETS:  # resolve checks the preset's layers against the network (VGG-16 fails the paper's)
        assert resolve(preset, network="tiny").network == "tiny"
    with pytest.raises(JaxstyleError, match="holds the tiny test network weights, not VGG-19; pass --network tiny"):
        jaxstyle.stylize(content, style, weights=tiny_weights, size=(40, 48), steps=1)
