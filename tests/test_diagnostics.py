"""A fit that grades itself (vi.diagnostics, Approximation.diagnose / sample(resample=True))
and the automatic recipe (guides.recipe, NFVI("auto"))."""

import math
import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import flows
from guides import AutoFlow
from guides.recipe import recipe
from vi import NFVI, Model
from vi.diagnostics import Diagnosis, khat_threshold

RHO = 0.95
COV = jnp.array([[1.0, RHO], [RHO, 1.0]])


def correlated_gaussian() -> Model:
    return Model.from_logdensity(
        lambda x: dist.MultivariateNormal(jnp.zeros(2), COV).log_prob(x), dim=2)


def test_khat_separates_an_exact_full_rank_fit_from_a_badly_narrow_mean_field_one():
    """Mean-field q on a correlation-0.95 Gaussian is narrow along the long axis: its
    variance there is (1 - rho^2) / (1 + rho) = 0.05 of p's, and for q = N(0, s^2 p's)
    the weights p/q have moments below order 1 / (1 - s^2), so k = 1 - s^2 = 0.95.
    A full-rank fit is exact (k <= 0). k-hat's sampling error at 4,096 draws is
    about 0.05-0.1, far inside both margins."""
    full = NFVI("affine-loc", correlated_gaussian(), seed=0).fit(
        1500, n_mc=4, elbo="stl", progress=False).diagnose(4096, key=1)
    narrow = NFVI("scale-loc", correlated_gaussian(), seed=0).fit(
        1500, n_mc=4, progress=False).diagnose(4096, key=1)
    assert full.khat < 0.5 and full.usable
    assert narrow.khat > 0.7 and not narrow.usable
    assert "not usable" in narrow.verdict and "'affine-loc'" in narrow.verdict
    # log Z = 0 here, so the ELBO is -KL(q || p) <= 0: exact for the full-rank fit
    assert abs(full.elbo) < 5 * full.elbo_se + 1e-3
    # mean-field KL on a Gaussian: 0.5 log(det diag / det cov) with q's variances 1 - rho^2
    kl = 0.5 * math.log(1.0 / (1.0 - RHO ** 2))
    assert abs(-narrow.elbo - kl) < 5 * narrow.elbo_se + 0.02


B = 0.4


def skewed(x):
    """x1 ~ N(0, 1), x2 | x1 ~ N(B x1^2, 1): E[x2] = B, sd(x2) = sqrt(1 + 2 B^2).
    The mean-field Gaussian that minimises KL(q || p) has sd(x1)^2 = s^2 with
    1 = s^2 + 4 B^2 s^4 (0.693) and E_q[x2] = B s^2 = 0.277: a bias of 0.12."""
    return dist.Normal(0.0, 1.0).log_prob(x[0]) + dist.Normal(B * x[0] ** 2, 1.0).log_prob(x[1])


