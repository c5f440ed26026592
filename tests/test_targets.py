"""Tests for vi.targets: the energies against a naive transcription of REFERENCE.md, their
log Z by independent quadrature, finite float32 gradients far from the mass, normalisation
and exact moments of funnel/banana/mixture, and the exact samplers against the densities."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.integrate import simpson

from vi import targets

# ---------------------------------------------------------------------------------------
# REFERENCE.md's formulas, transcribed literally in float64 numpy (no stabilisation).
# ---------------------------------------------------------------------------------------


def _w1(z1):
    return np.sin(2 * np.pi * z1 / 4)


def _w2(z1):
    return 3 * np.exp(-(((z1 - 1) / 0.6) ** 2) / 2)


def _w3(z1):
    return 3 / (1 + np.exp(-(z1 - 1) / 0.3))


def naive_u1(z1, z2):
    r = np.sqrt(z1**2 + z2**2)
    return ((r - 2) / 0.4) ** 2 / 2 - np.log(
        np.exp(-(((z1 - 2) / 0.6) ** 2) / 2) + np.exp(-(((z1 + 2) / 0.6) ** 2) / 2)
    )


def naive_u2(z1, z2):
    return ((z2 - _w1(z1)) / 0.4) ** 2 / 2 + 0.1 * np.abs(z1)


def naive_u3(z1, z2):
    return -np.log(
        np.exp(-(((z2 - _w1(z1)) / 0.35) ** 2) / 2)
        + np.exp(-(((z2 - _w1(z1) + _w2(z1)) / 0.35) ** 2) / 2)
    ) + 0.1 * np.abs(z1)


def naive_u4(z1, z2):
    return -np.log(
        np.exp(-(((z2 - _w1(z1)) / 0.4) ** 2) / 2)
        + np.exp(-(((z2 - _w1(z1) + _w3(z1)) / 0.35) ** 2) / 2)
    ) + 0.1 * np.abs(z1)


NAIVE = {"pot1": naive_u1, "pot2": naive_u2, "pot3": naive_u3, "pot4": naive_u4}
POTENTIALS = {"pot1": targets.pot1, "pot2": targets.pot2, "pot3": targets.pot3,
              "pot4": targets.pot4}
REFERENCE_LOG_Z = {"pot1": 1.8775, "pot2": 2.9984, "pot3": 3.5580, "pot4": 3.6270}

# ---------------------------------------------------------------------------------------
# Tensor-product quadrature: Simpson in z2 per row, then Simpson in z1.
# ---------------------------------------------------------------------------------------


def _quadrature(log_p, z1, z2, jacobian=None):
    """Z = integral of exp(log_p) over the grid, and E[z1], E[z2], E[z1^2], E[z2^2], E[z1 z2].

    ``log_p(Z1, Z2)`` takes broadcastable float64 arrays. With ``jacobian``, the second
    coordinate is z2 = s(z1) u with u on the grid ``z2`` and ``jacobian(z1) = s(z1)``.
    """
    rows = []
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        for start in range(0, len(z1), 500):
            a = z1[start : start + 500, None]
            s = np.ones_like(a) if jacobian is None else jacobian(a)
            b = s * z2[None, :]
            p = np.exp(log_p(a, b)) * s
            rows.append(np.stack([simpson(p * b**k, x=z2, axis=1) for k in range(3)]))
    i0, i1, i2 = np.concatenate(rows, axis=1)
    z = simpson(i0, x=z1)
    moments = {
        "z1": simpson(z1 * i0, x=z1) / z,
        "z2": simpson(i1, x=z1) / z,
        "z1^2": simpson(z1**2 * i0, x=z1) / z,
        "z2^2": simpson(i2, x=z1) / z,
        "z1*z2": simpson(z1 * i1, x=z1) / z,
    }
    return z, moments


# REFERENCE.md's box; steps 0.1 in z1 (40 points per period of the sine ribbon) and 0.04
# in z2 (the ribbon's width is >= 0.35); halving both moves log Z by < 1e-10. z1 = 0, the
# kink of 0.1|z1|, is a Simpson panel edge.
_POT_Z1 = np.linspace(-300.0, 300.0, 6_001)
_POT_Z2 = np.linspace(-10.0, 10.0, 501)


@functools.cache
def pot_quadrature(name):
    return _quadrature(lambda a, b: -NAIVE[name](a, b), _POT_Z1, _POT_Z2)


def _module_log_p(target):
    """The module's log density as a float64 function of (z1, z2) grids."""
    with jax.enable_x64(True):
        compiled = jax.jit(target.log_density)

    def log_p(a, b):
        a, b = np.broadcast_arrays(a, b)
        with jax.enable_x64(True):
            return np.asarray(compiled(jnp.asarray(np.stack([a, b], axis=-1))))

    return log_p


