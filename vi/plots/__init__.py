"""Plots of fits, traces, densities and draws, built on holoviews.

Every function takes plain data (arrays, dicts of arrays, ArviZ InferenceData, a
callable log density), so it works with any approximation or MCMC result, and returns
a holoviews object: it displays in a notebook (after ``hv.extension("bokeh")``) and
:func:`save` writes it as interactive ``.html`` (bokeh) or ``.png`` (matplotlib).

holoviews is the optional extra ``nfvi[plots]``; it is imported on the first plot
call, never by ``import vi.plots``.
"""

from vi.plots.backend import save
from vi.plots.density import compare2d, density2d
from vi.plots.history import loss, traces
from vi.plots.predictive import predictive_bands
from vi.plots.samples import marginals, pairs

__all__ = [
    "compare2d",
    "density2d",
    "loss",
    "marginals",
    "pairs",
    "predictive_bands",
    "save",
    "traces",
]
