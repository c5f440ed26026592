"""``flows.Flow``: log-determinants against autodiff Jacobians, inverses, batching,
normalisation, the full-rank Gaussian family, gradients of the planar solve, and errors."""

from __future__ import annotations

import functools
import zlib

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from flows import Flow, Params
from flows.bijection import Bijection

SEEDS = ("loc", "scale", "planar", "radial", "hh")
MIXED = ("scale-hh*3-planar*2-radial-loc", "(planar-radial)*2-loc")
FORMULAS = SEEDS + MIXED
DIMS = (1, 2, 7)


def _key(*parts: object) -> jax.Array:
    """A fixed key per test case, different across cases."""
    return jax.random.key(zlib.crc32(repr(parts).encode()))


@functools.partial(jax.jit, static_argnums=0)
def _round_trip(flow: Flow, params: Params, z: jax.Array) -> tuple[jax.Array, ...]:
    """Everything the consistency checks need, in one compiled function per flow."""
    x, log_det = flow.forward(params, z)
    jac = jax.vmap(jax.jacfwd(lambda v: flow.forward(params, v)[0]))(z)
    z_back, inv_log_det = flow.inverse(params, x)
    x_again, log_det_again = flow.forward(params, z_back)
    return x, log_det, jac, z_back, inv_log_det, x_again, log_det_again


