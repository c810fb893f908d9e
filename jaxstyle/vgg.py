"""A VGG's convolutional part as a Flax NNX module returning named activations.

The network is data: :class:`VGG` takes a :class:`~jaxstyle.nets.NetworkSpec`
(VGG-19, VGG-16, or the tiny test network), whose layer names are torchvision's
``features`` order (see :mod:`jaxstyle.nets`). Inputs are NHWC.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

from jaxstyle.nets import NetworkSpec, network

_NHWC = ("NHWC", "HWIO", "NHWC")

# "custom": the convolution, ReLU and max-pool gradients below (written for XLA:CPU);
# "plain": JAX's own autodiff of the same forward functions, to compare the two on an
# accelerator (bench/gpu.py). Read when a program is traced: set it before the first
# trace (jit caches do not see it). The Gram product's gradient (jaxstyle.losses) is
# not switched.
AUTODIFF_MODES = ("custom", "plain")
_autodiff = ["custom"]


def set_autodiff(mode: str) -> None:
    """Trace the network's gradients with the custom VJPs (``"custom"``, the default) or plain autodiff."""
    if mode not in AUTODIFF_MODES:
        raise ValueError(f"autodiff must be one of {', '.join(AUTODIFF_MODES)}, not {mode!r}")
    _autodiff[0] = mode


def autodiff() -> str:
    """The gradient mode programs traced now use (:func:`set_autodiff`)."""
    return _autodiff[0]


def _conv_same_3x3(x: Array, kernel: Array) -> Array:
    """3x3 convolution, stride 1, zero padding 1 (PyTorch's ``padding=1``), NHWC/HWIO."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_NHWC)


@jax.custom_vjp
def conv3x3(x: Array, kernel: Array) -> Array:
    """:func:`_conv_same_3x3` with an input gradient written as a forward convolution.

    The input gradient of a stride-1, pad-1 3x3 convolution is the convolution of the
    output gradient with the kernel flipped in space and with in/out swapped:
    ``dx = conv(dy, flip(W)^T)``. Autodiff emits the same arithmetic, but inside
    ``lax.scan`` on XLA:CPU its kernel layout falls off the fast convolution path, and a
    scanned step runs much slower than a jitted one; this form does not
    (measured in bench/RESULTS.md, "Measurements behind the code").
    """
    return _conv_same_3x3(x, kernel)


def _conv3x3_fwd(x: Array, kernel: Array) -> tuple[Array, tuple[Array, Array]]:
    return _conv_same_3x3(x, kernel), (x, kernel)


def _conv3x3_bwd(residuals: tuple[Array, Array], dy: Array) -> tuple[Array, Array]:
    x, kernel = residuals
    flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)  # HWIO -> HW(O)(I), flipped in space
    dx = _conv_same_3x3(dy, flipped)
    # The kernel gradient is exact too; under jit it is dead code when only the image
    # is differentiated, as in style transfer.
    _, kernel_vjp = jax.vjp(lambda k: _conv_same_3x3(x, k), kernel)
    (dkernel,) = kernel_vjp(dy)
    return dx, dkernel


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def conv_general_dilated(x: Array, kernel: Array, window_strides, padding, **kwargs) -> Array:
    """``lax.conv_general_dilated`` for ``nnx.Conv``, routed to :func:`conv3x3` for VGG's convs."""
    plain = (
        kernel.shape[:2] == (3, 3)
        and tuple(window_strides) == (1, 1)
        and [tuple(p) for p in padding] == [(1, 1), (1, 1)]
        and kwargs.get("lhs_dilation") in (None, 1, (1, 1))
        and kwargs.get("rhs_dilation") in (None, 1, (1, 1))
        and kwargs.get("feature_group_count", 1) == 1
        and kwargs.get("precision") is None
        and kwargs.get("dimension_numbers") is not None
        and tuple(kwargs["dimension_numbers"].lhs_spec) == (0, 3, 1, 2)
        and tuple(kwargs["dimension_numbers"].rhs_spec) == (3, 2, 0, 1)
    )
    if plain and autodiff() == "custom":
        return conv3x3(x, kernel)
    return jax.lax.conv_general_dilated(x, kernel, window_strides, padding, **kwargs)


@jax.custom_vjp
def relu(x: Array) -> Array:
    """``max(x, 0)`` whose backward pass reads its output, not its input: ``dx = dy * (y > 0)``.

    ``y > 0`` exactly where ``x > 0``, so this is ``jax.nn.relu``'s gradient (0 at 0,
    as PyTorch's). Saving ``y``, which the next convolution saves anyway as its input,
    instead of ``x`` keeps one activation per conv layer for the backward pass instead
    of two, as PyTorch's autograd does (its ReLU saves its result). XLA's compiled
    memory analysis shows the saving with bfloat16 convolutions, and none in float32
    (bench/RESULTS.md, "Measurements behind the code").
    """
    return jnp.maximum(x, 0)


def _relu_fwd(x: Array) -> tuple[Array, Array]:
    y = jnp.maximum(x, 0)
    return y, y


