"""Sphinx configuration of jaxstyle's documentation (Sphinx + MyST, as JAX, Flax, Optax and Orbax).

Build it as CI does (`.ci/run`), strictly: every warning is an error.

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # autodoc imports the jaxstyle of this checkout

project = "jaxstyle"
author = "the jaxstyle authors"
copyright = "the jaxstyle authors"
release = version = "0.1.0"

extensions = [
    "myst_parser",  # the pages are Markdown (MyST)
    "sphinx.ext.autodoc",  # the API reference, from the docstrings
    "sphinx.ext.napoleon",  # their Google-style "Args:", "Returns:", "Attributes:" sections
]
# No intersphinx: the build must work offline, with PyPI as the only index reached.

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# `[text](page.md#a-heading)` links resolve to headings of levels 1-4; a heading or page that
# does not exist is a warning, and so (with -W) a failed build.
myst_heading_anchors = 4

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = "sphinx_book_theme"
html_title = "jaxstyle"
html_theme_options = {"show_toc_level": 2, "use_download_button": False}
