"""``planar``: x = z + u_hat tanh(w.z + b) (Rezende & Mohamed 2015, PyMC3's form)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array, lax

from flows.bijection import Bijection, Params
from flows.registry import register
from flows.stable import SOFTPLUS_INV_ONE, sech2

_SOLVE_ITERATIONS = 60


def _u_hat(params: Params) -> tuple[Array, Array, Array]:
    """u_hat = u + (m(w.u) - w.u) w / |w|^2 with m(x) = -1 + softplus(x).

    Returns (u_hat, m = w.u_hat = m(w.u), softplus(w.u) = 1 + m, kept apart so that
    it does not round to 0 when m is near -1). Since m > -1,
    1 + w.u_hat tanh'(.) > 0 and the map is invertible.
    """
    u, w = params["u"], params["w"]
    wu = w @ u
    sp = jax.nn.softplus(wu)
    m = sp - 1.0
    return u + (m - wu) * w / (w @ w), m, sp


def _log_det(sp: Array, a: Array) -> Array:
    """log(1 + m (1 - tanh^2 a)) written as log(tanh^2 a + softplus(w.u) (1 - tanh^2 a)).

    Both terms are non-negative (1 + m = softplus(w.u) > 0), so nothing cancels when
    m is near -1; where 1 - tanh^2 a loses relative precision, tanh^2 a ~ 1 dominates.
    """
    t2 = jnp.tanh(a) ** 2
    return jnp.log(t2 + sp * (1.0 - t2))


@register
class Planar(Bijection):
    """x = z + u_hat tanh(w.z + b), log|det J| = log|1 + u_hat.w (1 - tanh^2(w.z + b))|.

    Initialised at w = 1/sqrt(d) (plus noise), u = log(e - 1) w (plus noise) and
    b = 0 (plus noise): at jitter 0, u_hat = 0 and the map is the identity.
    The inverse solves the scalar equation t + m tanh(t + b) = w.x for t = w.z
    (m = w.u_hat > -1 makes the left side strictly increasing, so the root is
    unique and lies in [w.x - |m|, w.x + |m|]) by safeguarded Newton iterations;
    its gradient comes from the implicit function theorem.
    """

    name = "planar"
    summary = "x = z + u tanh(w.z + b): one bend along a learned direction"
    analytic_inverse = False

    def init(self, key: Array, jitter: float) -> Params:
        ku, kw, kb = jax.random.split(key, 3)
        w0 = jnp.full((self.dim,), 1.0 / jnp.sqrt(self.dim))
        return {
            "u": SOFTPLUS_INV_ONE * w0 + self.noise(ku, jitter, (self.dim,)),
            "w": w0 + self.noise(kw, jitter, (self.dim,)),
            "b": self.noise(kb, jitter, ()),
        }

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        u_hat, _, sp = _u_hat(params)
        a = params["w"] @ z + params["b"]
        return z + u_hat * jnp.tanh(a), _log_det(sp, a)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        u_hat, m, sp = _u_hat(params)
        w, b = params["w"], params["b"]
        y = w @ x

        def g(t: Array) -> Array:
            return t + m * jnp.tanh(t + b) - y

        def step(_: int, state: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
            t, lo, hi = state
            gt = g(t)
            lo = jnp.where(gt < 0, t, lo)
            hi = jnp.where(gt > 0, t, hi)
            newton = t - gt / (1.0 + m * sech2(t + b))
            inside = (newton > lo) & (newton < hi)
            return jnp.where(inside, newton, 0.5 * (lo + hi)), lo, hi

        lo, hi = lax.stop_gradient(y - jnp.abs(m)), lax.stop_gradient(y + jnp.abs(m))
        t, _, _ = lax.fori_loop(0, _SOLVE_ITERATIONS, step,
                                (lax.stop_gradient(y), lo, hi))
        t = lax.stop_gradient(t)
        # One Newton step with live parameters: exact value at the root, and its
        # derivative is the implicit-function derivative -dg/dtheta / g'(t).
        t = t - g(t) / (1.0 + m * sech2(t + b))
        a = t + b
        return x - u_hat * jnp.tanh(a), -_log_det(sp, a)
