"""Marginals and pair plots of draws from any approximation or MCMC run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vi.plots.backend import require_holoviews, styled
from vi.plots.inputs import columns


def _finite_columns(samples: Any, vars: Sequence[str] | None, limit: int, what: str):
    """The draws' columns, refusing non-finite draws and more columns than ``limit``."""
    cols = columns(samples, vars)
    if len(cols) > limit:
        raise ValueError(
            f"{what} shows at most {limit} coordinates; the samples have {len(cols)} "
            f"({', '.join(list(cols)[:8])}, ...): choose some with vars=[...]"
        )
    for name, col in cols.items():
        if not np.isfinite(col).all():
            raise ValueError(f"samples {name!r} hold non-finite draws; drop them before plotting")
    return cols


def _histogram(hv: Any, name: str, col: np.ndarray, bins: int, size: int) -> Any:
    """A density histogram of one column."""
    density, edges = np.histogram(col, bins=bins, density=True)
    # axiswise: each histogram gets its own axis ranges; holoviews would otherwise
    # share them between panels whose dimensions carry the same label.
    return styled(
        hv.Histogram((edges, density), kdims=[name], vdims=["density"]),
        {"alpha": 0.7, "axiswise": True},
        bokeh={"width": size, "height": size},
        matplotlib={"fig_size": size // 3},
    )


def marginals(
    samples: Any, vars: Sequence[str] | None = None, *, bins: int = 30, max_panels: int = 24
):
    r"""Histogram of each scalar coordinate's marginal, as a density.

    The height over bin [e_k, e_{k+1}) is c_k / (n (e_{k+1} - e_k)), so each
    histogram integrates to 1 and marginals of different fits can be compared.

    Args:
        samples: an (n,) or (n, d) array, a dict ``name -> (n, ...)`` (NumPyro's
            sample dicts) or an ArviZ InferenceData (posterior, chains stacked).
        vars: variable names (``"theta"``) or single coordinates (``"theta[2]"``) to
            show; default all.
        bins: bins per histogram.
        max_panels: refuse to draw more coordinates than this (pick with ``vars``).

    Returns:
        An ``hv.Layout`` of ``hv.Histogram`` panels.
    """
    cols = _finite_columns(samples, vars, max_panels, "marginals")
    hv = require_holoviews()
    panels = [_histogram(hv, name, col, bins, 240).opts(title=name) for name, col in cols.items()]
    layout = hv.Layout(panels).cols(min(4, len(panels)))
    return layout.opts(sublabel_format="", backend="matplotlib")


def pairs(
    samples: Any,
    vars: Sequence[str] | None = None,
    *,
    bins: int = 30,
    max_vars: int = 6,
    max_points: int = 2_000,
):
    """Corner plot: each marginal's histogram on the diagonal, pair scatters below it.

    Row i, column j < i plots coordinate j (x) against coordinate i (y); the x axes of
    one column are linked in the HTML. Scatters show at most ``max_points`` draws
    (every k-th one) so the file stays small; histograms use every draw. ``samples``,
    ``vars`` and ``bins`` are as in :func:`marginals`; more than ``max_vars``
    coordinates are refused.

    Returns:
        An ``hv.Layout`` of d x d panels (empty above the diagonal).
    """
    cols = _finite_columns(samples, vars, max_vars, "pairs")
    if not isinstance(max_points, int | np.integer) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer; got {max_points!r}")
    hv = require_holoviews()
    names = list(cols)
    n = len(cols[names[0]])
    keep = slice(None, None, -(-n // max_points))
    size = max(120, 600 // len(names))
    panels = []
    for i, y in enumerate(names):
        for j, x in enumerate(names):
            if j == i:
                panels.append(_histogram(hv, x, cols[x], bins, size))
            elif j < i:
                points = hv.Points((cols[x][keep], cols[y][keep]), kdims=[x, y])
                panels.append(
                    styled(
                        points,
                        {"alpha": 0.3},
                        bokeh={"size": 2, "width": size, "height": size},
                        matplotlib={"s": 2, "fig_size": size // 3},
                    )
                )
            else:
                panels.append(hv.Empty())
    layout = hv.Layout(panels).cols(len(names))
    return layout.opts(sublabel_format="", backend="matplotlib")
