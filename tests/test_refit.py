"""vi.refit.refit_flow: maximum-likelihood fine-tuning of an AutoFlow's flow on points."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from guides import AutoFlow
from vi.refit import refit_flow


def two_site_model():
    numpyro.sample("a", dist.Normal(0.0, 1.0))
    numpyro.sample("b", dist.Normal(0.0, 1.0))


@pytest.fixture(scope="module")
def guide_and_params():
    guide = AutoFlow(two_site_model, "scale-loc")
    trace = handlers.trace(handlers.seed(guide, 0)).get_trace()
    return guide, {k: v["value"] for k, v in trace.items() if v["type"] == "param"}


def test_gaussian_flow_lands_on_the_maximum_likelihood_estimate(guide_and_params):
    guide, params = guide_and_params
    x = jnp.array([3.0, -1.0]) + jnp.array([2.0, 0.5]) * jax.random.normal(
        jax.random.key(0), (4000, 2))
    fitted, losses = refit_flow(guide, params, x, steps=10_000, lr=0.02)
    flow_params = guide.flow_params(fitted)
    scale = jax.nn.softplus(flow_params["0_scale"]["rho"][0])
    # the ML Gaussian is the sample mean and the (ddof=0) sample standard deviation
    np.testing.assert_allclose(flow_params["1_loc"]["mu"][0], x.mean(0), atol=2e-3)
    np.testing.assert_allclose(scale, x.std(0), rtol=2e-3)
    # and the loss it reports is the average negative log-likelihood along the way
    assert float(losses[-1]) == pytest.approx(
        -float(jnp.mean(guide.flow.log_prob(flow_params, x))), abs=1e-4)
    assert float(losses[-1]) < float(losses[0])


def test_a_non_finite_refit_keeps_the_current_parameters(guide_and_params):
    guide, params = guide_and_params
    x = jnp.array([[0.0, 1.0], [jnp.inf, 0.0]])
    kept, _ = refit_flow(guide, params, x, steps=5, lr=0.1)
    assert all(np.array_equal(kept[k], params[k]) for k in params)
