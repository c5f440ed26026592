"""``affine``: a full-rank affine map x = L z + b with L lower triangular."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.linalg import solve_triangular

from flows.bijection import Bijection, Params
from flows.registry import register
from flows.stable import SOFTPLUS_INV_ONE, log_softplus


def _lower(params: Params) -> Array:
    """L = strictly-lower part of ``off`` + diag(softplus(rho))."""
    return jnp.tril(params["off"], -1) + jnp.diag(jax.nn.softplus(params["rho"]))


@register
class Affine(Bijection):
    """x = L z + b, L lower triangular with diagonal softplus(rho) > 0;
    log|det J| = sum_i log softplus(rho_i).

    ``affine`` alone is the full-rank Gaussian family (L is the Cholesky factor
    of the covariance), in one step instead of ``scale-hh*d-loc``. Initialised
    at rho = log(e - 1) (unit diagonal), zero off-diagonal and zero shift, each
    plus noise. The inverse is a triangular solve. Cost O(d^2) per sample.
    """

    name = "affine"
    aliases = ("tril",)
    summary = "x = L z + b, L lower triangular with positive diagonal: full-rank Gaussian"

    def init(self, key: Array, jitter: float) -> Params:
        kr, ko, kb = jax.random.split(key, 3)
        d = self.dim
        return {
            "rho": SOFTPLUS_INV_ONE + self.noise(kr, jitter, (d,)),
            "off": jnp.tril(self.noise(ko, jitter, (d, d)), -1),
            "b": self.noise(kb, jitter, (d,)),
        }

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        return _lower(params) @ z + params["b"], jnp.sum(log_softplus(params["rho"]))

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        z = solve_triangular(_lower(params), x - params["b"], lower=True)
        return z, -jnp.sum(log_softplus(params["rho"]))
