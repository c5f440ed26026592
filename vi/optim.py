"""Optimizers of the fit loop: the default one, what changes between ``fit`` calls, and
when two optimizer objects compile to the same program.

The compiled fit program is reused across ``fit`` calls (see :mod:`vi.program`), so
everything that may change from one call to the next lives in the optimizer *state*
(traced), never in a closure (a compile-time constant):

- the default optimizer's cosine decays over the steps of each call; the call's
  length and peak rate are fields of its state (:class:`FitCosineState`), set by
  :func:`start_call`;
- ``fit(learning_rate=...)`` sets the peak of that cosine, or the ``learning_rate``
  hyperparameter of an ``optax.inject_hyperparams`` optimizer;
- an optimizer object is identified by what its ``update`` computes
  (:func:`optimizer_signature`): two ``optax.adam(1e-2)`` objects share one compiled
  program, ``optax.adam(1e-3)`` gets its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from flows.options import check_number

DEFAULT_LEARNING_RATE = 1e-2
COSINE_ALPHA = 0.01
"""The default cosine ends at ``COSINE_ALPHA`` times its peak rate (1e-2 -> 1e-4)."""


class FitCosineState(NamedTuple):
    """State of :func:`scale_by_fit_cosine`: where the current ``fit`` call stands."""

    count: Array  # updates applied in this call, int32
    horizon: Array  # steps of this call, int32
    peak: Array  # learning rate at the call's first step


def scale_by_fit_cosine(peak: float = DEFAULT_LEARNING_RATE, alpha: float = COSINE_ALPHA
                        ) -> optax.GradientTransformation:
    r"""Scale updates by -eta_t, a cosine decay over the steps of each ``fit`` call:

    .. math:: \eta_t = \eta_0 \left(\alpha + (1 - \alpha)\,
              \tfrac12 \bigl(1 + \cos(\pi \min(t, T) / T)\bigr)\right),

    with t the updates applied in this call, T the call's step count and eta_0 the
    peak rate, all three in the state (:func:`start_call` sets T and eta_0), so a
    new step count or rate never changes the compiled program (Loshchilov & Hutter
    2017, "SGDR: stochastic gradient descent with warm restarts": each call is one
    period).
    """

    def init(params: Any) -> FitCosineState:
        del params
        return FitCosineState(jnp.zeros((), jnp.int32), jnp.ones((), jnp.int32),
                              jnp.asarray(peak, jnp.float32))

    def update(updates: Any, state: FitCosineState, params: Any = None
               ) -> tuple[Any, FitCosineState]:
        del params
        horizon = jnp.maximum(state.horizon, 1).astype(jnp.float32)
        progress = jnp.minimum(state.count.astype(jnp.float32), horizon) / horizon
        rate = state.peak * (alpha + (1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * progress)))
        updates = jax.tree.map(lambda u: (-rate * u).astype(u.dtype), updates)
        return updates, state._replace(count=state.count + 1)

    return optax.GradientTransformation(init, update)


def default_optimizer(learning_rate: float = DEFAULT_LEARNING_RATE
                      ) -> optax.GradientTransformation:
    """Adam whose learning rate decays by a cosine from ``learning_rate`` to 1% of it
    over the steps of each ``fit`` call (:func:`scale_by_fit_cosine`): large steps to
    find the mass, small ones so that the Monte-Carlo noise does not dominate the end
    (lower final KL than a constant rate, REFERENCE.md). Adam's moments carry over
    from one call to the next; the cosine starts again."""
    learning_rate = check_number(learning_rate, "learning_rate", positive=True)
    return optax.chain(optax.scale_by_adam(), scale_by_fit_cosine(learning_rate))


def _is_schedule_state(node: Any) -> bool:
    return isinstance(node, FitCosineState | optax.InjectStatefulHyperparamsState)


def settable_learning_rate(opt_state: Any) -> bool:
    """Whether ``fit(learning_rate=...)`` can set a rate in this optimizer state: it
    holds a :class:`FitCosineState` or an ``inject_hyperparams`` ``learning_rate``."""
    nodes = jax.tree.leaves(opt_state, is_leaf=_is_schedule_state)
    return any(isinstance(s, FitCosineState) or (
        isinstance(s, optax.InjectStatefulHyperparamsState) and "learning_rate" in s.hyperparams)
        for s in nodes)


def start_call(opt_state: Any, n: int, learning_rate: float | None) -> Any:
    """The optimizer state at the start of a ``fit`` call of ``n`` steps: every
    :class:`FitCosineState` restarts its cosine over ``n`` steps (at ``learning_rate``
    if given), and an ``inject_hyperparams`` state takes ``learning_rate`` if given.
    Works on states with a leading restart axis."""

    def reset(node: Any) -> Any:
        if isinstance(node, FitCosineState):
            peak = node.peak if learning_rate is None else jnp.full_like(node.peak,
                                                                         learning_rate)
            return FitCosineState(jnp.zeros_like(node.count), jnp.full_like(node.horizon, n),
                                  peak)
        if (isinstance(node, optax.InjectStatefulHyperparamsState) and learning_rate is not None
                and "learning_rate" in node.hyperparams):
            rate = node.hyperparams["learning_rate"]
            return node._replace(hyperparams={**node.hyperparams,
                                              "learning_rate": jnp.full_like(rate, learning_rate)})
        return node

    return jax.tree.map(reset, opt_state, is_leaf=_is_schedule_state)


def optimizer_signature(optimizer: optax.GradientTransformation, params: Any) -> Hashable:
    """A key equal for two optimizers exactly when their ``update`` computes the same
    function of (gradients, state, parameters): the text of its jaxpr (which holds
    every literal, a learning rate among them) and a digest of its constant arrays.

    Tracing ``update`` abstractly costs milliseconds; compiling a fit chunk, seconds.
    """
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)),
                          params)
    state = jax.eval_shape(optimizer.init, shapes)
    closed = jax.make_jaxpr(optimizer.update)(shapes, state, shapes)
    digest = hashlib.sha256()
    for const in closed.consts:
        value = np.asarray(const)
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return str(closed.jaxpr), digest.hexdigest()
