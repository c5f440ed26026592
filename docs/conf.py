"""Sphinx configuration of the nfvi documentation site (``make -C docs html``).

MyST markdown pages, the tutorial notebooks rendered by myst-nb from their committed
outputs (never re-run here: ``python tutorials/sync.py`` executes them), and an API
reference generated from the docstrings (autodoc, autosummary, napoleon for the
Google-style sections). The build runs with ``-W``: any warning fails it.
"""

from __future__ import annotations

import filecmp
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # flows, guides, vi from this checkout
sys.path.insert(0, str(DOCS))

import bench_plots  # noqa: E402  (docs/bench_plots.py)

project = "nfvi"
author = "the nfvi authors"
copyright = "the nfvi authors"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "README.md"]
templates_path = ["_templates"]
html_theme = "furo"
html_title = "nfvi"
html_static_path: list[str] = []

# --- MyST and the notebooks ---------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # render the committed outputs; never execute here
# The setup cell loads holoviews' notebook machinery (scripts for a live kernel);
# its outputs are tagged remove-output in the notebooks. Never emit raw scripts.
nb_mime_priority_overrides = [
    ("html", "application/javascript", None),
    ("html", "application/vnd.holoviews_load.v0+json", None),
    ("html", "application/vnd.holoviews_exec.v0+json", None),
]

# --- the API reference --------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False  # a package's public API is its __all__
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# Docstrings name the objects they refer to for people, not only for the linker
# ("see :mod:`vi.program`"); an unresolved one renders as code. Type hints such as
# ``jax.Array`` and numpyro's classes have no inventory here, so references stay
# unresolved rather than warning (the build is not nitpicky).
nitpicky = False


# Docstrings write absolute values and determinants as |x| and |det J|, which
# reStructuredText reads as substitution references; escape such bars, except in
# literal and math blocks and in inline literals, math and roles.
_INLINE_CODE = re.compile(r"(``.*?``|:\w+:`.*?`|`.*?`)")


def _escape_bars(app, what, name, obj, options, lines: list[str]) -> None:
    block_indent = None  # indentation of the line that opened a literal or math block
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not line.strip() or indent > block_indent:
                continue
            block_indent = None
        if line.rstrip().endswith("::") or line.lstrip().startswith(".. math::"):
            block_indent = indent
            if line.lstrip().startswith(".."):
                continue
        parts = _INLINE_CODE.split(line)
        lines[i] = "".join(part if j % 2 else part.replace("|", r"\|")
                           for j, part in enumerate(parts))


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _escape_bars)


def _copy_if_changed(source: Path, target: Path) -> None:
    """Copy without touching an identical target, so Sphinx does not re-read it."""
    if not target.exists() or not filecmp.cmp(source, target, shallow=False):
        shutil.copyfile(source, target)


def _stage_notebooks() -> None:
    """Sphinx reads sources under docs/ only: bring tutorials/*.ipynb to docs/tutorials/."""
    target = DOCS / "tutorials"
    wanted = {p.name: p for p in sorted((ROOT / "tutorials").glob("*.ipynb"))}
    for stale in target.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, source in wanted.items():
        _copy_if_changed(source, target / name)


_stage_notebooks()
bench_plots.main(DOCS / "_generated")
