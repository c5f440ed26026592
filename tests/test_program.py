"""vi.program, vi.optim and vi.plan: the compiled fit program is reused, continuation is
exact, what changes between calls is traced state, bad fit arguments fail early."""

from concurrent.futures import Future

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import vi.program
from vi import NFVI, Model, Tracker, default_optimizer
from vi.keys import call_keys
from vi.nfvi import INIT_RETRIES
from vi.optim import optimizer_signature, scale_by_fit_cosine, start_call
from vi.program import LIGHT_FLOPS, light_steps

MEAN = jnp.array([1.0, -2.0])


def counted_model() -> tuple[Model, list[int]]:
    """A 2-d Gaussian log density that counts how often it is traced."""
    traces = [0]

    def log_density(x):
        traces[0] += 1  # Python side effect: runs once per trace, never per step
        return dist.Normal(MEAN, 1.0).to_event(1).log_prob(x)

    return Model.from_logdensity(log_density, 2), traces


def test_a_second_fit_with_the_same_structure_traces_nothing():
    model, traces = counted_model()
    inf = NFVI("planar*3", model)
    inf.fit(300, n_mc=2, progress=False)
    after_first = traces[0]
    inf.fit(300, n_mc=2, progress=False)
    inf.fit(1700, n_mc=2, progress=False)  # another n: a traced limit, not a constant
    inf.fit(200, n_mc=2, progress=False, learning_rate=3e-3)  # a traced rate
    assert traces[0] == after_first
    assert len(inf.hist) == 2500
    inf.fit(100, n_mc=4, progress=False)  # a new structure does trace
    assert traces[0] > after_first


def test_a_new_optimizer_object_of_the_same_kind_reuses_the_program():
    model, traces = counted_model()
    inf = NFVI("planar*2", model)
    inf.fit(200, optimizer=optax.adam(1e-2), progress=False)
    after_first = traces[0]
    inf.fit(200, optimizer=optax.adam(1e-2), progress=False)
    assert traces[0] == after_first
    inf.fit(200, optimizer=optax.adam(1e-3), progress=False)  # another constant: compiles
    assert traces[0] > after_first


@pytest.mark.parametrize("light", [0, 600])
@pytest.mark.parametrize("splits", [(500, 500), (300, 1200)])
def test_continuation_is_exact(splits, light, monkeypatch):
    """fit(a) then fit(b) equals fit(a + b) with the same optimizer and keys, also
    across the switch from the first program (the rolled loop for one chunk of 200
    steps, or the light tier for 600 steps) to the unrolled one."""
    monkeypatch.setattr(vi.program, "light_steps", lambda lowered, length: light)
    model, _ = counted_model()
    opt = optax.adam(1e-2)
    parts = NFVI("planar*3", model, seed=1)
    for n in splits:
        parts.fit(n, optimizer=opt, n_mc=2, chunk=200, progress=False)
    whole = NFVI("planar*3", model, seed=1).fit(sum(splits), optimizer=optax.adam(1e-2),
                                                 n_mc=2, chunk=200, progress=False)
    np.testing.assert_array_equal(parts.hist, whole.hist)
    for name, value in whole.params.items():
        np.testing.assert_array_equal(parts.approx.params[name], value)


def test_the_first_programs_differ_so_the_switch_must_not_depend_on_timing(monkeypatch):
    """The light tier, the rolled loop and the unrolled program compute the same steps
    up to rounding, not bit for bit: which one runs a step has to be fixed by the
    step's index for continuation to stay exact (the test above)."""
    model, _ = counted_model()
    fits = {}
    for light in (0, 600):
        monkeypatch.setattr(vi.program, "light_steps", lambda lowered, length, n=light: n)
        fits[light] = NFVI("planar*3", model, seed=1).fit(
            1000, optimizer=optax.adam(1e-2), n_mc=2, chunk=200, progress=False)
    # the same first steps (rounding grows along a trajectory), different bits
    np.testing.assert_allclose(fits[0].hist[:20], fits[600].hist[:20], rtol=1e-5)
    assert not np.array_equal(fits[0].hist, fits[600].hist)


def test_a_new_optimizer_object_does_not_run_the_first_program_again(monkeypatch):
    """A new optimizer object restarts the optimizer's step count, not the runner's:
    the light program runs a runner's first steps once (here 600), then the fast one."""
    monkeypatch.setattr(vi.program, "light_steps", lambda lowered, length: 600)
    model, _ = counted_model()
    inf = NFVI("planar*3", model, seed=1)
    inf.fit(600, optimizer=optax.adam(1e-2), n_mc=2, chunk=200, progress=False)
    (runner,) = inf._program._runners.values()
    ran_again = Future()
    ran_again.set_exception(AssertionError("the first program ran again"))
    runner._first = ran_again
    inf.fit(400, optimizer=optax.adam(1e-2), n_mc=2, chunk=200, progress=False)
    assert len(inf.hist) == 1000 and np.all(np.isfinite(inf.hist))


def test_fit_cosine_follows_its_formula_and_restarts_each_call():
    opt = scale_by_fit_cosine(peak=0.5, alpha=0.1)
    state = start_call(opt.init(None), n=4, learning_rate=None)
    rates = []
    for _ in range(6):
        update, state = opt.update(jnp.ones(()), state)
        rates.append(-float(update))
    t = np.minimum(np.arange(6), 4) / 4
    np.testing.assert_allclose(rates, 0.5 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t))),
                               rtol=1e-6)
    state = start_call(state, n=10, learning_rate=0.2)
    update, _ = opt.update(jnp.ones(()), state)
    assert float(update) == pytest.approx(-0.2)


