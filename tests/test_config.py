"""Settings generate the command line: options, the reproducing command, the presets table.

No image is stylized here; every test reads settings, parsers or text.
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from jaxstyle.cli import build_parser, command_line, option_name, settings_from_args
from jaxstyle.cli.options import execution_from_args, option_spelling
from jaxstyle.config import (
    EXECUTION_NAMES,
    FIELD_NAMES,
    PRESETS,
    SECTIONS,
    SWEPT_FIELDS,
    Execution,
    Settings,
    check_convention,
    check_swept_values,
    info,
    option_fields,
    resolve,
    short_label,
    split_execution,
    stages,
)
from jaxstyle.errors import JaxstyleError, SettingError

# The user guide's page of options (the README is a front page that links to it).
OPTIONS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "guide" / "stylize.md"


def parse(*argv: str) -> Settings:
    """The settings `jaxstyle stylize c.jpg s.jpg -o o.png ARGV` runs with."""
    return settings_from_args(build_parser().parse_args(["stylize", "c.jpg", "s.jpg", "-o", "o.png", *argv]))


def subcommand_options(name: str) -> set[str]:
    """Every option string of a subcommand of `jaxstyle`."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[name]
    return {option for action in sub._actions for option in action.option_strings}


def test_every_setting_is_an_option_of_stylize_and_sweep_but_the_convention():
    assert set(FIELD_NAMES) - set(option_fields()) == {"convention"}  # the preset's, checked against the weights
    for command in ("stylize", "sweep"):
        options = subcommand_options(command)
        missing = [name for name in option_fields() if option_name(name) not in options]
        assert missing == [], (command, missing)
    assert "--convention" not in subcommand_options("stylize")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_command_line_reproduces_every_preset(name):
    command = shlex.split(command_line(PRESETS[name], "c.jpg", "s.jpg", "o.png", None, preset=name))
    assert command[:2] == ["jaxstyle", "stylize"]
    assert settings_from_args(build_parser().parse_args(command[1:])) == PRESETS[name]


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("crowsonkb", {"steps": 10, "style_layers": ("relu1_1",), "optimizer": "lbfgs", "pixels": 40000}),
        ("gatys", {"optimizer": "adam", "size": (64, 96), "scale_steps": (3, 2), "scales": 2, "warm_start": True}),
        ("paper", {"min_side": 40, "max_side": 90, "style_blend": (0.25, 0.75), "color": "luminance"}),
    ],
)
def test_command_line_reproduces_overridden_settings(preset, overrides):
    settings = resolve(preset, **overrides)
    execution = Execution(compute_dtype="bfloat16", save_every=5)
    command = shlex.split(command_line(settings, "c.jpg", "a.jpg,b.jpg", "o.png", "w.h5", execution, preset))
    # The execution choices other than the defaults, after the recipe and the weights.
    assert command[-6:] == ["--weights", "w.h5", "--compute-dtype", "bfloat16", "--save-every", "5"]
    assert settings_from_args(build_parser().parse_args(command[1:])) == settings


# --------------------------------------------------------------------------- overrides reset what depends on them


def test_new_style_layers_drop_the_presets_layer_weights():
    settings = parse("--preset", "crowsonkb", "--style-layers", "relu1_1,relu2_1")
    assert settings.style_layers == ("relu1_1", "relu2_1") and settings.style_layer_weights is None
    kept = parse("--preset", "crowsonkb", "--style-layers", "relu1_1,relu2_1", "--style-layer-weights", "2,1")
    assert kept.style_layer_weights == (2.0, 1.0)
    content = resolve("paper", content_layer_weights=(3.0,)), resolve("paper", content_layers=("relu3_1", "relu4_2"))
    assert content[0].content_layer_weights == (3.0,) and content[1].content_layer_weights is None


