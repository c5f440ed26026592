"""``scale``: a learned positive diagonal scaling, x = z * softplus(rho)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from flows.bijection import Bijection, Params
from flows.registry import register
from flows.stable import SOFTPLUS_INV_ONE, log_softplus


@register
class Scale(Bijection):
    """x = z * sigma with sigma = softplus(rho); log|det J| = sum_i log softplus(rho_i).

    rho starts at log(e - 1), where sigma = 1 (the identity). ``scale-loc`` is the
    mean-field Gaussian family.
    """

    name = "scale"
    affine = True
    summary = "x = z * softplus(rho): a learned positive diagonal scale"

    def init(self, key: Array, jitter: float) -> Params:
        return {"rho": SOFTPLUS_INV_ONE + self.noise(key, jitter, (self.dim,))}

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        rho = params["rho"]
        return z * jax.nn.softplus(rho), jnp.sum(log_softplus(rho))

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        rho = params["rho"]
        return x / jax.nn.softplus(rho), -jnp.sum(log_softplus(rho))
