"""What a fit is worth, and a standalone HTML page that shows it.

:func:`summarize` measures a fitted approximation (a precise ELBO with its
Monte-Carlo standard error, KL(q || p) where log Z is known, the PSIS k-hat of
:meth:`Approximation.diagnose` and its verdict, speed);
:func:`write_report` writes one self-contained HTML file: a summary table, the
target next to the fitted density (2-D targets) or pair plots of draws, and the
loss curve. Bokeh's JavaScript is inlined, so the file opens without a network.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from vi import plots
from vi.approximation import Approximation

# The 2-D energies' mass lies in this window (PyMC3's and the paper's plots use it).
ENERGY_BOUNDS = ((-4.0, 4.0), (-4.0, 4.0))


@dataclass(frozen=True)
class Summary:
    """The figures a fit is judged by.

    Attributes:
        target, formula: what was fitted, and with which flow (or guide).
        steps, n_mc: optimisation steps and Monte-Carlo particles per step.
        wall_s: wall time of the fit, compilation included.
        final_loss: the mean loss (negative ELBO) over the last ``window`` steps.
        elbo, elbo_se: a precise ELBO estimate and its Monte-Carlo standard error.
        log_Z: the target's log normalising constant, ``None`` if unknown.
        khat, usable, verdict: the PSIS grade of the fit (:class:`vi.diagnostics.Diagnosis`).
        n_skipped: steps skipped for a non-finite loss or gradient.
        restarts: initialisations fitted side by side (the best is reported).
    """

    target: str
    formula: str
    steps: int
    n_mc: int
    wall_s: float
    final_loss: float
    elbo: float
    elbo_se: float
    log_Z: float | None
    khat: float
    usable: bool
    verdict: str
    n_skipped: int = 0
    restarts: int = 1

    @property
    def steps_per_s(self) -> float:
        """Steps per second of wall time (compilation included)."""
        return self.steps / self.wall_s if self.wall_s > 0 else math.inf

    @property
    def kl(self) -> float | None:
        """KL(q || p) = log Z - ELBO, when log Z is known."""
        return None if self.log_Z is None else self.log_Z - self.elbo

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs, in the order they are printed and tabulated."""
        rows = [
            ("target", self.target),
            ("formula", self.formula),
            ("steps", f"{self.steps:,}"),
            ("particles per step", f"{self.n_mc:,}"),
            *([("restarts", f"{self.restarts} side by side, the best kept")]
              if self.restarts > 1 else []),
            ("wall time", f"{self.wall_s:.1f} s (compilation included)"),
            ("speed", f"{self.steps_per_s:,.0f} steps/s"),
            ("final loss", f"{self.final_loss:.4f} (mean of the last steps)"),
            ("ELBO", f"{self.elbo:.4f} ± {self.elbo_se:.4f} (Monte-Carlo s.e.)"),
        ]
        if self.kl is not None:
            rows.append(("KL(q || p)", f"{self.kl:.4f} ± {self.elbo_se:.4f}  "
                                       f"(log Z {self.log_Z:.4f} - ELBO)"))
        rows.append(("k-hat", f"{self.khat:.2f} (PSIS Pareto shape of the importance "
                              "weights p/q)"))
        rows.append(("verdict", self.verdict))
        if self.n_skipped:
            rows.append(("skipped steps", f"{self.n_skipped} (non-finite loss or gradient)"))
        return rows


