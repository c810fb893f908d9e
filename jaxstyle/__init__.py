"""jaxstyle: Gatys-style neural style transfer in JAX.

Importing the package does no I/O and loads no weights; ``jaxstyle.stylize`` and the
settings are imported on first use. Where each module sits (a numerical core with no
I/O, the run, the shell) is mapped in the contributor guide, ``docs/contributing.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = [
    "PRESETS",
    "Execution",
    "JaxstyleError",
    "Result",
    "Settings",
    "VideoResult",
    "__version__",
    "stylize",
    "video",
]

if TYPE_CHECKING:
    from jaxstyle.api import Result, stylize
    from jaxstyle.clips import VideoResult, video
    from jaxstyle.config import PRESETS, Execution, Settings
    from jaxstyle.errors import JaxstyleError

_LAZY = {
    "stylize": "jaxstyle.api",
    "Result": "jaxstyle.api",
    "video": "jaxstyle.clips",
    "VideoResult": "jaxstyle.clips",
    "Settings": "jaxstyle.config",
    "Execution": "jaxstyle.config",
    "PRESETS": "jaxstyle.config",
    "JaxstyleError": "jaxstyle.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxstyle' has no attribute {name!r}")
