"""Inputs shared by the benchmark processes: images and a weights file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"


def bench_images(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Content (Tübingen) and style (The Starry Night) at ``size``; seeded noise if absent.

    Timings do not depend on pixel values, but real photos keep the TV term realistic.
    """
    from jaxstyle.image import load_image, resize

    paths = SHARED_IMAGES / "tubingen.jpg", SHARED_IMAGES / "starry_night.jpg"
    if all(p.is_file() for p in paths):
        return tuple(resize(load_image(p), size) for p in paths)
    rng = np.random.default_rng(0)
    return tuple(rng.uniform(0, 1, size=(*size, 3)).astype(np.float32) for _ in range(2))


def bench_weights(workdir: Path) -> tuple[Path, str]:
    """Real converted torchvision weights if found, else seeded random weights (same speed)."""
    from jaxstyle.errors import JaxstyleError
    from jaxstyle.preprocess import TORCHVISION
    from jaxstyle.weights import find, random_convs, write_converted

    try:
        return find("vgg19", "torchvision"), "real"
    except JaxstyleError:
        pass
    path = workdir / "vgg19-random.h5"
    if not path.is_file():
        write_converted(path, random_convs(0, "vgg19"), TORCHVISION, {"source": "random (benchmark)"}, "vgg19")
    return path, "random (seeded)"


def cpu_model() -> str:
    """The processor's name: the first ``model name`` of ``/proc/cpuinfo`` (elsewhere, ``platform``'s)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_name() -> str:
    """``AMD EPYC, 2 cores``: the machine timings were taken on."""
    return f"{cpu_model()}, {os.cpu_count()} cores"


def child_result(stdout: str) -> dict | None:
    """What a benchmark process reported: the JSON of its last ``RESULT `` line (``None``: no such line)."""
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :]) if lines else None
