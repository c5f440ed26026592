"""vi.sample (vi/flow_adaptation.py) and the Fisher divergence of a transport (vi/fisher.py).

The statistical checks compare MCMC moments with known answers within 5 Monte-Carlo
standard errors computed from ArviZ's effective sample size.
"""

import gc
import logging
import weakref

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest

from flows import Flow
from vi import NFVI, Model, sample
from vi.fisher import (
    RefitData,
    Transport,
    diagonal_fit,
    fisher_loss,
    make_refit,
    pull_back,
    score_from_latent,
)
from vi.flow_adaptation import (
    INIT_RADIUS,
    REFIT_COMPILE,
    START_CANDIDATES,
    STEP_SIZE_GAMMA,
    Schedule,
    _initial_points,
    _programs,
    _started,
    _target,
)
from vi.keys import sample_keys

MEAN = np.array([1.0, -2.0, 0.5])
CHOL = np.array([[1.0, 0.0, 0.0], [1.8, 0.6, 0.0], [-0.5, 0.4, 0.3]])  # correlations ~0.95
COV = CHOL @ CHOL.T
FUNNEL_SD = 3.0  # Neal's funnel: v ~ N(0, 3^2), x_i | v ~ N(0, exp(v / 2)^2)
EULER_GAMMA = 0.5772156649015329
# A schedule that reaches the flow phase within a few hundred draws
SHORT = Schedule(early_until=50, every=64, window=300, holdout=32, steps=100, eval_every=50)


def gaussian_model() -> None:
    numpyro.sample("x", dist.MultivariateNormal(jnp.asarray(MEAN), scale_tril=jnp.asarray(CHOL)))


def funnel_model(dim: int = 4) -> None:
    v = numpyro.sample("v", dist.Normal(0.0, FUNNEL_SD))
    numpyro.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([dim]).to_event(1))


def log_p_gaussian(x: jnp.ndarray) -> jnp.ndarray:
    return dist.MultivariateNormal(jnp.asarray(MEAN), scale_tril=jnp.asarray(CHOL)).log_prob(x)


def assert_moment(draws: np.ndarray, truth: float, what: str) -> None:
    """|mean of draws (chains, draws) - truth| within 5 Monte-Carlo standard errors."""
    ess = float(az.ess(np.asarray(draws)))
    se = float(np.std(draws)) / np.sqrt(ess)
    assert abs(float(np.mean(draws)) - truth) < 5 * se, (what, np.mean(draws), truth, se, ess)


def assert_gaussian_moments(idata: az.InferenceData) -> None:
    x = idata.posterior["x"].values
    for i in range(3):
        assert_moment(x[..., i], MEAN[i], f"mean x[{i}]")
        assert_moment((x[..., i] - MEAN[i]) ** 2, COV[i, i], f"var x[{i}]")
    assert_moment((x[..., 0] - MEAN[0]) * (x[..., 1] - MEAN[1]), COV[0, 1], "cov x[0], x[1]")


def exact_affine_transport() -> tuple[Transport, object]:
    """T(y) = MEAN + CHOL y written as ``affine-loc`` parameters: the exact transport."""
    transport = Transport(Flow("affine-loc", 3), 3)
    flow_params = {
        "0_affine": {"rho": jnp.log(jnp.expm1(jnp.diag(jnp.asarray(CHOL))))[None],
                     "off": jnp.tril(jnp.asarray(CHOL), -1)[None], "b": jnp.zeros((1, 3))},
        "1_loc": {"mu": jnp.asarray(MEAN)[None]},
    }
    return transport, transport.identity(flow_params)


def random_transport(seed: int) -> tuple[Transport, object]:
    """A nonlinear transport far from the identity: a coupling flow and a diagonal map,
    every parameter perturbed."""
    transport = Transport(Flow("coupling(sigma=exp, hidden=8)-reverse", 3), 3)
    params = transport.identity(transport.flow.init(jax.random.key(seed), 0.3))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return transport, jax.tree.unflatten(
        treedef, [a + 0.2 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys,
                                                                            strict=True)])


def gaussian_draws(n: int, seed: int = 0) -> tuple[jnp.ndarray, jnp.ndarray]:
    x = MEAN + jax.random.normal(jax.random.key(seed), (n, 3)) @ CHOL.T
    return x, jax.vmap(jax.grad(log_p_gaussian))(x)


# --- the Fisher loss -----------------------------------------------------------------


