"""The zoo's NumPyro models, bound to their data, and how each one's reference is made.

Each :class:`ZooModel` has a name, the model function, a data function returning the
``(args, kwargs)`` it is called with, and a reference recipe: :class:`Nuts` (long NUTS
runs by ``make_reference.py``, optionally on a reparametrised model of the same
posterior) or :class:`Exact` (draws and moments known by construction). ``MODELS`` maps
names to models; ``MODELS[name].bind()`` gives ``(model_fn, args, kwargs)``.

Positive scales whose posterior has a Cauchy-like tail (the horseshoe's) are sampled on
the log scale, so that every latent coordinate has a finite posterior variance and the
benchmark's standardised error is defined; a guide sees the same unconstrained space
either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array
from numpyro import handlers
from numpyro.distributions import constraints

from . import data


def log_of(base: dist.Distribution) -> dist.Distribution:
    """The distribution of log X for a positive X ~ ``base``."""
    return dist.TransformedDistribution(base, dist.transforms.ExpTransform().inv)


# --- models --------------------------------------------------------------------------


def eight_schools_centered(sigma: Array, y: Array | None = None) -> None:
    """Eight schools, centred: mu ~ N(0, 5), tau ~ HalfCauchy(5), theta_j ~ N(mu, tau),
    y_j ~ N(theta_j, sigma_j). d = 10 (mu, tau, theta). Data: the literal coaching
    effects and standard errors (Rubin 1981; BDA3 section 5.5)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(sigma: Array, y: Array | None = None) -> None:
    """Eight schools, non-centred: as :func:`eight_schools_centered` with
    theta_j = mu + tau theta_tilde_j, theta_tilde_j ~ N(0, 1) (theta deterministic).
    d = 10 (mu, tau, theta_tilde). Data: the literal eight schools."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def varying_intercept(group: Array, x: Array, n_groups: int, y: Array | None = None) -> None:
    """Varying-intercept regression (centred): alpha_j ~ N(mu_alpha, sigma_alpha) for
    80 groups, y_i ~ N(alpha_group(i) + beta x_i, sigma_y), mu_alpha, beta ~ N(0, 5),
    sigma_alpha, sigma_y ~ HalfNormal(2). d = 84. Data: :func:`data.grouped_regression`
    (817 rows, group sizes 2-17, seeded simulation)."""
    mu_alpha = numpyro.sample("mu_alpha", dist.Normal(0.0, 5.0))
    sigma_alpha = numpyro.sample("sigma_alpha", dist.HalfNormal(2.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 5.0))
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(2.0))
    with numpyro.plate("groups", n_groups):
        alpha = numpyro.sample("alpha", dist.Normal(mu_alpha, sigma_alpha))
    with numpyro.plate("rows", len(x)):
        numpyro.sample("y", dist.Normal(alpha[group] + beta * x, sigma_y), obs=y)


def logistic_regression(x: Array, y: Array | None = None) -> None:
    """Logistic regression: intercept ~ N(0, 5), 25 coefficients ~ N(0, 2.5),
    y ~ Bernoulli(sigmoid(intercept + X beta)). d = 26. Data: :func:`data.logistic`
    (1,000 rows, correlated predictors, seeded simulation)."""
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 5.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 2.5).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("rows", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=intercept + x @ beta), obs=y)


def horseshoe_logistic(x: Array, y: Array | None = None, expected_nonzero: float = 3.0,
                       slab_scale: float = 2.0, slab_df: float = 4.0) -> None:
    """Sparse logistic regression with the regularised horseshoe (Piironen & Vehtari
    2017), non-centred: beta_j = z_j tau lambda~_j, z_j ~ N(0, 1),
    lambda~_j^2 = c^2 lambda_j^2 / (c^2 + tau^2 lambda_j^2), lambda_j ~ HalfCauchy(1),
    tau ~ HalfCauchy(tau0) with tau0 = p0 / (p - p0) * 2 / sqrt(n),
    c^2 ~ InverseGamma(nu / 2, nu s^2 / 2); tau, c^2 and lambda sampled on the log scale
    (their posteriors have Cauchy tails). d = 63 (intercept, log_tau, log_c2, 30
    log_lambda, 30 z). Data: :func:`data.sparse_logistic` (150 rows, 30 predictors,
    3 non-zero, seeded simulation)."""
    n, p = x.shape
    tau0 = expected_nonzero / (p - expected_nonzero) * 2.0 / math.sqrt(n)
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 5.0))
    log_tau = numpyro.sample("log_tau", log_of(dist.HalfCauchy(tau0)))
    log_c2 = numpyro.sample(
        "log_c2", log_of(dist.InverseGamma(slab_df / 2, slab_df * slab_scale**2 / 2)))
    with numpyro.plate("predictors", p):
        log_lambda = numpyro.sample("log_lambda", log_of(dist.HalfCauchy(1.0)))
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    # log lambda~^2 = log c^2 + 2 log lambda - log(c^2 + tau^2 lambda^2), in log space
    log_lambda_tilde_sq = log_c2 + 2 * log_lambda - jnp.logaddexp(
        log_c2, 2 * (log_tau + log_lambda))
    beta = numpyro.deterministic("beta", z * jnp.exp(log_tau + log_lambda_tilde_sq / 2))
    with numpyro.plate("rows", n):
        numpyro.sample("y", dist.Bernoulli(logits=intercept + x @ beta), obs=y)


def ar1_path(phi: Array, sigma: Array, eps: Array) -> Array:
    """The zero-mean stationary AR(1) path h_0 = sigma / sqrt(1 - phi^2) eps_0,
    h_t = phi h_{t-1} + sigma eps_t, by an associative scan of the affine maps
    h -> phi h + sigma eps_t (depth log T, no sequential loop)."""
    shocks = sigma * eps.at[0].divide(jnp.sqrt(1.0 - phi**2))

    def compose(first: tuple[Array, Array], then: tuple[Array, Array]) -> tuple[Array, Array]:
        return first[0] * then[0], then[0] * first[1] + then[1]

    return jax.lax.associative_scan(compose, (jnp.full_like(eps, phi), shocks))[1]


def stochastic_volatility(y: Array) -> None:
    """Stochastic volatility (Kim, Shephard & Chib 1998), non-centred:
    y_t ~ N(0, exp(h_t / 2)), h = mu + AR(1)(phi, sigma) driven by eps ~ N(0, I_200),
    mu ~ N(0, 5), (phi + 1) / 2 ~ Beta(20, 1.5), sigma ~ HalfNormal(1); h is
    deterministic. d = 203 (mu, phi, sigma, 200 eps). Data:
    :func:`data.stochastic_volatility` (200 returns, seeded simulation)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    phi = numpyro.sample("phi", dist.TransformedDistribution(
        dist.Beta(20.0, 1.5),
        dist.transforms.AffineTransform(-1.0, 2.0, domain=constraints.unit_interval)))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("time", len(y)):
        eps = numpyro.sample("eps", dist.Normal(0.0, 1.0))
        h = numpyro.deterministic("h", mu + ar1_path(phi, sigma, eps))
        numpyro.sample("y", dist.Normal(0.0, jnp.exp(h / 2)), obs=y)