def test_another_optimizer_drops_the_presets_optimizer_specific_settings():
    lbfgs = parse("--preset", "crowsonkb", "--optimizer", "lbfgs")
    assert lbfgs.optimizer == "lbfgs" and lbfgs.warm_start is False and lbfgs.lr == Settings().lr
    assert lbfgs.ema == 0.99  # the average of the iterates applies to L-BFGS too: kept
    adam = parse("--preset", "gatys", "--optimizer", "adam")
    assert adam.lbfgs_memory == Settings().lbfgs_memory and adam.init == "gaussian"
    assert parse("--preset", "crowsonkb", "--optimizer", "adam", "--lr", "0.05").lr == 0.05
    with pytest.raises(JaxstyleError, match="needs --optimizer adam"):
        parse("--preset", "crowsonkb", "--optimizer", "lbfgs", "--warm-start")


def test_steps_set_the_steps_of_every_scale():
    settings = parse("--preset", "crowsonkb", "--steps", "10")
    assert [stage.steps for stage in stages(settings, (512, 384))] == [10] * 5
    first = parse("--preset", "crowsonkb", "--steps", "10", "--initial-steps", "20")
    assert [stage.steps for stage in stages(first, (512, 384))] == [20, 10, 10, 10, 10]


def test_size_and_scale_alternatives_clear_each_other():
    assert parse("--preset", "crowsonkb", "--size", "64x96").max_side is None
    assert parse("--max-side", "128").size is None
    one_scale = parse("--preset", "crowsonkb", "--scales", "1")  # the preset's scales is already 1
    assert one_scale.min_side is None and len(stages(one_scale, (512, 384))) == 1
    from_min_side = parse("--min-side", "64", "--size", "128x128")
    assert [stage.size for stage in stages(from_min_side, (128, 128))] == [(64, 64), (91, 91), (128, 128)]


def test_each_size_form_unsets_the_presets_other_forms():
    assert (PRESETS["paper"].size, PRESETS["paper"].max_side, PRESETS["paper"].pixels) == (None, None, 135000)
    assert [(PRESETS[name].size, PRESETS[name].pixels) for name in ("gatys", "crowsonkb")] == [(None, None)] * 2
    assert (parse("--size", "64x96").size, parse("--size", "64x96").pixels) == ((64, 96), None)
    assert (parse("--max-side", "128").max_side, parse("--max-side", "128").pixels) == (128, None)
    gatys = parse("--preset", "gatys", "--pixels", "5000")
    assert (gatys.max_side, gatys.pixels) == (None, 5000)
    assert info("pixels").group == info("size").group == info("max_side").group == "size"
    with pytest.raises(SystemExit):  # argparse: mutually exclusive options
        parse("--size", "64x96", "--pixels", "5000")


def test_settings_made_directly_take_one_size_form():
    several = r"give one of size, max side and pixels, not several \(size \(64, 96\), pixels 135000\)"
    with pytest.raises(JaxstyleError, match=several):
        Settings(size=(64, 96))  # and the paper defaults' pixels: resolve() would unset them
    with pytest.raises(JaxstyleError, match="give a size, a max side or pixels"):
        Settings(pixels=None)
    assert Settings(size=(64, 96), pixels=None).size == (64, 96)


def test_dependents_are_declared_once_in_the_metadata():
    # Each reset comes from a `depends_on` (or `optimizers`) of the field that is reset.
    assert info("style_layer_weights").depends_on == ("style_layers",)
    assert info("warm_start").optimizers == ("adam",) and "optimizer" in info("warm_start").dependencies()
    assert {name for name in FIELD_NAMES if "steps" in info(name).dependencies()} == {"initial_steps", "scale_steps"}


