"""Monotone rational-quadratic splines (Durkan et al. 2019) and the ``rqs`` coupling step.

On [-B, B] the map is a monotone piecewise rational-quadratic function through
K + 1 knots (x_k, y_k) with slopes delta_k at the knots; outside it is the
identity, with unit slope at +-B, so the tails of N(0, I) pass through unchanged.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from flows.coupling import DEPTH, HIDDEN, SPLIT, Coupling
from flows.options import JITTER, Option
from flows.registry import register

MIN_BIN = 1e-3
"""Smallest bin width and height, as a fraction of 2B."""
MIN_SLOPE = 1e-3
"""Smallest slope at a knot."""
_SLOPE_SHIFT = math.log(math.expm1(1.0 - MIN_SLOPE))  # slope 1 at a raw value of 0


def spline_param_count(bins: int) -> int:
    """3K - 1 numbers per coordinate: K widths, K heights, K - 1 interior slopes."""
    return 3 * bins - 1


def _knots(raw: Array, bins: int, bound: float) -> tuple[Array, Array, Array]:
    """Knot abscissae, ordinates (K + 1 each) and slopes (K + 1) from 3K - 1 raw numbers.

    All-zero raw numbers give equal bins and unit slopes: the identity.
    """
    def positions(u: Array) -> Array:
        frac = MIN_BIN + (1.0 - MIN_BIN * bins) * jax.nn.softmax(u)
        edges = jnp.concatenate([jnp.zeros(1), jnp.cumsum(frac)])
        return 2.0 * bound * edges.at[-1].set(1.0) - bound

    xs = positions(raw[:bins])
    ys = positions(raw[bins:2 * bins])
    inner = MIN_SLOPE + jax.nn.softplus(raw[2 * bins:] + _SLOPE_SHIFT)
    slopes = jnp.concatenate([jnp.ones(1), inner, jnp.ones(1)])
    return xs, ys, slopes


class _Bin(NamedTuple):
    """The bin holding a clipped point: its knot (x_k, y_k), width w, height h,
    mean slope s = h / w and knot slopes delta_k, delta_{k+1}."""

    x0: Array
    y0: Array
    w: Array
    h: Array
    s: Array
    d0: Array
    d1: Array


def _locate(raw: Array, v: Array, bins: int, bound: float, *, by_output: bool
            ) -> tuple[Array, Array, _Bin]:
    """(|v| < bound, v clipped to the bound, its bin), searching the knots' abscissae
    for a forward pass and their ordinates (``by_output``) for an inverse one."""
    xs, ys, slopes = _knots(raw, bins, bound)
    vc = jnp.clip(v, -bound, bound)
    knots = ys if by_output else xs
    k = jnp.clip(jnp.searchsorted(knots, vc, side="right") - 1, 0, knots.shape[0] - 2)
    w, h = xs[k + 1] - xs[k], ys[k + 1] - ys[k]
    return jnp.abs(v) < bound, vc, _Bin(xs[k], ys[k], w, h, h / w, slopes[k], slopes[k + 1])


def _log_slope(b: _Bin, xi: Array) -> Array:
    """log g' at relative position xi in bin b (the formula in :func:`rqs_forward`)."""
    t = xi * (1.0 - xi)
    denom = b.s + (b.d1 + b.d0 - 2.0 * b.s) * t
    return 2.0 * jnp.log(b.s) + jnp.log(b.d1 * xi ** 2 + 2.0 * b.s * t + b.d0 * (1.0 - xi) ** 2) \
        - 2.0 * jnp.log(denom)


def rqs_forward(raw: Array, x: Array, bins: int, bound: float) -> tuple[Array, Array]:
    """y = g(x) and log g'(x) for a scalar x; raw holds 3K - 1 numbers.

    In bin k with xi = (x - x_k) / w_k, s = h_k / w_k:
    g = y_k + h_k (s xi^2 + delta_k xi (1 - xi)) / (s + (delta_{k+1} + delta_k - 2 s) xi (1 - xi)),
    g' = s^2 (delta_{k+1} xi^2 + 2 s xi (1 - xi) + delta_k (1 - xi)^2) / denominator^2.
    """
    inside, xc, b = _locate(raw, x, bins, bound, by_output=False)
    xi = (xc - b.x0) / b.w
    t = xi * (1.0 - xi)
    y = b.y0 + b.h * (b.s * xi ** 2 + b.d0 * t) / (b.s + (b.d1 + b.d0 - 2.0 * b.s) * t)
    return jnp.where(inside, y, x), jnp.where(inside, _log_slope(b, xi), 0.0)


def rqs_inverse(raw: Array, y: Array, bins: int, bound: float) -> tuple[Array, Array]:
    """x = g^{-1}(y) and log g'(x) (the forward log-slope, so callers negate it).

    xi is the root in [0, 1] of a xi^2 + b xi + c = 0 with
    a = h (s - delta_k) + (y - y_k) c1, b = h delta_k - (y - y_k) c1, c = -s (y - y_k),
    c1 = delta_{k+1} + delta_k - 2 s, taken as xi = 2c / (-b - sqrt(b^2 - 4ac)).
    """
    inside, yc, b = _locate(raw, y, bins, bound, by_output=True)
    dy = yc - b.y0
    c1 = b.d1 + b.d0 - 2.0 * b.s
    qa = b.h * (b.s - b.d0) + dy * c1
    qb = b.h * b.d0 - dy * c1
    qc = -b.s * dy
    xi = 2.0 * qc / (-qb - jnp.sqrt(jnp.maximum(qb * qb - 4.0 * qa * qc, 0.0)))
    return jnp.where(inside, b.x0 + xi * b.w, y), jnp.where(inside, _log_slope(b, xi), 0.0)


BINS = Option(int, 8, "number of spline bins K", minimum=2, maximum=128)
BOUND = Option(float, 4.0, "the spline acts on [-bound, bound], the identity outside",
               minimum=0.01)


@register
class RQSCoupling(Coupling):
    """Rational-quadratic spline coupling (Durkan et al. 2019, "Neural Spline Flows").

    With k = ``split`` (default floor(d/2)): x_{<k} = z_{<k} and x_i = g_i(z_i) for
    i >= k, each g_i a monotone rational-quadratic spline on [-bound, bound] (identity
    outside) whose 3K - 1 knot parameters come from an MLP of z_{<k} (``hidden`` wide, ``depth``
    layers). log|det J| = sum_{i >= k} log g_i'(z_i). The last layer starts at
    zero plus noise, so at jitter 0 the step is the identity. In 1-D there is
    nothing to condition on and the spline's parameters are free (a learned
    monotone map of the line). The inverse solves one quadratic per coordinate.
    Alternate with ``reverse``, ``perm`` or ``lu`` so that every coordinate is
    transformed. Cost O(d hidden + hidden^2 depth + d K).
    """

    name = "rqs"
    aliases = ("spline",)
    summary = "neural spline coupling: monotone rational-quadratic splines of half the coordinates"
    options = {"jitter": JITTER, "bins": BINS, "bound": BOUND,  # noqa: RUF012
               "hidden": HIDDEN, "depth": DEPTH, "split": SPLIT}
    min_dim = 1

    @property
    def params_per_coordinate(self) -> int:
        return spline_param_count(self.bins)

    def transform(self, theta: Array, z: Array) -> tuple[Array, Array]:
        return rqs_forward(theta, z, self.bins, self.bound)

    def untransform(self, theta: Array, x: Array) -> tuple[Array, Array]:
        z, log_grad = rqs_inverse(theta, x, self.bins, self.bound)
        return z, -log_grad
