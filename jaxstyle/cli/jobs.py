"""What the commands that run a job share: the files a run reads, the lines it prints
beside its outputs, and the compile cache that :func:`jaxstyle.cli.main` turns on for them."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jaxstyle.errors import JaxstyleError

if TYPE_CHECKING:
    from jaxstyle.config import Settings
    from jaxstyle.files import RunFiles
    from jaxstyle.plan import RunPlan


def weights_file(given: str | None, settings: Settings) -> str | None:
    """The weights file a run reads: the one given, else the first on the search path (``None``: none found)."""
    if given:
        return given
    from jaxstyle.weights import find

    try:
        return str(find(settings.network, settings.convention))
    except JaxstyleError:  # the run itself says how to get weights
        return None


def run_files(args: argparse.Namespace, settings: Settings, contents: Sequence[str], styles: Sequence[str]) -> RunFiles:
    """A :class:`~jaxstyle.files.RunFiles` holding every file a run reads: images, init image, weights, grid."""
    from jaxstyle.config import INITS
    from jaxstyle.files import RunFiles

    files = RunFiles()
    for content in contents:
        files.add_input("content image", content)
    for style in styles:
        files.add_input("style image", style)
    if settings.init not in INITS:
        files.add_input("init image", settings.init)
    files.add_input("weights file", weights_file(args.weights, settings))
    files.add_input("grid file", getattr(args, "grid", None))
    return files


def plan_memory_line(plan: RunPlan) -> str | None:
    """The plan's memory line where it changes how the step runs (a remat mode, a split image); else None.

    A small image on one device needs no word about memory, and stays out of a log that
    would otherwise hold only progress, or only a one-line error.
    """
    return plan.memory_reason if plan.remat != "none" or plan.spatial_shards > 1 else None


def aspect_note(content_hw: tuple[int, int], settings: Settings) -> str:
    """What the output line adds where an explicit ``--size`` changes the content's aspect beyond a
    rounding pixel, `` (--size 300x450 changes the content's width:height 1:2 to 3:2)``; else nothing.

    No preset gives a size (each keeps the content's aspect), so a size was given.
    """
    from jaxstyle.image import aspect_text, keeps_aspect

    if settings.size is None or keeps_aspect(content_hw, settings.size):
        return ""
    h, w = settings.size
    return f" (--size {h}x{w} changes the content's width:height {aspect_text(*content_hw)} to {aspect_text(h, w)})"


COMPILE_CACHE_ENV = "JAXSTYLE_COMPILE_CACHE"


def use_compile_cache() -> None:
    """Keep compiled programs between runs: JAX's persistent compilation cache in
    ``$JAXSTYLE_COMPILE_CACHE`` (default ``~/.cache/jaxstyle/xla``; ``off`` turns it off).

    A second run of the same recipe at the same size loads its programs instead of
    compiling them (XLA's GPU autotuning results are cached with them). A cached program
    is the program XLA compiled: results are unchanged. JAX's own
    ``JAX_COMPILATION_CACHE_DIR``, where set, is left in charge.
    """
    import jax

    from jaxstyle.weights import cache_dir

    choice = os.environ.get(COMPILE_CACHE_ENV, "")
    if choice.lower() == "off" or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", choice or str(cache_dir() / "xla"))
    # XLA's per-fusion GPU autotuning results (cuDNN/cuBLAS algorithm choices) go in a
    # subdirectory of the same cache (JAX's default today; said here so that it stays so).
    jax.config.update("jax_persistent_cache_enable_xla_caches", "xla_gpu_per_fusion_autotune_cache_dir")