def test_fisher_loss_is_zero_for_the_exact_transport_of_a_gaussian():
    transport, params = exact_affine_transport()
    x, g = gaussian_draws(200)
    assert float(fisher_loss(transport, params, x, g)) < 1e-8
    # and positive for any other transport
    shifted = params._replace(loc=params.loc + 0.1)
    assert float(fisher_loss(transport, shifted, x, g)) > 1e-3


def test_pulled_back_score_and_loss_gradient_match_autodiff_of_a_direct_implementation():
    """Direct: y = T^{-1}(x), s = jax.grad of y -> log p(T(y)) + log|det J_T(y)|, which
    differentiates log p itself; ours uses only the stored g = grad log p(x)."""
    transport, params = random_transport(3)
    x, g = gaussian_draws(16, seed=1)

    def direct(p):
        def one(x_i):
            y = transport.inverse(p, x_i)[0]
            s = jax.grad(lambda v: log_p_gaussian(transport.forward(p, v)[0])
                         + transport.forward(p, v)[1])(y)
            return jnp.sum((y + s) ** 2), s
        costs, scores = jax.vmap(one)(x)
        return jnp.mean(costs), scores

    # each side one compiled program (eagerly, every operation compiles on its own)
    want_loss, want_scores = jax.jit(direct)(params)
    got_scores = jax.jit(jax.vmap(lambda a, b: pull_back(transport, params, a, b)[1]))(x, g)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-4)
    loss = jax.jit(lambda p: fisher_loss(transport, p, x, g))
    np.testing.assert_allclose(loss(params), want_loss, rtol=1e-4)
    got = jax.jit(jax.grad(lambda p: fisher_loss(transport, p, x, g)))(params)
    want = jax.jit(jax.grad(lambda p: direct(p)[0]))(params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        if b.size:  # the permutation's placeholder leaf is empty
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(b))))


def test_model_gradient_follows_from_the_latent_gradient_nuts_keeps():
    transport, params = random_transport(5)
    y = jax.random.normal(jax.random.key(2), (8, 3))

    def latent_potential(v):
        x, log_det = transport.forward(params, v)
        return -log_p_gaussian(x) - log_det

    x, g = jax.vmap(lambda v: score_from_latent(transport, params, v,
                                                jax.grad(latent_potential)(v)))(y)
    np.testing.assert_allclose(x, jax.vmap(lambda v: transport.forward(params, v)[0])(y))
    np.testing.assert_allclose(g, jax.vmap(jax.grad(log_p_gaussian))(x), rtol=1e-4, atol=1e-4)


def test_diagonal_fit_is_exact_for_independent_gaussian_coordinates():
    mean, var = np.array([3.0, -1.0, 0.0]), np.array([4.0, 0.01, 1.0])
    x = mean + np.sqrt(var) * np.random.default_rng(0).standard_normal((500, 3))
    loc, log_scale = diagonal_fit(x, -(x - mean) / var)
    np.testing.assert_allclose(loc, mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.exp(2 * log_scale), var, rtol=1e-10)


def test_diagonal_fit_minimises_the_fisher_loss_of_a_diagonal_map():
    x, g = gaussian_draws(300, seed=4)  # correlated: the minimum is not zero
    loc, log_scale = diagonal_fit(np.asarray(x), np.asarray(g))
    transport = Transport(None, 3)
    best = transport.identity()._replace(loc=jnp.asarray(loc), log_scale=jnp.asarray(log_scale))
    at_best = float(fisher_loss(transport, best, x, g))
    for i in range(3):
        for field, step in (("loc", 0.05), ("log_scale", 0.05)):
            moved = getattr(best, field).at[i].add(step)
            assert float(fisher_loss(transport, best._replace(**{field: moved}), x, g)) > at_best


