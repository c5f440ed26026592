"""Bad input to the public functions of flows, guides and vi: each wrong type, shape or
value is refused with a clear error (the argument, the value, the fix) before any work.

Checks that other test files already cover (formula errors, fit's n / n_mc / elbo,
neutra's counts, ...) are not repeated here; one case per check added by issue 15.
"""

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import flows
from flows import DensityFit, Flow, FlowTransform
from guides import AutoFlow
from guides.autoflow import flow_param_names
from vi import (
    NFVI,
    Approximation,
    CheckParametersConvergence,
    EarlyStopping,
    Model,
    Tracker,
    default_optimizer,
    load,
    neutra,
)

KEY = jax.random.key(0)


def gaussian(x):
    return -0.5 * jnp.sum(x * x)


def two_sites():
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.sample("s", dist.LogNormal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu.sum(), 1.0), obs=0.5)


def all_observed(y):
    numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)


@pytest.fixture(scope="module")
def flow():
    return Flow("scale-loc", 2)


@pytest.fixture(scope="module")
def params(flow):
    return flow.init(KEY)


@pytest.fixture(scope="module")
def guide():
    """An AutoFlow whose prototype is built (its flow exists), nothing fitted."""
    guide = AutoFlow(two_sites, "scale-loc")
    handlers.seed(guide._setup_prototype, 0)()
    return guide


@pytest.fixture(scope="module")
def logdensity_approx(flow, params):
    leaves = dict(zip(flow_param_names(flow, "auto"), jax.tree.leaves(params), strict=True))
    return Approximation(guide=None, model=None, flow=flow, params=leaves, hist=np.zeros(0))


@pytest.fixture(scope="module")
def model_approx(guide):
    leaves = jax.tree.leaves(guide.flow.init(KEY))
    params = dict(zip(guide.param_names, leaves, strict=True))
    return Approximation(guide=guide, model=Model(two_sites), params=params, hist=np.zeros(0))


# --- flows -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"key": 0}, TypeError, r"key must be one JAX random key such as .*, got 0"),
    ({"jitter": "0.1"}, TypeError, "jitter must be a non-negative number, got '0.1'"),
    ({"jitter": float("inf")}, ValueError, "jitter must be .* got inf; give a finite value"),
    ({"scale": float("inf")}, ValueError, "scale must be a positive number, got inf"),
])
def test_flow_init(flow, kwargs, error, match):
    args = {"key": KEY} | kwargs
    with pytest.raises(error, match=match):
        flow.init(**args)


def test_flow_forward_refuses_a_non_numeric_z(flow, params):
    with pytest.raises(TypeError, match=r"z must be a numeric array of shape \(\.\.\., 2\)"):
        flow.forward(params, "zeros")


@pytest.mark.parametrize(("args", "error", "match"), [
    ((np.zeros(2, np.float32), (3,)), TypeError, "key must be one JAX random key"),
    ((KEY, 5), TypeError, r"shape must be a shape.*\(1000,\), got 5"),
    ((KEY, (-1,)), TypeError, r"shape must be a shape.*got \(-1,\)"),
])
def test_flow_sample_and_log_prob(flow, params, args, error, match):
    with pytest.raises(error, match=match):
        flow.sample_and_log_prob(params, *args)


def test_flow_transform_needs_a_flow(params):
    with pytest.raises(TypeError, match=r"FlowTransform needs a flows\.Flow, got str"):
        FlowTransform("scale-loc", params)


def test_flow_transform_refuses_foreign_params(flow):
    with pytest.raises(ValueError, match=re.escape("params do not belong to Flow('scale-loc'")):
        flow.transform({"0_scale": {"rho": jnp.zeros((1, 3))}})


def test_register_needs_a_bijection_class():
    with pytest.raises(TypeError, match=r"register takes a subclass of flows\.Bijection"):
        flows.register(int)


def test_lookup_needs_a_string():
    with pytest.raises(TypeError, match="a flow name is a string such as 'planar', got 3"):
        flows.lookup(3)


