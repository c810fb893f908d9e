"""The options several commands share, each group defined once with the code that reads it.

- the settings: one option per command-line field of :class:`~jaxstyle.config.Settings`,
  generated from the field's type and metadata (:func:`add_settings_options`, grouped by
  the recipe's sections), read back by :func:`settings_from_args`, and written by
  :func:`command_line`;
- the execution: likewise for the fields of :class:`~jaxstyle.config.Execution` that a
  command offers (:func:`add_execution_options`, :func:`execution_from_args`);
- ``--weights``; ``-o/--output``;
- progress (``--progress``, ``--progress-interval``, ``-q``) and checkpoints
  (``--checkpoint-dir``, ``--checkpoint-every``, ``--checkpoint-minutes``, ``--resume``).

Every settings default lives in :class:`~jaxstyle.config.Settings`; the settings options
default to ``None``, meaning "the preset's value". Values stay text until read, so that a
bad value is a one-line error naming the option (:func:`parse_text`, :func:`option_spelling`).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from jaxstyle.errors import JaxstyleError, in_words

if TYPE_CHECKING:
    from jaxstyle.checkpoint import CheckpointOptions
    from jaxstyle.config import Execution, Settings
    from jaxstyle.progress import Progress


# --------------------------------------------------------------------------- how values are written


def csv_floats(text: str) -> tuple[float, ...]:
    """``"1,0.5"`` -> ``(1.0, 0.5)``; ``ValueError`` unless every part is a number."""
    return tuple(float(part) for part in text.split(","))


def csv_names(text: str) -> tuple[str, ...]:
    """``"relu1_1,relu2_1"`` -> ``("relu1_1", "relu2_1")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def csv_ints(text: str) -> tuple[int, ...]:
    """``"1000,500"`` -> ``(1000, 500)``; ``ValueError`` unless every part is a whole number."""
    return tuple(int(part) for part in text.split(","))


def height_by_width(text: str) -> tuple[int, int]:
    """``"300x450"`` -> ``(300, 450)``; ``ValueError`` unless two whole numbers (the settings check the sides)."""
    height, width = (int(part) for part in text.lower().split("x"))
    return height, width


class TextForm(NamedTuple):
    """How a setting of one type is written on the command line.

    Attributes:
      parse: text -> value; raises ``ValueError`` on bad text.
      write: value -> text that ``parse`` reads back as the same value.
      expected: what ``parse`` accepts, for error messages.
      metavar: the option's placeholder in ``--help`` (``None``: argparse's).
    """

    parse: Callable[[str], Any]
    write: Callable[[Any], str]
    expected: str
    metavar: str | None = None


# One entry per type a Settings field may have (``| None`` aside); bool fields are
# flags (``--warm-start`` / ``--no-warm-start``) instead.
TEXT_FORMS: dict[Any, TextForm] = {
    float: TextForm(float, repr, "a number"),
    int: TextForm(int, str, "a whole number"),
    str: TextForm(str, str, "text"),
    tuple[float, ...]: TextForm(csv_floats, lambda v: ",".join(map(repr, v)), "comma-separated numbers", "X,..."),
    tuple[int, ...]: TextForm(csv_ints, lambda v: ",".join(map(str, v)), "comma-separated whole numbers", "N,..."),
    tuple[str, ...]: TextForm(csv_names, ",".join, "comma-separated names", "NAME,..."),
    tuple[int, int]: TextForm(height_by_width, lambda v: f"{v[0]}x{v[1]}", "HEIGHTxWIDTH, e.g. 300x450", "HxW"),
}


def swept_form(field: str) -> TextForm:
    """How a swept setting's list of values is written: numbers, or names (``--style-loss gram,w2``)."""
    from jaxstyle.config import value_type

    return TEXT_FORMS[tuple[value_type(field), ...]]


def option_name(field: str) -> str:
    """``style_weight`` -> ``--style-weight``."""
    return "--" + field.replace("_", "-")