def test_refit_is_adam_on_the_log_loss_with_a_cosine_rate_from_the_first_step():
    """Held out = trained on and one evaluation at the end, so the re-fit returns its
    last parameters: they must be those of optax's Adam on log L of the same batches
    (gradient grad L / L) with the rate 1e-2 * cosine down to decay * 1e-2 over the 20
    steps, and differ from a constant rate's and from Adam on L itself."""
    transport, params = random_transport(7)
    x, g = gaussian_draws(40, seed=5)
    data = RefitData(x, g, jnp.asarray(40), x, g)
    steps, batch, rate, key = 20, 8, 1e-2, jax.random.key(3)
    loss_grad = jax.jit(jax.value_and_grad(lambda p, a, b: fisher_loss(transport, p, a, b)))

    def reference(decay: float, log: bool = True) -> object:
        optimizer = optax.adam(optax.cosine_decay_schedule(rate, steps, alpha=decay))
        p, state = params, optimizer.init(params)
        for k in jax.random.split(key, steps):
            idx = jax.random.randint(k, (batch,), 0, 40)
            loss, grads = loss_grad(p, x[idx], g[idx])
            if log:
                grads = jax.tree.map(lambda a, loss=loss: a / loss, grads)
            updates, state = optimizer.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        return p

    best, before, after, _ = jax.jit(make_refit(transport, steps, batch, rate,
                                                eval_every=steps, decay=0.1))(params, data, key)
    assert float(after) < float(before)
    assert np.isclose(float(after), float(loss_grad(best, x, g)[0]), rtol=1e-5)
    others = reference(1.0), reference(0.1, log=False)
    gaps = [0.0, 0.0]
    for a, b, *c in zip(jax.tree.leaves(best), jax.tree.leaves(reference(0.1)),
                        *map(jax.tree.leaves, others), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        gaps = [max(gap, float(jnp.max(jnp.abs(b - o), initial=0.0)))
                for gap, o in zip(gaps, c, strict=True)]
    assert min(gaps) > 1e-3  # the schedule and the log both matter at this tolerance


def test_the_refit_compiled_with_its_own_options_computes_what_xla_defaults_do():
    """REFIT_COMPILE (LLVM level 1) changes the re-fit's compile time, not its result:
    the same best parameters and losses as XLA's defaults, to float32 rounding."""
    transport, params = random_transport(3)
    x, g = gaussian_draws(40, seed=8)
    data = RefitData(x, g, jnp.asarray(40), x, g)
    lowered = jax.jit(make_refit(transport, 30, 8, 1e-2, eval_every=10, decay=0.1)).lower(
        params, data, jax.random.key(2))
    ours = lowered.compile(REFIT_COMPILE)(params, data, jax.random.key(2))
    default = lowered.compile()(params, data, jax.random.key(2))
    assert float(ours[2]) < float(ours[1])  # it trained
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(default), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_refit_stops_after_patience_evaluations_without_a_new_best_of_its_own():
    """Held-out draws of another Gaussian (mean shifted by 3) than the training draws:
    fitting the one soon stops helping the other. With a patience the re-fit must run
    exactly the evaluations of the full run up to the first ``patience`` in a row that
    do not beat the lowest of its own so far (the loss before the re-fit not counted),
    and return the best among those and the start."""
    transport, params = random_transport(2)
    x, g = gaussian_draws(40, seed=6)
    held_x, held_g = gaussian_draws(20, seed=7)
    data = RefitData(x, g, jnp.asarray(40), held_x + 3.0, held_g)
    key, patience = jax.random.key(4), 3

    def run(patience: int | None) -> tuple:
        return jax.jit(make_refit(transport, 120, 8, 5e-2, eval_every=4,
                                  patience=patience))(params, data, key)

    full_best, before, full_loss, full = run(None)
    best, before_p, loss, held_out = run(patience)
    full, held_out = np.asarray(full), np.asarray(held_out)
    assert not np.isnan(full).any()
    own, stale, stop = np.inf, 0, len(full)
    for i, value in enumerate(full):
        own, stale = (value, 0) if value < own else (own, stale + 1)
        if stale == patience:
            stop = i + 1
            break
    assert stop < len(full)  # it did stop early here
    np.testing.assert_array_equal(held_out[:stop], full[:stop])
    assert np.isnan(held_out[stop:]).all()
    assert float(before_p) == float(before)
    expected = min(float(before), float(full[:stop].min()))
    assert float(loss) == expected
    if expected == float(full_loss):  # the best came before the stop: the same parameters
        for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(full_best), strict=True):
            np.testing.assert_array_equal(a, b)


# --- vi.sample -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian_run():
    """adapt="flow" with ``affine-loc`` (which holds the exact transport), a short schedule."""
    # the global setting, not the thread-local jax.log_compiles(): programs compile on
    # worker threads (vi.compiler)
    was = jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    handler = _CompileLog()
    logging.getLogger("jax").addHandler(handler)
    try:
        idata = sample(Model(gaussian_model), num_warmup=300, num_samples=400,
                       flow="affine-loc", seed=1, schedule=SHORT)
    finally:
        logging.getLogger("jax").removeHandler(handler)
        jax.config.update("jax_log_compiles", was)
    return idata, handler.compiled