def test_learning_rate_sets_an_inject_hyperparams_optimizer():
    model, _ = counted_model()
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=1e-2)
    inf = NFVI("loc", model, jitter=0.0)
    inf.fit(1, optimizer=opt, learning_rate=0.25, progress=False)
    np.testing.assert_allclose(inf._state.opt_state.hyperparams["learning_rate"], [0.25])
    # SGD on a shift: mu_1 = mu_0 - rate * (z + mu_0 - MEAN), for the step's draw z; a
    # second step at rate 0 must leave mu where it is
    before = inf.approx.params["auto_0_loc_mu"]
    inf.fit(1, optimizer=opt, learning_rate=1e-12, progress=False)
    np.testing.assert_allclose(inf.approx.params["auto_0_loc_mu"], before, atol=1e-9)


def test_learning_rate_for_an_optimizer_without_one_is_refused_before_work():
    model, traces = counted_model()
    with pytest.raises(ValueError, match="inject_hyperparams"):
        NFVI("loc", model).fit(10, optimizer=optax.adam(1e-2), learning_rate=1e-3,
                               progress=False)
    with pytest.raises(ValueError, match="learning_rate must be a positive number"):
        NFVI("loc", model).fit(10, learning_rate=-1.0, progress=False)
    assert traces == [0]


def test_optimizer_signature_tells_computations_apart():
    params = {"a": jnp.zeros(3)}
    assert optimizer_signature(optax.adam(1e-2), params) == \
        optimizer_signature(optax.adam(1e-2), params)
    assert optimizer_signature(optax.adam(1e-2), params) != \
        optimizer_signature(optax.adam(1e-3), params)
    assert optimizer_signature(default_optimizer(1e-2), params) == \
        optimizer_signature(default_optimizer(1e-3), params)  # its rate is state


def test_a_tracker_with_the_same_fields_reuses_the_program():
    model, traces = counted_model()
    inf = NFVI("scale-loc", model)
    inf.fit(200, progress=False, callbacks=[Tracker(every=50)])
    after_first = traces[0]
    tracker = Tracker(every=50)
    inf.fit(200, progress=False, callbacks=[tracker])
    assert traces[0] == after_first
    # it records the loop's own parameters: the last record is the fitted loc
    np.testing.assert_allclose(tracker["params/auto_1_loc_mu"][-1][0],
                               inf.approx.params["auto_1_loc_mu"][0], rtol=1e-6)
    assert list(tracker.steps) == [250, 300, 350, 400]


def test_the_density_may_be_undefined_at_the_initial_point():
    """The seed notebook's U1 with the norm |z| has a NaN gradient at the origin, which
    the ELBO never evaluates: the fit retries jittered initial points."""
    def log_density(z):
        norm = jnp.sqrt(jnp.sum(z ** 2, -1))
        return -0.5 * ((norm - 2) / 0.4) ** 2

    assert not np.isfinite(jax.grad(log_density)(jnp.zeros(2))).all()
    approx = NFVI("scale-loc", Model.from_logdensity(log_density, 2), jitter=1.0).fit(
        500, n_mc=4, progress=False)
    assert approx.n_skipped == 0 and np.isfinite(approx.hist).all()
    with pytest.raises(ValueError, match="not finite at the initial point nor at 4 jittered"):
        NFVI("scale-loc", Model.from_logdensity(lambda z: jnp.nan * z.sum(), 2)).fit(
            10, progress=False)


def test_call_keys_are_the_eager_splits():
    key = jax.random.key(7)
    keys = call_keys(key, 3, 2)
    init_key, run_key = jax.random.split(key)
    init = jax.random.split(init_key, 3)
    data = jax.random.key_data
    np.testing.assert_array_equal(data(keys.init), data(init))
    np.testing.assert_array_equal(data(keys.run), data(jax.random.split(run_key, 3)))
    chain = init[0]
    assert len(keys.setup) == 2
    for sub in keys.setup:
        chain, expected = jax.random.split(chain)
        np.testing.assert_array_equal(data(sub), data(expected))


def test_the_first_state_holds_the_flow_init_of_each_restart():
    """The first call's state comes from one compiled program (Flow.init vmapped over
    the restarts' keys): each restart starts at the flow's own init at its key."""
    model, _ = counted_model()
    inf = NFVI("planar*2-loc", model, seed=3, jitter=0.3)
    inf.fit(1, optimizer=optax.sgd(0.0), restarts=3, progress=False)  # moves nothing
    guide, keys = inf.guide, call_keys(jax.random.key(3), 3, INIT_RETRIES + 1)
    inits = [jax.tree.leaves(guide.flow.init(k, 0.3, loc=guide._init_latent,
                                             scale=guide.init_scale)) for k in keys.init]
    best = int(np.argmax(inf.restart_elbos))
    for name, expected, other in zip(guide.param_names, inits[best], inits[best - 1],
                                     strict=True):
        np.testing.assert_allclose(inf.approx.params[name], expected, rtol=1e-6, atol=1e-7)
        assert not np.allclose(expected, other)  # (each restart has its own key)


def test_the_light_tier_runs_the_whole_chunks_its_flops_pay_for():
    # XLA counts 2 n^3 floating-point operations for an n x n matrix product
    lowered = jax.jit(lambda a: a @ a).lower(jnp.ones((50, 50)))
    steps = LIGHT_FLOPS / (2 * 50**3)
    assert light_steps(lowered, 100) == 100 * int(steps / 100)
    assert light_steps(lowered, 7) == 7 * int(steps / 7)
    assert light_steps(lowered, int(steps) + 1) == 0  # not even one chunk: no light tier