def summarize(approx: Approximation, *, target: str, formula: str, n_mc: int, wall_s: float,
              log_Z: float | None, num_samples: int = 20_000, restarts: int = 1) -> Summary:
    """Measure a fitted approximation (see :class:`Summary`); the ELBO, its standard
    error and the grade come from one :meth:`Approximation.diagnose` of
    ``num_samples`` draws (non-finite terms left out)."""
    hist = np.asarray(approx.hist)
    window = max(1, min(1000, len(hist) // 10))
    grade = approx.diagnose(num_samples, key=1)
    return Summary(target=target, formula=formula, steps=len(hist), n_mc=n_mc, wall_s=wall_s,
                   final_loss=float(np.nanmean(hist[-window:])), elbo=grade.elbo,
                   elbo_se=grade.elbo_se, log_Z=log_Z, khat=grade.khat, usable=grade.usable,
                   verdict=grade.verdict, n_skipped=approx.n_skipped, restarts=restarts)


def _bounds(draws: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """A window holding the bulk of ``draws`` (1st to 99th percentile, widened by 20%)."""
    low, high = np.percentile(draws, [1, 99], axis=0)
    pad = 0.2 * np.maximum(high - low, 1e-3)
    return tuple((float(lo), float(hi)) for lo, hi in zip(low - pad, high + pad, strict=True))


def _batched(log_density: Callable[[Array], Array], dim: int) -> Callable[[Array], Array]:
    """``log_density`` of one point of shape (dim,) applied over any leading axes, compiled
    (a flow's numerical inverse would otherwise dispatch op by op over the whole grid)."""
    one_batch = jax.jit(jax.vmap(log_density))

    def batched(x: Array) -> Array:
        x = jnp.asarray(x)
        return one_batch(x.reshape(-1, dim)).reshape(x.shape[:-1])
    return batched


def figures(approx: Approximation, log_density: Callable[[Array], Array] | None,
            *, energy: bool = False, num_draws: int = 2_000) -> list[Any]:
    """The report's holoviews panels: target vs fit (2-D) or pairs of draws, then the loss.

    ``log_density`` is the target's, for one point of shape (dim,); ``energy`` picks
    the fixed window of the 2-D energies.
    """
    draws = approx.sample(num_draws, key=0)
    panels = []
    dim = approx.model.dim if approx.model is not None else None
    if dim == 2 and log_density is not None:
        points = np.asarray(draws)
        fitted = None
        if approx.flow is not None and approx.flow.has_inverse:
            fitted = _batched(approx.log_prob, 2)
        bounds = ENERGY_BOUNDS if energy else _bounds(points)
        panels.append(plots.compare2d(_batched(log_density, 2), fitted, points[:500],
                                      bounds=bounds, grid=120))
    else:
        draws = draws if isinstance(draws, dict) else {"x": draws}
        names = plots.inputs.columns(draws)
        panels.append(plots.pairs(draws, vars=list(names)[:5]))
    panels.append(plots.loss(approx.hist))
    return panels


def _table(summary: Summary) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in summary.rows())
    # the verdict stands out above the table: green when usable, red when not
    colour = ("#e6f4ea;border-left:6px solid #1e8e3e" if summary.usable
              else "#fce8e6;border-left:6px solid #d93025")
    return (f"<h1>nfvi: {html.escape(summary.target)} with "
            f"<code>{html.escape(summary.formula)}</code></h1>"
            f"<p class='verdict' style='background:{colour};padding:8px 12px;"
            f"font-family:sans-serif;max-width:60em'>{html.escape(summary.verdict)}</p>"
            f"<table class='summary' style='border-collapse:collapse;font-family:sans-serif'>"
            f"{rows}</table>")


def _inline_resources() -> Any:
    """Bokeh's INLINE resources without other libraries' external script files.

    Bokeh lists the ``__javascript__`` files of *every* imported model class, so once
    holoviews has imported panel, a page links panel's ``static/extensions/...``
    scripts by a relative path, which a standalone file cannot load (a console
    error in the browser) and which the report's plain bokeh models do not need.
    Extension code the page's own models use is still inlined by bokeh's bundler.
    """
    from bokeh.resources import Resources

    class OwnModelsInline(Resources):
        def _collect_external_resources(self, resource_attr: str) -> list[str]:
            return []

        def clone(self, *, components: list[str] | None = None) -> Resources:
            twin = super().clone(components=components)
            twin.__class__ = OwnModelsInline  # bokeh's clone would drop the override
            return twin

    return OwnModelsInline(mode="inline")


def write_report(path: str | Path, summary: Summary, panels: list[Any]) -> Path:
    """Write the summary table and ``panels`` as one standalone HTML file.

    The holoviews panels are rendered to bokeh models and the page is written with
    bokeh's JavaScript inlined (:func:`_inline_resources`), so it needs no network.
    """
    hv = plots.backend.require_holoviews()
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Div

    rendered = [hv.render(panel, backend="bokeh") for panel in panels]
    page = column(Div(text=_table(summary)), *rendered)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(file_html(page, _inline_resources(), title=f"nfvi report: {summary.target}"),
                    encoding="utf-8")
    return path
