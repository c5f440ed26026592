"""NeuTra NUTS and global flow proposals (vi/neutra.py, vi/global_moves.py).

The statistical checks compare MCMC moments with known answers, within 5 Monte-Carlo
standard errors computed from ArviZ's effective sample size.
"""

from types import SimpleNamespace

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from jax.scipy import stats
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDiagonalNormal, AutoIAFNormal

from guides import AutoFlow
from vi import NFVI, Model
from vi.neutra import neutra, pulled_back_potential

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 1.35], [1.35, 2.25]])  # sd (1, 1.5), correlation 0.9
MODE = 6.0  # mixture modes at +-MODE with unit sd: an 18-nat barrier between them
RIGHT_WEIGHT = 0.7


def gaussian_model() -> None:
    numpyro.sample("x", dist.MultivariateNormal(jnp.asarray(MEAN), jnp.asarray(COV)))


def funnel_model() -> None:
    v = numpyro.sample("v", dist.Normal(0.0, 1.0))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([2]).to_event(1))


def mixture_model() -> None:
    x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real, (), ()))
    log_w = jnp.log(jnp.array([1 - RIGHT_WEIGHT, RIGHT_WEIGHT]))
    numpyro.factor("lp", jax.nn.logsumexp(log_w + stats.norm.logpdf(x, jnp.array([-MODE, MODE]))))


Y = np.array([0.3, -1.2, 2.1, 0.8, 1.5])


def positive_model(y: np.ndarray) -> None:
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def fit(model, guide, steps: int, *args) -> SimpleNamespace:
    """A stand-in Approximation: a NumPyro autoguide fitted by SVI for ``steps`` steps."""
    svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
    if steps:
        params = svi.run(jax.random.key(1), steps, *args, progress_bar=False).params
    else:
        params = svi.get_params(svi.init(jax.random.key(1), *args))
    return SimpleNamespace(
        guide=guide,
        params=params,
        model=SimpleNamespace(fn=model, args=args, kwargs={}),
        n_grad_evals=steps,
    )


def assert_moment(draws: np.ndarray, truth: float, what: str) -> None:
    """|mean of draws (chains, draws) - truth| within 5 Monte-Carlo standard errors."""
    ess = float(az.ess(np.asarray(draws)))
    se = float(np.std(draws)) / np.sqrt(ess)
    assert abs(float(np.mean(draws)) - truth) < 5 * se, (what, np.mean(draws), truth, se, ess)


@pytest.fixture(scope="module")
def gaussian_run():
    """A deliberately poor flow: ``planar*4`` (no analytic inverse) after 30 NFVI steps."""
    approx = NFVI("planar*4", Model(gaussian_model), seed=0).fit(30, progress=False)
    assert approx.n_grad_evals == 30
    return neutra(approx, num_warmup=300, num_samples=500, num_chains=2, seed=3)


@pytest.mark.parametrize(
    "make_guide",
    [
        lambda model: AutoIAFNormal(model, num_flows=2, hidden_dims=[8]),
        lambda model: AutoFlow(model, "scale-planar*3-radial-loc"),
    ],
    ids=["numpyro-iaf", "autoflow-planar-radial"],
)
def test_pulled_back_density_matches_direct_computation(make_guide):
    """U(z) = -log pi(f(z)) - log|det df/dz| with f = constrain o T, Jacobian by jacfwd."""
    guide = make_guide(positive_model)
    approx = fit(positive_model, guide, 0, Y)
    # Both flows start near the identity; perturb so that T is far from it.
    leaves, treedef = jax.tree.flatten(approx.params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    approx.params = jax.tree.unflatten(
        treedef,
        [p + 0.5 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)],
    )
    transform = guide.get_transform(approx.params)

    def constrained(z):
        sites = guide._unpack_and_constrain(transform(z), approx.params)
        return jnp.stack([sites["mu"], sites["sigma"]])

    def direct(z):
        mu, sigma = constrained(z)
        log_pi = (
            stats.norm.logpdf(mu)
            + jnp.log(2.0)
            + stats.norm.logpdf(sigma)
            + jnp.sum(stats.norm.logpdf(Y, mu, sigma))
        )
        return -(log_pi + jnp.linalg.slogdet(jax.jacfwd(constrained)(z))[1])

    z = jax.random.normal(jax.random.key(2), (5, 2))
    got = jax.jit(jax.vmap(pulled_back_potential(approx)))(z)
    np.testing.assert_allclose(got, jax.jit(jax.vmap(direct))(z), rtol=1e-5, atol=1e-5)