def option_spelling(field: str) -> str:
    """How the command line names a setting in errors: its option (``--style-weight``), or, for
    a setting that is no option (``convention``, from the preset), its name in words."""
    from jaxstyle.config import info

    return option_name(field) if info(field).cli else in_words(field)


def parse_text(form: TextForm, option: str, text: str) -> Any:
    """``text`` read by ``form``, or a one-line :class:`JaxstyleError` naming the option."""
    try:
        return form.parse(text)
    except ValueError:
        raise JaxstyleError(f"{option} {text!r}: expected {form.expected}") from None


# --------------------------------------------------------------------------- the settings


def option_help(field: str, swept_lists: bool) -> str:
    """The field's help text, with what giving it resets and, in sweeps, that lists are swept."""
    from jaxstyle.config import DEPENDENTS, info

    text = info(field).doc
    if DEPENDENTS.get(field):
        text += f" (giving it resets {', '.join(map(option_name, DEPENDENTS[field]))} unless given too)"
    if swept_lists and info(field).swept:
        text += " (comma-separated values are swept)"
    return text


def option_spec(field: str, swept_lists: bool) -> dict[str, Any]:
    """The ``add_argument`` keywords of a field's option, from its type and metadata."""
    from jaxstyle.config import EXECUTION, info, value_type

    spec: dict[str, Any] = {"dest": field, "help": option_help(field, swept_lists)}
    kind, choices = value_type(field), info(field).choices
    if kind is bool:
        spec["action"] = argparse.BooleanOptionalAction
    elif swept_lists and info(field).swept:
        spec["metavar"] = "{" + ",".join(choices) + "},..." if choices else swept_form(field).metavar
    elif swept_lists and field == "style_blend":
        spec["action"], spec["metavar"] = "append", TEXT_FORMS[kind].metavar
        spec["help"] = "weights of a blend of all style images; repeat to sweep blends"
    else:
        spec["metavar"] = "{" + ",".join(map(str, choices)) + "}" if choices else TEXT_FORMS[kind].metavar
    if info(field).section == EXECUTION and kind in (int, float):
        # An execution choice is never a sweep's list: argparse reads it, in a one-line
        # error naming the option (``argument --batch-size: invalid int value: 'x'``).
        spec["type"] = kind
    return spec


def add_settings_options(p: argparse.ArgumentParser, swept_lists: bool = False) -> None:
    """One option per command-line field of :class:`~jaxstyle.config.Settings` (default: the
    preset's), in one argument group per section of the recipe (:data:`~jaxstyle.config.SECTIONS`).

    With ``swept_lists``, the swept settings (loss weights, learning rate, EMA decay)
    take comma-separated lists (the sweep's axes), and ``--style-blend`` may be repeated
    (each blend is one style target).
    """
    from jaxstyle.config import PRESETS, SECTIONS, option_fields, section_fields

    g = p.add_argument_group("recipe (defaults: the preset's; `jaxstyle presets` lists them)")
    g.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="recipe to start from")
    for section, title in SECTIONS.items():
        fields = [field for field in section_fields(section) if field in option_fields()]
        if fields:
            add_options(p.add_argument_group(f"recipe: {title}"), fields, swept_lists)
    p.add_argument_group("recipe: replaced options").add_argument(
        "--preserve-color",
        dest="preserve_color",
        action=argparse.BooleanOptionalAction,
        help="deprecated: --color post (--no-preserve-color: --color none)",
    )


def add_options(g: argparse._ArgumentGroup, fields: Sequence[str], swept_lists: bool = False) -> None:
    """The options of ``fields`` in the argument group ``g``; those of one ``group`` mutually exclusive."""
    from jaxstyle.config import info

    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for field in fields:
        group = info(field).group
        if group is not None and group not in exclusive:
            exclusive[group] = g.add_mutually_exclusive_group()
        (g if group is None else exclusive[group]).add_argument(option_name(field), **option_spec(field, swept_lists))