# --------------------------------------------------------------------------- validation from the metadata


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--optimizer", "sgd"], "optimizer must be one of adam, lbfgs, lbfgs-fixed, not 'sgd'"),
        (["--lr", "0"], "lr must be a number > 0 and at most 3.40282e+38 (the largest float32), not 0.0"),
        (["--ema", "1"], "ema must be in [0, 1), not 1.0"),
        (["--steps", "0"], "steps must be between 1 and 1000000, not 0"),
        (["--scale-steps", "5,0", "--scales", "2"], "scale steps must be between 1 and 1000000, not 0"),
        (["--steps", "ten"], "--steps 'ten': expected a whole number"),
        (["--style-weight", "1e3,1e4"], "--style-weight '1e3,1e4': expected a number"),
        (["--style-layer-weights", "1,x"], "--style-layer-weights '1,x': expected comma-separated numbers"),
        (["--size", "300by450"], "size '300by450': expected HEIGHTxWIDTH"),
        (["--pixels", "1e5"], "--pixels '1e5': expected a whole number"),
        (["--pixels", "1000"], "pixels must be between 1024 and 67108864, not 1000"),
        (["--pixels=-5"], "pixels must be between 1024 and 67108864, not -5"),
        (["--pixels", "9" * 50], "pixels must be between 1024 and 67108864, not 999999999999... (50 digits)"),
        (["--preset", "crowsonkb", "--scales", "3", "--min-side", "64"], "either a number of scales or a min side"),
    ],
)
def test_bad_values_are_one_line_errors_from_the_metadata(argv, message):
    with pytest.raises(JaxstyleError) as error:
        parse(*argv)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_sweeping_a_setting_the_optimizer_ignores_is_refused():
    lbfgs = resolve("gatys")
    # From Python the settings are named in words; the command line names its options (test_cli).
    message = (
        r"^lr 0\.1,0\.2 with optimizer lbfgs-fixed sweeps identical settings: lr matters only with optimizer adam$"
    )
    with pytest.raises(JaxstyleError, match=message):
        check_swept_values(lbfgs, {"lr": [0.1, 0.2, 0.1], "style_weight": [1.0, 2.0, 3.0]})
    check_swept_values(lbfgs, {"lr": [0.1, 0.1], "ema": [0.0, 0.9]})  # one lr; EMA applies to L-BFGS too
    check_swept_values(resolve("paper"), {"lr": [0.1, 0.2]})


def test_convention_of_the_weights_must_be_the_settings():
    check_convention(PRESETS["gatys"], "caffe", "w.h5")
    with pytest.raises(JaxstyleError) as error:
        check_convention(PRESETS["paper"], "caffe", "vgg19-caffe.h5")
    message = str(error.value)
    assert message.startswith("vgg19-caffe.h5: caffe-convention weights") and "in torchvision units" in message
    assert "use torchvision weights, or --preset gatys" in message and "\n" not in message
    with pytest.raises(JaxstyleError, match="--preset paper or --preset crowsonkb"):
        check_convention(PRESETS["gatys"], "torchvision", "vgg19-torchvision.h5")


# --------------------------------------------------------------------------- one list, read by the others


def test_sweep_axes_and_labels_come_from_the_metadata():
    from jaxstyle.sweep import SweepPoint

    assert [f.name for f in dataclasses.fields(SweepPoint)] == ["content", "style", *SWEPT_FIELDS]
    assert {f.name: f.type for f in dataclasses.fields(SweepPoint)}["style_loss"] == str | None  # a name, not a number
    labels = {key: short_label(key) for key in ("content", "style", *SWEPT_FIELDS)}
    assert labels == {"content": "content", "style": "style", "content_weight": "cw", "style_weight": "sw"} | {
        "tv_weight": "tv",
        "lr": "lr",
        "ema": "ema",
        "style_loss": "loss",
    }


def test_docstring_and_docs_describe_every_setting():
    doc = Settings.__doc__.replace("\n    ", " ")
    for name in FIELD_NAMES:
        assert f"\n  {name}: {info(name).doc}" in doc
    # Section by section, in the order of SECTIONS.
    titles = [doc.index(f"\n{title.capitalize()} (section ``{key}``).") for key, title in SECTIONS.items()]
    assert titles == sorted(titles)
    for name in EXECUTION_NAMES:
        assert f"\n  {name}: {info(name).doc}" in Execution.__doc__.replace("\n    ", " ")
    page = OPTIONS_PAGE.read_text()
    options = [*option_fields(), *(name for name in EXECUTION_NAMES if info(name).cli)]
    assert [name for name in options if option_name(name) not in page] == []