@functools.partial(jax.jit, static_argnums=0)
def _forward(flow: Flow, params: Params, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    return flow.forward(params, z)


def _random_case(formula: str, dim: int, n: int = 4) -> tuple[Flow, Params, jax.Array]:
    """The flow at random parameters (jitter 1) and n points of 1.5 N(0, I)."""
    flow = Flow(formula, dim)
    key_params, key_z = jax.random.split(_key(formula, dim))
    return flow, flow.init(key_params, jitter=1.0), 1.5 * jax.random.normal(key_z, (n, dim))


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("formula", FORMULAS)
def test_log_det_and_inverse_float32(formula: str, dim: int) -> None:
    flow, params, z = _random_case(formula, dim)
    assert z.dtype == jnp.float32
    x, log_det, jac, z_back, inv_log_det, x_again, log_det_again = _round_trip(flow, params, z)
    jac = np.asarray(jac, np.float64)
    sign, log_abs_det = np.linalg.slogdet(jac)
    assert np.all(sign != 0)
    np.testing.assert_allclose(log_det, log_abs_det, rtol=0, atol=1e-4)
    # The solve is backward-stable: forward(inverse(x)) gives x back to 1e-4 ...
    np.testing.assert_allclose(x_again, x, rtol=0, atol=1e-4)
    # ... so z comes back to 1e-4 in x's units: an error e in x moves z by J^{-1} e.
    # (At jitter 1 a planar step can have w.u_hat near -1, where J^{-1} is large.)
    inv_norm = np.linalg.norm(np.linalg.inv(jac), ord=2, axis=(-2, -1))
    error = np.linalg.norm(np.asarray(z_back) - np.asarray(z), axis=-1)
    assert np.all(error <= 1e-4 * np.maximum(1.0, inv_norm)), (error, inv_norm)
    # The inverse's log-det is minus the forward's at the same pair (z_back, x).
    np.testing.assert_allclose(inv_log_det, -log_det_again, rtol=0, atol=1e-4)


# The mixed formulas are the costliest to compile; in float64 (which checks the maths to
# 1e-9 rather than float32's rounding) they run in d = 7 only, their steps in every d.
@pytest.mark.parametrize(("formula", "dim"),
                         [(f, d) for f in SEEDS for d in DIMS] + [(f, 7) for f in MIXED])
def test_log_det_and_inverse_float64(formula: str, dim: int) -> None:
    with jax.enable_x64(True):
        flow, params, z = _random_case(formula, dim)
        assert z.dtype == jnp.float64
        assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(params))
        _, log_det, jac, z_back, inv_log_det, *_ = _round_trip(flow, params, z)
    _, log_abs_det = np.linalg.slogdet(np.asarray(jac))
    np.testing.assert_allclose(log_det, log_abs_det, rtol=0, atol=1e-9)
    np.testing.assert_allclose(z_back, z, rtol=0, atol=1e-9)
    np.testing.assert_allclose(inv_log_det, -np.asarray(log_det), rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- Gaussians

def _full_rank_params(mean: np.ndarray, cov: np.ndarray) -> Params:
    """Parameters of ``scale-hh*d-loc`` for N(mean, cov), built analytically.

    cov = Q diag(lam) Q^T, so x = mean + Q sqrt(lam) z with sigma = softplus(rho) =
    sqrt(lam). A product of d reflections has determinant (-1)^d; flipping the sign
    of one eigenvector does not change cov, so pick det Q = (-1)^d. Then reflections
    H_k that map the k-th column of M = Q^T to e_k (k < d - 1) reduce it to
    diag(1, ..., 1, -1), which H_d = reflection along e_d finishes:
    H_d ... H_1 Q^T = I, i.e. Q = H_d ... H_1, which is the flow's order (H_1 first).
    """
    dim = len(mean)
    lam, q = np.linalg.eigh(cov)
    if np.linalg.det(q) * (-1) ** dim < 0:
        q[:, 0] = -q[:, 0]
    m = q.T.copy()
    vs = []
    for k in range(dim - 1):
        v = m[:, k] - np.eye(dim)[k]
        m = m - 2.0 * np.outer(v, v @ m) / (v @ v)
        vs.append(v)
    np.testing.assert_allclose(m, np.diag([1.0] * (dim - 1) + [-1.0]), atol=1e-12)
    vs.append(np.eye(dim)[dim - 1])
    rho = np.log(np.expm1(np.sqrt(lam)))  # the inverse of softplus
    return {"0_scale": {"rho": jnp.asarray(rho[None])}, "1_hh": {"v": jnp.asarray(np.stack(vs))},
            "2_loc": {"mu": jnp.asarray(mean[None])}}


@pytest.mark.parametrize("dim", [1, 2, 6])
def test_scale_hh_d_loc_represents_any_full_rank_gaussian(dim: int) -> None:
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(dim, dim))
    cov, mean = a @ a.T + 0.1 * np.eye(dim), rng.normal(size=dim)
    with jax.enable_x64(True):
        flow = Flow(f"scale-hh*{dim}-loc", dim)
        x = rng.normal(size=(5, dim))

        @jax.jit
        def summary(params: Params) -> tuple[jax.Array, jax.Array, jax.Array]:
            shift, _ = flow.forward(params, jnp.zeros(dim))
            jac = jax.jacfwd(lambda z: flow.forward(params, z)[0])(jnp.asarray(x[0]))
            return shift, jac, flow.log_prob(params, jnp.asarray(x))

        shift, jac, log_prob = map(np.asarray, summary(_full_rank_params(mean, cov)))
    np.testing.assert_allclose(jac @ jac.T, cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(shift, mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_prob, stats.multivariate_normal(mean, cov).logpdf(x)
                               .reshape(5), rtol=1e-10)


def test_householder_preserves_volume() -> None:
    flow = Flow("hh*3", 4)
    params = flow.init(jax.random.key(1), jitter=1.0)
    z = jax.random.normal(jax.random.key(2), (3, 4))
    _, log_det, jac, *_ = _round_trip(flow, params, z)
    assert np.all(np.asarray(log_det) == 0.0)
    for j in jac:
        np.testing.assert_allclose(j.T @ j, np.eye(4), atol=1e-5)
    np.testing.assert_allclose(jac[0], jac[1], atol=1e-6)  # linear: the same J everywhere


# --------------------------------------------------------------------------- initialisation

@pytest.mark.parametrize("formula", FORMULAS)
def test_jitter_zero_is_the_identity_or_an_isometry(formula: str) -> None:
    flow, _, z = _random_case(formula, 7)  # the matrix's shapes: _round_trip is compiled
    params = flow.init(jax.random.key(3), jitter=0.0)
    x, log_det, _, z_back, inv_log_det, *_ = _round_trip(flow, params, z)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-6)
    np.testing.assert_allclose(inv_log_det, 0.0, atol=1e-6)
    if "hh" in formula:
        # Reflections only: distances (and so N(0, I)) are preserved.
        dist = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
        np.testing.assert_allclose(np.linalg.norm(x, axis=-1), np.linalg.norm(z, axis=-1),
                                   rtol=1e-6)
        np.testing.assert_allclose(dist(np.asarray(x)), dist(np.asarray(z)), atol=1e-5)
        assert not np.allclose(x, z, atol=1e-2)
    else:
        np.testing.assert_allclose(x, z, atol=1e-6)
        np.testing.assert_allclose(z_back, z, atol=1e-6)


