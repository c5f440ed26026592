"""vi.elbo: the direct -ELBO of a flow guide, its sticking-the-landing gradient, and the
density of a NumPyro model over the flat latent vector."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.util import potential_energy

from guides import AutoFlow
from vi import NFVI, Model
from vi.elbo import logdensity_loss, model_log_density

MEAN = jnp.array([1.0, -2.0])
SCALE = jnp.array([0.5, 2.0])


def diagonal_gaussian(x):
    return jnp.sum(dist.Normal(MEAN, SCALE).log_prob(x))


def _set_up(model_fn, formula, *args, **kwargs):
    guide = AutoFlow(model_fn, formula)
    trace = handlers.trace(handlers.seed(guide, 0)).get_trace(*args, **kwargs)
    params = {k: v["value"] for k, v in trace.items() if v["type"] == "param"}
    return guide, params


def _per_key_grads(loss, params, n):
    keys = jax.random.split(jax.random.key(7), n)
    grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, keys)
    return np.concatenate([np.asarray(g).reshape(n, -1) for g in jax.tree.leaves(grads)], 1)


def test_stl_gradient_vanishes_at_the_exact_fit_and_the_trace_gradient_does_not():
    model = Model.from_logdensity(diagonal_gaussian, 2)
    guide, params = _set_up(model.fn, "scale-loc")
    exact = {"auto_0_scale_rho": jnp.log(jnp.expm1(SCALE))[None],
             "auto_1_loc_mu": MEAN[None]}
    assert set(exact) == set(params)
    stl = _per_key_grads(logdensity_loss(guide, diagonal_gaussian, 4, stl=True), exact, 64)
    trace = _per_key_grads(logdensity_loss(guide, diagonal_gaussian, 4), exact, 64)
    # q = p: log q(x) - log p(x) = 0 for every x, so each draw's STL gradient is zero,
    # while the score term keeps the standard one's draws away from zero
    assert np.abs(stl).max() < 1e-4
    assert np.abs(trace).std(axis=0).min() > 0.05


@pytest.mark.parametrize("formula", ["planar*2-scale-loc", "coupling(hidden=8, sigma=exp)"])
def test_stl_and_trace_gradients_have_the_same_mean_and_loss(formula):
    target = dist.MultivariateNormal(MEAN, jnp.array([[1.0, 0.8], [0.8, 1.0]]))
    guide, params = _set_up(Model.from_logdensity(target.log_prob, 2).fn, formula)
    params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(3), p.shape),
                          params)  # away from any optimum
    stl_loss = logdensity_loss(guide, target.log_prob, 2, stl=True)
    trace_loss = logdensity_loss(guide, target.log_prob, 2)
    key = jax.random.key(0)
    assert float(stl_loss(params, key)) == pytest.approx(float(trace_loss(params, key)),
                                                         rel=1e-5)
    n = 4000
    diff = (_per_key_grads(stl_loss, params, n) - _per_key_grads(trace_loss, params, n))
    # per key the two differ by the score term, whose expectation is zero
    se = diff.std(axis=0) / np.sqrt(n)
    assert np.all(np.abs(diff.mean(axis=0)) < 5 * se + 1e-6)
    assert diff.std(axis=0).max() > 0.01  # and they do differ draw by draw


def hierarchical(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(2.0))
    with numpyro.plate("groups", y.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, 1.0), obs=y)


Y = jnp.array([2.0, -1.0, 0.5, 3.0])


def test_model_density_is_minus_the_potential_and_gives_trace_elbos_estimate():
    guide, params = _set_up(hierarchical, "scale-loc", Y)
    log_density = model_log_density(Model(hierarchical, Y), guide)
    x = jnp.array([0.3, -0.2, 1.0, -1.0, 0.1, 0.7])  # mu, log tau, theta
    sites = {"mu": x[0], "tau": x[1], "theta": x[2:]}
    assert float(log_density(x)) == pytest.approx(
        -float(potential_energy(hierarchical, (Y,), {}, sites)), rel=1e-6)
    # Trace_ELBO's per-particle estimates average to the same -ELBO as the direct one
    n = 4000
    keys = jax.random.split(jax.random.key(1), n)
    direct = jax.jit(jax.vmap(lambda k: logdensity_loss(guide, log_density, 1)(params, k)))(
        keys)
    traced = jax.jit(jax.vmap(lambda k: Trace_ELBO().loss(k, params, hierarchical, guide, Y)))(
        keys)
    se = np.sqrt(np.var(direct) / n + np.var(traced) / n)
    assert abs(float(direct.mean()) - float(traced.mean())) < 5 * se


def with_param(y):
    loc = numpyro.param("loc", 0.0)
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(loc + z, 1.0), obs=y)


def subsampled(y):
    z = numpyro.sample("z", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", y.shape[0], subsample_size=2):
        numpyro.sample("y", dist.Normal(z, 1.0), obs=numpyro.subsample(y, event_dim=0))


@pytest.mark.parametrize("model_fn", [with_param, subsampled])
def test_models_that_need_tracing_have_no_flat_density(model_fn):
    guide, _ = _set_up(model_fn, "scale-loc", Y)
    assert model_log_density(Model(model_fn, Y), guide) is None


def test_a_model_param_is_still_learned_and_stl_refuses_it():
    # y_i ~ N(loc + z, 1), z ~ N(0, 1): the marginal likelihood peaks at loc = mean(y)
    y = jnp.array([3.1, 2.9, 3.4, 2.6])
    vi = NFVI("scale-loc", Model(with_param, y))
    approx = vi.fit(3000, n_mc=4, progress=False)
    assert float(approx.params["loc"]) == pytest.approx(3.0, abs=0.4)
    with pytest.raises(ValueError, match=r"numpyro\.param, a subsampled plate"):
        NFVI("scale-loc", Model(with_param, y)).fit(10, elbo="stl", progress=False)


def test_stl_needs_a_flow_guide():
    model = Model(hierarchical, Y)
    with pytest.raises(ValueError, match=r"stl.*AutoFlow guide.*AutoNormal"):
        NFVI(AutoNormal(hierarchical), model).fit(10, elbo="stl", progress=False)


def test_stl_fit_of_an_exactly_representable_target_lands_where_trace_hovers():
    # a 20-d Gaussian with a diagonal covariance: scale-loc is exact, so the fit's KL is
    # optimisation error only. At a constant step size the standard gradient's noise
    # keeps the fit hovering around the optimum; STL's vanishes there.
    scales = jnp.linspace(0.2, 3.0, 20)

    def log_density(x):
        return jnp.sum(dist.Normal(0.0, scales).log_prob(x))

    model = Model.from_logdensity(log_density, 20)
    kls = {e: -NFVI("scale-loc", model, seed=2).fit(
        1500, optimizer=optax.adam(1e-2), elbo=e, progress=False).elbo(20_000)
        for e in ("trace", "stl")}
    # (the MC error of each KL estimate is below 1e-3 at KL < 0.2)
    assert kls["stl"] < 0.005
    assert kls["stl"] < 0.1 * kls["trace"]
