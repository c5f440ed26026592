"""The expressive steps: affine, perm, reverse, lu, coupling, rqs, maf, iaf, sas.

Each is checked against the maths: log|det J| against the autodiff Jacobian,
the inverse against the forward map, the identity at jitter 0, the spline's
tails, the normalisation of the 1-D density, and the options' parse errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flows
from flows.permutation import fixed_permutation
from flows.spline import rqs_forward, rqs_inverse

# Formulas exercising every new step and its options (maf with a spline and iaf affine
# between them run both transformers both ways); min_dim says where each applies.
FORMULAS = {
    "affine": 1,
    "perm(seed=3)": 1,
    "reverse": 1,
    "lu": 1,
    "coupling(hidden=16)": 2,
    "rqs(bins=5, bound=3, hidden=16)": 1,
    "maf(transformer=rqs, bins=4, hidden=16)": 1,
    "iaf(hidden=16, depth=2)": 1,
    "coupling(split=1, sigma=exp, hidden=8)": 2,
    "rqs(split=1, hidden=8)": 2,
    "iaf(sigma=exp, hidden=16)-maf(sigma=exp, hidden=16)": 1,
    "(coupling(hidden=8)-perm)*2-lu": 2,
    "sas": 1,
    "coupling(hidden=8)-sas": 2,
}
CASES = [(f, d) for f, m in FORMULAS.items() for d in (1, 2, 7) if d >= m]


def _setup(formula: str, dim: int, jitter: float = 0.5):
    flow = flows.Flow(formula, dim)
    params = flow.init(jax.random.key(1), jitter)
    z = jax.random.normal(jax.random.key(2), (dim,))
    return flow, params, z


@pytest.mark.parametrize(("formula", "dim"), CASES)
def test_log_dets_match_the_jacobians_and_the_inverse_undoes_forward(formula, dim):
    flow, params, _ = _setup(formula, dim)
    z = jax.random.normal(jax.random.key(3), (8, dim))

    @jax.jit
    def check(params, z):
        x, log_det = flow.forward(params, z)
        back, inv_log_det = flow.inverse(params, x)
        jac = jax.vmap(jax.jacfwd(lambda v: flow.forward(params, v)[0]))(z)
        return x, log_det, back, inv_log_det, jnp.linalg.slogdet(jac)[1]

    x, log_det, back, inv_log_det, jac_log_det = check(params, z)
    np.testing.assert_allclose(log_det, jac_log_det, atol=2e-4)
    # with back = z, the inverse's Jacobian is the inverse matrix, so its log-det
    # must be the negative
    np.testing.assert_allclose(back, z, atol=2e-5)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=2e-5)
    mixes_only = any(name in formula for name in ("perm", "reverse", "lu"))
    if "perm" not in formula and "reverse" not in formula:
        # a real test: the map moves points (pure permutations aside) ...
        assert float(jnp.max(jnp.abs(x - z))) > 1e-2
    if not mixes_only:
        # ... and is the identity at jitter 0
        x0, log_det0, *_ = check(flow.init(jax.random.key(1), 0.0), z)
        np.testing.assert_allclose(x0, z, atol=1e-6)
        np.testing.assert_allclose(log_det0, 0.0, atol=1e-6)


def test_lu_at_jitter_zero_is_its_permutation():
    flow, params, z = _setup("lu(seed=5)", 7, jitter=0.0)
    x, log_det = flow.forward(params, z)
    np.testing.assert_allclose(x, z[fixed_permutation(7, 5)], atol=1e-6)
    assert float(log_det) == 0.0


def test_permutations_are_fixed_and_never_the_identity():
    for seed in range(20):
        assert list(fixed_permutation(2, seed)) == [1, 0]
        assert sorted(fixed_permutation(7, seed)) == list(range(7))
    assert not np.array_equal(fixed_permutation(7, 0), fixed_permutation(7, 1))
    flow, params, z = _setup("perm*2", 7)
    order = fixed_permutation(7, 0)
    np.testing.assert_array_equal(flow.forward(params, z)[0], z[order][order])
    np.testing.assert_array_equal(flows.Flow("reverse", 7).forward(params_rev := flows.Flow(
        "reverse", 7).init(jax.random.key(0)), z)[0], z[::-1])
    assert jax.tree.leaves(params_rev)[0].size == 0  # nothing to train


def test_spline_is_identity_outside_the_bound():
    flow, params, _ = _setup("rqs(bound=1)", 2, jitter=1.0)
    z = jnp.array([0.3, 5.0])
    x, log_det = jax.jit(flow.forward)(params, z)
    assert float(x[1]) == 5.0 and float(log_det) == 0.0
    # inside, the spline is continuous at the bound and maps [-B, B] onto itself
    raw = jax.random.normal(jax.random.key(0), (3 * 6 - 1,))
    ends, _ = jax.jit(jax.vmap(lambda v: rqs_forward(raw, v, 6, 2.0)))(
        jnp.array([-2 + 1e-6, 2 - 1e-6]))
    np.testing.assert_allclose(ends, [-2.0, 2.0], atol=1e-4)
    grid = jnp.linspace(-2.5, 2.5, 2001)
    y, _ = jax.jit(jax.vmap(lambda v: rqs_forward(raw, v, 6, 2.0)))(grid)
    assert bool(jnp.all(jnp.diff(y) > 0))
    back, _ = jax.jit(jax.vmap(lambda v: rqs_inverse(raw, v, 6, 2.0)))(y)
    np.testing.assert_allclose(back, grid, atol=1e-4)


@pytest.mark.parametrize("formula", ["rqs(bins=6, bound=2)*2", "maf(transformer=rqs)-iaf",
                                     "affine-lu"])
def test_one_dimensional_density_integrates_to_one(formula):
    flow = flows.Flow(formula, 1)
    params = flow.init(jax.random.key(4), 0.7)
    grid = jnp.linspace(-30.0, 30.0, 60_001)[:, None]
    density = jnp.exp(jax.jit(flow.log_prob)(params, grid))
    assert float(jnp.trapezoid(density, grid[:, 0])) == pytest.approx(1.0, abs=1e-3)


def test_log_prob_gradient_is_finite_far_out_and_at_knots():
    flow = flows.Flow("(rqs(bound=2)-reverse)*2-coupling", 2)
    params = flow.init(jax.random.key(0), 0.5)
    x = jnp.array([[0.0, 0.0], [2.0, -2.0], [50.0, -80.0], [1e-8, 2.0 + 1e-7]])
    grads = jax.jit(jax.grad(lambda p: jnp.sum(flow.log_prob(p, x))))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_steps_that_need_two_dimensions_refuse_one():
    with pytest.raises(ValueError, match="'coupling' needs dimension >= 2"):
        flows.Flow("rqs-coupling", 1)


@pytest.mark.parametrize(("formula", "split"), [("coupling", 3), ("coupling(split=1)", 1),
                                               ("rqs(split=6)", 6)])
def test_coupling_passes_exactly_its_first_split_coordinates(formula, split):
    flow, params, z = _setup(formula, 7)
    x, _ = jax.jit(flow.forward)(params, z)
    np.testing.assert_array_equal(x[:split], z[:split])
    assert bool(jnp.all(x[split:] != z[split:]))


def test_split_must_leave_a_coordinate_to_transform():
    with pytest.raises(ValueError, match=r"split=7 leaves no coordinate.*1 <= k <= 6"):
        flows.Flow("coupling(split=7)", 7)


def test_exp_scale_is_the_exponential_of_the_conditioner_output():
    # with the conditioner's output theta fixed, sigma=exp means x = z e^{theta_1} + theta_0
    from flows.coupling import affine_forward, affine_inverse

    theta = jnp.array([0.3, -1.7])
    x, log_slope = affine_forward(theta, 2.0, "exp")
    assert float(x) == pytest.approx(2.0 * np.exp(-1.7) + 0.3, rel=1e-6)
    assert float(log_slope) == pytest.approx(-1.7, rel=1e-6)
    back, inv_slope = affine_inverse(theta, x, "exp")
    assert float(back) == pytest.approx(2.0, rel=1e-6)
    assert float(inv_slope) == pytest.approx(1.7, rel=1e-6)


def test_autoregressive_steps_refuse_impossible_options():
    with pytest.raises(ValueError, match=r"maf\(hidden=64\)"):
        flows.Flow("maf(hidden=4)", 7)
    with pytest.raises(ValueError, match="depth >= 1"):
        flows.Flow("iaf(depth=0)", 2)
    with pytest.raises(ValueError, match="affine transformer only"):
        flows.Flow("iaf(transformer=rqs, sigma=exp)", 2)


@pytest.mark.parametrize(("formula", "fragment"), [
    ("rqs(bin=8)", "did you mean 'bins'"),
    ("coupling(width=8)", "unknown option 'width'"),
    ("rqs(bins=2.5)", "expected an integer"),
    ("rqs(bound=wide)", "expected a number"),
    ("maf(transformer=spline)", "expected one of affine, rqs"),
    ("rqs(bins=1)", "at least 2"),
    ("rqs(bound=0)", "at least 0.01"),
    ("coupling(hidden=0)", "at least 1"),
    ("coupling(depth=9)", "at most 8"),
    ("perm(seed=-1)", "at least 0"),
    ("iaf(sigma=log)", "expected one of softplus, exp"),
    ("coupling(split=-1)", "at least 0"),
])
def test_bad_options_are_formula_errors(formula, fragment):
    with pytest.raises(flows.FormulaError, match=fragment):
        flows.parse(formula)


def test_formula_round_trips_with_options():
    formula = flows.parse("(RQS(bins=8, hidden=64)-reverse)*4-maf(transformer=rqs)")
    assert flows.parse(str(formula)) == formula
    assert set(flows.available()) >= {"affine", "perm", "reverse", "lu", "coupling", "rqs",
                                      "maf", "iaf"}


def test_sinh_arcsinh_sets_the_tail_weight():
    """At eps = 0 and delta = 1/2, x = sinh(2 asinh z) = 2 z sqrt(1 + z^2): a Gaussian
    z gives x exponential tails, P(|x| > t) ~ P(|z| > sqrt(t / 2)) = e^(-t/4) (up to
    a power of t), the tails of the log of a half-Cauchy scale."""
    flow = flows.Flow("sas", 3)
    half = float(np.log(np.expm1(0.5)))  # softplus(half) = 1/2
    params = {k: {"eps": jnp.zeros((1, 3)), "rho": jnp.full((1, 3), half)} for k in flow.init(
        jax.random.key(0), 0.0)}
    z = jnp.array([-3.0, 0.4, 12.0])
    x, log_det = jax.jit(flow.forward)(params, z)
    np.testing.assert_allclose(x, 2 * z * jnp.sqrt(1 + z**2), rtol=1e-5)
    # d/dz [2 z sqrt(1 + z^2)] = 2 (1 + 2 z^2) / sqrt(1 + z^2)
    np.testing.assert_allclose(log_det, jnp.sum(jnp.log(2 * (1 + 2 * z**2) / jnp.sqrt(1 + z**2))),
                               rtol=1e-5)
    # and eps skews: a positive eps moves every point up (asinh and sinh increase)
    skewed = {k: {"eps": jnp.full((1, 3), 0.3), "rho": v["rho"]} for k, v in params.items()}
    assert bool(jnp.all(jax.jit(flow.forward)(skewed, z)[0] > x))
