"""The contract every flow step fulfils.

A step is a bijection f: R^d -> R^d with parameters theta, written as pure
functions of a parameter pytree on one unbatched vector; :class:`~flows.Flow`
batches them with ``vmap`` and repeats them with ``lax.scan``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from flows.options import JITTER, Option

Params = Any
"""A pytree of arrays."""


class Bijection:
    """One step of a flow in dimension ``dim``.

    Subclasses set ``name`` (and optionally ``aliases``, ``options``, ``summary``,
    ``analytic_inverse``) and implement :meth:`init`, :meth:`forward` and, where
    the map can be inverted, :meth:`inverse`; then :func:`flows.register` them.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {"jitter": JITTER}
    has_inverse: ClassVar[bool] = True
    analytic_inverse: ClassVar[bool] = True
    min_dim: ClassVar[int] = 1
    affine: ClassVar[bool] = False
    """True for steps x = A z + c; a flow of only such steps is Gaussian."""

    def __init__(self, dim: int, **options: Any):
        if dim < self.min_dim:
            raise ValueError(f"flow step {self.name!r} needs dimension >= {self.min_dim}, "
                             f"got {dim}")
        self.dim = dim
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for {self.name!r}; "
                             f"it takes {sorted(self.options)}")
        for key, spec in self.options.items():
            setattr(self, key, spec.convert(options[key]) if key in options else spec.default)

    def init(self, key: Array, jitter: float) -> Params:
        """Initial parameters: the identity map (or an isometry, for ``hh``) at
        ``jitter = 0``, perturbed by noise of standard deviation ``jitter``."""
        raise NotImplementedError

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        """x = f(z) and log|det df/dz| for one vector z of shape (dim,)."""
        raise NotImplementedError

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        """z = f^{-1}(x) and log|det df^{-1}/dx| = -log|det df/dz| at that z."""
        raise NotImplementedError(f"flow step {self.name!r} has no inverse")

    def pull_back(self, params: Params, x: Array, c: Array) -> tuple[Array, Array]:
        r"""(z, s): z = f^{-1}(x) and s = J_f(z)^T c + \nabla_z log|det J_f(z)| for one
        vector x of shape (dim,) and a cotangent c at it (one step of
        :meth:`flows.Flow.pull_back`).

        Here the inverse, then the VJP of :meth:`forward` at z with the cotangent
        (c, 1); a step whose inverse and forward share work overrides it.
        """
        z = self.inverse(params, x)[0]
        _, vjp = jax.vjp(lambda u: self.forward(params, u), z)
        (s,) = vjp((c, jnp.ones((), c.dtype)))
        return z, s

    @staticmethod
    def noise(key: Array, jitter: float, shape: tuple[int, ...]) -> Array:
        """Gaussian noise of standard deviation ``jitter``."""
        return jitter * jax.random.normal(key, shape)
