"""``jaxstyle presets [NAME]``: the presets' full settings, as a table (:data:`jaxstyle.config.PRESETS`)."""

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
    """A table: one row per setting, one column per preset."""
    from jaxstyle.config import FIELD_NAMES, PRESETS

    names = [args.preset] if args.preset else list(PRESETS)
    rows = {field: [table_value(field, getattr(PRESETS[name], field)) for name in names] for field in FIELD_NAMES}
    widths = [max(len(name), *(len(values[i]) for values in rows.values())) for i, name in enumerate(names)]
    first = max(len(field) for field in rows)
    for label, values in [("setting", names), *rows.items()]:
        print(" ".join([label.ljust(first), *(v.ljust(w) for v, w in zip(values, widths, strict=True))]).rstrip())
    return 0