def test_a_steps_own_jitter_overrides_the_flows() -> None:
    flow = Flow("planar(jitter=0)*2-radial(jitter=0)-loc", 2)
    params = flow.init(jax.random.key(5), jitter=1.0)
    z = jax.random.normal(jax.random.key(6), (4, 2))
    x, log_det = _forward(flow, params, z)
    mu = params["2_loc"]["mu"][0]
    assert np.linalg.norm(mu) > 0.1  # the loc step did take the flow's jitter
    np.testing.assert_allclose(x - z, np.broadcast_to(mu, z.shape), atol=1e-6)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-6)
    bent = Flow("planar(jitter=1)", 2)
    x_bent, _ = _forward(bent, bent.init(jax.random.key(5), jitter=0.0), z)
    assert not np.allclose(x_bent, z, atol=1e-2)


def test_init_loc_moves_the_last_loc_step() -> None:
    flow = Flow("loc-(planar-loc)*2-scale-loc", 3)
    where = jnp.array([1.0, -2.0, 3.0])
    z = jax.random.normal(jax.random.key(7), (4, 3))
    plain = flow.init(jax.random.key(8), jitter=0.0)
    moved = flow.init(jax.random.key(8), jitter=0.0, loc=where)
    np.testing.assert_allclose(_forward(flow, moved, z)[0], z + where, atol=1e-6)
    for key in ("0_loc", "1_group"):
        assert jax.tree.all(jax.tree.map(jnp.array_equal, plain[key], moved[key]))
    # At jitter 1 too, loc= shifts the output by exactly `where`.
    noisy = flow.init(jax.random.key(8), jitter=1.0)
    noisy_moved = flow.init(jax.random.key(8), jitter=1.0, loc=where)
    np.testing.assert_allclose(_forward(flow, noisy_moved, z)[0] - _forward(flow, noisy, z)[0],
                               np.broadcast_to(where, z.shape), atol=1e-5)
    with pytest.raises(ValueError, match=r"loc must have shape \(3,\)"):
        flow.init(jax.random.key(8), loc=jnp.zeros(2))


