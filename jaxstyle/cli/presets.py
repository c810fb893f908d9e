"""``jaxstyle presets [NAME]``: the presets' full recipes, as a table by section (:data:`jaxstyle.config.PRESETS`).

Execution choices (:class:`jaxstyle.config.Execution`) are no part of a preset and are not listed."""

from __future__ import annotations

import argparse
from typing import Any

from jaxstyle.cli.options import TEXT_FORMS

RUNS_A_JOB = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    from jaxstyle.config import PRESETS

    p.add_argument("preset", nargs="?", choices=sorted(PRESETS), help="show only this preset")


def table_value(field: str, value: Any) -> str:
    """A setting's value for the presets table: ``300x450``, ``0.7507,0.1877``, ``-`` for unset."""
    from jaxstyle.config import value_type

    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value_type(field) == tuple[float, ...]:
        return ",".join(f"{v:.4g}" for v in value)
    return str(value) if isinstance(value, bool) else TEXT_FORMS[value_type(field)].write(value)


def run(args: argparse.Namespace) -> int:
    """A table: one column per preset, and one row per setting of the recipe under its section's title."""
    from jaxstyle.config import PRESETS, SECTIONS, section_fields

    names = [args.preset] if args.preset else list(PRESETS)
    sections = {
        title: {field: [table_value(field, getattr(PRESETS[name], field)) for name in names] for field in fields}
        for title, fields in ((title, section_fields(key)) for key, title in SECTIONS.items())
        if fields
    }
    rows = [values for section in sections.values() for values in section.values()]
    widths = [max(len(name), *(len(values[i]) for values in rows)) for i, name in enumerate(names)]
    first = max(len(field) for section in sections.values() for field in section) + 2

    def line(label: str, values: list[str]) -> str:
        return " ".join([label.ljust(first), *(v.ljust(w) for v, w in zip(values, widths, strict=True))]).rstrip()

    print(line("setting", names))
    for title, section in sections.items():
        print(f"{title}:")
        for field, values in section.items():
            print(line(f"  {field}", values))
    return 0
