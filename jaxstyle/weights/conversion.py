"""A published weights file -> jaxstyle's converted file, with its identity and provenance."""

from __future__ import annotations

from pathlib import Path

from jaxstyle.errors import JaxstyleError
from jaxstyle.files import RunFiles, check_writable, existing_file, file_digests, make_directory
from jaxstyle.nets import DEFAULT_NETWORK
from jaxstyle.preprocess import CONVENTIONS
from jaxstyle.weights.params import check_finite, network_spec
from jaxstyle.weights.readers import read_source
from jaxstyle.weights.sources import Source, get_source, identify
from jaxstyle.weights.store import cache_dir, default_path, file_name, write_converted


def convert(
    src: Path,
    dst: Path | None = None,
    convention: str | None = None,
    source: str | Source | None = None,
    network: str | None = None,
) -> Path:
    """Convert a published weights file into jaxstyle's file and return its path.

    The file's identity comes from its hash (it matches a published file), or from
    ``source``, a published source whose hash the caller verified. A known file fixes
    the network and the input convention; otherwise ``network`` (default VGG-19) and
    ``convention`` say them (Keras files are always Caffe-convention). ``dst`` defaults
    to ``<network>-<convention>.h5`` in the user cache, where :func:`~jaxstyle.weights.store.find` looks.
    """
    src = existing_file(src)
    if convention is not None and convention not in CONVENTIONS:
        raise JaxstyleError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    # The output is checked before any work (hashing, reading); the default's name needs
    # the convention, known only later: its directory is checked now, with a name like it.
    files = RunFiles()
    files.add_input("weights file to convert", src)
    if dst is not None:
        make_directory(Path(dst).parent)
        files.add_output("converted weights", dst)
    else:
        check_writable(make_directory(cache_dir()) / file_name(network or DEFAULT_NETWORK, "torchvision"))
    sha256, md5 = file_digests(src)
    if isinstance(source, str):
        source = get_source(network or DEFAULT_NETWORK, source)
    known = source or identify(sha256, md5)
    if known and network and network_spec(network).name != known.network:
        raise JaxstyleError(
            f"{src}: is the published {network_spec(known.network).title} file {known.filename}, "
            f"not {network_spec(network).title}; pass --network {known.network}"
        )
    spec = network_spec(known.network if known else network or DEFAULT_NETWORK)
    convs, inner = read_source(src, spec)  # a file that is no weights file at all is the first problem
    check_finite(convs, src)
    if known and known.package and inner.get("source_member_sha256") not in (None, known.package.member_sha256):
        raise JaxstyleError(
            f"{src}: {inner['source_member']} has SHA-256 {inner['source_member_sha256'][:16]}..., "
            f"not the published {known.package.member_sha256[:16]}...; refused"
        )
    is_keras = src.suffix.lower() in (".h5", ".hdf5")
    inferred = known.convention if known else ("caffe" if is_keras else None)
    if convention and inferred and convention != inferred:
        raise JaxstyleError(f"{src}: these weights expect {inferred!r} input, not {convention!r}")
    convention = convention or inferred
    if convention is None:
        raise JaxstyleError(
            f"{src}: its SHA-256 matches no published {spec.title} file, so its input convention is unknown; "
            "pass --convention torchvision (RGB, ImageNet mean/std) or --convention caffe (BGR 0-255 minus means)"
        )
    attrs = {"source": known.provenance if known else "unknown", "source_file": src.name, "source_sha256": sha256}
    attrs.update(inner)
    if known and known.package:
        attrs["source_licence"] = known.package.licence
        if known.package.quantization:
            attrs["quantized"] = known.package.quantization
    if dst is None:
        dst = files.add_output("converted weights", default_path(spec.name, convention))
    write_converted(Path(dst), convs, CONVENTIONS[convention], attrs, spec)
    return dst
