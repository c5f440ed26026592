"""Steps that mix coordinates: ``perm``, ``reverse`` (volume preserving) and ``lu``.

Coupling and autoregressive steps transform some coordinates conditioned on the
others; a mixing step between them lets every coordinate be transformed.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.linalg import solve_triangular

from flows.bijection import Bijection, Params
from flows.options import JITTER, Option
from flows.registry import register
from flows.stable import SOFTPLUS_INV_ONE, log_softplus

SEED = Option(int, 0, "seed of the fixed random permutation", minimum=0)


def fixed_permutation(dim: int, seed: int) -> np.ndarray:
    """A random permutation of range(dim) drawn from ``seed``, never the identity
    when dim >= 2 (an identity would leave a coupling's conditioning half untouched)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(dim)
        if dim < 2 or np.any(order != np.arange(dim)):
            return order


def _no_params() -> Params:
    # A step without parameters still needs one leaf: ``lax.scan`` over the k
    # stacked repeats takes its length from the leaves. Size 0 costs nothing.
    return {"none": jnp.zeros((0,))}


class _FixedPermutation(Bijection):
    """x = z[order] for a fixed ``order``; log|det J| = 0."""

    order: np.ndarray

    def init(self, key: Array, jitter: float) -> Params:
        return _no_params()

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        return z[self.order], jnp.zeros((), z.dtype)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        return x[np.argsort(self.order)], jnp.zeros((), x.dtype)


@register
class Permute(_FixedPermutation):
    """x_i = z_{pi(i)} for a random permutation pi fixed by the option ``seed``.

    pi is not a parameter: it is drawn once, in the constructor, from ``seed``
    (and is never the identity for d >= 2), so every repeat of ``(coupling-perm)*k``
    applies the same pi. Give different seeds (``perm(seed=1)``) to vary it, or use
    ``reverse`` or ``lu``. Cost O(d).
    """

    name = "perm"
    aliases = ("permute",)
    summary = "x = z[pi]: a fixed random permutation (option seed)"
    options = {"jitter": JITTER, "seed": SEED}  # noqa: RUF012

    def __init__(self, dim: int, **options: Any):
        super().__init__(dim, **options)
        self.order = fixed_permutation(dim, self.seed)


@register
class Reverse(_FixedPermutation):
    """x_i = z_{d-1-i}: the order of the coordinates reversed; log|det J| = 0.

    Between coupling steps it swaps which half is transformed. Cost O(d).
    """

    name = "reverse"
    summary = "x = z[::-1]: reverse the coordinates"

    def __init__(self, dim: int, **options: Any):
        super().__init__(dim, **options)
        self.order = np.arange(dim)[::-1].copy()


def _factors(params: Params) -> tuple[Array, Array]:
    """L (unit lower triangular) and U (upper, diagonal softplus(rho) > 0)."""
    d = params["rho"].shape[0]
    lower = jnp.tril(params["lower"], -1) + jnp.eye(d)
    upper = jnp.triu(params["upper"], 1) + jnp.diag(jax.nn.softplus(params["rho"]))
    return lower, upper


@register
class LU(Bijection):
    """x = L U z[pi] + b: a fixed random permutation pi (option ``seed``), then a
    learned invertible linear map in LU form, then a shift (Kingma & Dhariwal
    2018; normflows' ``LULinearPermute``).

    L is unit lower triangular, U upper triangular with diagonal softplus(rho),
    so log|det J| = sum_i log softplus(rho_i). Initialised at L = U = I, b = 0
    plus noise: at jitter 0 the step is the permutation, which leaves N(0, I)
    unchanged. The inverse is two triangular solves. Cost O(d^2).
    """

    name = "lu"
    summary = "x = L U z[pi] + b: permutation then a learned linear map in LU form"
    options = {"jitter": JITTER, "seed": SEED}  # noqa: RUF012

    def __init__(self, dim: int, **options: Any):
        super().__init__(dim, **options)
        self.order = fixed_permutation(dim, self.seed)

    def init(self, key: Array, jitter: float) -> Params:
        kl, ku, kr, kb = jax.random.split(key, 4)
        d = self.dim
        return {
            "lower": jnp.tril(self.noise(kl, jitter, (d, d)), -1),
            "upper": jnp.triu(self.noise(ku, jitter, (d, d)), 1),
            "rho": SOFTPLUS_INV_ONE + self.noise(kr, jitter, (d,)),
            "b": self.noise(kb, jitter, (d,)),
        }

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        lower, upper = _factors(params)
        x = lower @ (upper @ z[self.order]) + params["b"]
        return x, jnp.sum(log_softplus(params["rho"]))

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        lower, upper = _factors(params)
        y = solve_triangular(lower, x - params["b"], lower=True, unit_diagonal=True)
        y = solve_triangular(upper, y, lower=False)
        return y[np.argsort(self.order)], -jnp.sum(log_softplus(params["rho"]))