def test_gaussian_moments_exact_with_poor_flow(gaussian_run):
    x = gaussian_run.posterior["x"].values  # (chains, draws, 2)
    assert x.shape == (2, 500, 2)
    for i in range(2):
        assert_moment(x[..., i], MEAN[i], f"mean x[{i}]")
        assert_moment((x[..., i] - MEAN[i]) ** 2, COV[i, i], f"var x[{i}]")
    assert_moment((x[..., 0] - MEAN[0]) * (x[..., 1] - MEAN[1]), COV[0, 1], "cov")


def test_inference_data_and_gradient_counts(gaussian_run):
    idata = gaussian_run
    stats_ = idata.sample_stats
    for name in ("diverging", "n_steps", "acceptance_rate", "step_size", "tree_depth"):
        assert stats_[name].shape == (2, 500), name
    assert idata.warmup_posterior["x"].shape == (2, 300, 2)
    assert int(stats_["diverging"].sum()) == 0
    # No global moves: sampling gradients are exactly the leapfrog steps.
    assert idata.attrs["n_grad_sampling"] == int(stats_["n_steps"].sum())
    assert idata.attrs["n_grad_warmup"] == int(idata.warmup_sample_stats["n_steps"].sum())
    assert idata.attrs["n_grad_training"] == 30
    assert not stats_["global_proposed"].any()
    assert np.isnan(idata.attrs["global_acceptance_rate"])
    assert set(az.summary(idata).index) == {"x[0]", "x[1]"}


@pytest.mark.slow
def test_funnel_moments_exact_with_poor_flow():
    approx = fit(funnel_model, AutoDiagonalNormal(funnel_model), 30)
    idata = neutra(
        approx, num_warmup=400, num_samples=800, num_chains=2, seed=4, chain_method="sequential"
    )
    v, x = idata.posterior["v"].values, idata.posterior["x"].values
    assert_moment(v, 0.0, "mean v")
    assert_moment(v**2, 1.0, "var v")
    for i in range(2):
        assert_moment(x[..., i], 0.0, f"mean x[{i}]")
        assert_moment(x[..., i] ** 2, np.exp(0.5), f"var x[{i}]")  # E exp(v) = e^(1/2)


@pytest.fixture(scope="module")
def wide_mixture_approx():
    """A wide Gaussian transport (x = 6 z) that covers both modes; not fitted."""
    approx = fit(mixture_model, AutoDiagonalNormal(mixture_model), 0)
    approx.params = {"auto_loc": jnp.zeros(1), "auto_scale": jnp.full(1, MODE)}
    return approx


def run_mixture(approx, global_every):
    left = jnp.full((2, 1), -1.0)  # latent -1 is x = -6: both chains start in the left mode
    return neutra(
        approx,
        num_warmup=300,
        num_samples=600,
        num_chains=2,
        seed=5,
        global_every=global_every,
        init_latent=left,
    )


@pytest.mark.slow
def test_global_moves_find_mode_weights(wide_mixture_approx):
    idata = run_mixture(wide_mixture_approx, global_every=2)
    right = (idata.posterior["x"].values > 0).astype(float)
    ess = float(az.ess(right))
    se = np.sqrt(RIGHT_WEIGHT * (1 - RIGHT_WEIGHT) / ess)
    assert abs(right.mean() - RIGHT_WEIGHT) < 5 * se, (right.mean(), se, ess)
    proposed = idata.sample_stats["global_proposed"].values
    assert proposed.sum() == 2 * 600 // 2  # one proposal every second transition, per chain
    assert 0 < idata.attrs["global_acceptance_rate"] < 1
    assert idata.attrs["n_grad_sampling"] == int(idata.sample_stats["n_steps"].sum()) + 600


