"""Pictures of 2-D densities: a target next to the fitted flow, with samples on top."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vi.plots.backend import require_holoviews, styled
from vi.plots.inputs import real_array

Bounds = tuple[tuple[float, float], tuple[float, float]]

_IMAGE = {
    "common": {"cmap": "viridis", "colorbar": True},
    "bokeh": {"width": 360, "height": 320},
    "matplotlib": {"fig_size": 120},
}
_POINTS = {
    "common": {"color": "white", "alpha": 0.5},
    "bokeh": {"size": 2},
    "matplotlib": {"s": 2},
}


def _check_grid(bounds: Any, grid: Any) -> tuple[np.ndarray, np.ndarray]:
    """The x and y grid lines over ``bounds``, refusing a malformed window."""
    box = real_array(bounds, "bounds")
    if box.shape != (2, 2) or not np.isfinite(box).all() or (box[:, 0] >= box[:, 1]).any():
        raise ValueError(
            f"bounds must be ((x_low, x_high), (y_low, y_high)) with low < high; got {bounds!r}"
        )
    if not isinstance(grid, int | np.integer) or grid < 2:
        raise ValueError(f"grid must be an integer number of points per axis >= 2; got {grid!r}")
    return np.linspace(*box[0], grid), np.linspace(*box[1], grid)


def grid_density(log_density: Callable[[Any], Any], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    r"""exp(log_density) on the grid, normalised to integrate to 1 over the window.

    p_ij = exp(l_ij - max l) / (\sum_kl exp(l_kl - max l) dx dy), where
    l_ij = log_density((xs[j], ys[i])); subtracting the maximum keeps exp finite for
    unnormalised targets, and normalising puts a target and a fit on one scale.
    Rows run along y, columns along x.
    """
    if not callable(log_density):
        raise TypeError(
            f"log_density must be a callable (..., 2) -> (...); got {type(log_density).__name__}"
        )
    points = np.stack(np.meshgrid(xs, ys), axis=-1)
    values = real_array(log_density(points), "log_density(points)")
    if values.shape != points.shape[:-1]:
        raise ValueError(
            "log_density must map points of shape (..., 2) to log densities of shape (...): "
            f"given {points.shape} it returned {values.shape}"
        )
    if np.isnan(values).any() or np.isposinf(values).any():
        raise ValueError("log_density returned NaN or +inf on the plotting window")
    if np.isneginf(values).all():
        raise ValueError("log_density is -inf on the whole window; move bounds to the mass")
    density = np.exp(values - values.max())
    return density / (density.sum() * (xs[1] - xs[0]) * (ys[1] - ys[0]))


def _axes(hv: Any, xs: np.ndarray, ys: np.ndarray) -> list[Any]:
    """The z1, z2 dimensions, their ranges fixed to the window: samples outside it, or
    the half pixel an image reaches past its outer nodes, do not widen the axes."""
    return [hv.Dimension("z1", range=(xs[0], xs[-1])), hv.Dimension("z2", range=(ys[0], ys[-1]))]


def _image(
    hv: Any,
    axes: list[Any],
    pixels: tuple[np.ndarray, np.ndarray, np.ndarray],
    title: str,
    label: str = "density",
) -> Any:
    """Panels whose value ``label`` agrees share one colour scale in a layout."""
    image = hv.Image(pixels, kdims=axes, vdims=[hv.Dimension("p", label=label)])
    return styled(
        image,
        {**_IMAGE["common"], "title": title},
        bokeh=_IMAGE["bokeh"],
        matplotlib=_IMAGE["matplotlib"],
    )


def _check_points(samples: Any) -> np.ndarray:
    points = real_array(samples, "samples", ndim=2)
    if points.shape[1] != 2:
        raise ValueError(f"samples must be (n, 2) points; got shape {points.shape}")
    return points


def _points(hv: Any, axes: list[Any], points: np.ndarray) -> Any:
    return styled(
        hv.Points(points, kdims=axes),
        _POINTS["common"],
        bokeh=_POINTS["bokeh"],
        matplotlib=_POINTS["matplotlib"],
    )


def density2d(
    log_density: Callable[[Any], Any],
    *,
    bounds: Bounds = ((-4.0, 4.0), (-4.0, 4.0)),
    grid: int = 200,
    samples: Any = None,
    title: str = "density",
):
    """Image of a 2-D density on a ``grid`` x ``grid`` window, samples optionally on top.

    Args:
        log_density: vectorised ``(..., 2) -> (...)`` log density, normalised or not
            (e.g. ``lambda z: -U(z)``); the image shows :func:`grid_density`.
        bounds: ``((x_low, x_high), (y_low, y_high))``.
        grid: points per axis.
        samples: optional (n, 2) draws drawn as points.
        title: panel title.

    Returns:
        An ``hv.Image``, or an ``hv.Overlay`` of it and ``hv.Points``.
    """
    xs, ys = _check_grid(bounds, grid)
    points = None if samples is None else _check_points(samples)
    hv = require_holoviews()
    axes = _axes(hv, xs, ys)
    image = _image(hv, axes, (xs, ys, grid_density(log_density, xs, ys)), title)
    return image if points is None else image * _points(hv, axes, points)


def compare2d(
    target_log_density: Callable[[Any], Any],
    fitted_log_density: Callable[[Any], Any] | None,
    samples: Any = None,
    *,
    bounds: Bounds = ((-4.0, 4.0), (-4.0, 4.0)),
    grid: int = 200,
    bins: int | None = None,
):
    """The target density next to the fit: ``target | fit``.

    The fit panel shows ``fitted_log_density`` on the grid when given, with the
    samples on top; when it is None (an approximation without a density, MCMC
    draws) it shows a normalised 2-D histogram of the samples in ``bins`` x ``bins``
    cells over ``bounds`` (draws outside the window are left out).

    Returns:
        An ``hv.Layout`` of two panels with linked axes.
    """
    xs, ys = _check_grid(bounds, grid)
    if fitted_log_density is None and samples is None:
        raise ValueError("compare2d needs fitted_log_density or samples to draw the fit")
    if bins is not None and (not isinstance(bins, int | np.integer) or bins < 1):
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    points = None if samples is None else _check_points(samples)
    hv = require_holoviews()
    axes = _axes(hv, xs, ys)
    target = _image(hv, axes, (xs, ys, grid_density(target_log_density, xs, ys)), "target")
    if fitted_log_density is not None:
        fit = _image(hv, axes, (xs, ys, grid_density(fitted_log_density, xs, ys)), "fit")
        if points is not None:
            fit = fit * _points(hv, axes, points)
        return hv.Layout([target, fit]).cols(2).opts(sublabel_format="", backend="matplotlib")
    inside = ((points >= [xs[0], ys[0]]) & (points <= [xs[-1], ys[-1]])).all(axis=1)
    if not inside.any():
        raise ValueError("no sample lies inside bounds; widen bounds to see the fit")
    if bins is None:
        bins = int(np.clip(np.sqrt(inside.sum() / 5), 10, 60))
    counts, xedges, yedges = np.histogram2d(
        *points[inside].T, bins=bins, range=[xs[[0, -1]], ys[[0, -1]]], density=True
    )
    centres = (xedges[:-1] + xedges[1:]) / 2, (yedges[:-1] + yedges[1:]) / 2
    # Its own colour scale: a histogram's noisy peak would wash out the target's.
    title = f"fit (histogram of {inside.sum()} samples)"
    fit = _image(hv, axes, (*centres, counts.T), title, label="density (histogram)")
    return hv.Layout([target, fit]).cols(2).opts(sublabel_format="", backend="matplotlib")
