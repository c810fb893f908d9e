"""Hostile input through the real command: one line on stderr, exit status 2, no traceback, nothing left behind.

One family per cause of the reliability issue:

* A: converted (and published) weights files whose attributes or arrays have the wrong
  type, dtype, shape or values, or that link elsewhere;
* B: output paths the operating system refuses: read-only and full file systems,
  names at the file-name length limit, non-files;
* D: sizes and counts beyond what a run can hold: style scale, number of settings,
  grid files nested or large;
* E: numbers checked as the run holds them (float32 weights, a 64-bit seed),
  per-layer weights like the scalar weights;
* F: outputs that would overwrite an input or another output of the same run, and
  a second sweep into a used directory.

Runs that stylize or sweep use the tiny test network's seeded random weights
(``tiny_cli``); the weights files read or converted are VGG-19's (``weight_files``).
48x64 images. Commands run in this process (:func:`tests.cli_runner.run_cli`), except on
read-only and full file systems, which are real ones: a tmpfs mounted in a private mount
namespace (``unshare``), which exists only for the one command; where the namespace
cannot be made, those cases skip and say why.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from jaxstyle.config import numbers_checked_as, resolve
from jaxstyle.errors import JaxstyleError

from .cli_runner import CliResult, run_cli
from .conftest import lpips_pickle, lpips_tree, state_dict_arrays, write_keras1_h5, write_pth, write_safetensors

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--size", "48x64", "--steps", "2", "-q"]


# --------------------------------------------------------------------------- helpers


def assert_one_line_error(proc: CliResult | subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2 and exactly one line on stderr, ``jaxstyle: ...``, holding every fragment."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("jaxstyle: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def leftovers(*directories: Path) -> list[str]:
    """Temporary files (``.NAME.xxxxxxxx.part``) left in any of the directories."""
    return [p.name for d in directories if d.is_dir() for p in d.iterdir() if p.name.endswith(".part")]


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(11)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8)).save(style)
    return content, style


def namespace_runner(tmp_path: Path) -> list[str]:
    """A command prefix that runs in a private mount namespace, or a skip saying why there is none."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1): cannot mount a private read-only or full file system")
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):  # root, then an unprivileged user namespace
        probe = tmp_path / "probe-mount"
        probe.mkdir(exist_ok=True)
        proc = subprocess.run([*prefix, "mount", "-t", "tmpfs", "tmpfs", str(probe)], capture_output=True, timeout=60)
        if proc.returncode == 0:
            return prefix
    pytest.skip(f"cannot mount a tmpfs in a private mount namespace ({proc.stderr.decode().strip()[:200]})")


