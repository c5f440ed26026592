"""vi.divergences: the warning ``vi.sample`` and ``vi.neutra`` give when draws diverged."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from vi import NFVI, DivergenceWarning, Model, neutra, sample
from vi.divergences import warn_divergences


def neck_funnel() -> None:
    """Neal's funnel, v ~ N(0, 3^2): plain NUTS diverges in its neck within a few draws."""
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([4]).to_event(1))


def divergence_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, DivergenceWarning)]


def test_no_warning_without_divergences():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_divergences(np.zeros((2, 50), bool), "never shown") == 0


def test_the_warning_counts_the_divergent_draws_per_chain():
    diverging = np.zeros((3, 40), bool)
    diverging[0, [3, 9]] = True
    diverging[2, 17] = True
    with pytest.warns(DivergenceWarning) as caught:
        assert warn_divergences(diverging, "Do this.", stacklevel=2) == 3
    (message,) = [str(w.message) for w in caught]
    assert message.startswith("3 of the 120 draws came from divergent transitions")
    assert "(per chain: 2 / 0 / 1)" in message
    assert message.endswith("Do this.")
    assert caught[0].filename == __file__  # attributed to the caller


def check_warned(caught: list[warnings.WarningMessage], diverging: np.ndarray) -> None:
    """One DivergenceWarning, attributed to this file, with the run's own counts."""
    n = int(diverging.sum())
    assert n > 0  # the run must diverge for the check to mean anything
    (warning,) = divergence_warnings(caught)
    assert f"{n} of the {diverging.size} draws" in str(warning.message)
    per_chain = " / ".join(str(int(k)) for k in diverging.sum(axis=1))
    assert f"(per chain: {per_chain})" in str(warning.message)
    assert warning.filename == __file__


def test_plain_nuts_in_a_funnels_neck_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = sample(Model(neck_funnel), num_warmup=50, num_samples=300, adapt="diag",
                       seed=0)
    diverging = idata.sample_stats["diverging"].values
    assert idata.attrs["divergences"] == int(diverging.sum())
    check_warned(caught, diverging)
    assert "adapt='flow'" in str(divergence_warnings(caught)[0].message)  # diag's remedies


def test_neutra_through_a_barely_fitted_diagonal_warns():
    approx = NFVI("scale-loc", Model(neck_funnel), seed=0).fit(1, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = neutra(approx, num_warmup=50, num_samples=300, seed=0)
    check_warned(caught, idata.sample_stats["diverging"].values)
