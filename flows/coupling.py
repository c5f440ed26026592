"""Coupling steps: the first k coordinates (half, unless ``split=k``) pass unchanged and
condition an elementwise bijection of the others (Dinh et al. 2017, "Density estimation
using Real NVP")."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from flows.bijection import Bijection, Params
from flows.mlp import mlp_apply, mlp_init, mlp_sizes
from flows.options import JITTER, Option
from flows.registry import register
from flows.stable import SOFTPLUS_INV_ONE, log_softplus


class Coupling(Bijection):
    """x_{<k} = z_{<k}, x_i = tau(z_i; theta_i(z_{<k})) for i >= k, where k is the
    ``split`` option, or floor(d/2) when it is 0.

    The Jacobian is triangular, so log|det J| = sum_{i >= k} log tau'(z_i). The
    conditioner theta is an MLP with options ``hidden`` and ``depth``; subclasses
    give the elementwise map tau through ``params_per_coordinate``,
    :meth:`transform` and :meth:`untransform`, each of one scalar.
    """

    hidden: int
    depth: int
    split: int

    def __init__(self, dim: int, **options: Any):
        super().__init__(dim, **options)
        if self.split >= dim:
            raise ValueError(
                f"{self.name!r} split={self.split} leaves no coordinate to transform in "
                f"dimension {dim}: write split=k with 1 <= k <= {dim - 1} (0 means {dim // 2})")

    @property
    def params_per_coordinate(self) -> int:
        raise NotImplementedError

    def transform(self, theta: Array, z: Array) -> tuple[Array, Array]:
        """tau(z; theta) and log tau'(z) for a scalar z."""
        raise NotImplementedError

    def untransform(self, theta: Array, x: Array) -> tuple[Array, Array]:
        """tau^{-1}(x; theta) and log (tau^{-1})'(x) for a scalar x."""
        raise NotImplementedError

    @property
    def _split(self) -> int:
        return self.split or self.dim // 2

    def init(self, key: Array, jitter: float) -> Params:
        k = self._split
        sizes = mlp_sizes(k, self.hidden, self.depth, (self.dim - k) * self.params_per_coordinate)
        return {"net": mlp_init(key, sizes, jitter)}

    def _theta(self, params: Params, cond: Array) -> Array:
        return mlp_apply(params["net"], cond).reshape(self.dim - self._split, -1)

    def _apply(self, params: Params, v: Array, inverse: bool) -> tuple[Array, Array]:
        k = self._split
        cond, rest = v[:k], v[k:]
        method = self.untransform if inverse else self.transform
        out, log_grad = jax.vmap(method)(self._theta(params, cond), rest)
        return jnp.concatenate([cond, out]), jnp.sum(log_grad)

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        return self._apply(params, z, inverse=False)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        return self._apply(params, x, inverse=True)

    def pull_back(self, params: Params, x: Array, c: Array) -> tuple[Array, Array]:
        """One conditioner pass theta(x_{<k}) serves both the inverse and the VJP of the
        forward (the default evaluates it for each, and a gradient of the result would
        differentiate both: a third more matrix products in the Fisher loss's gradient):

            z_{<k} = x_{<k},   z_i = tau^{-1}(x_i; theta) for i >= k,
            s_i = c_i tau'(z_i) + d log tau'(z_i) / dz_i                     (i >= k),
            s_{<k} = c_{<k} + (d theta / d z_{<k})^T sum_{i >= k}
                     (c_i d tau(z_i) / d theta + d log tau'(z_i) / d theta).
        """
        k = self._split
        cond = x[:k]
        theta, theta_vjp = jax.vjp(lambda u: self._theta(params, u), cond)
        rest = jax.vmap(self.untransform)(theta, x[k:])[0]

        def elementwise(t: Array, z: Array) -> tuple[Array, Array]:
            out, log_grad = jax.vmap(self.transform)(t, z)
            return out, jnp.sum(log_grad)

        _, vjp = jax.vjp(elementwise, theta, rest)
        ct_theta, s_rest = vjp((c[k:], jnp.ones((), c.dtype)))
        (ct_cond,) = theta_vjp(ct_theta)
        return jnp.concatenate([cond, rest]), jnp.concatenate([c[:k] + ct_cond, s_rest])


def affine_forward(theta: Array, z: Array, sigma: str = "softplus") -> tuple[Array, Array]:
    """tau(z) = z s + theta_0 and its log-slope log s, where the scale is
    s = softplus(theta_1 + log(e - 1)) (``sigma="softplus"``) or s = exp(theta_1)
    (``sigma="exp"``).

    theta = 0 is the identity under either. softplus keeps the scale positive without
    exp's overflow; exp makes log s = theta_1 linear in the conditioner's output, so a
    scale that is the exponential of a linear function (a funnel's) is easy to learn.
    """
    if sigma == "exp":
        return z * jnp.exp(theta[1]) + theta[0], theta[1]
    raw = theta[1] + SOFTPLUS_INV_ONE
    return z * jax.nn.softplus(raw) + theta[0], log_softplus(raw)


def affine_inverse(theta: Array, x: Array, sigma: str = "softplus") -> tuple[Array, Array]:
    """tau^{-1}(x) = (x - theta_0) / s and its log-slope -log s (s as in
    :func:`affine_forward`)."""
    if sigma == "exp":
        return (x - theta[0]) * jnp.exp(-theta[1]), -theta[1]
    raw = theta[1] + SOFTPLUS_INV_ONE
    return (x - theta[0]) / jax.nn.softplus(raw), -log_softplus(raw)


SIGMA = Option(str, "softplus", "the affine scale: softplus(.) or exp(.) of the conditioner's "
               "output", choices=("softplus", "exp"))
HIDDEN = Option(int, 64, "width of the conditioner's hidden layers", minimum=1, maximum=4096)
DEPTH = Option(int, 2, "number of hidden layers of the conditioner", minimum=0, maximum=8)
SPLIT = Option(int, 0, "coordinates passed unchanged, conditioning the rest (0: half)",
               minimum=0)


@register
class AffineCoupling(Coupling):
    """Affine coupling (RealNVP): x_i = z_i sigma_i(z_{<k}) + mu_i(z_{<k}) for i >= k,
    sigma = softplus(.) > 0 (or exp(.), with ``sigma=exp``);
    log|det J| = sum_{i >= k} log sigma_i. k = ``split``
    (default floor(d/2)); ``coupling(split=1)`` scales every other coordinate by a
    function of the first, the shape of a hierarchical model's funnel.

    (mu, sigma) come from an MLP of z_{<k} (``hidden`` wide, ``depth`` tanh
    layers) whose last layer starts at zero plus noise: at jitter 0 the step is
    the identity. Needs d >= 2 (in 1-D it would only be ``affine``). Alternate
    with ``reverse``, ``perm`` or ``lu``. Cost O(d hidden + hidden^2 depth).
    """

    name = "coupling"
    aliases = ("realnvp",)
    summary = ("affine coupling (RealNVP): scale and shift half the coordinates (or all but "
               "split=k) given the rest")
    options = {"jitter": JITTER, "hidden": HIDDEN, "depth": DEPTH,  # noqa: RUF012
               "split": SPLIT, "sigma": SIGMA}
    min_dim = 2
    sigma: str

    @property
    def params_per_coordinate(self) -> int:
        return 2

    def transform(self, theta: Array, z: Array) -> tuple[Array, Array]:
        return affine_forward(theta, z, self.sigma)

    def untransform(self, theta: Array, x: Array) -> tuple[Array, Array]:
        return affine_inverse(theta, x, self.sigma)
