"""Inference with normalizing flows: NFVI, the fit loop, callbacks, targets, samplers, plots.

>>> from vi import NFVI, Model
>>> approx = NFVI("planar*8", Model.from_logdensity(lambda z: -pot1(z), dim=2)).fit(25_000)
"""

from vi.approximation import Approximation, load
from vi.cache import enable_compilation_cache
from vi.callbacks import CheckParametersConvergence, EarlyStopping, Tracker
from vi.divergences import DivergenceWarning
from vi.flow_adaptation import sample
from vi.model import Model
from vi.neutra import neutra
from vi.nfvi import ADVI, NFVI, FitError, FullRankADVI
from vi.optim import default_optimizer

__all__ = [
    "ADVI",
    "NFVI",
    "Approximation",
    "CheckParametersConvergence",
    "DivergenceWarning",
    "EarlyStopping",
    "FitError",
    "FullRankADVI",
    "Model",
    "Tracker",
    "default_optimizer",
    "enable_compilation_cache",
    "load",
    "neutra",
    "sample",
]
