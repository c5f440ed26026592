"""Adapter from a :class:`~flows.Flow` to NumPyro's ``Transform`` contract."""

from __future__ import annotations

from typing import Any

from jax import Array
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from flows.bijection import Params
from flows.flow import Flow


class FlowTransform(Transform):
    """A :class:`~flows.Flow` at fixed parameters as a NumPyro ``Transform`` on vectors.

    Composes with ``TransformedDistribution``; ``call_with_intermediates`` hands the
    log-determinant to ``log_abs_det_jacobian`` so sampling with log-density costs
    one pass. It is a pytree (parameters are leaves), so it passes through ``jit``.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, flow: Flow, params: Params):
        if not isinstance(flow, Flow):
            raise TypeError(f"FlowTransform needs a flows.Flow, got {type(flow).__name__}")
        flow.check_params(params)
        self.flow = flow
        self.params = params

    def __call__(self, x: Array) -> Array:
        return self.flow.forward(self.params, x)[0]

    def call_with_intermediates(self, x: Array) -> tuple[Array, Array]:
        return self.flow.forward(self.params, x)

    def _inverse(self, y: Array) -> Array:
        return self.flow.inverse(self.params, y)[0]

    def log_abs_det_jacobian(self, x: Array, y: Array, intermediates: Any = None) -> Array:
        if intermediates is not None:
            return intermediates
        return self.flow.forward(self.params, x)[1]

    def tree_flatten(self) -> tuple[tuple[Params], tuple[tuple[str], dict[str, Flow]]]:
        return (self.params,), (("params",), {"flow": self.flow})

    def eq(self, other: object, static: bool = False) -> Any:
        return self is other