class _CompileLog(logging.Handler):
    """Collects the names of the programs XLA compiles."""

    def __init__(self) -> None:
        super().__init__()
        self.compiled: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Finished XLA compilation of jit("):
            self.compiled.append(message.split("jit(")[1].split(")")[0])


def test_gaussian_moments_exact_with_flow_adaptation(gaussian_run):
    idata, _ = gaussian_run
    assert idata.posterior["x"].shape == (2, 400, 3)
    assert_gaussian_moments(idata)


def test_inference_data_counts_every_gradient(gaussian_run):
    idata, _ = gaussian_run
    a, stats, warm = idata.attrs, idata.sample_stats, idata.warmup_sample_stats
    for name in ("diverging", "n_steps", "tree_depth", "acceptance_rate", "step_size", "energy"):
        assert stats[name].shape == (2, 400), name
        assert warm[name].shape == (2, 300), name
    assert idata.warmup_posterior["x"].shape == (2, 300, 3)
    assert a["n_grad_sampling"] == int(stats["n_steps"].sum())
    # + the candidate starting points' log densities and the chains' first point
    assert a["n_grad_warmup"] == int(warm["n_steps"].sum()) + 2 * (START_CANDIDATES + 1)
    # one re-evaluation per chain after each change of the transport
    assert a["n_grad_training"] == 2 * a["n_transport_updates"]
    assert a["n_grad"] == a["n_grad_warmup"] + a["n_grad_training"] + a["n_grad_sampling"]
    assert a["divergences"] == int(stats["diverging"].sum()) == 0
    # SHORT: diagonal refits at 10..50 draws, flow re-fits at 114, 178, 242
    assert a["n_refits"] == 3
    # two evaluations a re-fit, fewer than the patience: every step runs
    assert a["n_refit_steps"] == 3 * SHORT.steps
    assert 5 <= a["n_transport_updates"] <= 8
    assert np.isfinite(a["fisher_loss"])
    for phase in ("compile_time", "training_time", "warmup_time", "sampling_time"):
        assert 0 < a[phase] < a["wall_time"], phase
    # the step size is fixed after warm-up
    assert np.all(stats["step_size"].values == stats["step_size"].values[:, :1])


def test_step_size_restarts_by_the_phase_rule(gaussian_run):
    """After a change of the transport at draw t, dual averaging restarts around
    m * eps_{t-1} (m = 10 after a diagonal adaptation, 1 after a flow re-fit), and its
    first update gives log eps_t = log(m eps_{t-1}) - (0.8 - accept_t) / (gamma (1 + t0)),
    t0 = 10 (Hoffman & Gelman 2014, eq. 6), gamma that of the phase draw t is in: 0.05
    before the last diagonal adaptation, STEP_SIZE_GAMMA after it."""
    idata, _ = gaussian_run
    warm = idata.warmup_sample_stats
    eps = warm["step_size"].values.astype(np.float64)
    accept = warm["acceptance_rate"].values.astype(np.float64)

    def restarted(t: int, m: float, gamma: float) -> np.ndarray:
        predicted = np.log(m * eps[:, t - 1]) - (0.8 - accept[:, t]) / (gamma * 11)
        return np.isclose(np.log(eps[:, t]), predicted, atol=1e-4)

    for t in range(SHORT.early_every, SHORT.early_until, SHORT.early_every):
        assert restarted(t, 10.0, 0.05).all(), t
    assert restarted(SHORT.early_until, 10.0, STEP_SIZE_GAMMA).all()
    flow_points = [t for t, kind in SHORT.points(300, diagonal=True) if kind == "flow"]
    kept = [t for t in flow_points if restarted(t, 1.0, STEP_SIZE_GAMMA).all()]
    assert len(kept) == idata.attrs["n_refits_kept"] >= 1
    assert not any(restarted(t, 10.0, 0.05).any() for t in flow_points)


def test_re_fitting_compiles_the_sampler_once(gaussian_run):
    _, compiled = gaussian_run
    for program in ("chunk", "refit", "move", "scores"):
        assert compiled.count(program) == 1, (program, compiled)


def test_keys_and_starting_points_are_those_of_the_op_by_op_draws():
    # compiled as one program each (set-up time), they are the same bits as the splits
    # and the uniform draw made one operation at a time
    key_init, keys, key_refit = sample_keys(jax.random.key(5), 3)
    want = jax.random.split(jax.random.key(5), 3)
    for got, expected in ((key_init, want[0]), (keys, jax.random.split(want[1], 3)),
                          (key_refit, want[2])):
        np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(expected))
    model = Model(gaussian_model)
    target = _target(model, "flow", "affine-loc")
    starts = _initial_points(target, model, key_init, 3)
    noise = jax.random.uniform(key_init, (3, START_CANDIDATES, 3), minval=-INIT_RADIUS,
                               maxval=INIT_RADIUS)
    np.testing.assert_array_equal(starts, target.guide._init_latent + noise)