def add_execution_options(p: argparse.ArgumentParser, command: str) -> None:
    """One option per field of :class:`~jaxstyle.config.Execution` that ``command`` offers
    (read by :func:`execution_from_args`)."""
    from jaxstyle.config import execution_options

    g = p.add_argument_group("execution (how the run is carried out; the recipe stays the same)")
    add_options(g, execution_options(command))


def execution_from_args(args: argparse.Namespace) -> Execution:
    """The :class:`~jaxstyle.config.Execution` the command line asks for: the options given, else the defaults."""
    from jaxstyle.config import EXECUTION_NAMES, Execution

    given = {field: option_value(args, field) for field in EXECUTION_NAMES if hasattr(args, field)}
    return Execution(**{field: value for field, value in given.items() if value is not None})


def option_value(args: argparse.Namespace, field: str) -> Any:
    """The value given for ``field`` on the command line, read by its type's form (``None``: not given)."""
    from jaxstyle.config import value_type

    given = getattr(args, field)
    if not isinstance(given, str):  # not given, a flag, or read by argparse (an execution choice)
        return given
    return parse_text(TEXT_FORMS[value_type(field)], option_name(field), given)


def settings_from_args(args: argparse.Namespace, swept_lists: bool = False) -> Settings:
    """Resolve the preset with the options given on the command line.

    With ``swept_lists`` the swept values (and style blends) are lists, read by
    :func:`swept_values` and :func:`style_blends`; the shared settings then keep the
    preset's values for them.
    """
    from jaxstyle.config import SWEPT_FIELDS, option_fields, resolve

    skipped = (*SWEPT_FIELDS, "style_blend") if swept_lists else ()
    values = {field: option_value(args, field) for field in option_fields() if field not in skipped}
    if getattr(args, "preserve_color", None) is not None:  # deprecated: --color post (or none)
        spelled = "--preserve-color" if args.preserve_color else "--no-preserve-color"
        color = "post" if args.preserve_color else "none"
        if values["color"] not in (None, color):
            raise JaxstyleError(f"{spelled} is --color {color}, not --color {values['color']}; give --color only")
        values["color"] = color
    return resolve(args.preset, **values)


def swept_values(args: argparse.Namespace, settings: Settings) -> dict[str, tuple[Any, ...]]:
    """Each swept setting's values: the option's comma-separated list, else the settings' one value."""
    from jaxstyle.config import SWEPT_FIELDS

    values = {}
    for field in SWEPT_FIELDS:
        given = getattr(args, field)
        form = swept_form(field)
        values[field] = parse_text(form, option_name(field), given) if given else (getattr(settings, field),)
    return values


def style_blends(args: argparse.Namespace) -> list[tuple[float, ...]] | None:
    """The sweep's ``--style-blend`` options, each a tuple of weights (``None``: none given)."""
    form = TEXT_FORMS[tuple[float, ...]]
    return [parse_text(form, "--style-blend", text) for text in args.style_blend] if args.style_blend else None


def command_line(
    settings: Settings,
    content: str,
    style: str,
    out: str,
    weights: str | None,
    execution: Execution | None = None,
    preset: str = "paper",
) -> str:
    """A command that reproduces ``settings`` with every value that is set explicit, and the
    execution choices of ``stylize`` that ``execution`` makes other than the defaults.

    Unset (``None``) values cannot be written; each is reset by an option that is
    written (e.g. ``max_side`` by ``--size``), so the command resolves to ``settings``
    as long as ``preset`` has the settings' ``convention``.
    """
    from jaxstyle.config import Execution, execution_options, option_fields

    parts = ["jaxstyle", "stylize", content, style, "-o", out, "--preset", preset]
    parts += option_words(settings, option_fields())
    if weights:
        parts += ["--weights", weights]
    if execution is not None:
        default = Execution()
        chosen = [f for f in execution_options("stylize") if getattr(execution, f) != getattr(default, f)]
        parts += option_words(execution, chosen)
    return shlex.join(parts)