def test_option_kind():
    with pytest.raises(TypeError, match="Option kind must be one of int, float, bool, str"):
        flows.Option(list, [])


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"learning_rate": -1e-3}, ValueError, "learning_rate must be a positive number, got -0.001"),
    ({"optimizer": "adam"}, TypeError, "optimizer must be an optax GradientTransformation"),
    ({"seed": "a"}, TypeError, "seed must be an integer, got 'a'"),
    ({"validation": "10%"}, TypeError, "validation must be a number, got '10%'"),
])
def test_fit_to_samples(kwargs, error, match):
    with pytest.raises(error, match=match):
        flows.fit_to_samples("scale-loc", np.ones((50, 2)), **kwargs)


@pytest.mark.parametrize(("n", "error", "match"), [
    (2.5, TypeError, "n must be a positive integer, got 2.5"),
    (-1, ValueError, "n must be a positive integer, got -1"),
])
def test_density_fit_sample(flow, params, n, error, match):
    fit = DensityFit(flow, params, jnp.zeros(2), jnp.ones(2), history={})
    with pytest.raises(error, match=match):
        fit.sample(KEY, n)


# --- guides ------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "kwargs", "error", "match"), [
    (("not a model",), {}, TypeError, "AutoFlow needs a NumPyro model function"),
    ((two_sites,), {"prefix": 3}, TypeError, "prefix must be a string such as 'auto', got 3"),
    ((two_sites,), {"prefix": ""}, ValueError, "prefix must be a non-empty string"),
    ((two_sites,), {"init_loc_fn": "median"}, TypeError, "init_loc_fn must be a NumPyro init"),
    ((two_sites,), {"jitter": True}, TypeError, "jitter must be a non-negative number, got True"),
    ((two_sites,), {"init_scale": float("inf")}, ValueError, "init_scale must be a positive"),
])
def test_autoflow_constructor(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        AutoFlow(*args, **kwargs)


def test_autoflow_refuses_a_model_without_latent_variables():
    guide = AutoFlow(all_observed, "planar*2")
    with pytest.raises(ValueError, match=r"all_observed has no latent variable.*\['y'\]"):
        handlers.seed(guide, 0)(1.0)


@pytest.mark.parametrize(("key", "params", "kwargs", "error", "match"), [
    (KEY, {}, {}, ValueError, r"params lack the flow's sites \['auto_0_scale_rho'"),
    (KEY, None, {}, TypeError, "params must be the dict of parameter sites"),
    (KEY, "params", {"sample_shape": 3}, TypeError, r"sample_shape must be a shape"),
    (0, {}, {}, TypeError, "rng_key must be one JAX random key"),
])
def test_autoflow_sample_posterior(guide, key, params, kwargs, error, match):
    if params == "params":
        params = dict(zip(guide.param_names, jax.tree.leaves(guide.flow.init(KEY)), strict=True))
    with pytest.raises(error, match=match):
        guide.sample_posterior(key, params, **kwargs)


# --- vi: models and NFVI -----------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"name": ""}, ValueError, "name must be a non-empty string"),
    ({"init": [0.0, np.nan]}, ValueError, r"init must be a finite point of R\^2"),
    ({"init": "origin"}, TypeError, r"init must be an array of shape \(2,\), got 'origin'"),
])
def test_from_logdensity(kwargs, error, match):
    with pytest.raises(error, match=match):
        Model.from_logdensity(gaussian, 2, **kwargs)


def test_from_logdensity_refuses_a_vector_valued_density():
    model = Model.from_logdensity(lambda x: -0.5 * x**2, 2)
    with pytest.raises(ValueError, match=r"must return a scalar .* got shape \(2,\): sum"):
        handlers.substitute(model.fn, data={"x": jnp.zeros(2)})()