def brownian_motion(observed: Array, n_steps: int, y: Array | None = None) -> None:
    """Brownian motion with unknown scales and missing middle observations (Inference
    Gym's ``BrownianMotionUnknownScalesMissingMiddleObservations``), centred:
    x = GaussianRandomWalk(innovation_scale) of 30 steps, y_t ~ N(x_t, observation_scale)
    at 20 of them, both scales ~ LogNormal(0, 2). d = 32. Data:
    :func:`data.brownian_motion` (seeded simulation)."""
    innovation = numpyro.sample("innovation_scale", dist.LogNormal(0.0, 2.0))
    observation = numpyro.sample("observation_scale", dist.LogNormal(0.0, 2.0))
    x = numpyro.sample("x", dist.GaussianRandomWalk(innovation, num_steps=n_steps))
    with numpyro.plate("observations", len(observed)):
        numpyro.sample("y", dist.Normal(x[observed], observation), obs=y)


def item_response_2pl(student: Array, item: Array, n_students: int, n_items: int,
                      y: Array | None = None) -> None:
    """Two-parameter logistic item-response model: ability theta_s ~ N(0, 1),
    discrimination a_i ~ LogNormal(0, 0.5), difficulty b_i ~ N(mu_b, sigma_b),
    mu_b ~ N(0, 5), sigma_b ~ HalfNormal(2), y ~ Bernoulli(sigmoid(a (theta - b))).
    d = 142 (100 students, 20 items). Data: :func:`data.item_response` (2,000
    responses, seeded simulation)."""
    mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 5.0))
    sigma_b = numpyro.sample("sigma_b", dist.HalfNormal(2.0))
    with numpyro.plate("students", n_students):
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
    with numpyro.plate("items", n_items):
        a = numpyro.sample("a", dist.LogNormal(0.0, 0.5))
        b = numpyro.sample("b", dist.Normal(mu_b, sigma_b))
    with numpyro.plate("responses", len(student)):
        numpyro.sample("y", dist.Bernoulli(logits=a[item] * (theta[student] - b[item])),
                       obs=y)


