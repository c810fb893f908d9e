"""The networks as data: a VGG is its block table, and everything else derives from it.

Layer names, conv kernel shapes, torchvision ``features`` indexes, Keras layer names
and activation counts are all computed from a :class:`NetworkSpec`. This module
imports no JAX: settings validation and the command line's ``--help`` use it.

Layer names follow the usual convention: ``conv{b}_{n}``, ``relu{b}_{n}`` and
``pool{b}`` for block ``b`` and convolution ``n``, in the order torchvision's
``vgg*().features`` holds them (each conv followed by its ReLU, a 2x2 pooling closing
each block).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from jaxstyle.errors import JaxstyleError


@dataclass(frozen=True)
class NetworkSpec:
    """A VGG-style network: blocks of 3x3 convolutions (stride 1, padding 1), each
    followed by a ReLU, and a 2x2 pooling (stride 2) after each block.

    Attributes:
      name: short name used on the command line, in file names and in converted files.
      blocks: ``(output channels, number of convolutions)`` of each block.
      title: the name in messages (``"VGG-19"``).
    """

    name: str
    blocks: tuple[tuple[int, int], ...]
    title: str

    @cached_property
    def layer_names(self) -> tuple[str, ...]:
        """Every layer in order; ``layer_names[i]`` is index ``i`` of torchvision's ``features``."""
        names = []
        for block, (_, convs) in enumerate(self.blocks, start=1):
            for n in range(1, convs + 1):
                names += [f"conv{block}_{n}", f"relu{block}_{n}"]
            names.append(f"pool{block}")
        return tuple(names)

    @cached_property
    def conv_names(self) -> tuple[str, ...]:
        """The convolutions in order: ``("conv1_1", "conv1_2", ...)``."""
        return tuple(n for n in self.layer_names if n.startswith("conv"))

    def conv_shapes(self) -> dict[str, tuple[int, int, int, int]]:
        """HWIO kernel shape of every conv layer: ``{"conv1_1": (3, 3, 3, 64), ...}``."""
        shapes, in_channels = {}, 3
        for block, (out_channels, convs) in enumerate(self.blocks, start=1):
            for n in range(1, convs + 1):
                shapes[f"conv{block}_{n}"] = (3, 3, in_channels, out_channels)
                in_channels = out_channels
        return shapes

    def torchvision_index(self, layer: str) -> int:
        """Index of ``layer`` in torchvision's ``vgg*().features`` (``conv4_2`` -> 21 in VGG-19)."""
        self.check_layers([layer])
        return self.layer_names.index(layer)

    def torchvision_key(self, conv: str) -> str:
        """``conv1_2`` -> ``features.2``: the prefix of a conv's keys in a torchvision state dict."""
        return f"features.{self.torchvision_index(conv)}"

    def keras_layer_names(self) -> tuple[str, ...]:
        """The Keras applications names of the conv and pool layers, in order
        (``block1_conv1``, ..., ``block1_pool``, ...); the input layer is not named here."""
        return tuple(keras_layer_name(n) for n in self.layer_names if not n.startswith("relu"))

    def check_layers(self, layers: Iterable[str], what: str = "layer") -> None:
        """Raise a one-line :class:`JaxstyleError` naming a layer this network lacks and the layers it has."""
        for name in layers:
            if name not in self.layer_names:
                raise JaxstyleError(f"unknown {what} {name!r}: {self.title} has {', '.join(self.layer_names)}")

    def deepest(self, layers: Iterable[str]) -> str:
        """The layer of ``layers`` that comes last in the network."""
        layers = list(layers)
        self.check_layers(layers)
        return max(layers, key=self.layer_names.index)

    def pool_level(self, layer: str) -> int:
        """The poolings up to and including ``layer``: its output is ``2^level`` times smaller than the image."""
        return sum(name.startswith("pool") for name in self.layer_names[: self.layer_names.index(layer) + 1])

    def blocks_until(self, deepest: str) -> tuple[tuple[str, ...], ...]:
        """The layers up to ``deepest`` cut into blocks, each ending at its pooling (the last at ``deepest``)."""
        blocks, current = [], []
        for name in self.layer_names[: self.layer_names.index(deepest) + 1]:
            current.append(name)
            if name.startswith("pool"):
                blocks.append(tuple(current))
                current = []
        if current:
            blocks.append(tuple(current))
        return tuple(blocks)

    def activation_count(self, height: int, width: int, deepest: str) -> int:
        """Number of activation values one image produces up to layer ``deepest`` (conv, ReLU, pool outputs)."""
        self.check_layers([deepest])
        shapes = self.conv_shapes()
        total, channels = 0, 3
        for name in self.layer_names[: self.layer_names.index(deepest) + 1]:
            if name.startswith("conv"):
                channels = shapes[name][3]
            elif name.startswith("pool"):
                height, width = height // 2, width // 2
            total += height * width * channels
        return total


def keras_layer_name(layer: str) -> str:
    """``conv1_1`` -> ``block1_conv1``; ``pool3`` -> ``block3_pool`` (keras-applications' names)."""
    if layer.startswith("pool"):
        return f"block{layer[4:]}_pool"
    block, n = layer[4:].split("_")
    return f"block{block}_conv{n}"


VGG19 = NetworkSpec("vgg19", ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)), "VGG-19")
VGG16 = NetworkSpec("vgg16", ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), "VGG-16")

# The networks with published ImageNet weights: the command line's choices.
NETWORKS: dict[str, NetworkSpec] = {spec.name: spec for spec in (VGG19, VGG16)}
DEFAULT_NETWORK = "vgg19"

# A network with no published weights, for tests of plumbing (shapes, batching,
# files, options, the command line) that need no real features: VGG-19's blocks and
# layer names, so every preset and every layer a user can name exists, with 4 or 8
# channels instead of 64..512. It compiles in about VGG-19's time (XLA's work grows
# with the layers, not the channels) but runs many times faster, in the spirit of Flax's
# examples, tested with a one-block ResNet. Accepted by `network()`, the settings and
# `--network tiny`, never offered on the command line's list of choices.
TINY = NetworkSpec("tiny", ((4, 2), (8, 2), (8, 4), (8, 4), (8, 4)), "the tiny test network")
TEST_NETWORKS: dict[str, NetworkSpec] = {TINY.name: TINY}


def network(spec: str | NetworkSpec) -> NetworkSpec:
    """The spec of a network name (``"vgg19"``, ``"vgg16"``, or the test network ``"tiny"``).

    A :class:`NetworkSpec` is returned as it is.
    """
    if isinstance(spec, NetworkSpec):
        return spec
    known = NETWORKS.get(spec) or TEST_NETWORKS.get(spec)
    if known is None:
        raise JaxstyleError(f"unknown network {spec!r}; choose from {', '.join(NETWORKS)}")
    return known
