"""A zoo of real-shaped NumPyro posteriors with reference draws.

``MODELS[name].bind()`` gives ``(model_fn, args, kwargs)``; ``load_reference(name)``
the reference that ``bench/zoo/make_reference.py`` wrote for it: per latent site (in the
constrained space) the posterior mean, standard deviation and about 1,000 thinned
draws, with the R-hat maximum and bulk-ESS minimum of the NUTS runs behind them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .models import MODELS, Exact, Nuts, ZooModel

__all__ = ["MODELS", "REFERENCES", "Exact", "Nuts", "ZooModel", "load_reference",
           "reference_path"]

REFERENCES = Path(__file__).parent / "references"
"""Where the reference files live, one ``NAME.npz`` a model."""

SEP = "__"
"""Separates the field and the site in a reference file's keys (``mean__theta``)."""


def reference_path(name: str) -> Path:
    """The reference file of model ``name``."""
    return REFERENCES / f"{name}.npz"


def load_reference(name: str) -> dict[str, Any]:
    """The reference posterior of model ``name``.

    Returns a dict with ``mean``, ``sd`` and ``draws`` (each a dict site -> array, in
    the model's constrained space; draws have a leading axis of about 1,000), ``sites``
    (the latent site names in model order), ``source`` (``"nuts"`` or ``"exact"``), and
    for NUTS references ``rhat_max``, ``ess_bulk_min``, ``num_chains``,
    ``num_samples`` (kept draws per chain) and ``divergences`` (NaN for exact ones).
    """
    if name not in MODELS:
        raise KeyError(f"{name!r} is not a zoo model; available: {sorted(MODELS)}")
    path = reference_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python bench/zoo/make_reference.py "
                                f"--only {name}")
    with np.load(path) as f:
        sites = [str(s) for s in f["sites"]]
        ref: dict[str, Any] = {field: {s: f[f"{field}{SEP}{s}"] for s in sites}
                               for field in ("mean", "sd", "draws")}
        ref["sites"] = sites
        ref["source"] = str(f["source"])
        for key in ("rhat_max", "ess_bulk_min", "num_chains", "num_samples", "divergences"):
            ref[key] = f[key].item()
    return ref