def option_words(values: Settings | Execution, fields: Sequence[str]) -> list[str]:
    """The options that give ``fields`` their values in ``values`` (unset ones left out)."""
    from jaxstyle.config import value_type

    words = []
    for field in fields:
        value = getattr(values, field)
        if isinstance(value, bool):
            words.append(option_name(field) if value else option_name(field).replace("--", "--no-", 1))
        elif value is not None:
            words += [option_name(field), TEXT_FORMS[value_type(field)].write(value)]
    return words


# --------------------------------------------------------------------------- files


def add_weights_option(p: argparse.ArgumentParser) -> None:
    """``--weights FILE``: the converted weights a run reads."""
    p.add_argument("--weights", help="converted weights file (default: the search path of docs/guide/weights.md)")


def add_output_option(p: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    """``-o/--output``: where the command writes (``help`` says what)."""
    p.add_argument("-o", "--output", required=required, help=help)


# --------------------------------------------------------------------------- progress and checkpoints


def add_progress_options(p: argparse.ArgumentParser) -> None:
    """``--progress``, ``--progress-interval``, ``-q``: how a run reports (read by :func:`progress_reporter`)."""
    from jaxstyle.progress import MODES

    g = p.add_argument_group("progress")
    g.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="a bar on a terminal, else a line every --progress-interval seconds (log), JSON lines (json), or none",
    )
    g.add_argument("--progress-interval", type=float, default=30.0, help="seconds between progress lines (log, json)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary line (--progress none)")


def progress_reporter(args: argparse.Namespace, label: str, main_process: bool = True) -> Progress:
    """The :class:`~jaxstyle.progress.Progress` the options ask for (only process 0 reports)."""
    from jaxstyle.progress import Progress

    if not (math.isfinite(args.progress_interval) and args.progress_interval >= 0):
        raise JaxstyleError(f"--progress-interval must be a finite number >= 0, not {args.progress_interval}")
    mode = "none" if args.quiet or not main_process else args.progress
    return Progress(label, mode, args.progress_interval)


def add_checkpoint_options(p: argparse.ArgumentParser) -> None:
    """Checkpoints and resume (read by :func:`checkpoint_options`)."""
    g = p.add_argument_group("checkpoints (see the docs: guide/clusters.md)")
    g.add_argument("--checkpoint-dir", help="save the run's state here at chunk boundaries, and at once on SIGTERM")
    g.add_argument("--checkpoint-every", type=int, help="save at least every N steps (default: by time only)")
    g.add_argument("--checkpoint-minutes", type=float, default=10.0, help="save at least every M minutes")
    g.add_argument("--resume", action="store_true", help="go on from the newest checkpoint in --checkpoint-dir")


def checkpoint_options(args: argparse.Namespace) -> CheckpointOptions | None:
    """The run's :class:`~jaxstyle.checkpoint.CheckpointOptions`, or ``None`` without ``--checkpoint-dir``."""
    from jaxstyle.checkpoint import CheckpointOptions

    if args.checkpoint_dir is None:
        if args.resume or args.checkpoint_every is not None:
            raise JaxstyleError("--resume and --checkpoint-every need a --checkpoint-dir")
        return None
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise JaxstyleError(f"--checkpoint-every must be at least 1, not {args.checkpoint_every}")
    if not (math.isfinite(args.checkpoint_minutes) and args.checkpoint_minutes > 0):
        raise JaxstyleError(f"--checkpoint-minutes must be a finite number > 0, not {args.checkpoint_minutes}")
    from jaxstyle.files import check_writable, make_directory

    directory = make_directory(args.checkpoint_dir)  # checked before any work, like every output
    check_writable(directory / "checkpoint")
    return CheckpointOptions(directory, args.checkpoint_every, args.checkpoint_minutes, args.resume)


# --------------------------------------------------------------------------- masks