def test_each_chain_starts_at_its_most_probable_candidate():
    # T starts as the identity, so the potential is -log p; a NaN candidate never wins
    target = _started(_target(Model(gaussian_model), "flow", "affine-loc"))
    init = jax.jit(_programs(target, "flow", 10, SHORT, {}).init)
    offsets = np.array([[[4.0, 0, 0], [0, 0.1, 0], [0, 0, -3.0], [2.0, 2.0, 2.0]],
                        [[np.nan, 0, 0], [3.0, 0, 0], [0, -0.5, 0.5], [0, 0, 9.0]]])
    candidates = jnp.asarray(MEAN + offsets, jnp.float32)
    states = init(jax.random.split(jax.random.key(0), 2), candidates, target.params)
    energies = -np.asarray(jax.vmap(jax.vmap(log_p_gaussian))(candidates))
    for chain in range(2):
        best = np.nanargmin(energies[chain])
        np.testing.assert_array_equal(states.z[chain], candidates[chain, best])
        np.testing.assert_allclose(states.potential_energy[chain], energies[chain, best],
                                   rtol=1e-6)


def test_a_second_call_on_the_same_model_compiles_nothing():
    model = Model(gaussian_model)
    settings = {"num_warmup": 150, "num_samples": 100, "flow": "affine-loc",
                "schedule": SHORT}
    first = sample(model, seed=4, **settings)
    assert first.attrs["n_refits"] == 1  # the re-fit is among the programs reused
    was = jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    handler = _CompileLog()
    logging.getLogger("jax").addHandler(handler)
    try:
        again = sample(model, seed=4, **settings)
        other_seed = sample(model, seed=5, **settings)
        reused = list(handler.compiled)
        sample(model, seed=4, **settings, num_chains=3)  # other settings: compiled anew
    finally:
        logging.getLogger("jax").removeHandler(handler)
        jax.config.update("jax_log_compiles", was)
    programs = ("init", "chunk", "refit", "move", "scores", "push", "settle")
    assert not set(reused) & set(programs), reused
    assert again.attrs["compile_time"] == other_seed.attrs["compile_time"] == 0
    np.testing.assert_array_equal(again.posterior["x"], first.posterior["x"])
    assert not np.array_equal(other_seed.posterior["x"], first.posterior["x"])
    assert "chunk" in handler.compiled[len(reused):]
    # the programs kept refer back to the model; the cycle dies with it
    assert len(model._samplers) == 2
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_chains_on_threads_make_the_draws_of_the_chains_side_by_side():
    # on CPU each chain runs a one-chain program on a thread of its own (more chains
    # than cores here); on one device named explicitly the chains run side by side in
    # one vmapped program: the same transitions (every tree as long), up to float32
    # rounding, which the re-fit's Adam steps carry into the transport (0.0004 here;
    # a chain mixed up with another would be off by O(1))
    settings = {"num_warmup": 150, "num_samples": 100, "num_chains": 3, "flow": "affine-loc",
                "seed": 7, "schedule": SHORT}
    threads = sample(Model(gaussian_model), **settings)
    together = sample(Model(gaussian_model), devices=jax.devices()[:1], **settings)
    assert threads.attrs["n_refits"] == together.attrs["n_refits"] == 1
    for group in ("sample_stats", "warmup_sample_stats"):
        np.testing.assert_array_equal(threads[group]["n_steps"], together[group]["n_steps"])
    np.testing.assert_allclose(threads.posterior["x"], together.posterior["x"], atol=1e-3)


