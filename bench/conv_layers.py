"""Forward time of each VGG-19 convolution (up to conv5_1), XLA against PyTorch.

``python -m bench.conv_layers 150x225`` prints, for one image at that size, the median
milliseconds of each 3x3 convolution in jaxstyle (jitted ``lax.conv_general_dilated``,
NHWC) and in PyTorch (``conv2d``, NCHW), and their ratio. It is how the README's
"Performance notes" located the remaining CPU gap; extra XLA flags go in ``XLA_FLAGS``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], reps: int = 7) -> float:
    """Median wall time of ``fn()`` over ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str]) -> None:
    import jax
    import torch

    from jaxstyle.nets import VGG19
    from jaxstyle.vgg import _conv_same_3x3

    height, width = (int(v) for v in argv[0].split("x"))
    conv = jax.jit(_conv_same_3x3)
    totals = [0.0, 0.0]
    print(f"{'layer':8} {'input':>14} {'channels':>10} {'jax ms':>8} {'torch ms':>9} {'ratio':>6}")
    shapes = VGG19.conv_shapes()
    for name in VGG19.conv_names[: VGG19.conv_names.index("conv5_1") + 1]:
        _, _, cin, cout = shapes[name]
        block = int(name[4]) - 1
        h, w = height >> block, width >> block  # each pooling halves (and floors) the size
        x = jax.random.normal(jax.random.key(0), (1, h, w, cin))
        kernel = jax.random.normal(jax.random.key(1), (3, 3, cin, cout)) * 0.05
        xt, kt = torch.randn(1, cin, h, w), torch.randn(cout, cin, 3, 3)
        t_jax = median_seconds(lambda x=x, kernel=kernel: jax.block_until_ready(conv(x, kernel)))
        with torch.no_grad():
            t_torch = median_seconds(lambda xt=xt, kt=kt: torch.nn.functional.conv2d(xt, kt, padding=1))
        totals[0] += t_jax
        totals[1] += t_torch
        print(
            f"{name:8} {f'{h}x{w}':>14} {f'{cin}->{cout}':>10} "
            f"{t_jax * 1e3:8.1f} {t_torch * 1e3:9.1f} {t_jax / t_torch:6.2f}"
        )
    print(f"{'total':8} {'':>14} {'':>10} {totals[0] * 1e3:8.1f} {totals[1] * 1e3:9.1f} {totals[0] / totals[1]:6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["150x225"])
