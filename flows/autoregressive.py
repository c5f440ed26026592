"""Masked autoregressive steps: ``maf`` (Papamakarios et al. 2017) and ``iaf``
(Kingma et al. 2016), with an affine or a rational-quadratic spline transformer.

The conditioner is NumPyro's MADE network (``numpyro.nn.AutoregressiveNN``, a
stax ``(init, apply)`` pair of pure functions), whose i-th output depends on
its inputs 1..i-1 only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.example_libraries import stax
from numpyro.nn import AutoregressiveNN

from flows.bijection import Bijection, Params
from flows.coupling import DEPTH, HIDDEN, SIGMA, affine_forward, affine_inverse
from flows.options import JITTER, Option
from flows.registry import register
from flows.spline import BINS, BOUND, rqs_forward, rqs_inverse, spline_param_count

TRANSFORMER = Option(str, "affine", "elementwise map: affine or rqs (a spline)",
                     choices=("affine", "rqs"))


class _Autoregressive(Bijection):
    """An autoregressive bijection u -> v, v_i = tau(u_i; theta_i(c_{<i})), where the
    conditioning vector c is u (``iaf``'s forward) or v (``maf``'s forward).

    One direction is one network pass; the other fixes the coordinates one at a
    time, by d passes (after pass j the first j coordinates are exact).
    log|det J| = sum_i log tau'(u_i).
    """

    options = {"jitter": JITTER, "hidden": HIDDEN, "depth": DEPTH,  # noqa: RUF012
               "transformer": TRANSFORMER, "sigma": SIGMA, "bins": BINS, "bound": BOUND}
    hidden: int
    depth: int
    transformer: str
    sigma: str
    bins: int
    bound: float

    def __init__(self, dim: int, **options: Any):
        super().__init__(dim, **options)
        if self.depth < 1:
            raise ValueError(f"{self.name!r} needs depth >= 1 hidden layer, got {self.depth}")
        if self.transformer == "rqs" and self.sigma != "softplus":
            raise ValueError(f"{self.name!r}: sigma={self.sigma} applies to the affine "
                             "transformer only; drop it or write transformer=affine")
        if self.hidden < dim:
            raise ValueError(f"{self.name!r} needs hidden >= dim for its masked network; "
                             f"got hidden={self.hidden} in dimension {dim}: write "
                             f"{self.name}(hidden={max(dim, 64)})")
        n = spline_param_count(self.bins) if self.transformer == "rqs" else 2
        self._net_init, self._net = AutoregressiveNN(
            dim, [self.hidden] * self.depth, param_dims=[n], nonlinearity=stax.Tanh)

    def init(self, key: Array, jitter: float) -> Params:
        """MADE's initial weights, with the last layer scaled by ``jitter`` (zero at
        jitter 0, so the step starts at the identity)."""
        k_net, k_bias = jax.random.split(key)
        _, layers = self._net_init(k_net, (self.dim,))
        w, b = layers[-1]
        layers[-1] = (jitter * w, jitter * jax.random.normal(k_bias, b.shape))
        return {"made": layers}

    def _theta(self, params: Params, c: Array) -> Array:
        return self._net(params["made"], c).T  # (dim, params per coordinate)

    def _map(self, theta: Array, u: Array) -> tuple[Array, Array]:
        if self.transformer == "rqs":
            return jax.vmap(lambda t, v: rqs_forward(t, v, self.bins, self.bound))(theta, u)
        return jax.vmap(partial(affine_forward, sigma=self.sigma))(theta, u)

    def _unmap(self, theta: Array, v: Array) -> tuple[Array, Array]:
        """u = tau^{-1}(v) and log tau'(u) (the forward log-slope)."""
        if self.transformer == "rqs":
            return jax.vmap(lambda t, y: rqs_inverse(t, y, self.bins, self.bound))(theta, v)
        u, neg = jax.vmap(partial(affine_inverse, sigma=self.sigma))(theta, v)
        return u, -neg

    def _one_pass(self, params: Params, u: Array) -> tuple[Array, Array]:
        """v = tau(u; theta(u)) and sum log tau'(u): the cheap direction of ``iaf``."""
        v, log_grad = self._map(self._theta(params, u), u)
        return v, jnp.sum(log_grad)

    def _one_pass_back(self, params: Params, v: Array) -> tuple[Array, Array]:
        """u = tau^{-1}(v; theta(v)) and -sum log tau'(u): the cheap direction of ``maf``."""
        u, log_grad = self._unmap(self._theta(params, v), v)
        return u, -jnp.sum(log_grad)

    def _sequential(self, params: Params, u: Array) -> tuple[Array, Array]:
        """v with v = tau(u; theta(v)), by d fixed-point passes; and sum log tau'(u)."""
        def body(_: int, v: Array) -> Array:
            return self._map(self._theta(params, v), u)[0]

        v = lax.fori_loop(0, self.dim, body, jnp.zeros_like(u))
        v, log_grad = self._map(self._theta(params, v), u)
        return v, jnp.sum(log_grad)

    def _sequential_back(self, params: Params, v: Array) -> tuple[Array, Array]:
        """u with v = tau(u; theta(u)), by d fixed-point passes; and -sum log tau'(u)."""
        def body(_: int, u: Array) -> Array:
            return self._unmap(self._theta(params, u), v)[0]

        u = lax.fori_loop(0, self.dim, body, jnp.zeros_like(v))
        u, log_grad = self._unmap(self._theta(params, u), v)
        return u, -jnp.sum(log_grad)


@register
class MAF(_Autoregressive):
    """Masked autoregressive flow step: x_i = tau(z_i; theta_i(x_{<i})).

    The density direction z = f^{-1}(x) is one MADE pass, so ``log_prob`` (and
    :func:`flows.fit_to_samples`) is cheap; sampling takes d passes. With
    ``transformer=affine`` tau(z) = z sigma + mu, sigma = softplus(.) > 0 (or exp(.),
    with ``sigma=exp``); with
    ``transformer=rqs`` tau is a spline as in ``rqs`` (``bins``, ``bound``).
    ``hidden`` must be at least d. Alternate with ``reverse`` to vary the order.
    Cost per sample: one pass O(d hidden + hidden^2 depth) for log_prob, d passes
    to sample.
    """

    name = "maf"
    summary = "masked autoregressive flow: cheap density, sampling in d passes"

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        return self._sequential(params, z)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        return self._one_pass_back(params, x)


@register
class IAF(_Autoregressive):
    """Inverse autoregressive flow step: x_i = tau(z_i; theta_i(z_{<i})).

    Sampling x = f(z) with its log-det is one MADE pass, so it suits variational
    inference; ``log_prob`` of a given x takes d passes. Options as ``maf``.
    """

    name = "iaf"
    summary = "inverse autoregressive flow: cheap sampling (VI), density in d passes"

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        return self._one_pass(params, z)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        return self._sequential_back(params, x)