def add_mask_options(p: argparse.ArgumentParser) -> None:
    """Spatial control with masks (read by :func:`mask_inputs`; docs: guide/spatial-control.md)."""
    g = p.add_argument_group("spatial control (see the docs: guide/spatial-control.md)")
    g.add_argument(
        "--style-masks",
        help="one greyscale mask per style image, comma-separated, in the content's coordinates: white = this style "
        "(soft values weight it); pixels no mask covers keep the content. Selects --style-loss guided",
    )
    g.add_argument(
        "--style-image-masks",
        help="one greyscale mask per style image, comma-separated (an empty entry: all of it): the part of each "
        "style image its statistics come from",
    )
    g.add_argument(
        "--edit-mask",
        help="greyscale mask of the pixels optimised; the others stay the content's exactly. For video, any mask "
        "option may name a folder: one mask file per frame, in name order (--mode sequential)",
    )
    g.add_argument(
        "--strength-map",
        help="greyscale map of the style's strength at each pixel (black: none, white: full); "
        "a uniform grey c is --style-weight times c",
    )
    g.add_argument(
        "--guidance",
        choices=("simple", "inside"),
        default="simple",
        help="how masks reach the style layers: downsampled (simple), or kept only where a neuron's receptive "
        "field lies inside the region (inside)",
    )


def mask_inputs(args: argparse.Namespace) -> Any:
    """The run's :class:`~jaxstyle.pipeline.MaskInputs` from the options, or ``None`` when none is given."""
    from jaxstyle.pipeline import MaskInputs

    style = [frames_or_file(n, "--style-masks") for n in csv_names(args.style_masks)] if args.style_masks else None
    style_image = [name or None for name in args.style_image_masks.split(",")] if args.style_image_masks else None
    edit = frames_or_file(args.edit_mask, "--edit-mask") if args.edit_mask else None
    strength = frames_or_file(args.strength_map, "--strength-map") if args.strength_map else None
    masks = MaskInputs(style, style_image, edit, args.guidance, strength)
    return masks if masks.given() else None


def frames_or_file(name: str, option: str) -> Any:
    """A mask file's name; a folder: its files, one mask per frame of a video
    (:func:`jaxstyle.masks.per_frame_folder`, refused by runs without frames)."""
    if not os.path.isdir(name):
        return name
    from jaxstyle.masks import per_frame_folder

    return per_frame_folder(name, option)


def with_mask_loss(args: argparse.Namespace, settings: Settings, masks: Any) -> Settings:
    """``settings`` with ``--style-loss guided`` when region or style-image masks are given and no
    style loss is asked (another one asked is refused when the run is prepared)."""
    import dataclasses

    if masks is None or (masks.style is None and masks.style_image is None) or args.style_loss is not None:
        return settings
    return dataclasses.replace(settings, style_loss="guided")


# --------------------------------------------------------------------------- several hosts


def add_distributed_options(p: argparse.ArgumentParser, guide: str) -> None:
    """``--distributed``, ``--coordinator``, ``--num-processes``, ``--process-id``: one run over several
    processes (read by :func:`start_distributed`); ``guide`` is the docs page that tells how."""
    g = p.add_argument_group(f"several hosts (see the docs: {guide})")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run configured by the cluster's environment (SLURM, TPU pods)",
    )
    g.add_argument("--coordinator", help="HOST:PORT of process 0")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)
    g.add_argument(
        "--local-device-ids",
        type=csv_ints,
        help="with --coordinator: the local GPUs this process uses, e.g. 0 or 0,1 (one process per GPU); "
        "unset: every local device (one process per host)",
    )


def start_distributed(args: argparse.Namespace) -> None:
    """Join the multi-process run the options of :func:`add_distributed_options` ask for, if any."""
    if args.distributed or args.coordinator is not None or args.num_processes is not None or args.local_device_ids:
        from jaxstyle import mesh as meshlib

        ids = None if args.local_device_ids is None else list(args.local_device_ids)
        meshlib.initialize_distributed(args.coordinator, args.num_processes, args.process_id, ids)
