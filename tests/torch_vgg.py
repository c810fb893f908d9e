"""A PyTorch VGG built from torchvision's layer table with ``torch.nn`` layers, independently
of jaxstyle: the reference the network and weight tests compare against."""

from __future__ import annotations

import numpy as np
import torch

# torchvision's `cfgs` ("E": VGG-19, "D": VGG-16; torchvision/models/vgg.py), written out
# here independently of jaxstyle.nets, and the tiny test network in the same notation.
CFGS = {
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "tiny": (4, 4, "M", 8, 8, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"),
}


def torch_features(cfg, convs=None, dtype=torch.float64) -> torch.nn.Sequential:
    """``torchvision.models.vgg*().features`` built from a cfg (ReLUs not in place), filled
    from ``{conv name: (HWIO kernel, bias)}`` in conv order."""
    layers, channels = [], 3
    for item in cfg:
        if item == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(channels, item, 3, padding=1), torch.nn.ReLU()]
            channels = item
    features = torch.nn.Sequential(*layers).to(dtype)
    if convs is not None:
        conv_modules = [m for m in features if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            for module, (kernel, bias) in zip(conv_modules, convs.values(), strict=True):
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
                module.bias.copy_(torch.from_numpy(bias))
    return features
