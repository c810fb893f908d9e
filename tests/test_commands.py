"""The command table and its errors, in-process: ``jaxstyle.cli.main([...])``, no new Python,
no network compiled.

- The table is read lazily: ``jaxstyle --help`` lists every command, and ``jaxstyle
  presets`` runs, with JAX unimportable; only the command given is imported.
- Every command's ``--help`` works; a command's ``RUNS_A_JOB`` decides whether its
  ``run`` gets stop requests.
- Errors about a value name the option as typed (``--lr must be ...``), on one line,
  exit status 2; the same error from Python names the setting in words (``lr must be ...``).
"""

from __future__ import annotations

import pickle
import sys
import types

import pytest

from jaxstyle.cli import COMMANDS, Command
from jaxstyle.config import resolve
from jaxstyle.errors import SettingError
from tests.cli_runner import run_cli

IMAGES = ["c.png", "s.png"]  # never read: every error below comes before the images are


@pytest.fixture
def cli():
    """``cli(*argv)`` -> ``(exit status, stdout, stderr)`` of ``jaxstyle ARGV``, run in this process."""

    def run(*argv: str) -> tuple[int, str, str]:
        result = run_cli(*argv)
        return result.returncode, result.stdout, result.stderr

    return run


def one_line_error(status: int, err: str) -> str:
    """The message of a one-line error with exit status 2 and no traceback."""
    assert status == 2, err
    assert err.startswith("jaxstyle: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.removeprefix("jaxstyle: ").rstrip("\n")


# --------------------------------------------------------------------------- the table


@pytest.fixture
def no_jax(monkeypatch):
    """JAX and Flax unimportable, and the command modules not yet imported (both restored after)."""
    for name in ("jax", "jax.numpy", "flax", "flax.nnx"):
        monkeypatch.setitem(sys.modules, name, None)  # `import jax` now raises ImportError
    for command in COMMANDS.values():
        monkeypatch.delitem(sys.modules, command.module, raising=False)


def test_help_lists_every_command_without_jax_or_any_command_module(no_jax, cli):
    status, out, _ = cli("--help")
    assert status == 0
    for name, command in COMMANDS.items():
        assert name in out and command.help.split()[0] in out
    assert not [command.module for command in COMMANDS.values() if command.module in sys.modules]


def test_presets_runs_without_jax_and_imports_only_its_own_module(no_jax, cli):
    status, out, _ = cli("presets", "gatys")
    assert status == 0
    assert out.split("\n")[0].split() == ["setting", "gatys"] and "lbfgs-fixed" in out
    imported = [name for name, command in COMMANDS.items() if command.module in sys.modules]
    assert imported == ["presets"]


@pytest.mark.parametrize(
    "argv",
    [[name] for name in COMMANDS] + [["weights", sub] for sub in ("convert", "info", "download")],
    ids=" ".join,
)
def test_every_command_has_help(cli, argv):
    status, out, err = cli(*argv, "--help")
    assert (status, err) == (0, "")
    assert out.startswith(f"usage: jaxstyle {' '.join(argv)}")


def test_the_settings_options_are_shared_by_every_command_that_runs(cli):
    for name in ("stylize", "sweep", "video"):
        _, out, _ = cli(name, "--help")
        for option in ("--weights", "--progress", "--style-weight", "--max-side", "--preset", "-o OUTPUT"):
            assert option in out, (name, option)
    for name in ("stylize", "sweep", "video"):
        _, out, _ = cli(name, "--help")
        assert "--checkpoint-dir" in out and "--resume" in out, name
        assert ("--coordinator" in out) == (name != "stylize"), name  # several hosts: sweep and video


def test_a_command_is_its_module_and_a_line_in_the_table(monkeypatch, cli):
    """What adding a command takes; ``RUNS_A_JOB`` decides whether ``run`` gets the stop requests."""
    calls = []

    def command(name: str, runs_a_job: bool) -> types.ModuleType:
        module = types.ModuleType(f"tests.{name}")
        module.RUNS_A_JOB = runs_a_job
        module.add_arguments = lambda p: p.add_argument("--times", type=int, default=1)
        module.run = lambda args, *stop: calls.append((name, args.times, [s() for s in stop])) or 0
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(COMMANDS, name, Command(f"{name} for a test", module.__name__))
        return module

    command("hello", runs_a_job=False)
    command("job", runs_a_job=True)
    assert cli("hello", "--times", "3")[0] == 0
    assert cli("job")[0] == 0
    assert calls == [("hello", 3, []), ("job", 1, [None])]  # the job's stop requests: none so far
    assert "hello for a test" in cli("--help")[1]


def test_an_unknown_command_or_option_is_one_line(cli):
    assert "invalid choice: 'stylise'" in one_line_error(*cli("stylise", *IMAGES)[::2])
    message = one_line_error(*cli("stylize", *IMAGES, "-o", "o.png", "--size", "64x96", "--pixels", "5000")[::2])
    assert "argument --pixels: not allowed with argument --size" in message


# --------------------------------------------------------------------------- errors name the option


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # numbers and their bounds
        (["--lr", "0"], "--lr must be a number > 0 and at most 3.40282e+38 (the largest float32), not 0.0"),
        (["--style-weight=-1"], "--style-weight must be a number >= 0 and at most 3.40282e+38"),
        (["--ema", "1"], "--ema must be in [0, 1), not 1.0"),
        (["--steps", "0"], "--steps must be between 1 and 1000000, not 0"),
        (["--steps", "ten"], "--steps 'ten': expected a whole number"),
        (["--seed", "1" * 23], "--seed must be between -9223372036854775808 and 9223372036854775807"),
        (["--scale-steps", "5,0", "--scales", "2"], "--scale-steps must be between 1 and 1000000, not 0"),
        (["--style-blend", "1e308,1e308"], "--style-blend weights must be finite and >= 0 with a positive"),
        # choices
        (["--optimizer", "sgd"], "--optimizer must be one of adam, lbfgs, lbfgs-fixed, not 'sgd'"),
        (["--style-loss", "wasserstein"], "--style-loss must be one of gram, w2, guided, not 'wasserstein'"),
        (["--init", ""], "--init must be one of content, noise, gaussian or an image file"),
        (["--network", "vgg11"], "--network: unknown network 'vgg11'; choose from vgg19, vgg16"),
        # layer lists
        (["--style-layers", "relu1_1,relu9_9"], "--style-layers: unknown style layer 'relu9_9': VGG-19 has conv1_1"),
        (["--content-layers", ","], "--content-layers: at least one content layer is needed"),
        (["--style-layer-weights", "1,2"], "2 --style-layer-weights for 5 layers"),
        (["--content-layer-weights=-0.5"], "--content-layer-weights must be a number >= 0"),
        (["--style-layer-weights", "1,x"], "--style-layer-weights '1,x': expected comma-separated numbers"),
        # size forms
        (["--size", "300by450"], "--size '300by450': expected HEIGHTxWIDTH, e.g. 300x450"),
        (["--size", "16x450"], "--size must be between 32 and 8192, not 16"),
        (["--max-side", "100000"], "--max-side must be between 32 and 8192, not 100000"),
        (["--pixels", "1000"], "--pixels must be between 1024 and 67108864, not 1000"),
        (["--min-side", "0"], "--min-side must be between 1 and 8192, not 0"),
        (["--scales", "2", "--min-side", "64"], "give either a number of --scales or a --min-side, not both"),
        # settings that need another
        (["--warm-start", "--optimizer", "lbfgs"], "--warm-start carries Adam's moments from scale to scale"),
        (["--bounded", "--optimizer", "lbfgs"], "--bounded projects each step into the pixel range"),
    ],
)
def test_stylize_errors_name_the_option_as_typed(cli, options, message):
    status, _, err = cli("stylize", *IMAGES, "-o", "o.png", *options)
    assert message in one_line_error(status, err)