@pytest.mark.slow
def test_without_global_moves_chains_stay_in_their_mode(wide_mixture_approx):
    """Each chain keeps the mode it ends warm-up in (early warm-up, with a step size not
    yet adapted, may leap across): every chain's fraction is 0 or 1, never the true 0.7."""
    idata = run_mixture(wide_mixture_approx, global_every=None)
    right_per_chain = (idata.posterior["x"].values > 0).mean(axis=1)
    assert set(right_per_chain.tolist()) <= {0.0, 1.0}, right_per_chain


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_chains": 0}, ValueError, "num_chains"),
        ({"num_samples": 2.5}, ValueError, "num_samples"),
        ({"global_every": 0}, ValueError, "global_every"),
        ({"chain_method": "parallel"}, ValueError, "chain_method"),
        ({"potential_fn": abs}, TypeError, "potential_fn"),
        ({"init_latent": jnp.zeros((3, 2))}, ValueError, "init_latent"),
        ({"refit": -1}, ValueError, "refit must be"),
        ({"refit": 1}, ValueError, "refit needs an AutoFlow guide"),
    ],
)
def test_bad_input_is_refused(kwargs, error, match):
    approx = fit(gaussian_model, AutoDiagonalNormal(gaussian_model), 0)
    with pytest.raises(error, match=match):
        neutra(approx, **kwargs)


def test_refuses_non_autocontinuous_guide():
    def guide() -> None:
        numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    approx = SimpleNamespace(
        guide=guide, params={}, model=SimpleNamespace(fn=gaussian_model, args=(), kwargs={})
    )
    with pytest.raises(TypeError, match="AutoContinuous"):
        neutra(approx)


@pytest.fixture(scope="module")
def narrow_left_approx():
    """An AutoFlow ``scale-loc`` sitting on the left mode only, as a mode-seeking
    variational fit would: x = -6 + z. Latent z = 12 is the right mode's centre."""
    guide = AutoFlow(mixture_model, "scale-loc")
    approx = fit(mixture_model, guide, 0)
    approx.params = {"auto_0_scale_rho": jnp.log(jnp.expm1(jnp.ones((1, 1)))),
                     "auto_1_loc_mu": jnp.full((1, 1), -MODE)}
    return approx


def run_refit(approx, refit):
    # 8 chains, half started in each mode; a global proposal after every transition
    start = jnp.array([0.0, 2 * MODE] * 4)[:, None]
    return neutra(approx, num_warmup=400, num_samples=1000, num_chains=8, seed=7,
                  global_every=1, init_latent=start, refit=refit, refit_steps=300,
                  refit_lr=0.1)


@pytest.mark.slow
def test_refit_spreads_a_one_mode_flow_so_global_moves_find_the_weights(narrow_left_approx):
    """Without re-fitting, proposals z' ~ N(0, 1) land only in the left mode and are
    never accepted from the right one: every chain keeps the mode it ends warm-up in
    (early warm-up may leap across), so each chain's right fraction is 0 or 1 and
    the whole is k/8, never 0.7. Re-fitted to the chains' states of the first
    warm-up window, q covers both modes and the right-mode fraction is 0.7 within MC
    error."""
    stuck = run_refit(narrow_left_approx, refit=0)
    right_per_chain = (stuck.posterior["x"].values > 0).mean(axis=1)
    assert set(right_per_chain.tolist()) <= {0.0, 1.0}, right_per_chain
    assert stuck.attrs["n_refits"] == 0

    idata = run_refit(narrow_left_approx, refit=1)
    assert idata.attrs["n_refits"] == 1
    right = (idata.posterior["x"].values > 0).astype(float)
    se = np.sqrt(RIGHT_WEIGHT * (1 - RIGHT_WEIGHT) / float(az.ess(right)))
    assert abs(right.mean() - RIGHT_WEIGHT) < 5 * se, (right.mean(), se)
    assert idata.attrs["global_acceptance_rate"] > 0.05
    # warm-up records both windows; re-fitting spends no target gradient
    assert idata.warmup_posterior["x"].shape == (8, 400)
    assert idata.attrs["n_grad_warmup"] == int(idata.warmup_sample_stats["n_steps"].sum()) + 8 * 400