def test_importance_resampling_removes_the_bias_of_a_gaussian_fit_to_a_skewed_target():
    approx = NFVI("scale-loc", Model.from_logdensity(skewed, 2), seed=0).fit(
        2000, n_mc=8, progress=False)
    n = 20_000
    raw = np.asarray(approx.sample(n, key=3))[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # k-hat < 0.7 here: no "unreliable" warning
        resampled = np.asarray(approx.sample(n, key=4, resample=True))[:, 1]
    # The resampled mean's error: the importance estimate from M = 4n draws with ESS
    # about M / 2 or more, plus resampling noise of n draws.
    se = math.sqrt(1 + 2 * B ** 2) * math.sqrt(2 / (4 * n) + 1 / n)
    raw_error, resampled_error = abs(raw.mean() - B), abs(resampled.mean() - B)
    assert resampled_error < 4 * se
    assert raw_error > resampled_error + 4 * se  # the Gaussian's bias is real and removed


def test_diagnosis_of_known_weights_and_its_resampling():
    """log w of S draws x ~ q = N(0, 2^2) against p = N(0, 1): q is wider, w is
    bounded (k = 1 - 4 < 0), and resampling x by w gives draws of variance about 1."""
    rng = np.random.default_rng(0)
    x = 2.0 * rng.normal(size=8000)
    log_w = -0.5 * x ** 2 + 0.5 * (x / 2) ** 2 + math.log(2.0)
    diagnosis = Diagnosis.from_log_weights(log_w, jnp.asarray(x[:, None]))
    assert diagnosis.khat < 0.5 and diagnosis.usable
    np.testing.assert_allclose(np.exp(diagnosis.log_weights).sum(), 1.0, rtol=1e-9)
    draws = np.asarray(diagnosis.resample(20_000, key=0))[:, 0]
    # the variance of the resampled draws: 1 within 10% (ESS about S / 2)
    assert abs(draws.var() - 1.0) < 0.1
    assert khat_threshold(8000) == 0.7


def test_diagnosis_refuses_too_few_or_malformed_weights():
    with pytest.raises(ValueError, match="at least 100 log weights"):
        Diagnosis.from_log_weights(np.zeros(50))
    with pytest.raises(ValueError, match="at least 100 log weights"):
        Diagnosis.from_log_weights(np.zeros((200, 2)))


def test_recipe_by_dimension_and_bad_dimensions():
    assert recipe(1).formula == "scale-loc"
    for dim in (2, 10, 300):
        formula = recipe(dim).formula
        assert "affine" in formula  # always at least the full-rank Gaussian
    # sticking the landing from the unit start only (it broke the larger zoo models)
    assert [recipe(d).elbo for d in (1, 2, 10, 11, 150, 151)] == [
        "trace", "stl", "stl", "trace", "trace", "trace"]
    assert "iaf" in recipe(150).formula and "iaf" not in recipe(151).formula
    # spline bends between the unit-start region and the larger models only
    assert ["rqs" in recipe(d).formula for d in (10, 11, 64, 65)] == [
        False, True, True, False]
    for dim in (2, 11, 64, 65, 150):  # each a formula the parser takes at that dimension
        flows.Flow(recipe(dim).formula, dim)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="latent dimension"):
            recipe(bad)


def regression(x, y=None):
    a = numpyro.sample("a", dist.Normal(0.0, 2.0))
    b = numpyro.sample("b", dist.Normal(0.0, 2.0).expand([2]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(a + x @ b, s), obs=y)


def test_auto_resolves_once_the_latent_dimension_is_known_and_says_what_it_chose():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(30, 2)), jnp.float32)
    y = 1.0 + x @ jnp.array([0.5, -1.0])
    guide = AutoFlow(regression, "auto")
    assert guide.formula is None  # not known before the model is seen
    handlers.seed(guide, 0)(x, y=y)
    chosen = str(flows.parse(recipe(4).formula))  # canonical form
    assert str(guide.formula) == chosen
    assert guide.init_scale == recipe(4).init_scale == 1.0  # the recipe's own start
    plain = AutoFlow(regression, "affine-loc")
    handlers.seed(plain, 0)(x, y=y)
    assert plain.init_scale == 0.1  # a model guide's default
    inf = NFVI(" Auto ", Model(regression, x, y=y))
    assert "auto" in repr(inf)
    approx = inf.fit(300, n_mc=2, progress=False)
    assert approx.formula == chosen
    # d = 4: the default ELBO is the recipe's sticking-the-landing gradient, step for
    # step (the same seed gives the same losses as asking for it, not as "trace")
    model = Model(regression, x, y=y)
    stl = NFVI("auto", model).fit(300, n_mc=2, progress=False, elbo="stl")
    trace = NFVI("auto", model).fit(300, n_mc=2, progress=False, elbo="trace")
    np.testing.assert_array_equal(approx.hist, stl.hist)
    assert np.abs(approx.hist - trace.hist).max() > 1e-3


def test_auto_default_elbo_falls_back_to_trace_where_stl_cannot_run():
    # a numpyro.param in the model: STL would refuse it, so the default is "trace"
    def with_param(y):
        shift = numpyro.param("shift", 0.0)
        m = numpyro.sample("m", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(m.sum() + shift, 1.0), obs=y)

    model = Model(with_param, jnp.array([0.3, -0.2]))
    default = NFVI("auto", model).fit(100, progress=False)
    trace = NFVI("auto", model).fit(100, progress=False, elbo="trace")
    np.testing.assert_array_equal(default.hist, trace.hist)
