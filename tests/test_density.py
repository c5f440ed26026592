"""flows.fit_to_samples: maximum-likelihood density fitting from samples."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import integrate, stats

import flows


def _tutorial_target(rng: np.random.Generator, n: int) -> np.ndarray:
    """normflows' tutorial: a ~ U(1, 2), b | a ~ N(mean a, variance a)."""
    a = rng.uniform(1.0, 2.0, n)
    return np.stack([a, rng.normal(a, np.sqrt(a))], axis=1)


def _tutorial_log_p(x: np.ndarray) -> np.ndarray:
    a, b = x[:, 0], x[:, 1]
    return np.where((a > 1) & (a < 2), stats.norm.logpdf(b, a, np.sqrt(a)), -np.inf)


@pytest.mark.slow
def test_spline_flow_reaches_the_true_held_out_log_likelihood():
    # E[log p] = int_1^2 E_{b|a}[log N(b; a, a)] da = int_1^2 (-log(2 pi a)/2 - 1/2) da.
    true, _ = integrate.quad(lambda a: -0.5 * np.log(2 * np.pi * a) - 0.5, 1.0, 2.0)
    rng = np.random.default_rng(0)
    fit = flows.fit_to_samples("(rqs(hidden=32)-reverse)*2", _tutorial_target(rng, 10_000),
                               max_epochs=40, learning_rate=5e-3, batch_size=256, seed=0)
    held_out = _tutorial_target(rng, 20_000)
    log_q = np.asarray(fit.log_prob(held_out))
    log_p = _tutorial_log_p(held_out)
    n = len(held_out)
    # the reference itself: the sample mean of log p agrees with the quadrature
    assert abs(log_p.mean() - true) < 5 * log_p.std() / np.sqrt(n)
    # the fitted flow's held-out log-likelihood is within 0.05 nats of the truth
    assert abs(log_q.mean() - true) < 0.05
    # and KL(p || q) = E[log p - log q] >= 0 up to Monte-Carlo error (a flow that
    # forgot the standardisation's Jacobian, or is not normalised, breaks this)
    gap = log_p - log_q
    assert gap.mean() > -4 * gap.std() / np.sqrt(n)


def _gaussian_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = np.array([100.0, -5.0])
    cov = np.array([[2500.0, 30.0], [30.0, 1.0]])
    x = np.random.default_rng(seed).multivariate_normal(mean, cov, n)
    return x, mean, cov


def test_affine_fit_to_a_wide_gaussian_is_on_the_data_scale():
    x, mean, cov = _gaussian_data(4000, 1)
    fit = flows.fit_to_samples("affine", x, max_epochs=30, learning_rate=1e-2, seed=1)
    held_out, _, _ = _gaussian_data(20_000, 2)
    gap = stats.multivariate_normal(mean, cov).logpdf(held_out) - np.asarray(
        fit.log_prob(held_out))
    se = gap.std() / np.sqrt(len(gap))
    # KL(p || q) of a 5-parameter MLE from 3,600 rows is ~ 5 / 7,200: near 0, never below
    assert -4 * se < gap.mean() < 0.01 + 4 * se
    draws = np.asarray(fit.sample(jax.random.key(0), 20_000))
    assert draws.shape == (20_000, 2)
    # the fitted mean is the training mean (3,600 rows); add the draws' own error
    se_mean = np.sqrt(np.diag(cov) * (1 / 3600 + 1 / len(draws)))
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * se_mean)


def test_early_stopping_keeps_the_best_validation_epoch():
    x, _, _ = _gaussian_data(1000, 3)
    fit = flows.fit_to_samples("scale-loc", x, max_epochs=300, patience=3, batch_size=100,
                               learning_rate=0.05, seed=2)
    validation = fit.history["validation"]
    assert len(validation) == len(fit.history["train"])
    assert fit.best_epoch == int(np.argmin(validation))
    # it stops exactly `patience` epochs after the best one, or at max_epochs
    assert len(validation) in (fit.best_epoch + 3 + 1, 300)


@pytest.mark.parametrize(("kwargs", "error", "fragment"), [
    ({"formula": "rqs(bins=1)"}, flows.FormulaError, "at least 2"),
    ({"formula": "coupling", "x": np.zeros((50, 1))}, ValueError, "'coupling' needs dimension"),
    ({"x": np.zeros(50)}, ValueError, "shape \\(n, dim\\)"),
    ({"x": np.full((50, 2), np.nan)}, ValueError, "NaN"),
    ({"validation": 1.0}, ValueError, "validation"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"patience": 2.5}, ValueError, "patience"),
])
def test_bad_input_is_refused_before_fitting(kwargs, error, fragment):
    args = {"formula": "affine", "x": np.ones((50, 2))} | kwargs
    with pytest.raises(error, match=fragment):
        flows.fit_to_samples(args.pop("formula"), args.pop("x"), **args)
