"""vi.NFVI and its loop: known answers, continuation, restarts, failures, other guides."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import Predictive
from numpyro.infer.autoguide import AutoNormal

from vi import ADVI, NFVI, FitError, FullRankADVI, Model
from vi.targets import get

MEAN = jnp.array([1.0, -2.0])
COV = jnp.array([[2.0, 1.2], [1.2, 1.0]])


def gaussian_log_density(x):
    return dist.MultivariateNormal(MEAN, COV).log_prob(x)


def test_full_rank_flow_recovers_a_correlated_gaussian():
    approx = NFVI("scale-hh*2-loc", Model.from_logdensity(gaussian_log_density, 2)).fit(
        3000, n_mc=8, progress=False)
    # The fitted flow is linear: its covariance is J J^T exactly, no sampling needed.
    jac = jax.jacfwd(lambda z: approx.flow.forward(approx.flow_params, z)[0])(jnp.zeros(2))
    shift = approx.flow.forward(approx.flow_params, jnp.zeros(2))[0]
    np.testing.assert_allclose(jac @ jac.T, COV, rtol=0.05, atol=0.03)
    np.testing.assert_allclose(shift, MEAN, atol=0.05)
    # and the precise ELBO is log Z = 0 up to the MC error of 20k draws
    assert abs(approx.elbo(20_000)) < 0.01


def test_mean_field_cannot_but_full_rank_can():
    model = Model.from_logdensity(gaussian_log_density, 2)
    kl_mf = -ADVI(model).fit(2000, n_mc=8, progress=False).elbo(20_000)
    kl_fr = -FullRankADVI(model).fit(2000, n_mc=8, progress=False).elbo(20_000)
    # Exact KL of the best mean-field Gaussian: 0.5 * log(det diag(P)^-1 / det COV)
    # with P = COV^-1, i.e. -0.5 * log(1 - rho^2).
    rho2 = 1.2**2 / 2.0
    assert abs(kl_mf - (-0.5 * np.log(1 - rho2))) < 0.02
    assert kl_fr < 0.01


def linear_regression(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 10.0))
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(a + b * x, sigma), obs=y)


@pytest.fixture(scope="module")
def regression_data():
    x = jnp.linspace(-2, 2, 80)
    y = 0.5 + 1.5 * x + 0.4 * jax.random.normal(jax.random.key(0), (80,))
    return x, y


def test_model_context_idiom_predictive_and_continuation(regression_data):
    x, y = regression_data
    with Model(linear_regression, x, y=y):
        vi = NFVI("scale-hh*3-loc")
        approx = vi.fit(1500, n_mc=4, progress=False)
    assert len(approx.hist) == 1500
    again = vi.fit(500, n_mc=4, progress=False)  # PyMC3's refine: continues, appends
    assert len(again.hist) == 2000 and len(vi.hist) == 2000
    np.testing.assert_array_equal(again.hist[:1500], approx.hist)
    assert again.n_grad_evals == 2000 * 4
    # Least-squares fit for reference: the posterior of (a, b) centres on it.
    design = np.stack([np.ones(80), np.asarray(x)], 1)
    coef = np.linalg.lstsq(design, np.asarray(y), rcond=None)[0]
    draws = approx.sample(4000, key=1)
    for name, value in zip("ab", coef, strict=True):
        assert abs(float(draws[name].mean()) - value) < 4 * float(draws[name].std())
    pred = Predictive(linear_regression, guide=again.guide, params=again.params,
                      num_samples=300)(jax.random.key(2), x)
    assert pred["y"].shape == (300, 80)
    resid_sd = float(jnp.std(pred["y"].mean(0) - y))
    assert abs(resid_sd - float(draws["sigma"].mean())) < 0.1


def test_a_model_invalid_at_its_initial_point_is_a_clear_error():
    model = Model.from_logdensity(lambda z: jnp.sum(z) * jnp.nan, 2)
    with pytest.raises(ValueError, match="not finite at the initial point"):
        NFVI("scale-loc", model).fit(10, progress=False)


def test_nfvi_without_model_is_a_clear_error():
    with pytest.raises(ValueError, match="NFVI needs a model"):
        NFVI("planar*2")


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be a positive integer"),
    ({"n": 10, "n_mc": 0}, "n_mc must be"),
    ({"n": 10, "elbo": "renyi"}, "elbo must be"),
    ({"n": 10, "optimizer": "adam"}, "optax GradientTransformation"),
    ({"n": 10, "callbacks": [lambda approx: None]}, "three arguments"),
    ({"n": 10, "restarts": -1}, "restarts must be"),
])
def test_bad_fit_arguments_fail_before_work(kwargs, match):
    model = Model.from_logdensity(gaussian_log_density, 2)
    with pytest.raises((ValueError, TypeError), match=match):
        NFVI("planar", model).fit(progress=False, **kwargs)


def test_any_numpyro_guide_runs_in_the_same_loop(regression_data):
    x, y = regression_data
    model = Model(linear_regression, x, y=y)
    auto = NFVI(AutoNormal(linear_regression), model).fit(1500, n_mc=4, progress=False)
    assert auto.flow is None and len(auto.hist) == 1500
    draws = auto.sample(2000, key=0)
    assert set(draws) == {"a", "b", "sigma"}

    def hand_guide(x, y=None):
        for name in "ab":
            loc = numpyro.param(f"{name}_loc", 0.0)
            scale = numpyro.param(f"{name}_scale", 1.0, constraint=dist.constraints.positive)
            numpyro.sample(name, dist.Normal(loc, scale))
        s_loc = numpyro.param("s_loc", 0.0)
        numpyro.sample("sigma", dist.LogNormal(s_loc, 0.3))

    hand = NFVI(hand_guide, model).fit(1500, n_mc=4, progress=False)
    for name in "ab":  # both guides find the same posterior mean
        assert abs(float(hand.params[f"{name}_loc"]) - float(draws[name].mean())) \
            < 4 * float(draws[name].std())
    assert float(hand.params["a_scale"]) > 0


def naive_log_cosh_density(z):
    # -log(2 cosh(25 z1)) written the unstable way: exp(50 z1) overflows for z1 > 1.78
    # in float32, giving an infinite loss and NaN gradients in that part of the space.
    return -jnp.log(1.0 + jnp.exp(50.0 * z[0])) + 25.0 * z[0] - 0.5 * z[1] ** 2


def test_non_finite_steps_are_skipped_not_poisoning_parameters():
    approx = NFVI("scale-loc", Model.from_logdensity(naive_log_cosh_density, 2),
                  jitter=0.0).fit(2000, n_mc=4, progress=False)
    leaves = jax.tree.leaves(approx.params)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in leaves)
    # The initial q = N(0, I) puts 4% of its particles past z1 = 1.78: early steps fail.
    assert approx.n_skipped > 0
    assert np.isnan(approx.hist).sum() == approx.n_skipped
    # Despite the skips it fits: z2 ~ N(0, 1) and z1 is concentrated within ~0.06 of 0.
    draws = approx.sample(20_000, key=3)
    assert abs(float(draws[:, 1].std()) - 1) < 0.05
    assert float(draws[:, 0].std()) < 0.1


def test_a_run_of_failures_stops_with_the_last_finite_parameters():
    # Finite only within 1e-3 of the initial point: every draw of q = N(0, I) fails.
    model = Model.from_logdensity(
        lambda z: jnp.where(jnp.sum(z * z) < 1e-6, -jnp.sum(z * z), jnp.nan), 2)
    vi = NFVI("scale-loc", model)
    with pytest.raises(FitError, match="consecutive steps") as info:
        vi.fit(500, max_failures=50, progress=False)
    assert info.value.approx is vi.approx
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(vi.approx.params))
    assert vi.approx.n_skipped >= 50


def test_restarts_keep_the_best_of_several_initialisations():
    target = get("mixture")  # two separated modes, weights 0.3 / 0.7
    model = Model.from_logdensity(target.log_density, 2)
    vi = NFVI("scale-loc", model, jitter=3.0, seed=1)
    approx = vi.fit(1500, n_mc=4, restarts=6, progress=False)
    # A Gaussian sitting on one mode has KL = -log(weight): the heavier mode is better.
    assert vi.restart_elbos.shape == (6,)
    assert approx.elbo(20_000) == pytest.approx(vi.restart_elbos.max(), abs=0.05)
    assert vi.restart_elbos.max() - vi.restart_elbos.min() > 0.5  # they did differ
    assert abs(-approx.elbo(20_000) - (-np.log(0.7))) < 0.05
    assert len(approx.hist) == 1500 and approx.n_grad_evals == 1500 * 4 * 6


def test_meanfield_elbo_matches_trace_elbo_on_a_gaussian():
    model = Model.from_logdensity(gaussian_log_density, 2)
    a = NFVI("scale-hh*2-loc", model).fit(2000, n_mc=8, elbo="meanfield", progress=False)
    assert abs(a.elbo(20_000)) < 0.02


@pytest.mark.slow
def test_pot1_planar8_beats_pymc3_at_its_step_count():
    # REFERENCE.md: PyMC3 reaches KL ~ 0.135 with planar*8, 25,000 steps, 100 particles.
    target = get("pot1")
    model = Model.from_logdensity(target.log_density, 2)
    # The fitted KL depends on the seed (which local optimum the planar steps reach):
    # 0.05-0.26 over seeds 0-9, 6 or 7 of 10 below 0.135, and a change of rounding in
    # the first steps moves each seed's result (this build's median 0.082, the build
    # before the light first chunk 0.116; the median of 3 seeds was 0.095 and 0.152).
    # So the median of 10 seeds, which both builds keep under 0.135.
    kls = [target.log_Z - NFVI("planar*8", model, seed=s).fit(
        25_000, n_mc=100, progress=False).elbo(20_000) for s in range(10)]
    # The ELBO estimate from 20k draws has MC sd < 0.01, small next to the margin.
    assert np.median(kls) < 0.135, kls
