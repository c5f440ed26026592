"""Predictive bands: the spread of predictive draws over a 1-D input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vi.plots.backend import require_holoviews, styled
from vi.plots.inputs import real_array


def _observed(observed: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed points as (x, y): a (len(x),) array at ``x``, or a pair of arrays."""
    if isinstance(observed, tuple) and len(observed) == 2:
        xo = real_array(observed[0], "observed x", ndim=1)
        yo = real_array(observed[1], "observed y", ndim=1)
        if len(xo) != len(yo):
            raise ValueError(f"observed x and y differ in length: {len(xo)} and {len(yo)}")
        return xo, yo
    yo = real_array(observed, "observed", ndim=1)
    if len(yo) != len(x):
        raise ValueError(
            f"observed has {len(yo)} values but x has {len(x)}; pass (x_obs, y_obs) for "
            "observations at other inputs"
        )
    return x, yo


def predictive_bands(
    x: Any, draws: Any, *, observed: Any = None, levels: Sequence[float] = (0.5, 0.9)
):
    r"""Median of predictive draws with central quantile bands, observations on top.

    At each input x_j the band for level l runs from the (1 - l)/2 to the
    (1 + l)/2 empirical quantile of ``draws[:, j]``, so it holds a fraction l of
    the predictive mass there; the line is the 0.5 quantile.

    Args:
        x: (m,) inputs; they are sorted before drawing.
        draws: (n, m) predictive draws, e.g. ``Predictive(...)(key, x)["y"]``.
        observed: optional (m,) observations at ``x``, or a pair ``(x_obs, y_obs)``.
        levels: band levels in (0, 1).

    Returns:
        An ``hv.Overlay`` of ``hv.Area`` bands, the median ``hv.Curve`` and
        ``hv.Scatter`` observations.
    """
    x = real_array(x, "x", ndim=1)
    draws = real_array(draws, "draws", ndim=2)
    if draws.shape[1] != len(x):
        raise ValueError(f"draws must be (n, len(x)) = (n, {len(x)}); got shape {draws.shape}")
    if not np.isfinite(draws).all():
        raise ValueError("draws hold non-finite values; drop them before plotting")
    levels = sorted(float(level) for level in levels)[::-1]
    if not levels or not all(0 < level < 1 for level in levels):
        raise ValueError(f"levels must be numbers strictly between 0 and 1; got {levels!r}")
    points = None if observed is None else _observed(observed, x)
    hv = require_holoviews()
    order = np.argsort(x)
    x, draws = x[order], draws[:, order]
    layers = []
    for i, level in enumerate(levels):
        low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        band = hv.Area((x, low, high), "x", ["y", "y_high"], label=f"{level:.0%}")
        layers.append(
            styled(
                band,
                {"alpha": 0.25 + 0.35 * i / max(1, len(levels) - 1)},
                bokeh={"fill_color": "#3182bd", "line_alpha": 0},
                matplotlib={"facecolor": "#3182bd", "linewidth": 0},
            )
        )
    median = hv.Curve((x, np.median(draws, axis=0)), "x", "y", label="median")
    layers.append(styled(median, {"color": "#08306b"}))
    if points is not None:
        scatter = hv.Scatter(points, "x", "y", label="observed")
        layers.append(styled(scatter, {"color": "black"}, bokeh={"size": 4}, matplotlib={"s": 8}))
    return styled(
        hv.Overlay(layers),
        {"title": "predictive", "show_legend": True},
        bokeh={"width": 500, "height": 320},
        matplotlib={"fig_size": 150},
    )
