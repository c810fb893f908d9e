"""``jaxstyle weights convert|info|download``: get, convert and inspect VGG weights (:mod:`jaxstyle.weights`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from jaxstyle.cli.options import add_output_option

RUNS_A_JOB = False


class SourceNames(Sequence[str]):
    """The published weights' names, read from :mod:`jaxstyle.weights` (which imports JAX)
    only when argparse checks a ``--source`` or prints ``weights download --help``."""

    def names(self) -> tuple[str, ...]:
        from jaxstyle.weights import source_names

        return source_names()

    def __getitem__(self, index):
        return self.names()[index]

    def __len__(self) -> int:
        return len(self.names())


def add_arguments(p: argparse.ArgumentParser) -> None:
    from jaxstyle.config import CONVENTION_NAMES
    from jaxstyle.nets import NETWORKS

    sub = p.add_subparsers(dest="weights_command", required=True)
    c = sub.add_parser("convert", help="convert a published weights file (.pth, .safetensors, Keras .h5)")
    c.add_argument("src")
    add_output_option(c, "converted file (default: the user cache)", required=False)
    c.add_argument(
        "--convention",
        choices=CONVENTION_NAMES,
        help="input convention, needed for files that match no published hash",
    )
    c.add_argument("--network", choices=tuple(NETWORKS), help="the network the file holds (default: vgg19)")
    i = sub.add_parser("info", help="show a converted weights file's provenance")
    i.add_argument("file")
    d = sub.add_parser("download", help="download, verify and convert published weights")
    d.add_argument(
        "--source", default="torchvision", choices=SourceNames(), metavar="SOURCE", help="one of %(choices)s"
    )
    d.add_argument("--network", default="vgg19", choices=tuple(NETWORKS), help="default vgg19")
    add_output_option(d, "converted file (default: the user cache)", required=False)
    d.add_argument("--url", help="a mirror serving the same file")
    d.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the server")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand given."""
    return {"convert": convert, "info": info, "download": download}[args.weights_command](args)


def convert(args: argparse.Namespace) -> int:
    """``weights convert SRC [-o OUT]``."""
    from jaxstyle.weights import convert as convert_file

    dst = convert_file(
        Path(args.src), Path(args.output) if args.output else None, convention=args.convention, network=args.network
    )
    print(f"wrote {dst}")
    return 0


def info(args: argparse.Namespace) -> int:
    """``weights info FILE``: its provenance attributes and size."""
    from jaxstyle.weights import read_converted

    loaded = read_converted(Path(args.file))
    for key in sorted(loaded.attrs):
        print(f"{key}: {loaded.attrs[key]}")
    n = sum(k.size + b.size for k, b in loaded.convs.values())
    print(f"layers: {len(loaded.convs)} convolutions, {n:,} parameters")
    return 0


def download(args: argparse.Namespace) -> int:
    """``weights download [--source NAME]``."""
    from jaxstyle.weights import download as fetch

    dst = fetch(
        args.source,
        Path(args.output) if args.output else None,
        url=args.url,
        timeout=args.timeout,
        progress=not args.quiet,
        network=args.network,
    )
    print(f"wrote {dst}")
    return 0
