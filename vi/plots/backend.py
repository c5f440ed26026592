"""Loading holoviews lazily, styling for both backends, and writing plots to disk.

holoviews, bokeh and matplotlib are the optional extra ``nfvi[plots]``: nothing here
imports them at module import time, so ``import vi`` works without them and a plot
call says how to install them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

INSTALL_HINT = 'pip install "nfvi[plots]"'

# Which holoviews backend writes which file type: bokeh gives interactive HTML,
# matplotlib gives PNG without a browser.
BACKEND_FOR_SUFFIX = {".html": "bokeh", ".png": "matplotlib"}


def require_holoviews() -> Any:
    """Return the ``holoviews`` module with its bokeh and matplotlib backends loaded.

    Raises:
        ImportError: holoviews (or bokeh, or matplotlib) is not installed; the
            message names the command that installs them.
    """
    try:
        import holoviews as hv

        current = hv.Store.current_backend
        hv.renderer("bokeh")
        hv.renderer("matplotlib")
    except ImportError as err:
        raise ImportError(
            f"vi.plots needs holoviews, bokeh and matplotlib ({err}); "
            f"install them with: {INSTALL_HINT}"
        ) from err
    # Loading a renderer switches holoviews' current backend; keep the user's choice.
    hv.Store.set_current_backend(current)
    return hv


def styled(
    element: Any,
    common: dict[str, Any] | None = None,
    *,
    bokeh: dict[str, Any] | None = None,
    matplotlib: dict[str, Any] | None = None,
) -> Any:
    """Apply plot options to ``element`` for both backends.

    holoviews keeps options per backend; ``common`` goes to both, ``bokeh`` and
    ``matplotlib`` to one each (their option names differ, e.g. ``line_width``
    against ``linewidth``).
    """
    common = common or {}
    for backend, own in (("bokeh", bokeh), ("matplotlib", matplotlib)):
        element = element.opts(backend=backend, **common, **(own or {}))
    return element


def save(obj: Any, path: str | Path, *, resources: str = "cdn") -> Path:
    """Write a holoviews object to ``path``; the suffix picks the format.

    ``.html`` is rendered by bokeh (interactive; ``resources="inline"`` embeds the
    JavaScript so the file also opens offline, ``"cdn"`` keeps it small), ``.png`` by
    matplotlib. Parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError: the suffix is neither ``.html`` nor ``.png``.
    """
    path = Path(path)
    path = path.with_suffix(path.suffix.lower())
    backend = BACKEND_FOR_SUFFIX.get(path.suffix)
    if backend is None:
        raise ValueError(
            f"cannot save a plot as {path.name!r}: use a path ending in "
            f"{' or '.join(BACKEND_FOR_SUFFIX)}"
        )
    hv = require_holoviews()
    path.parent.mkdir(parents=True, exist_ok=True)
    hv.save(obj, str(path), backend=backend, resources=resources)
    return path
