"""``hh``: a Householder reflection, x = (I - 2 v v^T / |v|^2) z."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

from flows.bijection import Bijection, Params
from flows.registry import register


@register
class Householder(Bijection):
    """x = z - 2 v (v.z) / |v|^2, an orthogonal reflection; log|det J| = 0.

    A reflection is never the identity, but it maps N(0, I) onto itself, so a
    flow that starts with reflections still starts at the base distribution.
    Any orthogonal matrix is a product of at most d reflections, so
    ``scale-hh*d-loc`` is the full-rank Gaussian family; fewer reflections give a
    cheaper partial rank. The direction v starts random (its length does not
    matter), whatever the jitter. The map is its own inverse.
    """

    name = "hh"
    aliases = ("householder",)
    affine = True
    summary = "x = (I - 2 v v'/|v|^2) z: a reflection; hh*d after scale is full rank"

    def init(self, key: Array, jitter: float) -> Params:
        return {"v": jax.random.normal(key, (self.dim,))}

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        v = params["v"]
        return z - 2.0 * v * (v @ z) / (v @ v), jnp.zeros((), z.dtype)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        return self.forward(params, x)