def cox_process(chol: Array, y: Array | None = None) -> None:
    """Log-Gaussian Cox process on a 1-d grid of 80 cells, centred: log-intensity
    f ~ N(mu 1, sigma^2 K) with K the squared-exponential kernel (lengthscale 8 cells,
    its Cholesky factor given), mu ~ N(0, 2), sigma ~ HalfNormal(1), y_i ~ Poisson(exp f_i).
    d = 82. Data: :func:`data.cox_process` (seeded simulation)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    f = numpyro.sample("f", dist.MultivariateNormal(mu * jnp.ones(chol.shape[0]),
                                                    scale_tril=sigma * chol))
    with numpyro.plate("cells", chol.shape[0]):
        numpyro.sample("y", dist.Poisson(jnp.exp(f)), obs=y)


def cox_process_noncentered(chol: Array, y: Array | None = None) -> None:
    """:func:`cox_process` with f = mu + sigma L z, z ~ N(0, I) (f deterministic): the
    same posterior, which NUTS mixes far better (its reference)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([chol.shape[0]]).to_event(1))
    f = numpyro.deterministic("f", mu + sigma * chol @ z)
    with numpyro.plate("cells", chol.shape[0]):
        numpyro.sample("y", dist.Poisson(jnp.exp(f)), obs=y)


MIXTURE_WEIGHTS = np.array([0.45, 0.55])
MIXTURE_LOCS = np.array([[-2.0, -1.0], [2.0, 1.0]])
MIXTURE_COVS = np.array([[[0.6, 0.3], [0.3, 0.6]], [[0.5, -0.2], [-0.2, 0.8]]])


def two_modes() -> None:
    """A bimodal 2-d target: z ~ 0.45 N((-2, -1), S1) + 0.55 N((2, 1), S2) with
    S1 = [[0.6, 0.3], [0.3, 0.6]], S2 = [[0.5, -0.2], [-0.2, 0.8]]: two modes about six
    standard deviations apart. d = 2. No data (the target is the model's prior)."""
    mixing = dist.Categorical(probs=jnp.asarray(MIXTURE_WEIGHTS, jnp.float32))
    components = dist.MultivariateNormal(jnp.asarray(MIXTURE_LOCS, jnp.float32),
                                         covariance_matrix=jnp.asarray(MIXTURE_COVS,
                                                                       jnp.float32))
    numpyro.sample("z", dist.MixtureSameFamily(mixing, components))


