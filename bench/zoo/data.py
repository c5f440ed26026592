"""The zoo's data sets: literal (eight schools) or simulated by seeded NumPy generators.

Every function is deterministic (its own ``np.random.default_rng(seed)``) and cached,
so a model's data, and so its posterior, is the same in every process. The arrays are
float32 (int32 for indices and counts), NumPyro's default precision.
"""

from __future__ import annotations

from functools import cache

import numpy as np

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], np.float32)
"""Estimated coaching effects of the eight schools (Rubin 1981; BDA3 section 5.5)."""
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], np.float32)
"""Their standard errors."""


@cache
def grouped_regression(n_groups: int = 80, seed: int = 1) -> dict[str, np.ndarray]:
    """Radon-like grouped data: group sizes 2 + Poisson(8), one predictor x ~ N(0, 1),
    y = alpha_group + beta x + N(0, sigma_y) with alpha ~ N(1.5, 0.4), beta = -0.7,
    sigma_y = 0.75."""
    rng = np.random.default_rng(seed)
    sizes = 2 + rng.poisson(8.0, n_groups)
    group = np.repeat(np.arange(n_groups), sizes)
    alpha = rng.normal(1.5, 0.4, n_groups)
    x = rng.normal(0.0, 1.0, len(group))
    y = alpha[group] - 0.7 * x + rng.normal(0.0, 0.75, len(group))
    return {"group": group.astype(np.int32), "x": x.astype(np.float32),
            "y": y.astype(np.float32)}


@cache
def logistic(n_rows: int = 1000, n_predictors: int = 25, seed: int = 2
             ) -> dict[str, np.ndarray]:
    """Correlated predictors (AR(1) correlation 0.5 between neighbours), coefficients
    ~ N(0, 0.5), intercept -0.5, y ~ Bernoulli(sigmoid(X beta - 0.5))."""
    rng = np.random.default_rng(seed)
    lags = np.abs(np.subtract.outer(np.arange(n_predictors), np.arange(n_predictors)))
    chol = np.linalg.cholesky(0.5**lags)
    x = rng.normal(size=(n_rows, n_predictors)) @ chol.T
    beta = rng.normal(0.0, 0.5, n_predictors)
    y = rng.random(n_rows) < 1.0 / (1.0 + np.exp(-(x @ beta - 0.5)))
    return {"x": x.astype(np.float32), "y": y.astype(np.int32)}


@cache
def sparse_logistic(n_rows: int = 150, n_predictors: int = 30, seed: int = 3
                    ) -> dict[str, np.ndarray]:
    """Independent N(0, 1) predictors, three non-zero coefficients (2.5, -2, 1.5) and
    the rest exactly zero, intercept 0, y ~ Bernoulli(sigmoid(X beta))."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, n_predictors))
    beta = np.zeros(n_predictors)
    beta[:3] = 2.5, -2.0, 1.5
    y = rng.random(n_rows) < 1.0 / (1.0 + np.exp(-(x @ beta)))
    return {"x": x.astype(np.float32), "y": y.astype(np.int32)}


@cache
def stochastic_volatility(n_steps: int = 200, seed: int = 4) -> dict[str, np.ndarray]:
    """Returns y_t ~ N(0, exp(h_t / 2)) with a stationary log-volatility AR(1) path
    h_t = mu + phi (h_{t-1} - mu) + N(0, sigma), mu = -1, phi = 0.9, sigma = 0.3."""
    rng = np.random.default_rng(seed)
    mu, phi, sigma = -1.0, 0.9, 0.3
    h = np.empty(n_steps)
    h[0] = mu + rng.normal(0.0, sigma / np.sqrt(1.0 - phi**2))
    for t in range(1, n_steps):
        h[t] = mu + phi * (h[t - 1] - mu) + rng.normal(0.0, sigma)
    y = rng.normal(0.0, np.exp(h / 2.0))
    return {"y": y.astype(np.float32)}


@cache
def brownian_motion(n_steps: int = 30, seed: int = 5) -> dict[str, np.ndarray]:
    """A Gaussian random walk x_t = x_{t-1} + N(0, 0.1) from x_{-1} = 0, observed with
    N(0, 0.15) noise at every step except the middle ten (10..19), as in Inference Gym's
    ``BrownianMotionUnknownScalesMissingMiddleObservations``."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(0.0, 0.1, n_steps))
    observed = np.concatenate([np.arange(10), np.arange(20, n_steps)])
    y = x[observed] + rng.normal(0.0, 0.15, len(observed))
    return {"observed": observed.astype(np.int32), "y": y.astype(np.float32)}


@cache
def item_response(n_students: int = 100, n_items: int = 20, seed: int = 6
                  ) -> dict[str, np.ndarray]:
    """Every student answers every item: ability theta ~ N(0, 1), discrimination
    a ~ LogNormal(0, 0.5), difficulty b ~ N(0, 1),
    y ~ Bernoulli(sigmoid(a_item (theta_student - b_item)))."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.0, n_students)
    a = rng.lognormal(0.0, 0.5, n_items)
    b = rng.normal(0.0, 1.0, n_items)
    student, item = (g.ravel() for g in np.meshgrid(np.arange(n_students),
                                                     np.arange(n_items), indexing="ij"))
    logits = a[item] * (theta[student] - b[item])
    y = rng.random(len(student)) < 1.0 / (1.0 + np.exp(-logits))
    return {"student": student.astype(np.int32), "item": item.astype(np.int32),
            "y": y.astype(np.int32)}


def squared_exponential_cholesky(n_cells: int, lengthscale: float) -> np.ndarray:
    """Cholesky factor of the unit-amplitude squared-exponential kernel
    k(i, j) = exp(-(i - j)^2 / (2 l^2)) on cells 0..n-1, plus 1e-4 on the diagonal."""
    lags = np.subtract.outer(np.arange(n_cells), np.arange(n_cells))
    return np.linalg.cholesky(np.exp(-0.5 * (lags / lengthscale) ** 2) + 1e-4 * np.eye(n_cells))


@cache
def cox_process(n_cells: int = 80, lengthscale: float = 8.0, seed: int = 7
                ) -> dict[str, np.ndarray]:
    """Counts on a 1-d grid: log-intensity f = 1 + 0.8 L z, z ~ N(0, I), with L the
    squared-exponential Cholesky factor (lengthscale 8 cells), y_i ~ Poisson(exp(f_i))."""
    rng = np.random.default_rng(seed)
    chol = squared_exponential_cholesky(n_cells, lengthscale)
    f = 1.0 + 0.8 * chol @ rng.normal(size=n_cells)
    y = rng.poisson(np.exp(f))
    return {"chol": chol.astype(np.float32), "y": y.astype(np.int32)}
