"""Numerically stable scalar functions shared by the flow steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

SOFTPLUS_INV_ONE = 0.5413248546129181
"""log(e - 1): the argument at which softplus equals 1."""


def log_softplus(x: Array) -> Array:
    """log(softplus(x)) without underflow: equals x to float precision for x < -20."""
    safe = jnp.where(x < -20.0, 0.0, x)
    return jnp.where(x < -20.0, x, jnp.log(jax.nn.softplus(safe)))


def sech2(a: Array) -> Array:
    """1 - tanh(a)^2 = 4 e^{-2|a|} / (1 + e^{-2|a|})^2, accurate for large |a|."""
    e = jnp.exp(-2.0 * jnp.abs(a))
    return 4.0 * e / (1.0 + e) ** 2
