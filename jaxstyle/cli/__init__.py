"""The ``jaxstyle`` command: a thin shell over :mod:`jaxstyle.api` and :mod:`jaxstyle.weights`.

Each command is one module of this package, named in :data:`COMMANDS`, holding
``add_arguments(parser)``, ``run(args[, stop])`` and ``RUNS_A_JOB``: whether it runs a
job (stop requests on SIGINT and SIGTERM, the compile cache; ``run`` then takes the stop
requests). Only the command given is imported, so ``jaxstyle --help`` and ``jaxstyle
presets`` load no JAX. Adding a command: its module, and a line in :data:`COMMANDS`.
Options several commands share are defined once, in :mod:`jaxstyle.cli.options`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from importlib import import_module
from typing import NamedTuple, NoReturn

from jaxstyle.cli.jobs import aspect_note, plan_memory_line, use_compile_cache
from jaxstyle.cli.options import command_line, option_name, option_spelling, settings_from_args
from jaxstyle.errors import JaxstyleError, SettingError, Stopped

__all__ = [
    "COMMANDS",
    "aspect_note",
    "build_parser",
    "command_line",
    "main",
    "option_name",
    "plan_memory_line",
    "settings_from_args",
    "use_compile_cache",
]


class Command(NamedTuple):
    """A command: its one-line help (for ``jaxstyle --help``) and the module that holds it."""

    help: str
    module: str


COMMANDS: dict[str, Command] = {
    "stylize": Command("stylize one content image with one style image", "jaxstyle.cli.stylize"),
    "sweep": Command("many weight settings in one compiled run, with a contact sheet", "jaxstyle.cli.sweep"),
    "batch": Command("thousands of photos in one job, each at its own aspect", "jaxstyle.cli.batch"),
    "video": Command("stylize a video with temporal consistency (Ruder et al. 2016)", "jaxstyle.cli.video"),
    "weights": Command("download, convert and inspect VGG weights", "jaxstyle.cli.weights"),
    "presets": Command("list the presets with their full settings", "jaxstyle.cli.presets"),
    "write": Command("write a finished result a run kept when it could not write it", "jaxstyle.cli.write"),
}


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line like every other bad input (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"jaxstyle: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def build_parser(commands: Iterable[str] = COMMANDS) -> Parser:
    """The ``jaxstyle`` parser: every command listed, the options of ``commands`` only (each imports its module)."""
    from jaxstyle import __version__

    parser = Parser(prog="jaxstyle", description="Neural style transfer in JAX.")
    parser.add_argument("--version", action="version", version=f"jaxstyle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if name in commands:
            import_module(command.module).add_arguments(p)
    return parser


def named_command(argv: Sequence[str]) -> list[str]:
    """The command ``argv`` names, its first word that is no option (``jaxstyle`` has no option
    that takes a value), as a list: empty where it names none."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return [first] if first in COMMANDS else []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command; a :class:`JaxstyleError` becomes one line and exit status 2,
    naming a refused setting by its option (``--lr must be ...``).

    SIGINT and SIGTERM during a run stop it at the next chunk boundary, after saving a
    checkpoint where a directory is set (:mod:`jaxstyle.signals` gives the exit statuses);
    a second SIGINT stops at once. Nothing half-written is left behind either way.
    """
    from jaxstyle.signals import StopRequests, exit_status

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(named_command(argv)).parse_args(argv)
        command = import_module(COMMANDS[args.command].module)
        if not command.RUNS_A_JOB:
            return command.run(args)
        with StopRequests() as stop:
            use_compile_cache()  # it imports JAX: inside, so that a Ctrl-C meanwhile is one of the run's stop requests
            status = command.run(args, stop)
        if stop() is not None:  # the signal came after the last chunk: the outputs are complete
            print(f"jaxstyle: interrupted ({signal_name(stop())}) after writing the outputs", file=sys.stderr)
            return exit_status(stop(), saved=True)
        return status
    except (JaxstyleError, Stopped, MemoryError, BrokenPipeError, KeyboardInterrupt) as e:
        return failed(e)


def failed(e: BaseException) -> int:
    """Say in one line on stderr why the command stopped; its exit status."""
    from jaxstyle.signals import exit_status

    if isinstance(e, SettingError):  # name the setting as the user typed it: --style-weight
        print(f"jaxstyle: {e.naming(option_spelling)}", file=sys.stderr)
    elif isinstance(e, JaxstyleError):
        print(f"jaxstyle: {e}", file=sys.stderr)
    elif isinstance(e, Stopped):
        saved = f"; its state is saved in {e.checkpoint}: run the same command with --resume to go on"
        print(
            f"jaxstyle: stopped by {signal_name(e.signum)} after step {e.step}{saved if e.checkpoint else ''}",
            file=sys.stderr,
        )
        return exit_status(e.signum, saved=e.checkpoint is not None)
    elif isinstance(e, MemoryError):
        print("jaxstyle: out of host memory; try a smaller --size or --max-side, or a --batch-size", file=sys.stderr)
    elif isinstance(e, BrokenPipeError):  # e.g. `jaxstyle presets | head`
        sys.stderr.close()
        return 141
    else:
        interrupted()
    return 2


def interrupted() -> NoReturn:
    """A second Ctrl-C, or one before the run started. XLA may still be computing in its own
    threads, which tearing the interpreter down under them would crash: leave at once
    (temporary files were removed as the exception passed)."""
    print("jaxstyle: interrupted", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``."""
    import signal

    return signal.Signals(signum).name