def funnel(dim: int = 10) -> None:
    """Neal's funnel (Neal 2003): v ~ N(0, 3), x_i ~ N(0, exp(v / 2)), i = 1..dim - 1.
    d = 10. No data."""
    v = numpyro.sample("v", dist.Normal(0.0, 3.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([dim - 1]).to_event(1))


# --- exact references ----------------------------------------------------------------

Draws = dict[str, np.ndarray]


def two_modes_draws(rng: np.random.Generator, n: int) -> Draws:
    """n exact draws of :func:`two_modes`: a component by its weight, then its Gaussian."""
    component = rng.choice(2, size=n, p=MIXTURE_WEIGHTS)
    chol = np.linalg.cholesky(MIXTURE_COVS)
    z = MIXTURE_LOCS[component] + np.einsum("nij,nj->ni", chol[component],
                                            rng.normal(size=(n, 2)))
    return {"z": z}


def two_modes_moments() -> tuple[Draws, Draws]:
    """Mean sum_k w_k m_k and sd from the variance sum_k w_k (S_k + m_k^2) - mean^2."""
    mean = MIXTURE_WEIGHTS @ MIXTURE_LOCS
    second = MIXTURE_WEIGHTS @ (np.diagonal(MIXTURE_COVS, axis1=1, axis2=2) + MIXTURE_LOCS**2)
    return {"z": mean}, {"z": np.sqrt(second - mean**2)}


def funnel_draws(rng: np.random.Generator, n: int) -> Draws:
    """n exact draws of :func:`funnel`: v ~ N(0, 3), then x | v ~ N(0, exp(v / 2))."""
    v = rng.normal(0.0, 3.0, n)
    return {"v": v, "x": np.exp(v / 2)[:, None] * rng.normal(size=(n, 9))}


def funnel_moments() -> tuple[Draws, Draws]:
    """All means 0; sd(v) = 3 and sd(x_i) = sqrt(E exp(v)) = exp(9 / 4)."""
    return ({"v": np.zeros(()), "x": np.zeros(9)},
            {"v": np.full((), 3.0), "x": np.full(9, math.exp(9 / 4))})


GRID_POINTS = 600
"""Grid points per log-scale axis of :func:`brownian_motion_draws`."""


def _brownian_log_posterior(observed: np.ndarray, y: np.ndarray, n_steps: int,
                            log_i: np.ndarray, log_o: np.ndarray) -> np.ndarray:
    """log p(log innovation, log observation | y) up to a constant, on a grid: x
    integrated out, y ~ N(0, s_i^2 C + s_o^2 I) with C_ts = min(t, s) + 1 (the random
    walk's covariance at the observed steps), the log-scales ~ N(0, 2^2)."""
    t = np.arange(n_steps)
    c = (np.minimum.outer(t, t) + 1.0)[np.ix_(observed, observed)]
    eig, vec = np.linalg.eigh(c)
    proj = (vec.T @ y) ** 2  # y in C's eigenbasis: cov diagonal s_i^2 eig + s_o^2
    var = np.exp(2 * log_i)[..., None] * eig + np.exp(2 * log_o)[..., None]
    loglik = -0.5 * np.sum(np.log(var) + proj / var, axis=-1)
    return loglik - (log_i ** 2 + log_o ** 2) / 8.0


def brownian_motion_draws(rng: np.random.Generator, n: int) -> Draws:
    """n draws of :func:`brownian_motion`'s posterior, exact up to a grid (600 x 600) over
    the two log-scales (x integrated out analytically, cells drawn by their mass,
    uniform within a cell), then x | scales, y from its Gaussian conditional."""
    d = data.brownian_motion()
    observed, y, n_steps = d["observed"], d["y"].astype(np.float64), 30
    # the observation scale's posterior has a long left tail (as s_o -> 0 the
    # likelihood stays finite): the grid reaches where the prior has died out
    axis = np.linspace(-16.0, 4.0, GRID_POINTS)
    step = axis[1] - axis[0]
    li, lo = np.meshgrid(axis, axis, indexing="ij")
    logp = _brownian_log_posterior(observed, y, n_steps, li, lo)
    mass = np.exp(logp - logp.max())
    edges = np.concatenate([mass[[0, -1]].ravel(), mass[:, [0, -1]].ravel()])
    assert edges.max() < 1e-10, "the grid must hold the whole posterior"
    mass = mass.ravel()
    cell = rng.choice(mass.size, size=n, p=mass / mass.sum())
    log_i = li.ravel()[cell] + step * (rng.random(n) - 0.5)
    log_o = lo.ravel()[cell] + step * (rng.random(n) - 0.5)
    t = np.arange(n_steps)
    c = np.minimum.outer(t, t) + 1.0
    x = np.empty((n, n_steps))
    for lo_k in range(0, n, 5000):  # x | y ~ N(G y, K - G K_ox), G = K_xo (K_oo + s_o^2 I)^-1
        sl = slice(lo_k, min(n, lo_k + 5000))
        k_full = np.exp(2 * log_i[sl])[:, None, None] * c
        k_oo = (k_full[:, observed][:, :, observed]
                + np.exp(2 * log_o[sl])[:, None, None] * np.eye(len(y)))
        gain = np.swapaxes(np.linalg.solve(k_oo, k_full[:, observed]), 1, 2)
        cov = k_full - gain @ k_full[:, observed]
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(n_steps))
        noise = rng.normal(size=(len(gain), n_steps, 1))
        x[sl] = gain @ y + (chol @ noise)[..., 0]
    return {"innovation_scale": np.exp(log_i), "observation_scale": np.exp(log_o), "x": x}


def brownian_motion_moments() -> tuple[Draws, Draws]:
    """Means and sds of 200,000 draws of :func:`brownian_motion_draws` (seed 0): their
    Monte-Carlo error is under 0.3% of an sd, far below the benchmark's resolution."""
    draws = brownian_motion_draws(np.random.default_rng(0), 200_000)
    return ({k: v.mean(0) for k, v in draws.items()},
            {k: v.std(0, ddof=1) for k, v in draws.items()})