def test_nfvi_seed_must_be_an_integer():
    with pytest.raises(TypeError, match="seed must be an integer, got '1'"):
        NFVI("scale-loc", Model.from_logdensity(gaussian, 2), seed="1")


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"callbacks": Tracker()}, TypeError, r"callbacks must be a list .* callbacks=\[cb\]"),
    ({"learning_rate": float("inf")}, ValueError, "learning_rate must be .* give a finite"),
])
def test_fit_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        NFVI("scale-loc", Model.from_logdensity(gaussian, 2)).fit(10, progress=False, **kwargs)


def test_default_optimizer_rate_must_be_finite():
    with pytest.raises(ValueError, match="learning_rate must be a positive number, got inf"):
        default_optimizer(float("inf"))


# --- vi: approximations and files --------------------------------------------------------

@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda a: a.sample(3, key="seed"), TypeError, r"key \(None, an int seed or a JAX key\)"),
    (lambda a: a.elbo(num_samples=0), ValueError, "num_samples must be a positive integer"),
    (lambda a: a.to_inference_data(0), ValueError, "num_samples must be a positive integer"),
    (lambda a: a.save(3), TypeError, "path must be a file path"),
])
def test_approximation_methods(logdensity_approx, call, error, match):
    with pytest.raises(error, match=match):
        call(logdensity_approx)


@pytest.mark.parametrize(("x", "match"), [
    ({"mu": jnp.zeros(2)}, r"x lacks the latent site\(s\) \['s'\]"),
    ({"mu": jnp.zeros((5, 3)), "s": jnp.ones(5)},
     r"x\['mu'\] must have shape \(\.\.\., \*\(2,\)\)"),
    ({"mu": jnp.zeros((5, 2)), "s": jnp.ones(4)}, r"x\['s'\] must have shape \(5,\) \+ \(\)"),
])
def test_approximation_log_prob_of_site_values(model_approx, x, match):
    with pytest.raises(ValueError, match=match):
        model_approx.log_prob(x)


def test_load_refuses_a_path_that_is_not_one():
    with pytest.raises(TypeError, match="path must be a file path"):
        load(3)


def test_load_refuses_a_npy_file(tmp_path):
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"not a readable nfvi approximation file .*one array"):
        load(tmp_path / "array.npy")


def test_load_needs_a_model_object(tmp_path):
    with pytest.raises(TypeError, match=r"model must be a vi\.Model"):
        load(tmp_path / "any.npz", model=two_sites)


# --- vi: NeuTra --------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"n_mc": 0}, TypeError, r"unknown argument\(s\) \['n_mc'\]"),
    ({"max_tree_dept": 5}, TypeError, "did you mean 'max_tree_depth'"),
    ({"seed": 1.5}, TypeError, "seed must be an integer, got 1.5"),
    ({"init_latent": jnp.full((2, 3), jnp.nan)}, ValueError, "init_latent must be finite"),
    ({"target_accept_prob": 80}, ValueError, "target_accept_prob must be a probability"),
])
def test_neutra(model_approx, kwargs, error, match):
    with pytest.raises(error, match=match):
        neutra(model_approx, **kwargs)


# --- vi: callbacks -----------------------------------------------------------------------

@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: Tracker(params="yes"), TypeError, "Tracker params must be True or False"),
    (lambda: Tracker(grad_norm=jnp.sum), ValueError, "'grad_norm' is taken"),
    (lambda: CheckParametersConvergence(tolerance="1e-3"), TypeError,
     "tolerance must be a positive number, got '1e-3'"),
    (lambda: CheckParametersConvergence(ord="fro"), TypeError, "ord must be the order of"),
    (lambda: EarlyStopping(patience=2.5), TypeError, "patience must be a positive integer"),
    (lambda: EarlyStopping(window="100"), TypeError, "window must be a positive integer"),
    (lambda: EarlyStopping(min_delta=-0.1), ValueError, "min_delta must be a non-negative"),
])
def test_callback_arguments(make: Any, error, match):
    with pytest.raises(error, match=match):
        make()