@functools.cache
def target_quadrature(name, **kwargs):
    target = targets.get(name, **kwargs)
    if name == "funnel":
        # x = exp(v/2) u: the grid follows the funnel's neck and mouth.
        scale = kwargs.get("scale", 1.0)
        v = np.linspace(-9.0 * scale, 9.0 * scale, 901)
        u = np.linspace(-12.0, 12.0, 601)
        return _quadrature(_module_log_p(target), v, u, jacobian=lambda a: np.exp(a / 2))
    if name == "banana":
        # rows in x1 out to 7 sigma1; each row spans the ridge b (x1^2 - s1^2) +- 7 sigma2
        s1, s2, b = kwargs.get("sigma1", 2.0), kwargs.get("sigma2", 1.0), kwargs.get("bend", 0.5)
        ridge = (-b * s1**2, 48 * b * s1**2)
        x2 = np.arange(min(ridge) - 7 * s2, max(ridge) + 7 * s2, s2 / 15)
        return _quadrature(_module_log_p(target), np.linspace(-7 * s1, 7 * s1, 421), x2)
    return _quadrature(_module_log_p(target), np.linspace(-12, 12, 601),
                       np.linspace(-9, 9, 451))


# ---------------------------------------------------------------------------------------
# The energies
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pot1", "pot2", "pot3", "pot4"])
def test_log_z_matches_quadrature(name):
    z, _ = pot_quadrature(name)
    target = targets.get(name)
    assert target.log_Z == pytest.approx(math.log(z), abs=1e-6)
    assert target.log_Z == pytest.approx(REFERENCE_LOG_Z[name], abs=1e-3)


def test_log_z_closed_forms():
    root = math.sqrt(2 * math.pi)
    assert targets.get("pot2").log_Z == pytest.approx(math.log(20 * 0.4 * root), abs=1e-12)
    assert math.log(pot_quadrature("pot2")[0]) == pytest.approx(
        math.log(20 * 0.4 * root), abs=1e-6
    )


_RNG = np.random.default_rng(0)
_POINTS = np.concatenate(
    [
        _RNG.uniform(-5, 5, size=(40, 2)),
        [[0.0, 0.0], [1e-3, -2e-3], [2.0, 0.0], [-2.0, 0.1], [1.0, -3.0], [-7.5, 0.3]],
        [[-30.0, 0.0], [30.0, 1.0], [20.0, -2.0], [-24.0, 1.5]],
    ]
)


@pytest.mark.parametrize("name", ["pot1", "pot2", "pot3", "pot4"])
def test_energy_matches_reference_formula(name):
    with np.errstate(divide="ignore", over="ignore"):
        expected = NAIVE[name](_POINTS[:, 0], _POINTS[:, 1])
    finite = np.isfinite(expected)  # the naive form underflows to log(0) for pot1, |z1| >= 30
    assert finite.sum() >= 48
    potential = jax.jit(POTENTIALS[name])
    with jax.enable_x64(True):
        got64 = np.asarray(potential(jnp.asarray(_POINTS)))
        # log_density is -U, batched over leading axes
        batch = _POINTS[:36].reshape(3, 12, 2)
        log_p = np.asarray(jax.jit(targets.get(name).log_density)(jnp.asarray(batch)))
    np.testing.assert_allclose(got64[finite], expected[finite], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_p, -NAIVE[name](batch[..., 0], batch[..., 1]), rtol=1e-12)
    got32 = np.asarray(potential(jnp.asarray(_POINTS, dtype=jnp.float32)))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32[finite], expected[finite], rtol=1e-5, atol=1e-5)


_EXTREMES = np.array(
    [[z1, z2] for z1 in (-300.0, -30.0, 0.0, 30.0, 300.0) for z2 in (-5.0, 0.0, 2.0)]
    + [[1e-20, 0.0], [-300.0, -300.0]]
)