# --- the registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class Nuts:
    """A reference by long NUTS runs (``make_reference.py``).

    Attributes:
        model: a reparametrised model of the same posterior, taking the same arguments,
            whose sample or deterministic sites include every latent site of the zoo
            model (``None``: the zoo model itself).
        target_accept, dense_mass, max_tree_depth: NUTS settings.
        num_warmup, num_samples: per chain; 4 chains.
    """

    model: Callable[..., None] | None = None
    target_accept: float = 0.9
    dense_mass: bool = False
    max_tree_depth: int = 10
    num_warmup: int = 2000
    num_samples: int = 10_000


@dataclass(frozen=True)
class Exact:
    """A reference known by construction: ``sample(rng, n)`` gives n exact draws,
    ``moments()`` the exact means and standard deviations, site by site."""

    sample: Callable[[np.random.Generator, int], Draws]
    moments: Callable[[], tuple[Draws, Draws]]


@dataclass(frozen=True)
class ZooModel:
    """A model of the zoo: its function, its data and how its reference is made."""

    name: str
    fn: Callable[..., None]
    data: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]
    reference: Nuts | Exact

    def bind(self) -> tuple[Callable[..., None], tuple[Any, ...], dict[str, Any]]:
        """``(model_fn, args, kwargs)``: call ``model_fn(*args, **kwargs)``."""
        args, kwargs = self.data()
        return self.fn, args, kwargs

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """The latent (unobserved sample) sites in model order, with their shapes."""
        fn, args, kwargs = self.bind()
        trace = handlers.trace(handlers.seed(fn, 0)).get_trace(*args, **kwargs)
        return {name: tuple(site["value"].shape) for name, site in trace.items()
                if site["type"] == "sample" and not site["is_observed"]}

    @property
    def dim(self) -> int:
        """The number of latent coordinates (each site flattened)."""
        return sum(math.prod(shape) for shape in self.latent_shapes().values())


def _eight_schools() -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (data.EIGHT_SCHOOLS_SIGMA,), {"y": data.EIGHT_SCHOOLS_Y}


def _grouped() -> tuple[tuple[Any, ...], dict[str, Any]]:
    d = data.grouped_regression()
    return (d["group"], d["x"], int(d["group"].max()) + 1), {"y": d["y"]}


def _logistic() -> tuple[tuple[Any, ...], dict[str, Any]]:
    d = data.logistic()
    return (d["x"],), {"y": d["y"]}


def _sparse() -> tuple[tuple[Any, ...], dict[str, Any]]:
    d = data.sparse_logistic()
    return (d["x"],), {"y": d["y"]}


def _volatility() -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (data.stochastic_volatility()["y"],), {}


def _brownian() -> tuple[tuple[Any, ...], dict[str, Any]]:
    d = data.brownian_motion()
    return (d["observed"], 30), {"y": d["y"]}


def _irt() -> tuple[tuple[Any, ...], dict[str, Any]]:
    d = data.item_response()
    return (d["student"], d["item"], int(d["student"].max()) + 1,
            int(d["item"].max()) + 1), {"y": d["y"]}


def _cox() -> tuple[tuple[Any, ...], dict[str, Any]]:
    d = data.cox_process()
    return (d["chol"],), {"y": d["y"]}


def _no_data() -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (), {}


MODELS: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("eight_schools_centered", eight_schools_centered, _eight_schools,
             Nuts(model=eight_schools_noncentered, target_accept=0.95)),
    ZooModel("eight_schools_noncentered", eight_schools_noncentered, _eight_schools,
             Nuts(target_accept=0.95)),
    ZooModel("varying_intercept", varying_intercept, _grouped, Nuts(target_accept=0.95)),
    ZooModel("logistic_regression", logistic_regression, _logistic, Nuts(dense_mass=True)),
    ZooModel("horseshoe_logistic", horseshoe_logistic, _sparse, Nuts(target_accept=0.99)),
    ZooModel("stochastic_volatility", stochastic_volatility, _volatility,
             Nuts(target_accept=0.95)),
    ZooModel("brownian_motion", brownian_motion, _brownian,
             Exact(brownian_motion_draws, brownian_motion_moments)),
    ZooModel("item_response_2pl", item_response_2pl, _irt, Nuts()),
    ZooModel("cox_process", cox_process, _cox,
             Nuts(model=cox_process_noncentered, target_accept=0.95)),
    ZooModel("two_modes", two_modes, _no_data, Exact(two_modes_draws, two_modes_moments)),
    ZooModel("funnel", funnel, _no_data, Exact(funnel_draws, funnel_moments)),
]}
"""The zoo, by name."""
