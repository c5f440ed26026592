"""guides.AutoFlow against known posteriors and NumPyro's autoguide contract."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.reparam import NeuTraReparam

import flows
from guides import AutoFlow
from guides.autoflow import QUANTILE_SAMPLES


def _svi(model, guide, steps, *args, particles=8, lr=1e-2, seed=0, **kwargs):
    svi = SVI(model, guide, optax.adam(optax.cosine_decay_schedule(lr, steps, 0.05)),
              Trace_ELBO(num_particles=particles))
    return svi.run(jax.random.key(seed), steps, *args, progress_bar=False, **kwargs).params


def _initial_params(model, guide, *args):
    svi = SVI(model, guide, optax.sgd(0.0), Trace_ELBO())
    return svi.get_params(svi.init(jax.random.key(0), *args))


def beta_bernoulli(y):
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Bernoulli(p), obs=y)


def test_beta_bernoulli_posterior_mean_and_sd():
    y = jnp.array([1.0] * 120 + [0.0] * 80)
    guide = AutoFlow(beta_bernoulli, "planar*3-scale-loc")
    params = _svi(beta_bernoulli, guide, 3000, y)
    p = guide.sample_posterior(jax.random.key(1), params, sample_shape=(20_000,))["p"]
    a, b = 1 + 120, 1 + 80  # exact posterior Beta(a, b)
    mean, sd = a / (a + b), np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    # Monte-Carlo error of the mean of 20k draws is sd/141 ~ 2.4e-4; what remains is the
    # variational bias, which a flexible 1-D flow keeps far below 0.1 sd.
    assert abs(float(p.mean()) - mean) < 0.1 * sd
    assert abs(float(p.std()) / sd - 1) < 0.1
    assert bool(jnp.all((p > 0) & (p < 1)))


def logistic(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 5.0).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def test_logistic_regression_recovers_coefficients_and_predictive_works():
    key_x, key_y = jax.random.split(jax.random.key(3))
    x = jax.random.normal(key_x, (600, 3))
    w_true, b_true = jnp.array([1.5, -2.0, 0.5]), 0.3
    y = jax.random.bernoulli(key_y, jax.nn.sigmoid(x @ w_true + b_true)).astype(float)
    guide = AutoFlow(logistic, "scale-hh*4-loc")
    params = _svi(logistic, guide, 2500, x, y)
    draws = guide.sample_posterior(jax.random.key(4), params, sample_shape=(4000,))
    # The truth lies within 4 posterior standard deviations of the posterior mean.
    z = (draws["w"].mean(0) - w_true) / draws["w"].std(0)
    assert bool(jnp.all(jnp.abs(z) < 4)), z
    assert abs(float((draws["b"].mean() - b_true) / draws["b"].std())) < 4
    predictive = Predictive(logistic, guide=guide, params=params, num_samples=500)
    pred = predictive(jax.random.key(5), x)
    assert pred["y"].shape == (500, 600)
    # Posterior predictive accuracy equals that of the true probabilities (within noise).
    acc = float(((pred["y"].mean(0) > 0.5) == (y > 0.5)).mean())
    best = float(((jax.nn.sigmoid(x @ w_true + b_true) > 0.5) == (y > 0.5)).mean())
    assert acc > best - 0.03


def normal_mean(y, n):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.deterministic("mu2", 2 * mu)
    with numpyro.plate("data", n, subsample_size=20) as idx:
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y[idx])


def test_deterministic_site_and_subsampled_plate():
    y = 1.5 + jax.random.normal(jax.random.key(7), (200,))
    guide = AutoFlow(normal_mean, "scale-loc")
    params = _svi(normal_mean, guide, 4000, y, 200, particles=4, lr=2e-2)
    post_var = 1 / (200 + 1 / 100)
    post_mean = post_var * float(y.sum())
    draws = Predictive(normal_mean, guide=guide, params=params, num_samples=4000,
                       return_sites=["mu", "mu2"])(jax.random.key(8), y, 200)
    # Subsampling noise leaves the mean a few posterior sds from exact at most.
    assert abs(float(draws["mu"].mean()) - post_mean) < 3 * np.sqrt(post_var)
    np.testing.assert_allclose(draws["mu2"], 2 * draws["mu"], rtol=1e-6)
    median = guide.median(params)["mu"]
    assert abs(float(median) - float(params["auto_1_loc_mu"][0, 0])) < 1e-6


def discrete_model():
    numpyro.sample("k", dist.Bernoulli(0.3))


def local_model(y):
    with numpyro.plate("data", y.shape[0], subsample_size=2):
        numpyro.sample("z", dist.Normal(0.0, 1.0))


def test_discrete_and_local_latents_are_refused_clearly():
    guide = AutoFlow(discrete_model, "planar*2")
    with pytest.raises(ValueError, match="discrete latent variables \\(k\\)"):
        numpyro.handlers.seed(guide, 0)()
    guide = AutoFlow(local_model, "planar*2")
    with pytest.raises(ValueError, match="local latent"):
        numpyro.handlers.seed(guide, 0)(jnp.zeros(5))


def numpy_minibatch_model(X, y):
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("data", X.shape[0], subsample_size=4) as idx:
        numpyro.sample("y", dist.Bernoulli(logits=X[idx] @ b), obs=y[idx])


def test_numpy_data_indexed_by_subsample_indices_sets_up():
    # X[idx] with NumPy X needs concrete indices: the latent check, which otherwise
    # traces the model, runs it eagerly here; a discrete site is still refused
    X, y = np.ones((10, 3), np.float32), np.ones(10, np.float32)
    guide = AutoFlow(numpy_minibatch_model, "scale-loc")
    numpyro.handlers.seed(guide, 0)(X, y)
    assert guide.latent_dim == 3

    def with_discrete(X, y):
        numpy_minibatch_model(X, y)
        numpyro.sample("k", dist.Bernoulli(0.3))

    with pytest.raises(ValueError, match="discrete latent variables \\(k\\)"):
        numpyro.handlers.seed(AutoFlow(with_discrete, "scale-loc"), 0)(X, y)


def half_line(y):
    # log density -inf for x < 0: a uniform initial draw there is invalid, and the
    # set-up must search on, as NumPyro's does
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))  # after x in the model, before by name
    numpyro.factor("cut", jnp.where(jnp.all(x > 0), 0.0, -jnp.inf))
    numpyro.sample("y", dist.Normal(x.sum() + b, 1.0), obs=y)


def branching(y):
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    if a > 0:  # Python control flow on a latent's value: the model cannot be traced
        numpyro.factor("push", -a)
    numpyro.sample("y", dist.Normal(a, 1.0), obs=y)


@pytest.mark.parametrize("model", [half_line, branching])
def test_set_up_finds_numpyro_initial_point(model):
    # the search for a valid initial point runs compiled (one program) where NumPyro
    # runs it op by op; the draws, the retries and so the point must be the same
    strategy = numpyro.infer.init_to_uniform(radius=2.0)
    for seed in range(6):
        key = numpyro.handlers.seed(numpyro.prng_key, seed)()  # the guide's first key
        expected = numpyro.infer.util.initialize_model(
            key, model, init_strategy=strategy, model_args=(1.0,)).param_info.z
        guide = AutoFlow(model, "scale-loc", init_loc_fn=strategy)
        numpyro.handlers.seed(guide._setup_prototype, seed)(1.0)
        # the flat latent vector lies in the model's order (an autoregressive flow
        # conditions on the coordinates before), however the search returned the sites
        trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(1.0)
        assert list(guide._init_locs) == [name for name, site in trace.items()
                                          if site["type"] == "sample" and not site["is_observed"]]
        assert set(guide._init_locs) == set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(guide._init_locs[name], value, rtol=1e-6)


def test_bad_formula_fails_before_any_model_runs():
    with pytest.raises(flows.FormulaError, match="did you mean 'planar'"):
        AutoFlow(lambda: None, "panar*2")


def positive_model():
    numpyro.sample("s", dist.LogNormal(0.5, 0.4))
    numpyro.sample("v", dist.Normal(0.0, 1.0).expand([2]).to_event(1))


def test_get_transform_posterior_and_neutra_agree():
    guide = AutoFlow(positive_model, "planar*2-scale-loc", jitter=0.5)
    params = _initial_params(positive_model, guide)
    posterior = guide.get_posterior(params)
    u = posterior.sample(jax.random.key(1), (5,))
    z, log_det = guide.flow.inverse(guide.flow_params(params), u)
    expected = dist.Normal(0, 1).log_prob(z).sum(-1) + log_det
    np.testing.assert_allclose(posterior.log_prob(u), expected, rtol=1e-4, atol=1e-4)
    # NeuTraReparam accepts the guide and maps latent draws through the same transform.
    neutra = NeuTraReparam(guide, params)
    zs = jax.random.normal(jax.random.key(2), (3, 3))
    mapped = neutra.transform_sample(zs)
    direct = guide._unpack_and_constrain(guide.get_transform(params)(zs), params)
    np.testing.assert_allclose(mapped["s"], direct["s"], rtol=1e-5)


def test_quantiles_of_gaussian_flow():
    guide = AutoFlow(positive_model, "scale-hh*3-loc", jitter=0.7)
    params = _initial_params(positive_model, guide)
    q = guide.quantiles(params, [0.1, 0.5, 0.9])
    draws = guide.sample_posterior(jax.random.key(3), params, sample_shape=(40_000,))
    for name in ("s", "v"):
        empirical = jnp.quantile(draws[name], jnp.array([0.1, 0.5, 0.9]), axis=0)
        spread = jnp.quantile(draws[name], 0.9, axis=0) - jnp.quantile(draws[name], 0.1, axis=0)
        # quantile MC error at n = 40k is ~1% of the 10-90% spread
        assert bool(jnp.all(jnp.abs(empirical - q[name]) < 0.03 * spread)), name


def test_affine_quantiles_are_exact_not_monte_carlo():
    guide = AutoFlow(positive_model, "scale-loc", jitter=0.5)
    params = _initial_params(positive_model, guide)
    probs = jnp.array([0.05, 0.5, 0.95])
    # q is N(mu, softplus(rho)^2) coordinate-wise; s's bijection is exp
    mu, sigma = params["auto_1_loc_mu"][0], jax.nn.softplus(params["auto_0_scale_rho"][0])
    latent = mu + sigma * dist.Normal().icdf(probs)[:, None]
    q = guide.quantiles(params, probs)
    np.testing.assert_allclose(q["s"], jnp.exp(latent[:, 0]), rtol=1e-5)
    np.testing.assert_allclose(q["v"], latent[:, 1:], rtol=1e-5, atol=1e-6)
    # a single Monte-Carlo draw would be far off: the closed form does not sample
    one = guide.quantiles(params, probs, num_samples=1)
    np.testing.assert_array_equal(one["v"], q["v"])


def half_normal_model():
    numpyro.sample("v", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("s", dist.HalfNormal(1.0))


def test_monte_carlo_quantiles_of_nonlinear_flow_within_their_error():
    guide = AutoFlow(half_normal_model, "planar*3", jitter=0.5)
    params = _initial_params(half_normal_model, guide)
    probs = jnp.array([0.1, 0.25, 0.5, 0.75, 0.9])
    q = guide.quantiles(params, probs)
    median = guide.median(params)
    n_ref = 200_000
    draws = guide.sample_posterior(jax.random.key(11), params, sample_shape=(n_ref,))
    n = QUANTILE_SAMPLES
    h = 0.01
    for name in ("v", "s"):
        assert q[name].shape == (5, *draws[name].shape[1:])
        np.testing.assert_array_equal(median[name], q[name][2])
        ref = jnp.quantile(draws[name], probs, axis=0)
        # sd of a sample p-quantile is sqrt(p (1-p) / n) / f(q_p); 1 / f(q_p) is estimated
        # from the big sample by the difference quotient (Q(p+h) - Q(p-h)) / 2h
        upper = jnp.quantile(draws[name], probs + h, axis=0)
        lower = jnp.quantile(draws[name], probs - h, axis=0)
        inv_density = (upper - lower) / (2 * h)
        shape = (-1,) + (1,) * (ref.ndim - 1)
        binom = jnp.sqrt(probs * (1 - probs)).reshape(shape)
        se = binom * inv_density * np.sqrt(1 / n + 1 / n_ref)
        assert bool(jnp.all(jnp.abs(q[name] - ref) < 5 * se)), (name, q[name], ref, se)
    assert bool(jnp.all(q["s"] > 0))  # mapped through exp, not left unconstrained
    # one compiled call, also under an outer jit
    jitted = jax.jit(guide.median)(params)
    np.testing.assert_allclose(jitted["s"], median["s"], rtol=1e-6)


def test_quantiles_refuse_probabilities_outside_the_open_unit_interval():
    guide = AutoFlow(half_normal_model, "planar")
    params = _initial_params(half_normal_model, guide)
    for bad in ([0.0, 0.5], 1.0, [0.5, float("nan")], [], "median"):
        with pytest.raises(ValueError, match="strictly inside \\(0, 1\\)"):
            guide.quantiles(params, bad)
    with pytest.raises(ValueError, match="num_samples"):
        guide.quantiles(params, [0.5], num_samples=0)


def half_cauchy_scale():
    """Eight-schools shape: a HalfCauchy scale (infinite prior mean) multiplies a
    standard-normal site."""
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    numpyro.sample("y", dist.Normal(tau * z, 1.0), obs=jnp.array([1.0, -2.0, 0.5]))


def test_default_init_replaces_an_infinite_prior_mean_by_the_median():
    """NumPyro's init_to_mean would start tau at +inf (and tau * z at NaN); the default
    starts at the mean where it is finite (z: 0) and the prior median elsewhere
    (tau: 5, estimated from NumPyro's 15 prior draws, so within a factor of 4)."""
    guide = AutoFlow(half_cauchy_scale, "loc", jitter=0.0)
    params = _initial_params(half_cauchy_scale, guide)
    start = guide.median(params)  # the loc step's point, exactly (an affine flow)
    assert 5.0 / 4 < float(start["tau"]) < 5.0 * 4
    np.testing.assert_allclose(start["z"], 0.0, atol=1e-6)


def test_init_scale_sets_the_diagonal_of_a_leading_affine_step():
    flow = flows.Flow("iaf*2-affine-loc", 3)
    params = flow.init(jax.random.key(0), jitter=0.0, scale=0.1)
    z = jax.random.normal(jax.random.key(1), (20_000, 3))
    x, _ = flow.forward(params, z)
    # identity iaf steps at zero jitter, then L = 0.1 I: draws of sd 0.1 (MC error 0.5%)
    np.testing.assert_allclose(np.std(np.asarray(x), axis=0), 0.1, rtol=0.03)