@pytest.mark.parametrize("name", ["pot1", "pot2", "pot3", "pot4"])
def test_gradients_finite_in_float32_and_correct(name):
    z = jnp.asarray(_EXTREMES, dtype=jnp.float32)
    value, grad = jax.jit(jax.vmap(jax.value_and_grad(POTENTIALS[name])))(z)
    assert grad.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(value)))
    assert np.all(np.isfinite(np.asarray(grad)))
    # where the naive float64 form is finite and smooth, agree with its central differences
    h = 1e-6
    with np.errstate(divide="ignore", over="ignore"):
        for point, g in zip(_EXTREMES, np.asarray(grad), strict=True):
            if point[0] == 0.0 or np.all(np.abs(point) < 1e-3):
                continue  # |z1| and |z| have kinks there
            fd = [
                (NAIVE[name](*(point + h * e)) - NAIVE[name](*(point - h * e))) / (2 * h)
                for e in np.eye(2)
            ]
            if np.all(np.isfinite(fd)):
                np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-3 * max(1, np.abs(fd).max()))


def test_pot1_origin_gradient_is_zero_not_nan():
    g = jax.jit(jax.grad(targets.pot1))(jnp.zeros(2, jnp.float32))
    np.testing.assert_array_equal(np.asarray(g), [0.0, 0.0])  # symmetric: 0 is a subgradient


@pytest.mark.parametrize("name", ["pot1", "pot2", "pot3", "pot4"])
def test_energies_reject_wrong_shape(name):
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        POTENTIALS[name](jnp.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        targets.get(name).log_density(jnp.zeros((4, 5)))


# ---------------------------------------------------------------------------------------
# Funnel, banana, mixture: normalised, exact moments
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("funnel", {"dim": 2}),
        ("funnel", {"dim": 2, "scale": 1.5}),
        ("banana", {}),
        ("banana", {"sigma1": 1.5, "sigma2": 0.5, "bend": -1.0}),
        ("mixture", {}),
        ("mixture", {"weights": (0.6, 0.4), "separation": 4.0, "sigma": 0.7}),
    ],
)
def test_normalised_with_exact_moments(name, kwargs):
    target = targets.get(name, **kwargs)
    z, m = target_quadrature(name, **kwargs)
    assert target.log_Z == 0.0
    assert z == pytest.approx(1.0, abs=1e-7)
    assert target.mean is not None and target.variance is not None
    np.testing.assert_allclose([m["z1"], m["z2"]], target.mean, atol=1e-6)
    variance = [m["z1^2"] - m["z1"] ** 2, m["z2^2"] - m["z2"] ** 2]
    np.testing.assert_allclose(variance, target.variance, rtol=1e-6)


