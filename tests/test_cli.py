"""The command line end to end, with seeded random weights of the tiny test network, at small sizes
and few steps. Commands run in this process (:func:`tests.cli_runner.run_cli`); what importing the
package loads is checked in a fresh one."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxstyle
from jaxstyle.api import prepare
from jaxstyle.cli import main
from jaxstyle.image import read_metadata
from jaxstyle.solve import objective
from tests.cli_runner import CliResult, run_cli

SMALL = ["--size", "48x64", "--steps", "4"]


@pytest.fixture
def inputs(tmp_path, rng):
    content = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    content[10:40, 10:50] = 128
    Image.fromarray(content).save(tmp_path / "content.jpg", quality=95)
    Image.fromarray(rng.integers(0, 256, size=(50, 50, 3), dtype=np.uint8)).save(tmp_path / "style.png")
    return tmp_path / "content.jpg", tmp_path / "style.png"


def test_stylize_end_to_end(inputs, tiny_files, tiny_cli, tmp_path, capsys):
    content, style = inputs
    out, trace = tmp_path / "out.png", tmp_path / "trace.json"
    argv = ["stylize", str(content), str(style), "-o", str(out), *SMALL, "--save-every", "2"]
    argv += [*tiny_cli, "--trace", str(trace), "--style-weight", "500"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert f"wrote {out} (48x64, 4 steps" in printed.out
    # No memory line for a small image that runs as it is (see test_the_memory_line_...).
    assert "remat" not in printed.err
    img = Image.open(out)
    assert img.size == (64, 48) and img.mode == "RGB"
    meta = read_metadata(out)
    assert meta["settings"]["style_weight"] == 500.0 and meta["settings"]["steps"] == 4
    assert meta["settings"]["content_layers"] == ["relu4_4"] and meta["settings"]["size"] == [48, 64]
    assert meta["weights"]["convention"] == "torchvision"
    assert meta["weights"]["source_sha256"] == read_metadata_sha(tiny_files["pth"])
    assert meta["content_sha256"] and set(meta["final_losses"]) == {"content", "style", "tv", "total"}
    losses = json.loads(trace.read_text())
    assert len(losses["total"]) == 4 and losses["settings"]["steps"] == 4
    assert meta["final_losses"] == losses["final"]  # the losses of the image written
    assert (tmp_path / "out.step000002.png").is_file()  # a snapshot; none for the final step
    assert not (tmp_path / "out.step000004.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files


def test_snapshots_follow_the_global_step_across_scales(inputs, tiny_cli, tmp_path):
    content, style = inputs
    out = tmp_path / "out.png"
    argv = ["stylize", str(content), str(style), "-o", str(out), "--size", "48x64", "--scales", "2"]
    argv += ["--scale-steps", "3,4", "--save-every", "2", "-q", *tiny_cli]
    assert main(argv) == 0
    snapshots = sorted(p.name for p in tmp_path.glob("out.step*.png"))
    # Steps 2, 4 and 6 of 7, across the two scales; none for the last step (the output).
    assert snapshots == ["out.step000002.png", "out.step000004.png", "out.step000006.png"]
    assert Image.open(tmp_path / "out.step000002.png").size == (45, 34)  # taken at the first scale
    assert Image.open(tmp_path / "out.step000004.png").size == (64, 48)


def read_metadata_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_output_reproduces_from_its_metadata(inputs, tiny_cli, tmp_path):
    content, style = inputs
    first = tmp_path / "first.png"
    argv = ["stylize", str(content), str(style), "-o", str(first), *SMALL, "-q", "--tv-weight", "3"]
    argv += ["--compute-dtype", "bfloat16"]
    assert main([*argv, *tiny_cli]) == 0
    assert read_metadata(first)["compute_dtype"] == "bfloat16"
    command = shlex.split(read_metadata(first)["command"])
    assert command[-2:] == ["--compute-dtype", "bfloat16"]
    assert command[:2] == ["jaxstyle", "stylize"]
    command[command.index("-o") + 1] = str(tmp_path / "second.png")
    assert main([*command[1:], "-q"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(tmp_path / "second.png")))


def test_python_api_returns_array_and_trace(inputs, tiny_files, rng):
    content = rng.uniform(0, 1, size=(50, 70, 3)).astype(np.float32)
    # Caffe weights: the paper's settings, with lr taken in Caffe's input units.
    caffe = {"weights": tiny_files["caffe"], "network": "tiny", "convention": "caffe", "size": (48, 64), "steps": 4}
    caffe["init"] = "noise"
    result = jaxstyle.stylize(content, inputs[1], seed=3, **caffe)
    assert result.image.shape == (48, 64, 3) and result.image.dtype == np.float32
    assert result.trace["total"].shape == (4,) and np.isfinite(result.trace["total"]).all()
    # The final losses are those of the image returned, not of the iterate before the last step.
    problem = prepare(content, inputs[1], **caffe)
    x = problem.job.network.convention.to_network(result.image)[None]
    terms = objective(x, problem.graphdef, problem.params, problem.recipe, problem.targets, problem.loss_weights)[1]
    for name, value in result.final_losses.items():
        assert float(terms[name]) == pytest.approx(value, rel=1e-5), name
    assert result.final_losses["total"] < result.trace["total"][0]
    assert result.settings.init == "noise" and result.weights_info["convention"] == "caffe"
    again = jaxstyle.stylize(content, inputs[1], seed=4, **caffe)
    assert not np.array_equal(result.image, again.image)  # the seed matters for noise init


def test_import_does_no_io_and_loads_nothing_heavy():
    code = "import sys, jaxstyle; print('jax' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --------------------------------------------------------------------------- bad input through the real command


def assert_one_line_error(proc: CliResult, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("jaxstyle: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing content", ["nope.jpg: no such file"]),
        ("text as jpg", ["notes.jpg: not an image file"]),
        ("size 0", ["--size must be between 32 and 8192, not 0"]),
        ("size 100000", ["--size must be between 32 and 8192, not 100000"]),
        ("unwritable output", ["/proc/out.png: not writable"]),
        ("missing output dir", ["does not exist"]),
        ("keras file as weights", ["not a converted jaxstyle weights file", "convert it first"]),
        ("text as weights", ["notes.jpg: not a readable HDF5 file"]),
        ("diverging run", ["diverged at step", "try a lower --lr"]),
        ("bad layer", ["unknown style layer 'relu9_9'"]),
        ("caffe weights, paper settings", ["tiny-caffe.h5: caffe-convention weights", "--preset gatys"]),
        ("steps not a number", ["--steps 'many': expected a whole number"]),
    ],
)
def test_bad_input_is_one_line_no_traceback_no_output(inputs, weight_files, tiny_files, tmp_path, case, fragments):
    content, style = inputs
    (tmp_path / "notes.jpg").write_text("shopping list\n")
    out = tmp_path / "out.png"
    args = {"content": str(content), "style": str(style), "out": str(out), "size": "48x64"}
    extra = ["--network", "tiny", "--weights", str(tiny_files["torchvision"])]
    if case == "missing content":
        args["content"] = str(tmp_path / "nope.jpg")
    elif case == "text as jpg":
        args["style"] = str(tmp_path / "notes.jpg")
    elif case == "size 0":
        args["size"] = "0x64"
    elif case == "size 100000":
        args["size"] = "48x100000"
    elif case == "unwritable output":
        args["out"] = "/proc/out.png"
    elif case == "missing output dir":
        args["out"] = str(tmp_path / "no" / "out.png")
    elif case == "keras file as weights":
        extra = ["--weights", str(weight_files["keras"])]  # a published (VGG-19) layout
    elif case == "text as weights":
        extra = ["--network", "tiny", "--weights", str(tmp_path / "notes.jpg")]
    elif case == "diverging run":
        extra += ["--lr", "1e30"]
    elif case == "bad layer":
        extra += ["--style-layers", "relu1_1,relu9_9"]
    elif case == "caffe weights, paper settings":
        extra = ["--network", "tiny", "--weights", str(tiny_files["caffe"])]
    elif case == "steps not a number":
        extra += ["--steps", "many"]
    proc = run_cli(
        "stylize", args["content"], args["style"], "-o", args["out"], "--size", args["size"], "--steps", "3", *extra
    )
    assert_one_line_error(proc, *fragments)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_sweeping_lr_under_lbfgs_is_refused(inputs, tiny_cli, tmp_path):
    content, style = inputs
    out = tmp_path / "sweep"
    proc = run_cli(
        *("sweep", str(content), str(style), "-o", str(out), *SMALL, "--optimizer", "lbfgs", "--lr", "0.1,0.2"),
        *tiny_cli,
    )
    assert_one_line_error(proc, "--lr 0.1,0.2 with --optimizer lbfgs sweeps identical settings")
    assert not out.exists()


def test_missing_weights_say_how_to_get_them(inputs, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("JAXSTYLE_WEIGHTS", None)
    proc = run_cli("stylize", str(inputs[0]), str(inputs[1]), "-o", "out.png", *SMALL, env=env, cwd=tmp_path)
    assert_one_line_error(
        proc,
        "no VGG-19 weights",
        "jaxstyle weights download --source torchvision",
        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        "jaxstyle weights convert vgg19-dcbb9e9d.pth",
    )
    assert not (tmp_path / "out.png").exists()


def test_weights_commands(weight_files, tmp_path):
    dst = tmp_path / "w.h5"
    proc = run_cli("weights", "convert", str(weight_files["safetensors"]), "-o", str(dst), "--convention", "caffe")
    assert proc.returncode == 0 and f"wrote {dst}" in proc.stdout
    info = run_cli("weights", "info", str(dst))
    assert info.returncode == 0
    assert "convention: caffe" in info.stdout and "source_file: vgg19-random.safetensors" in info.stdout
    assert "16 convolutions, 20,024,384 parameters" in info.stdout
    assert_one_line_error(
        run_cli("weights", "convert", str(weight_files["pth"]), "-o", str(tmp_path / "x.h5")), "pass --convention"
    )
    offline = run_cli(
        "weights",
        "download",
        "--url",
        "http://127.0.0.1:9/vgg19-dcbb9e9d.pth",
        "-o",
        str(tmp_path / "d.h5"),
        "--timeout",
        "5",
    )
    assert_one_line_error(offline, "cannot download", "jaxstyle weights convert vgg19-dcbb9e9d.pth")


def test_the_memory_line_is_printed_where_remat_or_a_split_changes_the_step():
    from jaxstyle.cli import plan_memory_line
    from jaxstyle.config import Execution, resolve
    from jaxstyle.plan import make_plan

    small = make_plan(resolve("paper"), (48, 64), 1)
    assert small.remat == "none" and plan_memory_line(small) is None
    # Auto remat where a step does not fit a small device: the line names the mode and the estimate.
    tight = make_plan(resolve("paper"), (1024, 1024), 1, device_memory=2 << 30)
    assert tight.remat != "none" and plan_memory_line(tight).startswith(f"remat {tight.remat} (auto: ")
    assert "MiB per step at 1024x1024" in plan_memory_line(tight)
    asked = make_plan(resolve("paper"), (48, 64), 1, execution=Execution(remat="blocks"))
    assert plan_memory_line(asked).startswith("remat blocks (as asked)")


# --------------------------------------------------------------------------- the content's aspect (issue 20)

# Height x width of a 200x400 (width x height) portrait; the tiny network keeps its runs cheap.
PORTRAIT = (400, 200)
TINY = ["--network", "tiny", "--steps", "2", "--progress", "none"]


@pytest.fixture
def portrait(tmp_path, rng) -> Path:
    path = tmp_path / "portrait.png"
    Image.fromarray(rng.integers(0, 256, size=(*PORTRAIT, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(("preset", "size"), [("paper", (520, 260)), ("gatys", (512, 256)), ("crowsonkb", (512, 256))])
def test_stylize_and_sweep_size_a_portrait_at_its_aspect_under_every_preset(rng, preset, size):
    from jaxstyle.config import PRESETS
    from jaxstyle.pipeline import read_inputs

    # read_inputs gives the output size of stylize (api.prepare) and sweep (sweep.sweep), both through prepare_job.
    content, style = rng.uniform(0, 1, size=(*PORTRAIT, 3)), rng.uniform(0, 1, size=(50, 50, 3))
    assert read_inputs([content], [style], PRESETS[preset]).output_size == size  # 1:2, as the content


def test_the_output_line_names_an_aspect_change_only_an_explicit_size_makes():
    from jaxstyle.cli import aspect_note
    from jaxstyle.config import PRESETS, resolve

    squashed = " (--size 300x450 changes the content's width:height 1:2 to 3:2)"
    assert aspect_note(PORTRAIT, resolve(size=(300, 450))) == squashed
    assert [aspect_note(PORTRAIT, PRESETS[name]) for name in sorted(PRESETS)] == ["", "", ""]
    assert aspect_note((200, 300), resolve(size=(300, 450))) == aspect_note((333, 500), resolve(size=(300, 450))) == ""
    assert aspect_note(PORTRAIT, resolve(size=(100, 51))) == ""  # a rounding pixel off 1:2
    assert aspect_note(PORTRAIT, resolve(size=(100, 52))) != ""


def test_stylize_keeps_a_portraits_aspect_and_says_when_size_changes_it(portrait, inputs, tiny_weights, capsys):
    style, tmp_path = str(inputs[1]), portrait.parent
    out = tmp_path / "out.png"
    assert main(["stylize", str(portrait), style, "-o", str(out), *TINY, "--weights", str(tiny_weights)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"wrote {out} (520x260, 2 steps") and line.count("\n") == 1 and "changes" not in line
    assert Image.open(out).size == (260, 520)  # width x height: a portrait, the paper preset's 135,000 pixels
    meta = read_metadata(out)
    assert meta["scales"] == [{"size": [520, 260], "steps": 2}]  # the size used
    assert (meta["settings"]["size"], meta["settings"]["pixels"]) == (None, 135000)
    assert "--pixels 135000" in meta["command"]

    squashed = tmp_path / "squashed.png"
    argv = ["stylize", str(portrait), style, "-o", str(squashed), *TINY, "--weights", str(tiny_weights)]
    assert main([*argv, "--size", "64x96"]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"wrote {squashed} (64x96, 2 steps") and line.count("\n") == 1
    assert line.endswith(" (--size 64x96 changes the content's width:height 1:2 to 3:2)\n")
    assert Image.open(squashed).size == (96, 64) and read_metadata(squashed)["scales"][-1]["size"] == [64, 96]


@pytest.mark.parametrize(
    ("env", "jax_own", "expected"),
    [
        ({"XDG_CACHE_HOME": "{tmp}/xdg"}, None, "{tmp}/xdg/jaxstyle/xla"),
        ({"JAXSTYLE_COMPILE_CACHE": "{tmp}/mine"}, None, "{tmp}/mine"),
        ({"JAXSTYLE_COMPILE_CACHE": "off"}, None, "None"),
        ({"JAXSTYLE_COMPILE_CACHE": "{tmp}/mine"}, "{tmp}/jax", "{tmp}/jax"),
    ],
    ids=["default", "chosen", "off", "jax's own"],
)
def test_the_commands_keep_compiled_programs_where_told(tmp_path, monkeypatch, env, jax_own, expected):
    import jax

    from jaxstyle.cli import use_compile_cache

    for name in ("XDG_CACHE_HOME", "JAXSTYLE_COMPILE_CACHE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    before = jax.config.jax_compilation_cache_dir  # the test session's own cache (conftest)
    # As JAX starts in a command's process: its own cache directory set from JAX_COMPILATION_CACHE_DIR, or none.
    jax.config.update("jax_compilation_cache_dir", jax_own and jax_own.format(tmp=tmp_path))
    try:
        use_compile_cache()
        chosen = jax.config.jax_compilation_cache_dir
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    assert str(chosen) == expected.format(tmp=tmp_path)


def test_matmul_precision_is_the_runs_and_recorded(inputs, tiny_cli, tmp_path, monkeypatch):
    """``--matmul-precision``: JAX's default matmul precision while the run traces its programs, in the
    PNG's metadata; ``default`` sets nothing. On CPU float32 is the platform's own: the same image."""
    import jax

    from jaxstyle import pipeline

    seen, run = [], pipeline.Runner.run
    monkeypatch.setattr(
        pipeline.Runner, "run", lambda self: seen.append(jax.config.jax_default_matmul_precision) or run(self)
    )
    content, style = inputs
    for name, extra in (("default", []), ("float32", ["--matmul-precision", "float32"])):
        assert (
            main(
                [
                    "stylize",
                    str(content),
                    str(style),
                    "-o",
                    str(tmp_path / f"{name}.png"),
                    *SMALL,
                    "-q",
                    *tiny_cli,
                    *extra,
                ]
            )
            == 0
        )
        assert read_metadata(tmp_path / f"{name}.png")["execution"]["matmul_precision"] == name
    assert seen == [None, "float32"]
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "default.png")), np.asarray(Image.open(tmp_path / "float32.png"))
    )
