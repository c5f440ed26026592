"""``radial``: x = z + beta h(alpha, r) (z - z0) (Rezende & Mohamed 2015, PyMC3's form)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from flows.bijection import Bijection, Params
from flows.registry import register
from flows.stable import SOFTPLUS_INV_ONE

_TINY = 1e-30  # keeps the gradient of |z - z0| finite at z = z0


def _radius(v: Array) -> Array:
    return jnp.sqrt(v @ v + _TINY)


def _log_det(dim: int, alpha: Array, sp: Array, r: Array) -> Array:
    """(d-1) log(1 + beta h) + log(1 + beta h + beta h' r) in log space.

    With alpha + beta = softplus(b) = sp > 0:
    1 + beta h = (sp + r) / (alpha + r) and
    1 + beta h + beta h' r = (r^2 + 2 alpha r + alpha sp) / (alpha + r)^2,
    both ratios of positive terms.
    """
    log_ar = jnp.log(alpha + r)
    return (dim - 1) * (jnp.log(sp + r) - log_ar) + jnp.log(r * r + 2 * alpha * r + alpha * sp) \
        - 2 * log_ar


@register
class Radial(Bijection):
    """x = z + beta h (z - z0), h = 1 / (alpha + r), r = |z - z0|, alpha = exp(a),
    beta = -alpha + softplus(b) >= -alpha (which keeps it invertible).

    Initialised at a = 0, b = log(e - 1) (so beta = 0, the identity) and z0 = 0,
    each plus noise. The inverse is closed-form: |x - z0| = r (sp + r) / (alpha + r)
    is a quadratic in r with exactly one non-negative root.
    """

    name = "radial"
    summary = "x = z + beta (z - z0) / (alpha + |z - z0|): contraction or expansion around z0"

    def init(self, key: Array, jitter: float) -> Params:
        kz, ka, kb = jax.random.split(key, 3)
        return {
            "z0": self.noise(kz, jitter, (self.dim,)),
            "a": self.noise(ka, jitter, ()),
            "b": SOFTPLUS_INV_ONE + self.noise(kb, jitter, ()),
        }

    @staticmethod
    def _coefficients(params: Params) -> tuple[Array, Array, Array]:
        alpha = jnp.exp(params["a"])
        sp = jax.nn.softplus(params["b"])
        return alpha, sp, sp - alpha

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        alpha, sp, beta = self._coefficients(params)
        diff = z - params["z0"]
        r = _radius(diff)
        return z + beta / (alpha + r) * diff, _log_det(self.dim, alpha, sp, r)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        alpha, sp, _ = self._coefficients(params)
        diff = x - params["z0"]
        rx = _radius(diff)
        # r^2 + (sp - rx) r - rx alpha = 0; pick the cancellation-free form of the root.
        p = sp - rx
        disc = jnp.sqrt(p * p + 4.0 * rx * alpha)
        r = jnp.where(p > 0, 2.0 * rx * alpha / (p + disc), 0.5 * (disc - p))
        z = params["z0"] + diff * (alpha + r) / (sp + r)
        return z, -_log_det(self.dim, alpha, sp, r)