def test_video_errors_name_the_option_as_typed(cli):
    status, _, err = cli("video", "in.mp4", "s.png", "-o", "out.mp4", "--tv-weight", "inf")
    assert one_line_error(status, err).startswith("--tv-weight must be a number >= 0")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--style-weight", "1,1e39"], "setting 1: --style-weight must be a number >= 0 and at most 3.40282e+38"),
        (["--lr", "0.1,1e-50"], "setting 1: --lr must be a number > 0"),
        (["--ema", "0.5,0.999999999"], "setting 1: --ema must be in [0, 1)"),
        (
            ["--style-loss", "gram,wasserstein"],
            "setting 1: --style-loss must be one of gram, w2, guided, not 'wasserstein'",
        ),
        (["--tv-weight", "1,x"], "--tv-weight '1,x': expected comma-separated numbers"),
        (
            ["--preset", "gatys", "--lr", "0.1,0.2"],
            "--lr 0.1,0.2 with --optimizer lbfgs-fixed sweeps identical settings: "
            "--lr matters only with --optimizer adam",
        ),
    ],
)
def test_sweep_lists_name_the_option_as_typed(cli, tmp_path, options, message):
    out = tmp_path / "sweep"
    status, _, err = cli("sweep", *IMAGES, "-o", out, *options)
    assert message in one_line_error(status, err)
    assert not out.exists()  # refused before any output


def test_a_grid_value_is_named_by_its_file_and_key(cli, tmp_path):
    grid = tmp_path / "g.json"
    grid.write_text('[{"style_weight": 1}, {"style_weight": 1e39}]')
    status, _, err = cli("sweep", *IMAGES, "-o", tmp_path / "sweep", "--grid", grid)
    assert one_line_error(status, err).startswith(f"{grid}: setting 1: style_weight must be a number >= 0")


# --------------------------------------------------------------------------- the same errors from Python


def test_python_users_read_the_setting_in_words():
    with pytest.raises(SettingError) as error:
        resolve(style_weight=-1.0)
    assert str(error.value).startswith("style weight must be a number >= 0")
    assert error.value.setting == "style_weight"
    assert error.value.naming(lambda name: name.upper()).startswith("STYLE_WEIGHT must be")
    with pytest.raises(SettingError, match="give either a number of scales or a min side, not both"):
        resolve("crowsonkb", scales=3, min_side=64)
    with pytest.raises(SettingError, match=r"^unknown style layer 'relu9_9': VGG-19 has") as error:
        resolve(style_layers=("relu9_9",))
    assert error.value.naming(str).startswith("style_layers: unknown style layer")  # the setting put in front


def test_a_setting_error_survives_pickling():
    with pytest.raises(SettingError) as error:
        resolve(lr=0.0)
    copy = pickle.loads(pickle.dumps(error.value))
    assert (str(copy), copy.settings, copy.template) == (str(error.value), ("lr",), error.value.template)


def test_a_dollar_in_a_value_is_not_a_setting(tmp_path):
    # "$lr" in an image path must stay as typed: only the settings the error is about are named.
    path = f"{tmp_path}/$lr.png"
    error = SettingError(f"$init {path!r} is refused", "init")
    assert error.naming(lambda name: "--" + name) == f"--init {path!r} is refused"
