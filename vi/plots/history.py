"""Plots of what a fit recorded over its steps: the loss, and a Tracker's traces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vi.plots.backend import require_holoviews, styled
from vi.plots.inputs import flatten_tree, real_array

_LINE = {"bokeh": {"line_width": 1.5}, "matplotlib": {"linewidth": 1.5}}
_PANEL = {"bokeh": {"width": 420, "height": 260}, "matplotlib": {"fig_size": 120}}


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    r"""Trailing mean over the last ``window`` finite values.

    m_t = \sum_{s=t-w+1}^{t} [x_s finite] x_s / \sum_{s=t-w+1}^{t} [x_s finite],
    with the window cut at the start of the record; NaN where it holds no finite value,
    so a skipped (non-finite) step neither poisons nor breaks the curve.
    """
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, len(values) + 1)
    start = np.maximum(end - window, 0)
    count = counts[end] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (sums[end] - sums[start]) / count, np.nan)


def loss(hist: Any, *, log: bool = False, window: int | None = None, max_points: int = 10_000):
    r"""The loss at each step with its running mean on top.

    Args:
        hist: a 1-D array of losses, or anything with a ``.hist`` (an Approximation).
        log: plot on a logarithmic y axis. A negative ELBO can be negative, which a
            log axis cannot show, so when the smallest finite loss m is <= 0 the plot
            shows L - m + 1 instead of L (its minimum sits at 1) and the axis label
            says so; when every loss is positive it shows L itself.
        window: steps in the trailing running mean (see :func:`running_mean`);
            default max(1, n // 50).
        max_points: the curves keep every k-th step, k = ceil(n / max_points), so
            that a long fit gives a small file; the running mean is computed on
            every step before thinning.

    Returns:
        An ``hv.Overlay`` of the loss and its running mean.
    """
    values = real_array(getattr(hist, "hist", hist), "hist", ndim=1)
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError("hist holds no finite loss; there is nothing to plot")
    n = len(values)
    window = max(1, n // 50) if window is None else window
    if not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be a positive integer number of steps; got {window!r}")
    hv = require_holoviews()
    mean = running_mean(values, int(window))
    values = np.where(finite, values, np.nan)
    # the axis is named apart from the curve labels ("loss", "mean of w"): matplotlib
    # reads a legend label equal to the axis label as a per-point mapping
    label = "negative ELBO"
    if log and (low := values[finite].min()) <= 0:
        values, mean = values - low + 1, mean - low + 1
        label = f"negative ELBO - min + 1 (min = {low:.4g})"
    keep = slice(None, None, -(-n // max_points))
    steps = np.arange(n)[keep]
    y = hv.Dimension("loss_value", label=label)
    raw = styled(
        hv.Curve((steps, values[keep]), "step", y, label="loss"), {"color": "#9ecae1"}, **_LINE
    )
    smooth = styled(
        hv.Curve((steps, mean[keep]), "step", y, label=f"mean of {window}"),
        {"color": "#08519c"},
        **_LINE,
    )
    return styled(raw * smooth, {"logy": bool(log), "title": "loss"}, **_PANEL)


def traces(history: Any, steps: Any = None, *, max_coords: int = 20):
    """One panel per recorded quantity, one curve per scalar coordinate of it.

    Args:
        history: a mapping ``name -> array (T, ...)`` (nested mappings are flattened
            with ``/``), e.g. ``{"loss": (T,), "grad_norm": (T,),
            "params/0_planar/u": (T, k, d)}``; or anything with a ``.history``
            mapping and, optionally, ``.steps`` (a Tracker).
        steps: the (T,) steps at which the values were recorded; default 0..T-1.
        max_coords: a quantity with more scalar coordinates than this shows
            ``max_coords`` of them, evenly spread, and its title says how many.

    Returns:
        An ``hv.Layout`` of ``hv.NdOverlay`` panels.
    """
    if steps is None:
        steps = getattr(history, "steps", None)
    history = getattr(history, "history", history)
    if not isinstance(history, Mapping):
        raise TypeError(
            f"history must be a mapping name -> (T, ...) array; got {type(history).__name__}"
        )
    named = flatten_tree(history)
    if not named:
        raise ValueError("history is empty; there is nothing to plot")
    if steps is not None:
        steps = real_array(steps, "steps", ndim=1)
    series = {}
    for name, value in named.items():
        value = real_array(value, f"history[{name!r}]")
        if value.ndim == 0:
            raise ValueError(f"history[{name!r}] is a scalar; it must be (T, ...) over steps")
        if steps is not None and len(value) != len(steps):
            raise ValueError(
                f"history[{name!r}] has {len(value)} records but steps has {len(steps)}"
            )
        series[name] = value
    hv = require_holoviews()
    panels = []
    for name, value in series.items():
        x = np.arange(len(value)) if steps is None else steps
        flat = value.reshape(len(value), -1)
        indices = list(np.ndindex(*value.shape[1:]))
        shown = np.unique(np.linspace(0, flat.shape[1] - 1, min(max_coords, flat.shape[1])).round())
        y = hv.Dimension(f"trace{len(panels)}", label=name)
        curves = {
            ",".join(map(str, indices[j])) or name: styled(
                hv.Curve((x, flat[:, j]), "step", y), **_LINE
            )
            for j in shown.astype(int)
        }
        title = name if len(shown) == flat.shape[1] else f"{name} ({len(shown)} of {flat.shape[1]})"
        panel = hv.NdOverlay(curves, kdims="coordinate")
        panels.append(
            styled(panel, {"title": title, "show_legend": 1 < len(curves) <= 10}, **_PANEL)
        )
    return hv.Layout(panels).cols(2).opts(sublabel_format="", backend="matplotlib")
