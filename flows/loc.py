"""``loc``: a learned shift, x = z + mu."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from flows.bijection import Bijection, Params
from flows.registry import register


@register
class Loc(Bijection):
    """x = z + mu; log|det J| = 0.

    Initialised at mu = 0 plus noise (the guide moves it to the model's initial
    point). Last in a formula it sets the location of the approximation.
    """

    name = "loc"
    aliases = ("shift",)
    affine = True
    summary = "x = z + mu: a learned location"

    def init(self, key: Array, jitter: float) -> Params:
        return {"mu": self.noise(key, jitter, (self.dim,))}

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        return z + params["mu"], jnp.zeros((), z.dtype)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        return x - params["mu"], jnp.zeros((), x.dtype)