def _relu_bwd(y: Array, dy: Array) -> tuple[Array]:
    return (jnp.where(y > 0, dy, jnp.zeros_like(dy)),)


relu.defvjp(_relu_fwd, _relu_bwd)


_WINDOW = (1, 2, 2, 1)


@jax.custom_vjp
def max_pool_2x2(x: Array) -> Array:
    """2x2 max pooling, stride 2, no padding: ``y[i, j] = max(x[2i:2i+2, 2j:2j+2])``.

    The gradient goes to the first maximum of each window in row-major order, as
    PyTorch's ``max_pool2d`` and XLA's ``select_and_scatter`` send it; it is written as
    four masked copies of the output gradient instead of autodiff's
    ``select_and_scatter``, which XLA:CPU runs as a scalar loop (timed in
    bench/RESULTS.md, "Measurements behind the code").
    """
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, _WINDOW, _WINDOW, "VALID")


def _max_pool_fwd(x: Array) -> tuple[Array, Array]:
    return max_pool_2x2(x), x


def _max_pool_bwd(x: Array, dy: Array) -> tuple[Array]:
    """``dx`` at the first maximum of each window (row-major) is ``dy``; elsewhere 0.

    The four corners of the windows are strided slices of ``x``, each the size of the
    output, so nothing the size of ``x`` is made but ``dx`` itself (comparing ``x``
    with its window maxima broadcast back to ``x``'s shape made a float32 copy of it).
    """
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    corners = [x[:, i : 2 * h2 : 2, j : 2 * w2 : 2] for i in (0, 1) for j in (0, 1)]  # 00, 01, 10, 11
    top = jnp.maximum(jnp.maximum(corners[0], corners[1]), jnp.maximum(corners[2], corners[3]))
    h00, h01, h10, h11 = (corner == top for corner in corners)
    first = (h00, h01 & ~h00, h10 & ~(h00 | h01), h11 & ~(h00 | h01 | h10))
    g00, g01, g10, g11 = (jnp.where(f, dy, jnp.zeros_like(dy)) for f in first)
    dx = jnp.stack([jnp.stack([g00, g01], axis=3), jnp.stack([g10, g11], axis=3)], axis=2)
    dx = dx.reshape(n, 2 * h2, 2 * w2, c)
    return (jnp.pad(dx, ((0, 0), (0, h - 2 * h2), (0, w - 2 * w2), (0, 0))),)  # odd edges: no gradient


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def pool_2x2(x: Array, kind: str) -> Array:
    """2x2 pooling with stride 2 and no padding (odd edges dropped, as in PyTorch)."""
    if kind == "max":
        if autodiff() == "plain":
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, _WINDOW, _WINDOW, "VALID")
        return max_pool_2x2(x)
    if kind == "avg":
        return jax.lax.reduce_window(x, 0.0, jax.lax.add, _WINDOW, _WINDOW, "VALID") / 4
    raise ValueError(f"pool must be 'max' or 'avg', not {kind!r}")


class VGG(nnx.Module):
    """The convolutions and poolings of a VGG network given by its spec.

    ``model(x, layers)`` returns ``{name: activation}`` for the requested layer names
    and computes nothing past the deepest of them.

    Args:
      spec: the network (a :class:`~jaxstyle.nets.NetworkSpec` or its name).
      pool: ``"max"`` (as trained) or ``"avg"`` (Gatys et al. suggest it for smoother
        results).
      dtype: computation dtype of the convolutions (``None``: the input's dtype).
      param_dtype: dtype the parameters are created in.
      rngs: random initialisation; real weights come from :func:`jaxstyle.weights.split_model`.
    """

    def __init__(
        self,
        spec: NetworkSpec | str,
        *,
        pool: str = "max",
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', not {pool!r}")
        self.spec = network(spec)
        self.pool = pool
        for name, (kh, kw, cin, cout) in self.spec.conv_shapes().items():
            conv = nnx.Conv(
                cin,
                cout,
                (kh, kw),
                padding=((1, 1), (1, 1)),
                dtype=dtype,
                param_dtype=param_dtype,
                conv_general_dilated=conv_general_dilated,
                rngs=rngs,
            )
            setattr(self, name, conv)

    def __call__(self, x: Array, layers: Sequence[str]) -> dict[str, Array]:
        deepest = self.spec.deepest(layers)
        return self.run(x, self.spec.layer_names[: self.spec.layer_names.index(deepest) + 1], layers)[1]

    def run(self, x: Array, names: Sequence[str], layers: Sequence[str]) -> tuple[Array, dict[str, Array]]:
        """Apply the consecutive layers ``names`` to ``x`` (the input of the first of them).

        Returns the output of the last one and ``{name: activation}`` for those of
        ``names`` in ``layers``.
        """
        wanted, out = set(layers), {}
        for name in names:
            if name.startswith("conv"):
                x = getattr(self, name)(x)
            elif name.startswith("relu"):
                x = relu(x) if autodiff() == "custom" else jax.nn.relu(x)
            else:
                x = pool_2x2(x, self.pool)
            if name in wanted:
                out[name] = x
        return x, out