def test_init_inside_a_jit_draws_what_a_direct_call_does() -> None:
    # the direct call is its own compiled program (compiled to run once), the traced
    # one part of the caller's: the same draws up to rounding, another key others
    flow = Flow("scale-planar*3-loc", 4)
    direct = flow.init(jax.random.key(2), jitter=0.5, scale=2.0)
    traced = jax.jit(lambda k: flow.init(k, jitter=0.5, scale=2.0))(jax.random.key(2))
    assert jax.tree.structure(direct) == jax.tree.structure(traced)
    for a, b in zip(jax.tree.leaves(direct), jax.tree.leaves(traced), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    other = flow.init(jax.random.key(3), jitter=0.5, scale=2.0)
    assert not np.allclose(direct["1_planar"]["u"], other["1_planar"]["u"])


# --------------------------------------------------------------------------- batching

@functools.partial(jax.jit, static_argnums=0)
def _everything(flow: Flow, params: Params, v: jax.Array) -> tuple[jax.Array, ...]:
    x, log_det = flow.forward(params, v)
    z, inv_log_det = flow.inverse(params, v)
    return x, log_det, z, inv_log_det, flow.log_prob(params, v)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_batch_shapes_match_a_loop_over_points(batch: tuple[int, ...]) -> None:
    flow = Flow("scale-hh*3-planar*2-radial-loc", 3)
    params = flow.init(jax.random.key(9), jitter=1.0)
    v = jax.random.normal(jax.random.key(10), (*batch, 3))
    batched = _everything(flow, params, v)
    assert [a.shape for a in batched] == [v.shape, batch, v.shape, batch, batch]
    for index in np.ndindex(*batch):
        single = _everything(flow, params, v[index])
        for got, want in zip(batched, single, strict=True):
            np.testing.assert_allclose(got[index], want, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- densities

def _grid(dim: int) -> tuple[np.ndarray, float]:
    """A grid wide enough for the Gaussian tails, and its cell volume."""
    if dim == 1:
        x = np.linspace(-20.0, 20.0, 8001)
        return x[:, None], x[1] - x[0]
    x = np.linspace(-12.0, 12.0, 481)
    mesh = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1).reshape(-1, 2)
    return mesh, (x[1] - x[0]) ** 2


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("formula", ["planar*2", "radial*2"])
def test_log_prob_integrates_to_one(formula: str, dim: int) -> None:
    flow = Flow(formula, dim)
    params = flow.init(jax.random.key(11), jitter=1.0)
    points, cell = _grid(dim)
    density = np.exp(np.asarray(jax.jit(flow.log_prob)(params, points), np.float64))
    # Riemann sum over a grid holding all but ~e^{-50} of the mass; for these densities
    # (smooth but for the kink of |z - z0| in radial) its error is far below 1e-3, while
    # a log-det off by eps would put the total off by about eps.
    assert abs(density.sum() * cell - 1.0) < 1e-3


@pytest.mark.parametrize("formula", ["planar*2", "radial*2", "scale-hh*3-planar*2-radial-loc"])
def test_log_prob_agrees_with_sample_and_log_prob(formula: str) -> None:
    flow = Flow(formula, 3)
    params = flow.init(jax.random.key(12), jitter=1.0)

    @jax.jit
    def both(params: Params) -> tuple[jax.Array, jax.Array, jax.Array]:
        x, log_q = flow.sample_and_log_prob(params, jax.random.key(13), (4, 5))
        return x, log_q, flow.log_prob(params, x)

    x, log_q, log_prob = both(params)
    assert x.shape == (4, 5, 3) and log_q.shape == (4, 5)
    np.testing.assert_allclose(log_prob, log_q, rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- gradients

def test_planar_inverse_gradient_matches_finite_differences() -> None:
    """The planar inverse differentiates through one live Newton step at the root
    (the implicit-function derivative); compare with central differences."""
    with jax.enable_x64(True):
        flow = Flow("planar*2", 3)
        params = flow.init(jax.random.key(14), jitter=1.0)
        x = jax.random.normal(jax.random.key(15), (4, 3))
        weights = jax.random.normal(jax.random.key(16), (4, 3))

        def loss(p: Params) -> jax.Array:
            z, log_det = flow.inverse(p, x)
            return jnp.sum(weights * z) + jnp.sum(log_det)

        grad = jax.jit(jax.grad(loss))(params)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        h = 1e-6
        steps = h * jnp.eye(flat.size)
        losses = jax.jit(jax.vmap(lambda f: loss(unravel(f))))
        numeric = np.asarray((losses(flat + steps) - losses(flat - steps)) / (2 * h))
        analytic = np.asarray(jax.flatten_util.ravel_pytree(grad)[0])
    assert analytic.dtype == np.float64
    assert np.abs(analytic).max() > 0.1
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- pull-back

@pytest.mark.parametrize("formula", ["(coupling(hidden=8, sigma=exp)-reverse)*3-sas",
                                     "scale-hh*3-planar*2-radial-loc",
                                     "rqs(bins=5, bound=3, hidden=8)-lu"])
def test_pull_back_is_the_inverse_with_the_transposed_jacobian_and_log_det_gradient(
        formula: str) -> None:
    # s = J_f(z)^T g + grad log|det J_f(z)| at z = f^{-1}(x), from whole Jacobians
    # (forward mode) rather than the step-by-step VJPs, in float64 on a batch (2, 3)
    dim = 5
    with jax.enable_x64(True):
        flow = Flow(formula, dim)
        params = flow.init(_key(formula, "pull"), jitter=0.5)
        x = 1.5 * jax.random.normal(_key(formula, "x"), (2, 3, dim))
        g = jax.random.normal(_key(formula, "g"), (2, 3, dim))

        @jax.jit
        def expected(params: Params, x: jax.Array, g: jax.Array) -> tuple[jax.Array, ...]:
            z = flow.inverse(params, x)[0]
            jac = jax.vmap(jax.vmap(jax.jacfwd(lambda v: flow.forward(params, v)[0])))(z)
            grad_log_det = jax.vmap(jax.vmap(jax.jacfwd(
                lambda v: flow.forward(params, v)[1])))(z)
            return z, jnp.einsum("...ij,...i->...j", jac, g) + grad_log_det

        z, s = jax.jit(flow.pull_back)(params, x, g)
        want_z, want_s = expected(params, x, g)
    assert z.shape == s.shape == (2, 3, dim)
    np.testing.assert_allclose(z, want_z, rtol=0, atol=1e-9)
    np.testing.assert_allclose(s, want_s, rtol=1e-9, atol=1e-9)
    assert float(jnp.max(jnp.abs(s - g))) > 0.1  # the flow is not the identity


@pytest.mark.parametrize("formula", ["coupling(hidden=8, sigma=exp)",
                                     "rqs(bins=4, bound=3, hidden=8)"])
def test_coupling_pull_back_shares_its_conditioner_with_the_same_gradient(
        formula: str) -> None:
    # the coupling's own pull-back against the generic one (its inverse, then the VJP
    # of its forward): the same values and parameter gradients of a Fisher-type loss,
    # with a third fewer matrix products in that gradient (one conditioner pass
    # differentiated instead of two)
    dim = 6
    with jax.enable_x64(True):
        flow = Flow(formula, dim)
        step = flow._nodes[0].bijection
        params = jax.tree.map(lambda a: a[0], flow.init(_key(formula, "share"), jitter=0.5)
                              [flow._nodes[0].key])
        x = 1.5 * jax.random.normal(_key(formula, "x"), (dim,))
        c = jax.random.normal(_key(formula, "c"), (dim,))

        def loss(pull_back: object) -> object:
            def of(p: Params) -> jax.Array:
                z, s = pull_back(step, p, x, c)
                return jnp.sum((z + s) ** 2)
            return of

        own, generic = loss(type(step).pull_back), loss(Bijection.pull_back)
        got, want = jax.value_and_grad(own)(params), jax.value_and_grad(generic)(params)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
        for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)

        def products(fn: object) -> int:
            jaxpr = jax.make_jaxpr(jax.grad(fn))(params)
            return str(jaxpr).count("dot_general")

        assert products(own) <= 0.8 * products(generic)


def test_pull_back_needs_a_score_of_the_points_shape() -> None:
    flow = Flow("planar*2", 2)
    params = flow.init(jax.random.key(17))
    with pytest.raises(ValueError, match=r"g must have the shape of x, \(4, 2\)"):
        flow.pull_back(params, jnp.zeros((4, 2)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        flow.pull_back(params, jnp.zeros(3), jnp.zeros(3))


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("dim", [0, -1, 2.5, 2.0, "2", True, None])
def test_bad_dimension_is_a_clear_error(dim: object) -> None:
    with pytest.raises(ValueError, match="dimension must be a positive integer"):
        Flow("planar", dim)  # type: ignore[arg-type]


def test_wrong_shapes_and_foreign_params_are_clear_errors() -> None:
    flow = Flow("planar*2", 2)
    params = flow.init(jax.random.key(17))
    for bad in (jnp.zeros(3), jnp.zeros((5, 3)), jnp.zeros(())):
        with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 2\)"):
            flow.forward(params, bad)
        with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
            flow.inverse(params, bad)
    for other in (Flow("radial", 2), Flow("planar*3", 2), Flow("planar*2", 3)):
        with pytest.raises(ValueError, match="params do not belong to"):
            flow.forward(other.init(jax.random.key(0)), jnp.zeros(2))
    with pytest.raises(ValueError, match="jitter must be a non-negative number"):
        flow.init(jax.random.key(0), jitter=-1.0)