def test_diag_is_numpyro_nuts_in_the_same_format():
    idata = sample(Model(gaussian_model), num_warmup=300, num_samples=400, adapt="diag", seed=2)
    assert_gaussian_moments(idata)
    a = idata.attrs
    assert a["adapt"] == "diag" and a["flow"] == ""
    assert a["n_grad_training"] == a["n_transport_updates"] == a["n_refits"] == 0
    assert a["n_grad_sampling"] == int(idata.sample_stats["n_steps"].sum())


@pytest.mark.slow
def test_gaussian_moments_exact_with_the_default_flow():
    idata = sample(Model(gaussian_model), num_warmup=300, num_samples=400, seed=3,
                   schedule=SHORT)
    assert idata.attrs["n_refits"] == 3
    assert_gaussian_moments(idata)


@pytest.mark.slow
def test_funnel_moments_exact_with_the_default_flow():
    """Var x_i = E exp(v) = e^{4.5} is dominated by rare draws deep in the funnel's mouth,
    too heavy-tailed for a 5-sigma check in a few hundred draws; x's scale is checked
    through E log|x_i| = E[v] / 2 + E log|z| = -(gamma + log 2) / 2 instead."""
    idata = sample(Model(funnel_model), num_warmup=500, num_samples=500, seed=4)
    v, x = idata.posterior["v"].values, idata.posterior["x"].values
    assert_moment(v, 0.0, "mean v")
    assert_moment(v**2, FUNNEL_SD**2, "var v")
    for i in range(4):
        assert_moment(x[..., i], 0.0, f"mean x[{i}]")
        assert_moment(np.log(np.abs(x[..., i])), -(EULER_GAMMA + np.log(2)) / 2,
                      f"E log|x[{i}]|")


@pytest.mark.slow
def test_an_approximation_starts_the_transport():
    approx = NFVI("affine-loc", Model(gaussian_model), seed=0).fit(200, progress=False)
    idata = sample(approx, num_warmup=300, num_samples=400, seed=5, schedule=SHORT)
    assert_gaussian_moments(idata)
    a = idata.attrs
    assert a["flow"] == "affine-loc"
    # no diagonal phase: only the flow re-fits change the transport
    assert a["n_transport_updates"] == a["n_refits_kept"] <= a["n_refits"] == 3
    assert a["n_grad_training"] == 200 + 2 * a["n_transport_updates"]


def test_plain_nuts_from_an_approximation_is_exact_and_counts_its_fit():
    # adapt="diag" starts each chain at the best of its candidates drawn from q
    approx = NFVI("affine-loc", Model(gaussian_model), seed=0).fit(200, progress=False)
    idata = sample(approx, num_warmup=300, num_samples=400, adapt="diag", seed=5)
    assert_gaussian_moments(idata)
    a = idata.attrs
    assert a["flow"] == "" and a["n_transport_updates"] == 0
    assert a["n_grad_training"] == 200
    assert a["n_grad_warmup"] == int(idata.warmup_sample_stats["n_steps"].sum()) \
        + 2 * (START_CANDIDATES + 1)


def exploding_model() -> None:
    raise AssertionError("the model ran: bad input must be refused before any work")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"adapt": "nuts"}, ValueError, "adapt must be"),
        ({"num_chains": 0}, ValueError, "num_chains"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"num_warmup": -1}, ValueError, "num_warmup"),
        ({"flow": "planar*2"}, ValueError, "analytic inverse"),
        ({"flow": "scale-panar"}, ValueError, "did you mean 'planar'"),
        ({"flow": "affine", "adapt": "diag"}, ValueError, "adapt='diag' uses none"),
        ({"dense_mass": True}, TypeError, "preconditioner"),
        ({"target_accept": 0.9}, TypeError, "did you mean 'target_accept_prob'"),
        ({"target_accept_prob": 1.0}, ValueError, "target_accept_prob"),
        ({"schedule": {"every": 10}}, TypeError, "Schedule"),
    ],
)
def test_bad_input_is_refused_before_any_work(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample(Model(exploding_model), **kwargs)


def test_bad_model_and_schedule_are_refused():
    with pytest.raises(TypeError, match=r"vi\.Model"):
        sample(gaussian_model)
    with pytest.raises(ValueError, match="multiple of eval_every"):
        Schedule(steps=120, eval_every=50)
    with pytest.raises(ValueError, match="fraction"):
        Schedule(final=1.0)
    with pytest.raises(ValueError, match="decay is the fraction"):
        Schedule(decay=1.5)
