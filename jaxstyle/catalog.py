"""The names of the registered style losses and optimisers, with one line of help each.

No JAX here: :mod:`jaxstyle.config` (and with it ``jaxstyle --help``) offers these names
as the choices of ``--style-loss`` and ``--optimizer`` and builds their help from these
lines. The registries themselves are :data:`jaxstyle.losses.STYLE_LOSSES` and
:data:`jaxstyle.optimizers.OPTIMIZERS`; each checks on import that it holds exactly
these names, in this order (the order of a recipe's ``style_losses``).
"""

from __future__ import annotations

STYLE_LOSSES: dict[str, str] = {
    "gram": "mean squared error of Gram matrices (Gatys et al.)",
    "w2": "the Wasserstein-2 distance between Gaussians fitted to the features (style-transfer-pytorch since 2023)",
    "guided": "Gram matrices per guidance region (Gatys et al. 2017, section 4); without guidance channels "
    "one region, the whole image, where it equals gram",
}

OPTIMIZERS: dict[str, str] = {
    "adam": "Adam",
    "lbfgs": "Optax's L-BFGS with a zoom line search",
    "lbfgs-fixed": "PyTorch's L-BFGS as neural-style and pastiche run it, fixed steps and no line search "
    "(one network evaluation per step)",
}


def choices_help(table: dict[str, str]) -> str:
    """``"name: help; name: help"`` for an option's help text."""
    return "; ".join(f"{name}: {text}" for name, text in table.items())


def check_registry(kind: str, registry: dict, names: dict[str, str]) -> None:
    """Raise unless ``registry`` holds exactly ``names``, in order (run by each registry on import)."""
    if tuple(registry) != tuple(names):
        raise RuntimeError(f"{kind} registered {tuple(registry)} but jaxstyle.catalog names {tuple(names)}")
