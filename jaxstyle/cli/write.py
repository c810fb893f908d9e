"""``jaxstyle write KEPT [-o OUT]``: write a finished result that a run could not write (:mod:`jaxstyle.kept`).

When the final write of ``stylize`` or ``sweep`` fails (a full disk, a read-only file
system), the run keeps its outputs in a ``.kept.npz`` file and names it in its error
line; this command writes them, as the run would have, without redoing any step.
"""

from __future__ import annotations

import argparse

RUNS_A_JOB = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kept", help="the kept result (NAME.kept.npz) named by the failed run's error line")
    p.add_argument(
        "-o",
        "--output",
        help="write it here instead (a file for a single image, another format allowed; a directory for several "
        "files); default: where the run meant to write",
    )
    p.add_argument("--bit-depth", type=int, choices=(8, 16), help="bits per channel of the images (default: the run's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")


def run(args: argparse.Namespace) -> int:
    """Write the kept outputs, then remove the kept file."""
    from jaxstyle.kept import write_kept

    written = write_kept(args.kept, args.output, args.bit_depth)
    if not args.quiet:
        shown = ", ".join(map(str, written[:3])) + (f" and {len(written) - 3} more" if len(written) > 3 else "")
        print(f"wrote {shown} from {args.kept} (removed)")
    return 0