def test_funnel_in_higher_dimension_matches_scipy():
    dim, scale = 6, 1.3
    target = targets.get("funnel", dim=dim, scale=scale)
    x = np.random.default_rng(1).normal(size=(20, dim)) * 1.5
    v = x[:, 0]
    expected = stats.norm.logpdf(v, 0, scale) + stats.norm.logpdf(
        x[:, 1:], 0, np.exp(v / 2)[:, None]
    ).sum(axis=1)
    with jax.enable_x64(True):
        got = np.asarray(target.log_density(jnp.asarray(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert target.variance == pytest.approx((scale**2,) + (math.exp(scale**2 / 2),) * (dim - 1))


# ---------------------------------------------------------------------------------------
# Exact samplers
# ---------------------------------------------------------------------------------------

_N = 200_000


def _assert_moments_within_5_se(samples, expected):
    """Each sample moment within 5 Monte-Carlo standard errors of its exact value."""
    z1, z2 = samples[:, 0].astype(np.float64), samples[:, 1].astype(np.float64)
    values = {"z1": z1, "z2": z2, "z1^2": z1**2, "z2^2": z2**2, "z1*z2": z1 * z2}
    for key, f in values.items():
        se = f.std() / math.sqrt(len(f))
        assert abs(f.mean() - expected[key]) < 5 * se, (key, f.mean(), expected[key], se)


@pytest.mark.parametrize("name", ["pot2", "pot3", "pot4"])
def test_energy_samplers_match_density(name):
    sample = targets.get(name).sample
    assert sample is not None
    x = np.asarray(sample(jax.random.key(11), _N))
    assert x.shape == (_N, 2)
    _assert_moments_within_5_se(x, pot_quadrature(name)[1])
    # the z1 marginal is Laplace(0, 10) for all three
    assert stats.kstest(x[:, 0], stats.laplace(scale=10).cdf).pvalue > 1e-4


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("funnel", {"dim": 2}), ("banana", {}), ("mixture", {}),
     ("mixture", {"weights": (0.6, 0.4), "separation": 4.0, "sigma": 0.7})],
)
def test_samplers_match_density(name, kwargs):
    x = np.asarray(targets.get(name, **kwargs).sample(jax.random.key(5), _N))
    assert x.shape == (_N, 2)
    _assert_moments_within_5_se(x, target_quadrature(name, **kwargs)[1])


def test_funnel_sampler_in_higher_dimension():
    target = targets.get("funnel", dim=5)
    x = np.asarray(target.sample(jax.random.key(3), _N), dtype=np.float64)
    assert x.shape == (_N, 5)
    for j in range(5):
        se_mean = x[:, j].std() / math.sqrt(_N)
        assert abs(x[:, j].mean() - target.mean[j]) < 5 * se_mean
        sq = x[:, j] ** 2
        assert abs(sq.mean() - target.variance[j]) < 5 * sq.std() / math.sqrt(_N)


def test_mixture_sampler_weights():
    x = np.asarray(targets.get("mixture", weights=(0.25, 0.75)).sample(jax.random.key(2), _N))
    left = (x[:, 0] < 0).mean()  # the modes are 6 sigma apart: misassignment ~ 1e-3
    se = math.sqrt(0.25 * 0.75 / _N)
    expected = 0.25 * stats.norm.cdf(3.0) + 0.75 * stats.norm.cdf(-3.0)
    assert abs(left - expected) < 5 * se


def test_pot1_has_no_exact_sampler():
    assert targets.get("pot1").sample is None


# ---------------------------------------------------------------------------------------
# The registry and its errors
# ---------------------------------------------------------------------------------------


def test_names_and_defaults():
    assert targets.names() == ("pot1", "pot2", "pot3", "pot4", "funnel", "banana", "mixture")
    for name in targets.names():
        target = targets.get(name)
        assert target.name == name
        assert target.description
        x = jnp.zeros((3, target.dim))
        assert jax.jit(target.log_density)(x).shape == (3,)
    assert targets.get("funnel").dim == 10
    assert targets.get(" Funnel ", dim=3).dim == 3


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match=r"'fumnel' is not a target; did you mean 'funnel'\?"):
        targets.get("fumnel")
    with pytest.raises(ValueError, match="Valid names: pot1, pot2, pot3, pot4, funnel"):
        targets.get("nothing-like-it")
    with pytest.raises(TypeError, match="str"):
        targets.get(3)


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        ("funnel", {"dim": 1}, ValueError, "dim must be >= 2"),
        ("funnel", {"dim": 2.5}, TypeError, "dim must be an int"),
        ("funnel", {"scale": 0.0}, ValueError, "scale must be > 0"),
        ("funnel", {"dims": 3}, ValueError, "no argument 'dims'; it takes dim, scale"),
        ("pot1", {"dim": 3}, ValueError, "it takes no arguments"),
        ("banana", {"sigma2": -1.0}, ValueError, "sigma2 must be > 0"),
        ("banana", {"bend": float("nan")}, ValueError, "bend must be finite"),
        ("mixture", {"weights": (0.5, 0.6)}, ValueError, "must sum to 1"),
        ("mixture", {"weights": (1.0,)}, ValueError, "2 numbers"),
        ("mixture", {"weights": 0.3}, TypeError, "pair of numbers"),
        ("mixture", {"weights": (1.2, -0.2)}, ValueError, "each weight must be > 0"),
        ("mixture", {"separation": -1.0}, ValueError, "separation must be >= 0"),
    ],
)
def test_bad_arguments(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        targets.get(name, **kwargs)


def test_bad_sample_count_and_shape():
    target = targets.get("banana")
    with pytest.raises(ValueError, match="at least 1"):
        target.sample(jax.random.key(0), 0)
    with pytest.raises(TypeError, match="int"):
        target.sample(jax.random.key(0), 10.0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        targets.get("funnel", dim=4).log_density(jnp.zeros(3))


def test_model_wraps_the_log_density():
    from numpyro.infer.util import log_density

    m = targets.model("banana", bend=0.3)
    assert m.dim == 2
    x = jnp.array([0.7, -0.4])
    got, _ = log_density(m.fn, m.args, m.kwargs, {m.site: x})
    expected = stats.norm.logpdf(0.7, 0, 2) + stats.norm.logpdf(-0.4, 0.3 * (0.49 - 4), 1)
    assert float(got) == pytest.approx(expected, rel=1e-5)
