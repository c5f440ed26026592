"""``sas``: a learned sinh-arcsinh map per coordinate, for skew and heavy tails."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from flows.bijection import Bijection, Params
from flows.registry import register
from flows.stable import SOFTPLUS_INV_ONE, log_softplus


def _log_cosh(a: Array) -> Array:
    """log cosh(a) without overflow: log((e^a + e^-a) / 2)."""
    return jnp.logaddexp(a, -a) - jnp.log(2.0)


@register
class SinhArcsinh(Bijection):
    """x_i = sinh((asinh(z_i) + eps_i) / delta_i), delta_i = softplus(rho_i) > 0
    (Jones & Pewsey 2009), with

        log|det J| = sum_i [log cosh(a_i) - log delta_i - log(1 + z_i^2) / 2],
        a_i = (asinh(z_i) + eps_i) / delta_i,

    and the inverse z_i = sinh(delta_i asinh(x_i) - eps_i). ``eps`` skews; ``delta``
    sets the tail weight: for large |z|, |x| ~ (2 |z|)^(1 / delta) / 2, so at
    delta = 1/2 a Gaussian z gives x exponential tails (those of the log of a
    half-Cauchy scale), below 1/2 heavier ones, above 1 lighter. An affine-coupling
    or spline flow keeps its base's Gaussian tails; a ``sas`` step last lets it
    reach a heavy-tailed target. Starts at eps = 0, delta = 1: the identity.
    """

    name = "sas"
    aliases = ("sinh_arcsinh",)
    summary = "x = sinh((asinh(z) + eps) / delta) per coordinate: skew and tail weight"

    def init(self, key: Array, jitter: float) -> Params:
        k_eps, k_rho = jax.random.split(key)
        return {"eps": self.noise(k_eps, jitter, (self.dim,)),
                "rho": SOFTPLUS_INV_ONE + self.noise(k_rho, jitter, (self.dim,))}

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        rho = params["rho"]
        a = (jnp.arcsinh(z) + params["eps"]) / jax.nn.softplus(rho)
        return jnp.sinh(a), jnp.sum(_log_cosh(a) - log_softplus(rho) - 0.5 * jnp.log1p(z * z))

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        rho = params["rho"]
        b = jax.nn.softplus(rho) * jnp.arcsinh(x) - params["eps"]
        return jnp.sinh(b), jnp.sum(_log_cosh(b) + log_softplus(rho) - 0.5 * jnp.log1p(x * x))
