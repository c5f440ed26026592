"""Tests of vi.plots: what each plot draws, that it renders, and the missing-extra path."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
from scipy import stats

import vi.plots as plots

hv = pytest.importorskip("holoviews")
image = pytest.importorskip("matplotlib.image")

GAUSS = lambda z: -0.5 * (z**2).sum(-1)  # noqa: E731  (standard normal, unnormalised)


def _elements(obj):
    """The elements of an Overlay / Layout, in order."""
    return list(obj.values())


def _bokeh_json(path: Path) -> str:
    """The bokeh document JSON embedded in an HTML file."""
    match = re.search(
        r'<script type="application/json"[^>]*>(.*?)</script>', path.read_text(), re.S
    )
    assert match, "no embedded bokeh document"
    return match.group(1)


# ---------------------------------------------------------------------------------------
# Every plot renders to HTML (bokeh) and to a non-blank PNG (matplotlib).

PLOT_NAMES = [
    "loss",
    "traces",
    "density2d",
    "compare2d_fit",
    "compare2d_hist",
    "marginals",
    "pairs",
    "predictive_bands",
]


@pytest.fixture(scope="module")
def small_plots():
    rng = np.random.default_rng(0)
    history = {"loss": rng.normal(size=30), "p": {"u": rng.normal(size=(30, 2, 2))}}
    return {
        "loss": plots.loss(rng.normal(size=200) - np.linspace(0, 3, 200), log=True),
        "traces": plots.traces(history),
        "density2d": plots.density2d(GAUSS, grid=40, samples=rng.normal(size=(50, 2))),
        "compare2d_fit": plots.compare2d(GAUSS, GAUSS, rng.normal(size=(50, 2)), grid=40),
        "compare2d_hist": plots.compare2d(GAUSS, None, rng.normal(size=(300, 2)), grid=40),
        "marginals": plots.marginals({"a": rng.normal(size=100), "b": rng.normal(size=(100, 2))}),
        "pairs": plots.pairs(rng.normal(size=(100, 3))),
        "predictive_bands": plots.predictive_bands(
            np.linspace(0, 1, 6), rng.normal(size=(50, 6)), observed=rng.normal(size=6)
        ),
    }


@pytest.mark.parametrize("name", PLOT_NAMES)
def test_every_plot_renders_html_and_a_nonblank_png(small_plots, tmp_path, name):
    obj = small_plots[name]
    html = plots.save(obj, tmp_path / "nested" / "dir" / f"{name}.html")
    text = _bokeh_json(html)
    (doc,) = json.loads(text).values()
    assert doc["roots"], "the HTML holds no plot root"
    assert '"name":"Figure"' in text, "the HTML holds no bokeh figure"

    png = plots.save(obj, tmp_path / f"{name}.png")
    pixels = image.imread(png)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 50
    assert pixels[..., :3].var() > 0, "the PNG is blank"


# ---------------------------------------------------------------------------------------
# The loss history.


def test_loss_running_mean_is_the_trailing_mean():
    window = 7
    overlay = plots.loss(np.arange(100.0), window=window)
    raw, smooth = _elements(overlay)
    np.testing.assert_array_equal(raw.dimension_values(1), np.arange(100.0))
    mean = smooth.dimension_values(1)
    # The mean of i-w+1 .. i is i - (w-1)/2 once the window is full, i/2 before.
    i = np.arange(100)
    expected = np.where(i >= window - 1, i - (window - 1) / 2, i / 2)
    np.testing.assert_allclose(mean, expected)


def test_running_mean_skips_non_finite_steps():
    values = np.array([1.0, np.nan, 3.0, np.inf, np.nan, np.nan])
    np.testing.assert_allclose(
        plots.history.running_mean(values, 2), [1.0, 1.0, 3.0, 3.0, np.nan, np.nan]
    )


def test_loss_default_window_and_an_approximation_like_object():
    class Fitted:
        hist = np.linspace(5.0, 1.0, 500)

    overlay = plots.loss(Fitted())
    assert _elements(overlay)[1].label == "mean of 10"  # 500 // 50


def test_loss_log_scale_shifts_negative_losses_to_start_at_one():
    hist = np.array([3.0, -1.0, -2.5, -2.0])
    raw, smooth = _elements(plots.loss(hist, log=True, window=1))
    np.testing.assert_allclose(raw.dimension_values(1), hist + 3.5)
    np.testing.assert_allclose(smooth.dimension_values(1), hist + 3.5)
    assert "min + 1" in raw.get_dimension(1).label
    plot_opts = hv.Store.lookup_options("bokeh", plots.loss(hist, log=True), "plot").kwargs
    assert plot_opts["logy"] is True
    # Positive losses keep their own values on the log axis.
    raw, _ = _elements(plots.loss(hist + 10, log=True))
    np.testing.assert_allclose(raw.dimension_values(1), hist + 10)


def test_loss_thins_long_histories_to_max_points():
    raw, _ = _elements(plots.loss(np.arange(10_000.0), max_points=1000))
    np.testing.assert_array_equal(raw.dimension_values(0), np.arange(0, 10_000, 10))


@pytest.mark.parametrize(
    ("hist", "kwargs", "error"),
    [
        (np.zeros((3, 2)), {}, ValueError),
        ([], {}, ValueError),
        ([np.nan, np.inf], {}, ValueError),
        (["a", "b"], {}, TypeError),
        (np.arange(5.0), {"window": 0}, ValueError),
    ],
)
def test_loss_refuses_bad_input(hist, kwargs, error):
    with pytest.raises(error):
        plots.loss(hist, **kwargs)


# ---------------------------------------------------------------------------------------
# Tracker traces.


def test_traces_one_panel_per_name_one_curve_per_coordinate():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(12, 3, 2))
    steps = np.arange(0, 120, 10)
    layout = plots.traces({"loss": rng.normal(size=12), "params": {"u": u}}, steps)
    loss_panel, u_panel = _elements(layout)
    assert len(loss_panel) == 1
    assert set(u_panel.keys()) == {f"{i},{j}" for i in range(3) for j in range(2)}
    curve = u_panel["2,1"]
    np.testing.assert_array_equal(curve.dimension_values(0), steps)
    np.testing.assert_array_equal(curve.dimension_values(1), u[:, 2, 1])
    title = hv.Store.lookup_options("bokeh", u_panel, "plot").kwargs["title"]
    assert title == "params/u"


def test_traces_reads_a_tracker_like_object_and_caps_coordinates():
    class Tracker:
        def __init__(self):
            self.history = {"w": np.arange(40.0).reshape(1, 40) + np.zeros((5, 1))}
            self.steps = np.array([0, 5, 10, 15, 20])

    tracker = Tracker()
    (panel,) = _elements(plots.traces(tracker, max_coords=5))
    assert sorted(int(k) for k in panel.keys()) == [0, 10, 20, 29, 39]
    np.testing.assert_array_equal(panel["29"].dimension_values(0), tracker.steps)
    title = hv.Store.lookup_options("bokeh", panel, "plot").kwargs["title"]
    assert title == "w (5 of 40)"


@pytest.mark.parametrize(
    ("history", "steps", "error"),
    [
        ({}, None, ValueError),
        ([1.0, 2.0], None, TypeError),
        ({"a": np.zeros(4)}, np.arange(3), ValueError),
        ({"a": 1.0}, None, ValueError),
    ],
)
def test_traces_refuses_bad_input(history, steps, error):
    with pytest.raises(error):
        plots.traces(history, steps)


# ---------------------------------------------------------------------------------------
# 2-D densities.


def test_density2d_is_the_normalised_density_in_the_right_orientation():
    mean, sd = np.array([1.0, -0.5]), np.array([0.5, 1.0])
    target = stats.multivariate_normal(mean, np.diag(sd**2))
    bounds = ((-3.0, 5.0), (-6.5, 5.5))  # +-8 and +-6 standard deviations
    img = plots.density2d(lambda z: target.logpdf(z) + 123.0, bounds=bounds, grid=41)
    xs, ys = np.linspace(*bounds[0], 41), np.linspace(*bounds[1], 41)
    # Nodes off the diagonal of the grid catch a transposed or flipped image.
    for x, y in [(xs[20], ys[22]), (xs[14], ys[30]), (xs[25], ys[17])]:
        np.testing.assert_allclose(img[x, y], target.pdf([x, y]), rtol=1e-6)


def test_density2d_overlays_the_samples():
    samples = np.random.default_rng(2).normal(size=(30, 2))
    _, points = _elements(plots.density2d(GAUSS, grid=20, samples=samples))
    np.testing.assert_array_equal(points.array(), samples)


@pytest.mark.parametrize(
    ("log_density", "kwargs", "error"),
    [
        ("not callable", {}, TypeError),
        (lambda z: z, {}, ValueError),  # returns (..., 2), not (...)
        (lambda z: np.full(z.shape[:-1], np.nan), {}, ValueError),
        (lambda z: np.full(z.shape[:-1], -np.inf), {}, ValueError),
        (GAUSS, {"bounds": ((1, -1), (-1, 1))}, ValueError),
        (GAUSS, {"bounds": (-1, 1)}, ValueError),
        (GAUSS, {"grid": 1}, ValueError),
        (GAUSS, {"samples": np.zeros((5, 3))}, ValueError),
    ],
)
def test_density2d_refuses_bad_input(log_density, kwargs, error):
    with pytest.raises(error):
        plots.density2d(log_density, grid=kwargs.pop("grid", 10), **kwargs)


def test_compare2d_histogram_of_samples_estimates_the_density():
    n = 20_000
    samples = np.random.default_rng(3).normal(size=(n, 2))
    target, fit = _elements(plots.compare2d(GAUSS, None, samples, grid=41, bins=8))
    # Cell [0, 1] x [0, 1] of unit area; the histogram is normalised over the window.
    p = (stats.norm.cdf(1) - stats.norm.cdf(0)) ** 2
    inside = (stats.norm.cdf(4) - stats.norm.cdf(-4)) ** 2
    se = np.sqrt(p * (1 - p) / n)
    assert abs(fit[0.5, 0.5] - p / inside) < 5 * se
    assert target[0.0, 0.0] == pytest.approx(1 / (2 * np.pi), rel=1e-3)  # (0, 0) is a node


def test_compare2d_with_a_fitted_density_shows_it():
    shifted = lambda z: -0.5 * ((z - 1.0) ** 2).sum(-1)  # noqa: E731
    # Nodes every 0.25 from -5 to 6: both peaks are nodes, both masses inside the window.
    bounds = ((-5.0, 6.0), (-5.0, 6.0))
    target, fit = _elements(plots.compare2d(GAUSS, shifted, None, bounds=bounds, grid=45))
    assert target[0.0, 0.0] == pytest.approx(1 / (2 * np.pi), rel=1e-6)
    assert fit[1.0, 1.0] == pytest.approx(1 / (2 * np.pi), rel=1e-6)
    assert fit[0.0, 0.0] == pytest.approx(np.exp(-1) / (2 * np.pi), rel=1e-6)
    with pytest.raises(ValueError, match="fitted_log_density or samples"):
        plots.compare2d(GAUSS, None, None)
    with pytest.raises(ValueError, match="inside bounds"):
        plots.compare2d(GAUSS, None, np.full((5, 2), 10.0))


# ---------------------------------------------------------------------------------------
# Marginals and pairs of draws in any form.


def test_marginals_of_a_dict_are_density_histograms_per_coordinate():
    rng = np.random.default_rng(4)
    draws = {
        "a": rng.normal(3.0, 2.0, size=500),
        "b": rng.normal(size=(500, 2)) + np.array([0.0, 10.0]),
    }
    panels = _elements(plots.marginals(draws, bins=20))
    assert [p.kdims[0].name for p in panels] == ["a", "b[0]", "b[1]"]
    for panel, column in zip(panels, [draws["a"], *draws["b"].T], strict=True):
        edges = panel.edges
        heights = panel.dimension_values(1)
        assert np.sum(heights * np.diff(edges)) == pytest.approx(1.0)
        assert (edges[0], edges[-1]) == (column.min(), column.max())


def test_marginals_stack_the_chains_of_inference_data():
    az = pytest.importorskip("arviz")
    mu = np.random.default_rng(5).normal(size=(2, 50))
    mu[1] += 100.0  # the second chain far away: both must be in the one histogram
    idata = az.from_dict(posterior={"mu": mu, "s": np.ones((2, 50, 3))})
    panels = _elements(plots.marginals(idata, vars=["mu"]))
    (panel,) = panels
    assert (panel.edges[0], panel.edges[-1]) == (mu.min(), mu.max())
    assert len(_elements(plots.marginals(idata))) == 4


def test_marginals_and_pairs_refuse_bad_selections():
    draws = {"a": np.zeros(10), "b": np.zeros((10, 8))}
    with pytest.raises(ValueError, match=r"no variable 'c'.*\['a', 'b'\]"):
        plots.marginals(draws, vars=["c"])
    with pytest.raises(ValueError, match=r"at most 6 .*vars="):
        plots.pairs(draws)
    with pytest.raises(ValueError, match="same number of draws"):
        plots.marginals({"a": np.zeros(10), "b": np.zeros(11)})
    with pytest.raises(ValueError, match="non-finite"):
        plots.marginals(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match=r"\(n,\) or \(n, d\)"):
        plots.marginals(np.zeros((4, 2, 2)))


def test_pairs_scatter_puts_column_j_against_row_i():
    a = np.random.default_rng(6).normal(size=5_000)
    layout = plots.pairs({"a": a, "b": 2 * a + 1}, max_points=1_000)
    _, empty, points, hist_b = _elements(layout)
    assert isinstance(empty, hv.Empty)
    assert [d.name for d in points.kdims] == ["a", "b"]
    x, y = points.dimension_values(0), points.dimension_values(1)
    assert len(x) == 1_000
    np.testing.assert_allclose(y, 2 * x + 1)
    # The histograms use every draw, not just the thinned scatter.
    assert (hist_b.edges[0], hist_b.edges[-1]) == ((2 * a + 1).min(), (2 * a + 1).max())


# ---------------------------------------------------------------------------------------
# Predictive bands.


def test_predictive_bands_are_central_quantiles():
    rng = np.random.default_rng(7)
    n = 4_000
    x = rng.permutation(np.linspace(0.0, 3.0, 8))
    draws = x + rng.normal(size=(n, 8))
    observed = x**2
    overlay = plots.predictive_bands(x, draws, observed=observed, levels=(0.5, 0.9))
    band90, band50, median, scatter = _elements(overlay)
    xs = np.sort(x)
    np.testing.assert_array_equal(band90.dimension_values(0), xs)

    def quantile_se(p):  # standard error of an empirical p-quantile of N(0, 1)
        return np.sqrt(p * (1 - p) / n) / stats.norm.pdf(stats.norm.ppf(p))

    for band, level in [(band90, 0.9), (band50, 0.5)]:
        q = (1 + level) / 2
        low, high = band.dimension_values(1), band.dimension_values(2)
        assert np.abs(low - (xs - stats.norm.ppf(q))).max() < 5 * quantile_se(q)
        assert np.abs(high - (xs + stats.norm.ppf(q))).max() < 5 * quantile_se(q)
    assert np.abs(median.dimension_values(1) - xs).max() < 5 * quantile_se(0.5)
    np.testing.assert_array_equal(scatter.dimension_values(1)[np.argsort(x)], xs**2)


@pytest.mark.parametrize(
    ("x", "draws", "kwargs"),
    [
        (np.arange(3.0), np.zeros((10, 4)), {}),
        (np.arange(3.0), np.zeros(3), {}),
        (np.arange(3.0), np.zeros((10, 3)), {"levels": (0.5, 1.0)}),
        (np.arange(3.0), np.zeros((10, 3)), {"levels": ()}),
        (np.arange(3.0), np.zeros((10, 3)), {"observed": np.zeros(4)}),
        (np.arange(3.0), np.zeros((10, 3)), {"observed": (np.zeros(2), np.zeros(3))}),
        (np.arange(3.0), np.full((10, 3), np.nan), {}),
    ],
)
def test_predictive_bands_refuse_bad_input(x, draws, kwargs):
    with pytest.raises(ValueError):
        plots.predictive_bands(x, draws, **kwargs)


# ---------------------------------------------------------------------------------------
# Saving, and the optional extra.


def test_save_refuses_other_formats(tmp_path):
    with pytest.raises(ValueError, match=r"\.html or \.png"):
        plots.save(hv.Curve([1, 2]), tmp_path / "plot.svg")
    assert not list(tmp_path.iterdir())


def test_a_plot_without_holoviews_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "holoviews", None)  # makes `import holoviews` fail
    with pytest.raises(ImportError, match=re.escape('pip install "nfvi[plots]"')):
        plots.loss([1.0, 2.0, 3.0])
    with pytest.raises(ImportError, match=re.escape('pip install "nfvi[plots]"')):
        plots.save(object(), "plot.png")


def test_importing_vi_needs_no_holoviews():
    script = (
        "import sys; sys.modules['holoviews'] = None\n"
        "import vi, vi.plots\n"
        "assert callable(vi.plots.loss)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
