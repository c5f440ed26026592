"""Target densities for variational inference: the four 2-D test energies, Neal's funnel,
a banana and a Gaussian mixture, each with its exact log normalising constant.

A target is a :class:`Target`: an unnormalised log density ``log_density(x) = -U(x)`` of
points of shape ``(..., dim)``, with ``log_Z = log of the integral of exp(-U)`` so that for
any approximation q,

    KL(q || p) = E_q[log q(x) - log_density(x)] + log_Z,

the fitted loss (the negative ELBO) plus ``log_Z``. Targets that can be drawn from exactly
carry a ``sample(key, n)``; those whose first two moments are known in closed form carry
``mean`` and ``variance``.

``get(name, **kwargs)`` builds a target by name, ``names()`` lists the names, and
``model(name, **kwargs)`` wraps one as a ready ``vi.Model``.

The energies U1..U4 are those of Rezende & Mohamed (2015), "Variational inference with
normalizing flows", Table 1, with the ``0.1 |z1|`` term that makes U2..U4 normalisable
(as PyMC3 used them). They are written stably: ``logaddexp`` for the log of a sum of
exponentials and ``jax.nn.sigmoid`` for the logistic function, so that values and gradients
stay finite in float32 far from the mass (z1 = +-300).
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax import Array

if TYPE_CHECKING:
    from vi.model import Model

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Target:
    """A target density p(x) = exp(log_density(x)) / exp(log_Z) on R^dim.

    Attributes:
        name: the registry name (``"pot1"``, ``"funnel"``, ...).
        dim: the dimension of a point.
        log_density: ``x`` of shape ``(..., dim)`` -> unnormalised log density, shape ``(...)``.
        log_Z: log of the integral of ``exp(log_density)``; exact where known, else ``None``.
        description: one line saying what the density is, with its parameters.
        sample: ``sample(key, n)`` -> ``n`` exact independent draws, shape ``(n, dim)``;
            ``None`` when no exact sampler is available.
        mean: the exact mean, one entry per coordinate, or ``None`` if not known exactly.
        variance: the exact marginal variances, one entry per coordinate, or ``None``.
    """

    name: str
    dim: int
    log_density: Callable[[Array], Array]
    log_Z: float | None
    description: str
    sample: Callable[[Array, int], Array] | None = None
    mean: tuple[float, ...] | None = None
    variance: tuple[float, ...] | None = None


# --------------------------------------------------------------------------------------
# The four 2-D energies
# --------------------------------------------------------------------------------------


def _coords(z: Array, name: str) -> tuple[Array, Array]:
    """Split points of shape (..., 2) into (z1, z2); a clear error for any other shape."""
    z = jnp.asarray(z)
    if z.ndim < 1 or z.shape[-1] != 2:
        raise ValueError(f"{name} takes points of shape (..., 2); got shape {z.shape}")
    return z[..., 0], z[..., 1]


def _w1(z1: Array) -> Array:
    """w1(z) = sin(2 pi z1 / 4)."""
    return jnp.sin(0.5 * jnp.pi * z1)


def _w2(z1: Array) -> Array:
    """w2(z) = 3 exp(-((z1 - 1) / 0.6)^2 / 2)."""
    return 3.0 * jnp.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)


def _w3(z1: Array) -> Array:
    """w3(z) = 3 sigmoid((z1 - 1) / 0.3), with the stable sigmoid."""
    return 3.0 * jax.nn.sigmoid((z1 - 1.0) / 0.3)


def _half_square(x: Array, scale: float) -> Array:
    """(x / scale)^2 / 2."""
    return 0.5 * (x / scale) ** 2


def _safe_norm(z: Array) -> Array:
    """|z| over the last axis, with gradient 0 (not NaN) at z = 0."""
    squared = jnp.sum(z**2, axis=-1)
    positive = squared > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def pot1(z: Array) -> Array:
    """U1(z) = ((|z| - 2) / 0.4)^2 / 2 - log(exp(-((z1 - 2)/0.6)^2/2) + exp(-((z1 + 2)/0.6)^2/2)).

    A ring of radius 2 cut into two arcs at z1 = +-2. ``z`` has shape (..., 2); the result
    has shape (...). The norm is taken safely so that the gradient at z = 0 is finite.
    """
    z1, _ = _coords(z, "pot1")
    ring = _half_square(_safe_norm(jnp.asarray(z)) - 2.0, 0.4)
    return ring - jnp.logaddexp(-_half_square(z1 - 2.0, 0.6), -_half_square(z1 + 2.0, 0.6))


def pot2(z: Array) -> Array:
    """U2(z) = ((z2 - w1(z)) / 0.4)^2 / 2 + 0.1 |z1|, w1(z) = sin(2 pi z1 / 4).

    A sine-shaped ribbon; the Laplace term 0.1 |z1| makes it normalisable.
    """
    z1, z2 = _coords(z, "pot2")
    return _half_square(z2 - _w1(z1), 0.4) + 0.1 * jnp.abs(z1)


def pot3(z: Array) -> Array:
    """U3(z) = -log(exp(-((z2 - w1)/0.35)^2/2) + exp(-((z2 - w1 + w2)/0.35)^2/2)) + 0.1 |z1|,

    with w1(z) = sin(2 pi z1 / 4) and w2(z) = 3 exp(-((z1 - 1) / 0.6)^2 / 2): the sine ribbon
    split in two around z1 = 1.
    """
    z1, z2 = _coords(z, "pot3")
    d = z2 - _w1(z1)
    log_sum = jnp.logaddexp(-_half_square(d, 0.35), -_half_square(d + _w2(z1), 0.35))
    return -log_sum + 0.1 * jnp.abs(z1)


def pot4(z: Array) -> Array:
    """U4(z) = -log(exp(-((z2 - w1)/0.4)^2/2) + exp(-((z2 - w1 + w3)/0.35)^2/2)) + 0.1 |z1|,

    with w1(z) = sin(2 pi z1 / 4) and w3(z) = 3 sigmoid((z1 - 1) / 0.3): the sine ribbon and
    a copy of it shifted down by 3 for z1 > 1.
    """
    z1, z2 = _coords(z, "pot4")
    d = z2 - _w1(z1)
    log_sum = jnp.logaddexp(-_half_square(d, 0.4), -_half_square(d + _w3(z1), 0.35))
    return -log_sum + 0.1 * jnp.abs(z1)


# log Z of U1 has no closed form: 2-D quadrature (tensor Simpson rule in float64 on
# [-6, 6]^2, outside which the density is below exp(-50)); steps 0.01, 0.005 and 0.0025,
# and the square [-7, 7]^2, agree to 1e-14. REFERENCE.md's grid gives 1.8775.
_LOG_Z1 = 1.877501626110

# For U2..U4 the integral over z2 at fixed z1 is a sum of Gaussian integrals whose value
# does not depend on z1: sigma sqrt(2 pi) per term. The integral over z1 of exp(-0.1|z1|)
# is 20. Hence the closed forms (REFERENCE.md's quadrature: 2.9984, 3.5580, 3.6270).
_LOG_Z2 = math.log(20.0 * 0.4) + _LOG_SQRT_2PI
_LOG_Z3 = math.log(20.0 * (0.35 + 0.35)) + _LOG_SQRT_2PI
_LOG_Z4 = math.log(20.0 * (0.4 + 0.35)) + _LOG_SQRT_2PI


def _negate(potential: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """The log density -U(z) of an energy U."""

    def log_density(z: Array) -> Array:
        return -potential(z)

    log_density.__name__ = f"{potential.__name__}_log_density"
    log_density.__doc__ = f"-{potential.__name__}(z): the log of the unnormalised density exp(-U)."
    return log_density


def _exact_sampler(draw: Callable[[Array, int], Array]) -> Callable[[Array, int], Array]:
    """``sample(key, n)``: checks that ``n`` is a positive int, then runs ``draw`` compiled
    once per ``n``."""
    compiled = jax.jit(draw, static_argnums=1)

    def sample(key: Array, n: int) -> Array:
        if isinstance(n, bool) or not isinstance(n, Integral):
            raise TypeError(f"the number of samples must be an int; got {type(n).__name__}")
        if n < 1:
            raise ValueError(f"the number of samples must be at least 1; got {n}")
        return compiled(key, int(n))

    return sample


def _ribbon_sampler(
    offset: Callable[[Array], Array] | None, first_weight: float, scales: tuple[float, float]
) -> Callable[[Array, int], Array]:
    """Exact sampler for U2..U4: z1 ~ Laplace(0, 10), then z2 | z1 a two-part mixture.

    With probability ``first_weight`` z2 ~ N(w1(z1), scales[0]^2), else
    z2 ~ N(w1(z1) - offset(z1), scales[1]^2). (For U2, ``first_weight`` is 1.)
    """

    def draw(key: Array, n: int) -> Array:
        k1, kc, k2 = jax.random.split(key, 3)
        z1 = 10.0 * jax.random.laplace(k1, (n,))
        eps = jax.random.normal(k2, (n,))
        if offset is None:
            z2 = _w1(z1) + scales[0] * eps
        else:
            first = jax.random.bernoulli(kc, first_weight, (n,))
            z2 = _w1(z1) + jnp.where(first, scales[0] * eps, scales[1] * eps - offset(z1))
        return jnp.stack([z1, z2], axis=-1)

    return _exact_sampler(draw)


def _energy_target(
    potential: Callable[[Array], Array],
    log_z: float,
    description: str,
    sample: Callable[[Array, int], Array] | None,
) -> Target:
    """The 2-D target exp(-U) for the energy ``potential``, named after it."""
    return Target(
        name=potential.__name__,
        dim=2,
        log_density=_negate(potential),
        log_Z=log_z,
        description=description,
        sample=sample,
    )


# --------------------------------------------------------------------------------------
# Parameter checks
# --------------------------------------------------------------------------------------


def _real(target: str, key: str, value: object) -> float:
    """A finite real parameter, as a float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"target {target!r}: {key} must be a real number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"target {target!r}: {key} must be finite; got {value}")
    return value