def run_on_tmpfs(tmp_path: Path, options: str, *args: str, fill: int = 0) -> tuple[subprocess.CompletedProcess, str]:
    """Run the command with a fresh tmpfs mounted (``options``: ``ro``, ``size=...``) at ``tmp_path/mnt``.

    ``fill`` bytes are written there first (to fill it); returns the process and what
    the tmpfs holds after the command (it vanishes with the namespace).
    """
    prefix = namespace_runner(tmp_path)
    mnt, listing = tmp_path / "mnt", tmp_path / "listing.txt"
    mnt.mkdir(exist_ok=True)
    script = (
        f'mount -t tmpfs -o {options} tmpfs "{mnt}" || exit 97; '
        + (f'head -c {fill} /dev/zero > "{mnt}/filler" 2>/dev/null; ' if fill else "")
        + f'PYTHONPATH="{ROOT}" "$@"; rc=$?; ls -A "{mnt}" > "{listing}"; exit $rc'
    )
    proc = subprocess.run(
        [*prefix, "sh", "-c", script, "sh", sys.executable, "-m", "jaxstyle", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 97, proc.stderr
    return proc, listing.read_text()


# --------------------------------------------------------------------------- A: reading weights files


def set_attr(name, value):
    def change(f):
        f.attrs[name] = value

    return change


def replace_dataset(layer, name, value):
    def change(f):
        del f[layer][name]
        f[layer][name] = value

    return change


def replace_link(layer, name, link):
    def change(f):
        del f[layer][name]
        f[layer][name] = link(f)

    return change


def replace_layer_with_dataset(f):
    del f["conv2_1"]
    f["conv2_1"] = np.zeros(3, np.float32)


def replace_kernel_with_group(f):
    del f["conv2_1"]["kernel"]
    f["conv2_1"].create_group("kernel")


CONVERTED_FILE_DAMAGE = {
    "format_version text": (set_attr("format_version", "two"), "attribute format_version is 'two'"),
    "format_version float": (set_attr("format_version", 2.0), "expected a whole number"),
    "format_version array": (set_attr("format_version", [2, 2]), "attribute format_version is"),
    "network a number": (set_attr("network", 19), "attribute network is 19"),
    "convention a list": (set_attr("convention", ["torchvision", "caffe"]), "attribute convention is"),
    "input mean of the other convention": (
        set_attr("input_mean", np.asarray([103.939, 116.779, 123.68])),
        "attribute input_mean",
    ),
    "input order text of another kind": (set_attr("input_order", "BGR"), "input order 'BGR' contradicts"),
    "kernel as strings": (
        replace_dataset("conv1_1", "kernel", np.full((3, 3, 3, 64), b"ab")),
        "layer conv1_1 kernel holds text values",
    ),
    "kernel as integers": (
        replace_dataset("conv1_1", "kernel", np.ones((3, 3, 3, 64), np.int32)),
        "layer conv1_1 kernel holds int32 values",
    ),
    "bias as complex numbers": (
        replace_dataset("conv3_1", "bias", np.ones(256, np.complex64)),
        "layer conv3_1 bias holds complex64 values",
    ),
    "kernel beyond float32": (
        replace_dataset("conv1_1", "kernel", np.full((3, 3, 3, 64), 1e39)),
        "layer conv1_1 holds NaN or infinite values",
    ),
    "kernel a scalar": (replace_dataset("conv1_1", "kernel", np.float32(1)), "layer conv1_1 has kernel ()"),
    "dangling soft link": (
        replace_link("conv1_1", "bias", lambda f: h5py.SoftLink("/nowhere")),
        "layer conv1_1: bias is a soft link",
    ),
    "soft link to another layer": (
        replace_link("conv1_2", "bias", lambda f: h5py.SoftLink("/conv1_1/bias")),
        "layer conv1_2: bias is a soft link",
    ),
    "external link": (
        replace_link("conv1_1", "kernel", lambda f: h5py.ExternalLink("/nonexistent/w.h5", "/k")),
        "layer conv1_1: kernel is an external link",
    ),
    "layer a dataset": (replace_layer_with_dataset, "layer conv2_1: conv2_1 is a Dataset, expected a Group"),
    "kernel a group": (replace_kernel_with_group, "layer conv2_1: kernel is a Group, expected a Dataset"),
}


@pytest.fixture
def damaged(tmp_path, weight_files):
    """A copy of the converted random weights, changed by a function of the open file."""

    def make(change) -> Path:
        path = tmp_path / "damaged.h5"
        shutil.copyfile(weight_files["torchvision"], path)
        with h5py.File(path, "a") as f:
            change(f)
        return path

    return make


@pytest.mark.parametrize("case", list(CONVERTED_FILE_DAMAGE))
def test_a_converted_file_read_is_checked_value_by_value(damaged, case):
    change, fragment = CONVERTED_FILE_DAMAGE[case]
    path = damaged(change)
    assert_one_line_error(run_cli("weights", "info", path), f"{path}: ", fragment)


def test_a_damaged_weights_file_stops_stylize_before_any_work(damaged, images, tmp_path):
    path = damaged(CONVERTED_FILE_DAMAGE["kernel as integers"][0])
    out = tmp_path / "out.png"
    proc = run_cli("stylize", *images, "-o", out, *SMALL, "--weights", path)
    assert_one_line_error(proc, "layer conv1_1 kernel holds int32 values")
    assert not out.exists() and leftovers(tmp_path) == []


def keras_with_int_kernel(path: Path, convs) -> Path:
    write_keras1_h5(path, convs)
    with h5py.File(path, "a") as f:
        group = f["block1_conv1"]
        del group["block1_conv1_W_1:0"]
        group["block1_conv1_W_1:0"] = np.ones((3, 3, 3, 64), np.int64)
    return path


def keras_with_dangling_bias(path: Path, convs) -> Path:
    write_keras1_h5(path, convs)
    with h5py.File(path, "a") as f:
        group = f["block2_conv1"]
        del group["block2_conv1_b_1:0"]
        group["block2_conv1_b_1:0"] = h5py.SoftLink("/gone")
    return path


def keras_with_text_layer_names(path: Path, convs) -> Path:
    write_keras1_h5(path, convs)
    with h5py.File(path, "a") as f:
        f.attrs["layer_names"] = "block1_conv1"
    return path


def pth_with_int_kernel(path: Path, convs) -> Path:
    state = state_dict_arrays(convs)
    state["features.0.weight"] = np.ones((64, 3, 3, 3), np.int32)
    return write_pth(path, state)


def safetensors_with_int_bias(path: Path, convs) -> Path:
    state = state_dict_arrays(convs)
    state["features.2.bias"] = np.ones(64, np.int16)
    return write_safetensors(path, state)


def lpips_with_int_kernel(path: Path, convs) -> Path:
    from jaxstyle.weights import random_convs

    tree = lpips_tree(random_convs(seed=16, network="vgg16"))
    tree["VGG16_0"]["Conv_3"]["kernel"] = tree["VGG16_0"]["Conv_3"]["kernel"].astype(np.int32)
    path.write_bytes(lpips_pickle(tree))
    return path


PUBLISHED_FILE_DAMAGE = {
    "keras kernel as integers": ("w.h5", keras_with_int_kernel, "layer block1_conv1 kernel holds int64 values"),
    "keras bias a dangling link": (
        "w.h5",
        keras_with_dangling_bias,
        "layer block2_conv1: block2_conv1_b_1:0 is a soft",
    ),
    "keras layer names one text": ("w.h5", keras_with_text_layer_names, "attribute layer_names is"),
    "pth kernel as integers": ("w.pth", pth_with_int_kernel, "key features.0.weight holds int32 values"),
    "safetensors bias as integers": ("w.safetensors", safetensors_with_int_bias, "features.2.bias holds int16 values"),
    "lpips kernel as integers": ("vgg16.ckpt", lpips_with_int_kernel, "VGG16_0/Conv_3/kernel holds int32 values"),
}


@pytest.mark.parametrize("case", list(PUBLISHED_FILE_DAMAGE))
def test_a_published_files_arrays_must_be_floating_point(tmp_path, convs, case):
    name, write, fragment = PUBLISHED_FILE_DAMAGE[case]
    src = write(tmp_path / name, convs)
    dst = tmp_path / "out" / "converted.h5"
    network = ["--network", "vgg16"] if name.endswith(".ckpt") else []
    proc = run_cli("weights", "convert", src, "-o", dst, "--convention", "caffe", *network)
    assert_one_line_error(proc, fragment)
    assert not dst.exists() and leftovers(dst.parent) == []


# --------------------------------------------------------------------------- B: output paths


def test_b_convert_onto_a_read_only_file_system_is_refused_before_any_work(tmp_path, weight_files):
    proc, left = run_on_tmpfs(
        tmp_path, "ro", "weights", "convert", weight_files["safetensors"], "-o", tmp_path / "mnt" / "w.h5",
        "--convention", "torchvision",
    )  # fmt: skip
    # "not writable": the check before any work, not the write after it.
    assert_one_line_error(proc, "mnt/w.h5: not writable (Read-only file system)")
    assert left == ""


def test_b_stylize_onto_a_read_only_file_system_is_refused(tmp_path, tiny_cli, images):
    proc, left = run_on_tmpfs(tmp_path, "ro", "stylize", *images, "-o", tmp_path / "mnt" / "o.png", *SMALL, *tiny_cli)
    assert_one_line_error(proc, "mnt/o.png: not writable (Read-only file system)")
    assert left == ""


def test_b_convert_onto_a_full_file_system_is_one_line_and_leaves_nothing(tmp_path, weight_files):
    # HDF5 reports the failed write over several lines; the error is one.
    proc, left = run_on_tmpfs(
        tmp_path, "size=1m", "weights", "convert", weight_files["safetensors"], "-o", tmp_path / "mnt" / "w.h5",
        "--convention", "torchvision",
    )  # fmt: skip
    assert_one_line_error(proc, "mnt/w.h5: cannot write (", "No space left on device")
    assert left == ""


def test_b_stylize_onto_a_full_file_system_is_one_line_and_leaves_nothing(tmp_path, tiny_cli, images):
    proc, left = run_on_tmpfs(
        tmp_path, "size=64k", "stylize", *images, "-o", tmp_path / "mnt" / "o.png", *SMALL, *tiny_cli, fill=64 << 10
    )
    assert_one_line_error(proc, "mnt/o.png")
    assert left.split() == ["filler"]


def long_name(directory: Path, length: int, suffix: str) -> Path:
    return directory / ("n" * (length - len(suffix)) + suffix)


@pytest.mark.parametrize("length", [255, 256])
def test_b_output_names_at_the_length_limit(tmp_path, weight_files, tiny_cli, images, length):
    """255 bytes work (the temporary name is cut to fit); 256 are refused before any work."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    converted = long_name(out_dir, length, ".h5")
    convert = run_cli("weights", "convert", weight_files["safetensors"], "-o", converted, "--convention", "caffe")
    image = long_name(out_dir, length, ".png")
    stylize = run_cli("stylize", *images, "-o", image, *SMALL, *tiny_cli)
    if length == 255:
        assert convert.returncode == 0 and stylize.returncode == 0, (convert.stderr, stylize.stderr)
        assert converted.is_file() and image.is_file()
    else:
        for proc in (convert, stylize):
            assert_one_line_error(proc, "the file name is 256 bytes long; this file system allows at most 255")
        assert list(out_dir.iterdir()) == []
    assert leftovers(out_dir) == []


def test_b_temporary_names_never_pass_the_limit(tmp_path):
    from jaxstyle.files import temporary_prefix

    for length in (1, 200, 240, 255):
        path = long_name(tmp_path, length, ".png")
        assert len(temporary_prefix(path)) + 8 + len(".part") <= 255


def test_b_a_long_snapshot_name_is_refused_before_any_work(tmp_path, tiny_cli, images):
    out = long_name(tmp_path, 250, ".png")  # fits; OUT.step00000002.png does not
    proc = run_cli("stylize", *images, "-o", out, *SMALL, "--save-every", "1", *tiny_cli)
    assert_one_line_error(proc, "bytes long; this file system allows at most 255")
    assert not out.exists()


def test_b_non_files_and_unwritable_places(tmp_path, weight_files, tiny_cli, images):
    fifo = tmp_path / "trace.json"
    os.mkfifo(fifo)
    args = [*images, "-o", tmp_path / "o.png", *SMALL, *tiny_cli]
    assert_one_line_error(run_cli("stylize", *args, "--trace", fifo), "trace.json: exists and is not a regular file")
    assert_one_line_error(
        run_cli("weights", "convert", weight_files["safetensors"], "-o", "/proc/w.h5", "--convention", "caffe"),
        "/proc/w.h5: not writable",
    )
    dst = long_name(tmp_path, 300, ".h5")
    download = run_cli("weights", "download", "--url", "http://127.0.0.1:9/vgg19-dcbb9e9d.pth", "-o", dst)
    assert_one_line_error(download, "the file name is 300 bytes long")  # refused before the download
    assert not (tmp_path / "o.png").exists() and leftovers(tmp_path) == []


def test_b_errors_are_one_line_whatever_their_source():
    assert str(JaxstyleError("w.h5: cannot write (Can't close file\n  (file write failed)\r\n)")) == (
        "w.h5: cannot write (Can't close file (file write failed) )"
    )


# --------------------------------------------------------------------------- D: sizes and counts


def write_deep_json(path: Path) -> Path:
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


def write_deep_toml(path: Path) -> Path:
    path.write_text("setting = " + "[" * 100_000 + "]" * 100_000 + "\n")
    return path


def write_huge_grid(path: Path) -> Path:
    path.write_text(json.dumps([{"tv_weight": 1.0}] * 100_001))
    return path


def write_sparse_grid(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(17 << 20)  # 17 MiB, sparse: nothing is written
    return path


def write_value(value):
    def write(path: Path) -> Path:
        path.write_text(f'[{{"style_weight": {value}}}]')
        return path

    return write


GRIDS = {
    "nested 100000 deep (JSON)": ("g.json", write_deep_json, "g.json: nested too deeply to be a grid file"),
    "nested 100000 deep (TOML)": ("g.toml", write_deep_toml, "g.toml: nested too deeply to be a grid file"),
    "100001 settings": ("g.json", write_huge_grid, "entry 100001 makes 100,001 settings; a sweep runs at most 100,000"),
    "17 MiB": ("g.json", write_sparse_grid, "g.json: 17,825,792 bytes; grid files of up to 16 MiB are read"),
    "a boolean": ("g.json", write_value("true"), "entry 1: style_weight is True, not a number"),
    "a string": ("g.json", write_value('"1e3"'), "entry 1: style_weight is '1e3', not a number"),
    "a 400-digit integer": ("g.json", write_value("1" + "0" * 400), "entry 1: style_weight is too large a number"),
    "beyond float32": (
        "g.json",
        write_value("1e39"),
        "g.json: setting 0: style_weight must be a number >= 0 and at most",
    ),
}


@pytest.mark.parametrize("case", list(GRIDS))
def test_d_grid_files_are_bounded(tmp_path, tiny_cli, images, case):
    name, write, fragment = GRIDS[case]
    grid = write(tmp_path / name)
    out = tmp_path / "sweep"
    proc = run_cli("sweep", *images, "-o", out, *SMALL, "--grid", grid, *tiny_cli)
    assert_one_line_error(proc, fragment)
    assert not (out / "summary.json").exists()


def test_d_the_settings_are_counted_before_they_are_made(tmp_path, tiny_cli, images):
    values = ",".join(str(v) for v in range(1, 401))
    out = tmp_path / "sweep"
    argv = ["sweep", *images, "-o", out, *SMALL, "--style-weight", values, "--tv-weight", values]
    proc = run_cli(*argv, *tiny_cli)
    assert_one_line_error(proc, "the values given make 160,000 settings; a sweep runs at most 100,000")


def test_d_the_images_of_all_settings_must_fit_in_host_memory(tmp_path, tiny_cli, images):
    # 10,000 settings at 8192x8192 would hold ~30 TiB of images on the host.
    values = ",".join(str(v) for v in range(1, 101))
    out = tmp_path / "sweep"
    argv = ["sweep", *images, "-o", out, "--size", "8192x8192", "--steps", "2", "-q"]
    argv += ["--style-weight", values, "--tv-weight", values, *tiny_cli]
    assert_one_line_error(run_cli(*argv), "10,000 settings at 8192x8192 with 2 steps need about", "GiB of host memory")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--style-scale", "400"], "--style-scale must be in (0, 256], not 400.0"),
        (["--style-scale", "100", "--size", "100x128"], "style image 1 would be 10000x12800 pixels at style scale 100"),
        (["--style-scale", "200", "--style-shape", "own"], "style image 1 would be 12800x12800 pixels"),
        (["--max-side", "100000"], "--max-side must be between 32 and 8192, not 100000"),
        (["--pixels", "100000000"], "--pixels must be between 1024 and 67108864, not 100000000"),
        (["--min-side", "1" + "0" * 30], "--min-side must be between 1 and 8192"),
    ],
)
def test_d_every_size_a_setting_makes_is_bounded(tmp_path, tiny_cli, images, options, fragment):
    out = tmp_path / "o.png"
    size = [] if {"--size", "--max-side", "--pixels"} & set(options) else ["--size", "48x64"]
    proc = run_cli("stylize", *images, "-o", out, *size, "--steps", "2", *options, *tiny_cli)
    assert_one_line_error(proc, fragment)
    assert not out.exists()


# --------------------------------------------------------------------------- E: numbers as the run holds them


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--content-weight", "1e39"], "--content-weight must be a number >= 0 and at most 3.40282e+38"),
        (["--tv-weight", "inf"], "--tv-weight must be a number >= 0"),
        (["--tol", "1e39"], "--tol must be a number >= 0 and at most 3.40282e+38"),
        (["--lr", "1e-50"], "--lr must be a number > 0 and at most 3.40282e+38 (the largest float32), not 1e-50 "
         "(float32, which the run uses, holds it as 0)"),
        (["--ema", "0.99999999999"], "(float32, which the run uses, holds it as 1)"),
        (["--seed", "1" * 23, "--init", "noise"],
         "--seed must be between -9223372036854775808 and 9223372036854775807"),
        (["--style-layer-weights=-1,1,1,1,1"], "--style-layer-weights must be a number >= 0"),
        (["--content-layer-weights=-0.5"], "--content-layer-weights must be a number >= 0"),
        (["--style-layer-weights", "1,1,1,1,1e39"], "--style-layer-weights must be a number >= 0 and at most"),
        (["--style-blend", "1e308,1e308"], "--style-blend weights must be finite and >= 0 with a positive, finite sum"),
    ],
)  # fmt: skip
def test_e_numbers_are_checked_in_the_dtype_the_run_uses(tmp_path, tiny_cli, images, options, fragment):
    content, style = images
    styles = f"{style},{style}" if "--style-blend" in options else style
    out = tmp_path / "o.png"
    proc = run_cli("stylize", content, styles, "-o", out, *SMALL, *options, *tiny_cli)
    assert_one_line_error(proc, fragment)  # one line: no NumPy overflow warning before it
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--style-weight", "1,1e39"], "setting 1: --style-weight must be a number >= 0 and at most 3.40282e+38"),
        (["--lr", "0.1,1e-50"], "setting 1: --lr must be a number > 0"),
        (["--ema", "0.5,0.999999999"], "setting 1: --ema must be in [0, 1)"),
    ],
)
def test_e_swept_values_are_checked_like_single_values(tmp_path, tiny_cli, images, options, fragment):
    out = tmp_path / "sweep"
    proc = run_cli("sweep", *images, "-o", out, *SMALL, *options, *tiny_cli)
    assert_one_line_error(proc, fragment)
    assert not (out / "summary.json").exists()


def test_e_the_python_api_checks_types_too():
    for overrides, message in (
        ({"steps": 2.5}, "steps must be a whole number, not 2.5"),
        ({"style_weight": "1e3"}, "style weight must be a number, not '1e3'"),
        ({"tv_weight": True}, "tv weight must be a number, not True"),
        ({"seed": 2**63}, "seed must be between"),
    ):
        with pytest.raises(JaxstyleError, match=message.replace("(", r"\(")):
            resolve(**overrides)
    assert resolve(seed=2**63 - 1, style_weight=3.4e38, lr=1e-40).lr == 1e-40  # float32 holds them
    with pytest.raises(JaxstyleError, match=r"lr must be a number > 0 and at most 3\.40282e"):
        resolve(lr=1e200)
    with numbers_checked_as("float64"):  # the float64 parity runs take float64 numbers
        assert resolve(lr=1e200).lr == 1e200
        with pytest.raises(JaxstyleError, match="lr must be a finite number > 0, not inf"):
            resolve(lr=math.inf)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["stylize", "c.png", "s.png", "-o", "o.png", "--save-every", "1e3"],
            "argument --save-every: invalid int value",
        ),
        (["sweep", "c.png", "s.png", "-o", "d", "--batch-size", "x"], "argument --batch-size: invalid int value: 'x'"),
        (["weights", "download", "--timeout", "soon"], "argument --timeout: invalid float value: 'soon'"),
        (["stylize", "c.png", "s.png"], "the following arguments are required: -o/--output"),
        (["weights", "download", "--network", "vgg99"], "argument --network: invalid choice: 'vgg99'"),
        (["weights", "download", "--timeout", "nan"], "--timeout must be a finite number of seconds > 0, not nan"),
    ],
)
def test_e_options_argparse_reads_are_one_line_errors_too(tmp_path, argv, fragment):
    line = assert_one_line_error(run_cli(*argv, cwd=tmp_path), fragment)
    assert list(tmp_path.iterdir()) == [] and ("--help" in line or "timeout" in line)


# --------------------------------------------------------------------------- F: outputs never lose data


@pytest.mark.parametrize(
    "case",
    ["trace is -o", "trace is the content", "-o is the style", "-o links to the content",
     "-o is a hard link to the content", "trace is the weights", "a snapshot is the content", "trace is a snapshot",
     "-o is the init image"],
)  # fmt: skip
def test_f_no_output_overwrites_an_input_or_another_output(tmp_path, tiny_weights, images, case):
    content, style = images
    weights = Path(tiny_weights)
    local_weights = tmp_path / "w.h5"
    local_weights.symlink_to(weights)
    out, trace, extra = tmp_path / "o.png", None, []
    if case == "trace is -o":
        trace = out
    elif case == "trace is the content":
        trace = content
    elif case == "-o is the style":
        out = style
    elif case == "-o links to the content":
        out = tmp_path / "link.png"
        out.symlink_to(content)
    elif case == "-o is a hard link to the content":
        out = tmp_path / "hard.png"
        os.link(content, out)
    elif case == "trace is the weights":
        trace = local_weights
    elif case == "a snapshot is the content":
        content = content.rename(tmp_path / "o.step000001.png")
        extra = ["--save-every", "1"]
    elif case == "trace is a snapshot":
        trace, extra = tmp_path / "o.step000001.png", ["--save-every", "1"]
    elif case == "-o is the init image":
        out, extra = tmp_path / "init.png", ["--init", str(tmp_path / "init.png")]
        shutil.copyfile(style, out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and not p.is_symlink()}
    argv = ["stylize", content, style, "-o", out, *SMALL, *extra, "--network", "tiny", "--weights", local_weights]
    proc = run_cli(*argv, *(["--trace", trace] if trace else []))
    assert_one_line_error(proc, "give it another name" if case != "trace is -o" else "give each its own name")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and not p.is_symlink()}
    assert after == before  # nothing written, nothing changed
    assert weights.stat().st_size > 0


def test_f_convert_never_writes_over_its_source(tmp_path, weight_files):
    src = tmp_path / "w.safetensors"
    shutil.copyfile(weight_files["safetensors"], src)
    before = src.read_bytes()
    proc = run_cli("weights", "convert", src, "-o", src, "--convention", "caffe")
    assert_one_line_error(proc, "the converted weights output would overwrite the weights file to convert")
    assert src.read_bytes() == before


def sweep_argv(images, out: Path, weights: Path, *options: str) -> list[str]:
    """A small sweep of ``images`` into ``out`` on the tiny network's ``weights``."""
    return ["sweep", *map(str, images), "-o", str(out), "--size", "48x64", "--steps", "2", "-q", *options,
            "--network", "tiny", "--weights", str(weights)]  # fmt: skip


def test_f_a_second_sweep_into_a_used_directory(tmp_path, tiny_weights, images):
    from jaxstyle.cli import main

    out = tmp_path / "sweep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # other files are allowed, and kept
    weights = tiny_weights
    assert main(sweep_argv(images, out, weights, "--style-weight", "10,100,1000")) == 0
    first = sorted(p.name for p in out.iterdir())
    assert len(first) == 3 + 3 + 1

    refused = run_cli(*sweep_argv(images, out, weights, "--tv-weight", "1,2"))
    assert_one_line_error(refused, "holds an earlier sweep's outputs (6 files: 000_", "pass --overwrite")
    assert sorted(p.name for p in out.iterdir()) == first

    assert main(sweep_argv(images, out, weights, "--tv-weight", "1,2", "--overwrite")) == 0
    summary = json.loads((out / "summary.json").read_text())
    files = {p.name for p in out.iterdir()}
    # Exactly the second sweep's files (and the user's own): none of the first sweep's images is left.
    assert files == {
        "notes.txt",
        "summary.json",
        "contact_sheet.png",
        "losses.png",
        *(p["file"] for p in summary["points"]),
    }
    assert len(summary["points"]) == 2 and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("case", ["grid file is summary.json", "content named like a setting's image"])
def test_f_a_sweep_never_writes_over_its_inputs(tmp_path, tiny_weights, images, case):
    out = tmp_path / "sweep"
    out.mkdir()
    content, style = images
    options = []
    if case == "grid file is summary.json":
        (out / "summary.json").write_text('[{"tv_weight": 1}]')
        options = ["--grid", str(out / "summary.json")]
        fragment = "the summary.json output would overwrite the grid file"
    else:
        content = content.rename(out / "000_cw1_sw1000_tv10_lr0.1_ema0.png")
        fragment = "the content image has a name that the sweep's images take; give it another name"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for overwrite in ([], ["--overwrite"]):
        proc = run_cli(*sweep_argv((content, style), out, tiny_weights, *options, *overwrite))
        assert_one_line_error(proc, fragment)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_f_setting_file_names_stay_short_whatever_the_image_names(tmp_path, tiny_weights, images):
    from jaxstyle.cli import main
    from jaxstyle.report import SETTING_NAME_MAX

    content, style = images
    long_content = content.rename(tmp_path / ("c" * 200 + ".png"))
    long_style = style.rename(tmp_path / ("s" * 200 + ".png"))
    other = tmp_path / "other.png"
    shutil.copyfile(long_style, other)
    out = tmp_path / "sweep"
    assert main(sweep_argv((long_content, f"{long_style},{other}"), out, tiny_weights)) == 0
    names = [p["file"] for p in json.loads((out / "summary.json").read_text())["points"]]
    assert len(names) == 2 and all(len(name.encode()) <= SETTING_NAME_MAX and (out / name).is_file() for name in names)
