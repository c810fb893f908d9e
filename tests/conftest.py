"""Test set-up: strict JAX promotion rules, float64 available, seeded random weights files.

No real VGG-19 weights exist on test machines (no network). The fixtures write seeded
random weights in each real layout: a torchvision state dict (``torch.save``), the same
as ``.safetensors``, and the Keras applications HDF5 layout. Biases are random too,
so a dropped or misplaced bias shows.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import jax
import numpy as np
import pytest

# Equinox-style strictness: no silent rank promotion anywhere. float64 is enabled so
# parity tests can run in it; float32 paths must stay float32 (tests assert dtypes).
# Strict *dtype* promotion is applied to our own network and losses (fixture
# `strict_dtypes`) but not globally: Optax's Adam bias correction computes
# `decay ** count` (Python float ** int32), which strict mode refuses.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

from jaxstyle.nets import TINY, VGG16, VGG19, NetworkSpec  # noqa: E402
from jaxstyle.weights import random_convs  # noqa: E402

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


def state_dict_arrays(convs, spec: NetworkSpec = VGG19) -> dict[str, np.ndarray]:
    """torchvision layout: ``features.N.weight`` OIHW, plus a (small) classifier to ignore."""
    state = {}
    for name, (kernel, bias) in convs.items():
        i = spec.torchvision_index(name)
        state[f"features.{i}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        state[f"features.{i}.bias"] = bias
    state["classifier.0.weight"] = np.ones((4, 8), np.float32)
    state["classifier.0.bias"] = np.ones(4, np.float32)
    return state


def write_pth(path: Path, state: dict[str, np.ndarray]) -> Path:
    import torch

    torch.save({k: torch.from_numpy(v.copy()) for k, v in state.items()}, path)
    return path


def write_safetensors(path: Path, state: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
    return path


def write_keras_h5(path: Path, convs, spec: NetworkSpec = VGG19) -> Path:
    """The Keras 2 ``save_weights`` layout of ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``."""
    layers = ["input_1"]
    for name in spec.layer_names:
        block, rest = name[-3], name[-1]
        if name.startswith("conv"):
            layers.append(f"block{block}_conv{rest}")
        elif name.startswith("pool"):
            layers.append(f"block{name[-1]}_pool")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.6"
        for layer in layers:
            group = f.create_group(layer)
            if "conv" not in layer:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            conv = f"conv{layer[5]}_{layer[-1]}"
            kernel, bias = convs[conv]
            names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            group[names[0]] = kernel
            group[names[1]] = bias
    return path


@pytest.fixture(scope="session")
def convs():
    return random_convs(seed=0)


@pytest.fixture(scope="session")
def weight_files(tmp_path_factory, convs) -> dict[str, Path]:
    """Random weights in every published layout, and converted files of both conventions."""
    from jaxstyle.weights import convert

    d = tmp_path_factory.mktemp("weights")
    state = state_dict_arrays(convs)
    files = {
        "pth": write_pth(d / "vgg19-random.pth", state),
        "safetensors": write_safetensors(d / "vgg19-random.safetensors", state),
        "keras": write_keras_h5(d / "vgg19_keras_layout.h5", convs),
    }
    files["torchvision"] = convert(files["pth"], d / "vgg19-torchvision.h5", convention="torchvision")
    files["caffe"] = convert(files["keras"], d / "vgg19-caffe.h5")
    return files


@pytest.fixture
def strict_dtypes():
    with jax.numpy_dtype_promotion("strict"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


__all__ = [
    "SHARED_IMAGES",
    "TINY",
    "VGG16",
    "VGG19",
    "random_convs",
    "state_dict_arrays",
    "write_keras_h5",
    "write_pth",
]
