"""Weight files: every real layout converts, matches a PyTorch VGG-19 built from the same
arrays, and every kind of wrong file is refused with a message naming the problem."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bench import torch_recipe
from jaxstyle.download import download
from jaxstyle.errors import JaxstyleError
from jaxstyle.nets import VGG16, VGG19
from jaxstyle.preprocess import CONVENTIONS
from jaxstyle.solve import Recipe, network_features
from jaxstyle.weights import (
    SOURCES,
    convert,
    file_digests,
    find,
    random_convs,
    read_converted,
    read_source,
    split_model,
)

from .conftest import state_dict_arrays, write_keras_h5, write_pth

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


@pytest.mark.parametrize(
    ("layout", "convention", "expected"),
    [
        ("pth", "torchvision", TORCHVISION),
        ("safetensors", "torchvision", TORCHVISION),
        ("pth", "caffe", CAFFE),  # the Caffe weights in torchvision layout (vgg19-d01eb7cb.pth)
        ("keras", None, CAFFE),  # Keras files are always Caffe-convention
    ],
)
def test_converted_activations_match_pytorch(tmp_path, weight_files, convs, rng, layout, convention, expected):
    dst = convert(weight_files[layout], tmp_path / "converted.h5", convention=convention)
    loaded = read_converted(dst)
    assert loaded.convention.name == (convention or "caffe")
    assert loaded.attrs["source_sha256"] == file_digests(weight_files[layout])[0]
    assert loaded.attrs["source_file"] == weight_files[layout].name
    rgb = rng.uniform(0, 1, size=(64, 96, 3)).astype(np.float32)
    ours = jax_activations(dst, rgb)
    ref = torch_activations(state_dict_arrays(convs), rgb.astype(np.float64), expected)
    for name in PROBE_LAYERS:
        assert ours[name].dtype == jnp.float32
        np.testing.assert_allclose(
            np.asarray(ours[name]), ref[name], rtol=1e-5, atol=1e-5 * np.abs(ref[name]).max(), err_msg=name
        )


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


def test_keras_problems_are_named(tmp_path, convs):
    path = write_keras_h5(tmp_path / "k.h5", convs)
    with h5py.File(path, "a") as f:
        del f["block3_conv2"]["block3_conv2/kernel:0"]
        f["block3_conv2"]["block3_conv2/kernel:0"] = np.ones((3, 3, 256, 128), np.float32)
    with pytest.raises(JaxstyleError, match=r"layer block3_conv2 has kernel \(3, 3, 256, 128\)"):
        read_source(path, VGG19)
    path = write_keras_h5(tmp_path / "k2.h5", convs)
    with h5py.File(path, "a") as f:
        del f["block5_conv4"]
    with pytest.raises(JaxstyleError, match="layer block5_conv4 is missing"):
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


def test_pickled_code_is_not_run(tmp_path):
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
    assert SOURCES["torchvision"].filename == "vgg19-dcbb9e9d.pth"
    assert SOURCES["torchvision"].url.endswith("/" + SOURCES["torchvision"].filename)
    assert SOURCES["keras"].md5 == "253f8cb515780f3b799900260a226db6"
    assert SOURCES["caffe"].sha256_prefix == "d01eb7cb" and SOURCES["caffe"].convention == "caffe"


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
    name = SOURCES["keras"].filename
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
    assert "jaxstyle weights download --network vgg16 --source" in message
    assert "jaxstyle weights convert --network vgg16 " in message
