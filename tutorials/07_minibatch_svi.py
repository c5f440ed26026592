# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Minibatch SVI on a million rows
#
# Every step of a full-batch fit evaluates the likelihood of every row. With
# `numpyro.plate("data", N, subsample_size=B)` a step uses B rows instead, and scales
# their log-likelihood by N / B, so that the ELBO estimate stays unbiased:
#
# E[(N / B) Σ_{j=1..B} log p(y_{i_j} | x_{i_j}, θ)] = Σ_{i=1..N} log p(y_i | x_i, θ)
#
# for row indices i_j drawn uniformly. The cost of a step then depends on B, not on N.
# This notebook fits a Bayesian logistic regression to N = 1,000,000 rows with
# B = 1,024 rows a step, checks the answer against the truth and against the exact
# large-sample posterior, and times a step at two sizes of N.

# %% tags=["remove-output"]
import time

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from vi import NFVI, Model

# %% [markdown]
# ## The data
#
# Five standard-normal predictors, an intercept of -0.5 and coefficients
# (1, -2, 0.5, 0, 1.5); y_i ~ Bernoulli(sigmoid(alpha + x_i · beta)).

# %%
N, P = 1_000_000, 5
rng = np.random.default_rng(0)
X = rng.normal(size=(N, P)).astype(np.float32)
alpha_true = -0.5
beta_true = np.array([1.0, -2.0, 0.5, 0.0, 1.5], np.float32)
y = (rng.random(N) < 1 / (1 + np.exp(-(alpha_true + X @ beta_true)))).astype(np.int32)
print(f"{N:,} rows, {P} predictors, {y.mean():.1%} ones, {X.nbytes / 2**20:.0f} MiB")

# %% [markdown]
# ## The model
#
# The plate hands the model B = 1,024 row indices at each step, and the model indexes
# its data with them. The data are JAX arrays (`jnp.asarray`), which the compiled
# step can index with its traced minibatch indices (a NumPy array cannot be).

# %%
def logistic(X, y):
    n, p = X.shape
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 5.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 5.0).expand([p]).to_event(1))
    with numpyro.plate("data", n, subsample_size=1024) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=alpha + X[idx] @ beta), obs=y[idx])


X_jax, y_jax = jnp.asarray(X), jnp.asarray(y)

# %% [markdown]
# ## The fit
#
# Mean-field ADVI, `scale-loc`: with independent predictors the posterior is close to
# a product of independent normals. 20,000 steps of 1,024 rows see each row about 20
# times.

# %%
start = time.perf_counter()
approx = NFVI("scale-loc", Model(logistic, X_jax, y_jax), seed=0).fit(20_000, progress=False)
print(f"20,000 steps in {time.perf_counter() - start:.1f} s, compilation included")
draws = approx.sample(4000, key=1)

# %% [markdown]
# ## Against the truth and the exact posterior
#
# With a million rows and flat priors the posterior is, to a very good approximation,
# the normal centred at the maximum-likelihood estimate with the inverse Fisher
# information as covariance (the Laplace approximation), which a few Newton steps on
# the full data give exactly. q should match its means and standard deviations; both
# should sit within a few posterior sds of the true coefficients.

# %%
Z = np.hstack([np.ones((N, 1)), X]).astype(np.float64)
w = np.zeros(P + 1)
for _ in range(8):  # Newton's method for the logistic log-likelihood
    p = 1 / (1 + np.exp(-Z @ w))
    hessian = (Z * (p * (1 - p))[:, None]).T @ Z
    w += np.linalg.solve(hessian, Z.T @ (y - p))
laplace_sd = np.sqrt(np.diag(np.linalg.inv(hessian)))

q = np.column_stack([np.asarray(draws["alpha"]), np.asarray(draws["beta"])])
names = ["alpha"] + [f"beta[{j}]" for j in range(P)]
truth = np.concatenate([[alpha_true], beta_true])
print(f"{'':8}{'truth':>8}{'exact mean':>12}{'q mean':>10}{'exact sd':>10}{'q sd':>9}")
for j, name in enumerate(names):
    print(f"{name:8}{truth[j]:8.3f}{w[j]:12.4f}{q[:, j].mean():10.4f}"
          f"{laplace_sd[j]:10.4f}{q[:, j].std():9.4f}")

# %% [markdown]
# ## The cost of a step does not grow with N
#
# The same model on the first 100,000 rows and on all 1,000,000: after a first fit
# (which compiles), each size runs `fit(2000)` three times and keeps the fastest.
# A step draws its B indices independently, a `randint` of size B, and gathers B
# rows, so its time is set by B.

# %%
for n in [100_000, 1_000_000]:
    inference = NFVI("scale-loc", Model(logistic, X_jax[:n], y_jax[:n]), seed=0)
    inference.fit(1000, progress=False)  # compiles
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        inference.fit(2000, progress=False)
        seconds.append(time.perf_counter() - start)
    print(f"N = {n:>9,}: {1e6 * min(seconds) / 2000:5.0f} µs a step")

# %% [markdown]
# Ten times the data, about the same time a step. Minibatching changes the gradient noise,
# not the fixed point: the scaled estimate is unbiased, so the fit converges to the
# same answer as a full-batch fit, just noisier per step; a larger B or more steps
# reduce that noise.
