"""Re-fitting a flow guide to MCMC states by maximum likelihood (flowMC's training step).

Between warm-up windows of :func:`vi.neutra.neutra`, the chains' states x_1..x_n in
the flat unconstrained latent space are draws (roughly) from the posterior, which
the variational fit may have missed parts of (reverse KL is mode-seeking). Raising
their average log-likelihood under the flow,

    max_theta (1/n) sum_i log q_theta(x_i),  log q(x) = log N(T^{-1}(x)) + log|det J_{T^{-1}}(x)|,

which is minimising the forward KL(p || q) on those draws, spreads q over every
region the chains visit, so that later global proposals reach them. It spends no
gradient of the target: only the flow's own.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import Array, lax

from guides import AutoFlow


def refit_flow(guide: AutoFlow, params: dict[str, Any], x: Array, steps: int, lr: float
               ) -> tuple[dict[str, Any], Array]:
    """Fine-tune ``guide``'s flow on the points ``x`` (shape ``(n, D)``) by maximum
    likelihood: ``steps`` full-batch Adam steps at rate ``lr`` from ``params``.

    Starting from the current flow and taking a limited number of steps keeps the
    fit close to the variational one where the draws say little (few chains, short
    windows). If the result is not finite, the current parameters are kept.

    Returns:
        The new NumPyro param dict (``params`` with the flow's sites replaced) and
        the negative mean log-likelihood at every step.
    """
    flow = guide.flow
    optimizer = optax.adam(lr)

    def loss(flow_params: Any) -> Array:
        return -jnp.mean(flow.log_prob(flow_params, x))

    @jax.jit
    def run(flow_params: Any) -> tuple[Any, Array]:
        def step(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], Array]:
            current, state = carry
            value, grads = jax.value_and_grad(loss)(current)
            updates, state = optimizer.update(grads, state, current)
            return (optax.apply_updates(current, updates), state), value

        (fitted, _), losses = lax.scan(step, (flow_params, optimizer.init(flow_params)),
                                       None, length=steps)
        return fitted, losses

    fitted, losses = run(guide.flow_params(params))
    leaves = jax.tree.leaves(fitted)
    if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves):
        return params, losses
    return {**params, **dict(zip(guide.param_names, leaves, strict=True))}, losses
