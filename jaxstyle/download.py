"""Download a published VGG-19 file, verify its published hash, convert, move into place."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from jaxstyle.errors import JaxstyleError
from jaxstyle.weights import SOURCES, Source, convert, default_path, one_line

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


def offline_help(source: Source) -> str:
    """What to do on a machine that cannot reach the publisher."""
    return (
        f"On an offline machine, download {source.url} elsewhere, copy it here and run "
        f"`jaxstyle weights convert {source.filename}`"
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


def download(
    source: str = "torchvision",
    dst: Path | None = None,
    url: str | None = None,
    md5: str | None = None,
    timeout: float = 15.0,
    progress: bool = True,
) -> Path:
    """Download ``source``, verify it, convert it, and return the converted file's path.

    The raw file goes to a temporary file beside ``dst`` and is removed after
    conversion; the converted file appears at ``dst`` (default: the user cache) only
    once complete. ``url`` names a mirror; ``md5`` overrides the published MD5 (tests).
    """
    if source not in SOURCES:
        raise JaxstyleError(f"unknown weights source {source!r}; choose from {', '.join(SOURCES)}")
    info = SOURCES[source]
    url = url or info.url
    dst = Path(dst) if dst is not None else default_path("vgg19", info.convention)
    want_md5, want_prefix = expected_hashes(info, url)
    want_md5 = md5 or want_md5
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=".download-", dir=dst.parent))
    except OSError as e:
        raise JaxstyleError(f"{dst.parent}: cannot write there ({one_line(e)})") from None
    raw = workdir / info.filename
    try:
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
        return convert(raw, dst, source=info.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
