"""Callbacks of the fit loop: Tracker alignment, convergence and early stopping."""

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

from vi import NFVI, CheckParametersConvergence, EarlyStopping, Model, Tracker


def standard_gaussian(x):
    return dist.Normal(jnp.array([3.0, -1.0]), 1.0).to_event(1).log_prob(x)


MODEL = Model.from_logdensity(standard_gaussian, 2)


def test_tracker_records_the_gradients_that_made_each_update():
    lr = 0.1
    tracker = Tracker(every=1, shift=lambda p: p["auto_0_loc_mu"][0])
    approx = NFVI("loc", MODEL, jitter=0.0).fit(300, optimizer=optax.sgd(lr),
                                                callbacks=[tracker], progress=False, chunk=128)
    mu = tracker["params/auto_0_loc_mu"][:, 0]
    grads = tracker["grads/auto_0_loc_mu"][:, 0]
    assert tracker.steps.tolist() == list(range(1, 301))
    # SGD: mu_t = mu_{t-1} - lr * g_t, exactly, so every record is aligned with its step.
    np.testing.assert_allclose(mu[1:] - mu[:-1], -lr * grads[1:], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(tracker["shift"], mu)
    np.testing.assert_allclose(tracker["grad_norm"], np.linalg.norm(grads, axis=1), rtol=1e-5)
    np.testing.assert_allclose(mu[-1], approx.params["auto_0_loc_mu"][0])
    # And the fit itself reached the target mean (SGD noise: sd ~ sqrt(lr/2) per coordinate).
    assert np.all(np.abs(mu[-50:].mean(0) - np.array([3.0, -1.0])) < 0.25)


def test_tracker_thinning_matches_every():
    tracker = Tracker(every=50, grads=False)
    NFVI("scale-loc", MODEL).fit(420, callbacks=[tracker], progress=False, chunk=100)
    assert tracker.steps.tolist() == list(range(50, 401, 50))
    assert "grads/auto_0_scale_rho" not in tracker.history
    assert tracker["params/auto_0_scale_rho"].shape == (8, 1, 2)


def test_check_parameters_convergence_stops_when_parameters_settle():
    check = CheckParametersConvergence(every=100, tolerance=1e-2, diff="absolute")
    approx = NFVI("scale-loc", MODEL).fit(20_000, optimizer=optax.adam(
        optax.exponential_decay(0.05, 500, 0.1)), n_mc=4, callbacks=[check], progress=False)
    assert len(approx.hist) < 20_000 and len(approx.hist) % 100 == 0
    assert check.last_norm is not None and check.last_norm < 1e-2


def test_a_callback_raising_stop_iteration_stops_at_its_chunk():
    def stop_at_300(approx, losses, i):
        assert len(losses) == i
        if i >= 300:
            raise StopIteration

    approx = NFVI("scale-loc", MODEL).fit(5000, callbacks=[stop_at_300], chunk=100,
                                          progress=False)
    assert len(approx.hist) == 300


def test_early_stopping_on_a_plateau():
    stop = EarlyStopping(patience=500, window=100)
    approx = NFVI("scale-loc", MODEL).fit(20_000, n_mc=8, optimizer=optax.adam(0.05),
                                          callbacks=[stop], progress=False)
    assert len(approx.hist) < 20_000


@pytest.mark.parametrize("bad, error", [
    (dict(every=0), ValueError), (dict(every=2.5), ValueError),
    (dict(tolerance=-1.0), ValueError), (dict(diff="squared"), ValueError)])
def test_convergence_check_arguments(bad, error):
    with pytest.raises(error):
        CheckParametersConvergence(**bad)


def test_tracker_arguments():
    with pytest.raises(ValueError, match="positive integer"):
        Tracker(every=0)
    with pytest.raises(TypeError, match="function of the parameter dict"):
        Tracker(mean=3.0)
    with pytest.raises(KeyError, match="was not tracked"):
        Tracker()["nothing"]