# --------------------------------------------------------------------------- sections and execution


def test_stylize_help_groups_the_options_by_section():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["stylize"]
    group_of = {action.dest: group.title for group in sub._action_groups for action in group._group_actions}
    for name in option_fields():
        assert group_of[name] == f"recipe: {SECTIONS[info(name).section]}", name
    assert {group_of[name] for name in ("remat", "spatial_shards", "compute_dtype", "save_every")} == {
        "execution (how the run is carried out; the recipe stays the same)"
    }


def test_execution_choices_are_options_of_the_commands_that_use_them_and_no_settings():
    assert {"remat", "spatial_shards"} & set(FIELD_NAMES) == set()
    stylize, sweep, video = (subcommand_options(name) for name in ("stylize", "sweep", "video"))
    assert {"--remat", "--spatial-shards", "--compute-dtype"} <= stylize & sweep & video
    assert "--save-every" in stylize and "--save-every" not in sweep | video  # only stylize writes snapshots
    assert "--batch-size" in sweep & video and "--batch-size" not in stylize  # one setting: no micro-batches
    assert "--dtype" not in stylize | sweep | video  # float64 is for the parity runs of the Python API
    args = build_parser().parse_args(["stylize", "c", "s", "-o", "o.png", "--remat", "blocks", "--save-every", "5"])
    assert execution_from_args(args) == Execution(remat="blocks", save_every=5)
    assert settings_from_args(args) == PRESETS["paper"]  # the recipe is untouched


def test_python_keywords_of_execution_fields_go_to_the_execution():
    execution, recipe = split_execution(
        Execution(dtype="float64"), {"remat": "blocks", "steps": 3, "compute_dtype": None, "style_weight": 1e4}
    )
    assert execution == Execution(dtype="float64", remat="blocks") and recipe == {"steps": 3, "style_weight": 1e4}
    with pytest.raises(TypeError, match="remat: run-time choices, not settings of the recipe; give them to Execution"):
        resolve("paper", remat="blocks")


@pytest.mark.parametrize(
    ("kwargs", "option", "message"),
    [
        ({"save_every": 0}, "--save-every", "must be a finite number >= 1, not 0"),
        ({"batch_size": 0}, "--batch-size", "must be a finite number >= 1, not 0"),
        ({"spatial_shards": -1}, "--spatial-shards", "must be between 0 and 4096, not -1"),
        ({"remat": "all"}, "--remat", "must be one of auto, none, blocks, bands, not 'all'"),
        ({"dtype": "float16"}, "dtype", "must be one of float32, float64, not 'float16'"),
        ({"save_every": 2.5}, "--save-every", "must be a whole number, not 2.5"),
    ],
)
def test_bad_execution_choices_name_the_option(kwargs, option, message):
    with pytest.raises(SettingError) as error:
        Execution(**kwargs)
    assert error.value.naming(option_spelling) == f"{option} {message}"
    assert str(error.value) == f"{next(iter(kwargs)).replace('_', ' ')} {message}"  # in words, from Python


def test_overrides_are_stored_as_the_fields_types():
    settings = resolve("paper", style_layers=["relu1_1"], size=[64, 96], scale_steps=[2])
    assert (settings.style_layers, settings.size, settings.scale_steps) == (("relu1_1",), (64, 96), (2,))
    with pytest.raises(TypeError, match="unknown setting"):
        resolve("paper", style_wieght=1.0)


def test_help_and_presets_import_neither_jax_nor_flax():
    code = (
        "import sys, contextlib, io\n"
        "from jaxstyle.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['presets']) == 0\n"
        "    for argv in (['--help'], ['stylize', '--help'], ['sweep', '--help']):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0\n"
        "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
