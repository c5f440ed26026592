"""A small multilayer perceptron as pure functions of a list of (W, b) pairs.

Used as the conditioner of coupling steps (``coupling``, ``rqs``):
h_0 = x, h_{l+1} = tanh(h_l W_l + b_l), out = h_L W_L + b_L.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax import Array

Layers = list[tuple[Array, Array]]
"""The parameters: one (W of shape (n_in, n_out), b of shape (n_out,)) per layer."""


def mlp_init(key: Array, sizes: tuple[int, ...], jitter: float) -> Layers:
    """Layers for widths ``sizes = (n_in, hidden..., n_out)``.

    Hidden layers get LeCun-normal weights, W ~ N(0, 1/n_in), and zero biases;
    the last layer gets W ~ N(0, jitter^2 / n_in) and b ~ N(0, jitter^2), so the
    output is exactly zero at ``jitter = 0`` (the step it conditions starts at the
    identity) and of order ``jitter`` otherwise, while its gradient is non-zero.
    With ``n_in = 0`` the output is the bias alone: a free parameter vector.
    """
    keys = jax.random.split(key, len(sizes))
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        scale = 1.0 / jnp.sqrt(max(n_in, 1))
        w = scale * jax.random.normal(keys[i], (n_in, n_out))
        b = jnp.zeros((n_out,))
        if i == len(sizes) - 2:
            w = jitter * w
            b = jitter * jax.random.normal(keys[-1], (n_out,))
        layers.append((w, b))
    return layers


def mlp_apply(layers: Layers, x: Array) -> Array:
    """The network's output for one input vector x of shape (n_in,)."""
    for w, b in layers[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = layers[-1]
    return x @ w + b


def mlp_sizes(n_in: int, hidden: int, depth: int, n_out: int) -> tuple[int, ...]:
    """``(n_in, hidden * depth, n_out)``; no hidden layer when there is no input."""
    return (n_in, *([hidden] * depth if n_in else ()), n_out)