def _positive(target: str, key: str, value: object) -> float:
    """A finite, strictly positive real parameter."""
    value = _real(target, key, value)
    if value <= 0.0:
        raise ValueError(f"target {target!r}: {key} must be > 0; got {value}")
    return value


def _check_points(x: Array, dim: int, name: str) -> Array:
    """Points of shape (..., dim); a clear error for any other shape."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(f"{name} takes points of shape (..., {dim}); got shape {x.shape}")
    return x


# --------------------------------------------------------------------------------------
# Funnel, banana, mixture
# --------------------------------------------------------------------------------------


def _funnel(*, dim: int = 10, scale: float = 1.0) -> Target:
    """Neal's funnel in ``dim`` dimensions: v = x[0] ~ N(0, scale^2) and, for i >= 1,
    x[i] | v ~ N(0, exp(v / 2)^2) (standard deviation exp(v/2)), independently.

        log p(x) = -v^2 / (2 scale^2) - log scale - sum_i [x_i^2 exp(-v) / 2 + v / 2]
                   - dim log sqrt(2 pi)

    It is normalised: log Z = 0. Defaults dim = 10, scale = 1 (REFERENCE.md's funnel; Neal
    2003, "Slice sampling", used scale = 3). Mean 0; Var v = scale^2 and, since
    E[exp(v)] = exp(scale^2 / 2), Var x_i = exp(scale^2 / 2).
    """
    if isinstance(dim, bool) or not isinstance(dim, Integral):
        raise TypeError(f"target 'funnel': dim must be an int; got {dim!r}")
    dim = int(dim)
    if dim < 2:
        raise ValueError(
            f"target 'funnel': dim must be >= 2 (log-scale plus at least one x); got {dim}"
        )
    scale = _positive("funnel", "scale", scale)
    log_scale = math.log(scale)

    def funnel_log_density(x: Array) -> Array:
        x = _check_points(x, dim, "funnel")
        v, rest = x[..., 0], x[..., 1:]
        log_p_v = -_half_square(v, scale) - log_scale - _LOG_SQRT_2PI
        log_p_rest = -0.5 * jnp.sum((rest * jnp.exp(-0.5 * v)[..., None]) ** 2, axis=-1)
        return log_p_v + log_p_rest - (dim - 1) * (0.5 * v + _LOG_SQRT_2PI)

    def draw(key: Array, n: int) -> Array:
        eps = jax.random.normal(key, (n, dim))
        v = scale * eps[:, :1]
        return jnp.concatenate([v, jnp.exp(0.5 * v) * eps[:, 1:]], axis=-1)

    var_x = math.exp(0.5 * scale**2)
    return Target(
        name="funnel",
        dim=dim,
        log_density=funnel_log_density,
        log_Z=0.0,
        description=f"Neal's funnel, dim={dim}: v ~ N(0, {scale:g}^2), x_i | v ~ N(0, exp(v/2)^2)",
        sample=_exact_sampler(draw),
        mean=(0.0,) * dim,
        variance=(scale**2,) + (var_x,) * (dim - 1),
    )


def _banana(*, sigma1: float = 2.0, sigma2: float = 1.0, bend: float = 0.5) -> Target:
    """A normalised 2-D banana: x1 ~ N(0, sigma1^2), x2 | x1 ~ N(bend (x1^2 - sigma1^2), sigma2^2).

        log p(x) = -x1^2 / (2 sigma1^2) - (x2 - bend (x1^2 - sigma1^2))^2 / (2 sigma2^2)
                   - log(2 pi sigma1 sigma2)

    log Z = 0. Mean (0, 0); Var x1 = sigma1^2, Var x2 = sigma2^2 + 2 bend^2 sigma1^4 (since
    Var x1^2 = 2 sigma1^4). Defaults sigma1 = 2, sigma2 = 1, bend = 0.5: at x1 = +-2 sigma1
    the ridge has risen 6 conditional standard deviations above its value at x1 = 0.
    """
    s1 = _positive("banana", "sigma1", sigma1)
    s2 = _positive("banana", "sigma2", sigma2)
    b = _real("banana", "bend", bend)
    log_norm = math.log(2.0 * math.pi * s1 * s2)

    def banana_log_density(x: Array) -> Array:
        x = _check_points(x, 2, "banana")
        x1, x2 = x[..., 0], x[..., 1]
        return -_half_square(x1, s1) - _half_square(x2 - b * (x1**2 - s1**2), s2) - log_norm

    def draw(key: Array, n: int) -> Array:
        eps = jax.random.normal(key, (n, 2))
        x1 = s1 * eps[:, 0]
        return jnp.stack([x1, b * (x1**2 - s1**2) + s2 * eps[:, 1]], axis=-1)

    return Target(
        name="banana",
        dim=2,
        log_density=banana_log_density,
        log_Z=0.0,
        description=f"banana: x1 ~ N(0, {s1:g}^2), x2 | x1 ~ N({b:g} (x1^2 - {s1**2:g}), {s2:g}^2)",
        sample=_exact_sampler(draw),
        mean=(0.0, 0.0),
        variance=(s1**2, s2**2 + 2.0 * b**2 * s1**4),
    )


def _mixture(
    *, weights: tuple[float, float] = (0.3, 0.7), separation: float = 6.0, sigma: float = 1.0
) -> Target:
    """A 2-D mixture of two isotropic Gaussians, w_k N(mu_k, sigma^2 I), with
    mu_1 = (-separation/2, 0) and mu_2 = (+separation/2, 0).

        log p(x) = log sum_k w_k exp(-|x - mu_k|^2 / (2 sigma^2)) - log(2 pi sigma^2)

    log Z = 0. Mean (m, 0) with m = (w_2 - w_1) separation / 2; Var x1 = sigma^2 +
    w_1 w_2 separation^2, Var x2 = sigma^2. Defaults: weights (0.3, 0.7) (unequal, so one
    can tell which mode a mode-seeking fit found), separation 6 sigma, sigma = 1: the
    density between the modes falls to about exp(-4.5) of its peaks.
    """
    try:
        pair = tuple(weights)
    except TypeError:
        msg = f"target 'mixture': weights must be a pair of numbers; got {weights!r}"
        raise TypeError(msg) from None
    if len(pair) != 2:
        raise ValueError(f"target 'mixture': weights must hold 2 numbers; got {len(pair)}")
    w1, w2 = (_positive("mixture", "each weight", w) for w in pair)
    if abs(w1 + w2 - 1.0) > 1e-6:
        raise ValueError(
            f"target 'mixture': weights must sum to 1; got {pair} (sum {w1 + w2:g}); "
            "divide them by their sum"
        )
    w1, w2 = w1 / (w1 + w2), w2 / (w1 + w2)
    sep = _real("mixture", "separation", separation)
    if sep < 0.0:
        raise ValueError(f"target 'mixture': separation must be >= 0; got {sep}")
    s = _positive("mixture", "sigma", sigma)
    half = 0.5 * sep
    log_w = (math.log(w1), math.log(w2))
    log_norm = math.log(2.0 * math.pi * s**2)

    def mixture_log_density(x: Array) -> Array:
        x = _check_points(x, 2, "mixture")
        x1, x2 = x[..., 0], x[..., 1]
        across = _half_square(x2, s)
        left = log_w[0] - _half_square(x1 + half, s) - across
        right = log_w[1] - _half_square(x1 - half, s) - across
        return jnp.logaddexp(left, right) - log_norm

    def draw(key: Array, n: int) -> Array:
        kc, ke = jax.random.split(key)
        right = jax.random.bernoulli(kc, w2, (n,))
        centre = jnp.where(right, half, -half)
        eps = jax.random.normal(ke, (n, 2))
        return jnp.stack([centre + s * eps[:, 0], s * eps[:, 1]], axis=-1)

    return Target(
        name="mixture",
        dim=2,
        log_density=mixture_log_density,
        log_Z=0.0,
        description=f"mixture: {w1:g} N((-{half:g}, 0), {s:g}^2 I) + {w2:g} N(({half:g}, 0), "
        f"{s:g}^2 I)",
        sample=_exact_sampler(draw),
        mean=((w2 - w1) * half, 0.0),
        variance=(s**2 + w1 * w2 * sep**2, s**2),
    )


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------


def _pot1() -> Target:
    """U1: the split ring; no exact sampler."""
    return _energy_target(
        pot1, _LOG_Z1, "U1 (Rezende & Mohamed 2015): a ring split in two arcs", None
    )


def _pot2() -> Target:
    """U2: the sine ribbon; exact sampler."""
    description = "U2 (Rezende & Mohamed 2015) + 0.1|z1|: a sine ribbon"
    return _energy_target(pot2, _LOG_Z2, description, _ribbon_sampler(None, 1.0, (0.4, 0.4)))


def _pot3() -> Target:
    """U3: the split ribbon; exact sampler (two equal-weight parts of width 0.35)."""
    description = "U3 (Rezende & Mohamed 2015) + 0.1|z1|: a sine ribbon split at z1 = 1"
    return _energy_target(pot3, _LOG_Z3, description, _ribbon_sampler(_w2, 0.5, (0.35, 0.35)))


def _pot4() -> Target:
    """U4: the ribbon and its shifted copy; exact sampler (parts weighted 0.4 : 0.35)."""
    description = "U4 (Rezende & Mohamed 2015) + 0.1|z1|: a sine ribbon and a shifted copy"
    sample = _ribbon_sampler(_w3, 0.4 / 0.75, (0.4, 0.35))
    return _energy_target(pot4, _LOG_Z4, description, sample)


_BUILDERS: dict[str, Callable[..., Target]] = {
    "pot1": _pot1,
    "pot2": _pot2,
    "pot3": _pot3,
    "pot4": _pot4,
    "funnel": _funnel,
    "banana": _banana,
    "mixture": _mixture,
}


def names() -> tuple[str, ...]:
    """The names :func:`get` accepts."""
    return tuple(_BUILDERS)


def get(name: str, **kwargs: object) -> Target:
    """The target called ``name`` (case-insensitive), built with ``kwargs``.

    Targets and their keyword arguments (defaults in brackets):

    - ``pot1`` .. ``pot4``: the 2-D energies U1..U4 (no arguments).
    - ``funnel``: Neal's funnel; ``dim`` [10] (total dimension, >= 2), ``scale`` [1] (the
      standard deviation of the log-scale coordinate).
    - ``banana``: ``sigma1`` [2], ``sigma2`` [1], ``bend`` [0.5].
    - ``mixture``: ``weights`` [(0.3, 0.7)], ``separation`` [6], ``sigma`` [1].

    Raises ``ValueError`` for an unknown name (listing the valid ones, with a suggestion)
    or an argument the target does not take, and ``ValueError``/``TypeError`` for a bad
    argument value.
    """
    if not isinstance(name, str):
        raise TypeError(f"a target name must be a str; got {type(name).__name__}")
    key = name.strip().lower()
    builder = _BUILDERS.get(key)
    if builder is None:
        close = difflib.get_close_matches(key, list(_BUILDERS), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"{name!r} is not a target{hint} Valid names: {', '.join(_BUILDERS)}")
    accepted = list(inspect.signature(builder).parameters)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        takes = f"it takes {', '.join(accepted)}" if accepted else "it takes no arguments"
        raise ValueError(f"target {key!r} has no argument {unknown[0]!r}; {takes}")
    return builder(**kwargs)


def model(name: str, **kwargs: object) -> Model:
    """The target called ``name`` as a ready ``vi.Model``:
    ``Model.from_logdensity(target.log_density, target.dim)``."""
    target = get(name, **kwargs)
    from vi.model import Model

    return Model.from_logdensity(target.log_density, target.dim)
