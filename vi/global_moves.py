"""Independence Metropolis-Hastings moves in a flow's latent space.

When a flow T carries N(0, I) roughly onto the posterior, the pulled-back target
p(z) ∝ pi(T(z)) |det J_T(z)| is roughly N(0, I) itself. A draw z' from the base
density q = N(0, I) is then a *global* proposal: it does not depend on the current
state, so it can land in a mode that local (HMC) moves never reach. Its
Metropolis-Hastings acceptance probability is

    alpha(z -> z') = min(1, [p(z') q(z)] / [p(z) q(z')])
                   = min(1, exp(-U(z') + U(z) - log q(z') + log q(z))),

with U = -log p the latent potential. No inverse of T is needed, so the move works
for every flow, including those without an analytic inverse (planar, radial).
This is the proposal of flowMC (Gabrié, Rotskoff & Vanden-Eijnden 2022, PNAS 119)
and of the "global" moves in nutpie's flow adaptation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax
from numpyro.distributions import Distribution
from numpyro.infer.hmc import HMCState


class GlobalMove(NamedTuple):
    """What one independence proposal did: whether it was made, and whether accepted."""

    proposed: Array
    accepted: Array


def independence_mh(
    state: HMCState,
    potential_and_grad: Callable[[Array], tuple[Array, Array]],
    base: Distribution,
) -> tuple[HMCState, GlobalMove]:
    """One independence Metropolis-Hastings step with proposal ``base`` from ``state``.

    The move reads and updates ``state.z``, ``state.potential_energy`` and
    ``state.z_grad`` (so that the next HMC transition starts from a consistent
    state), and consumes one split of ``state.rng_key``. A proposal whose potential
    is not finite is rejected. It costs one potential-and-gradient evaluation.

    Args:
        state: a NumPyro ``HMCState`` whose ``z`` is a latent vector.
        potential_and_grad: z -> (U(z), dU/dz), U = -log p the latent potential.
        base: the proposal distribution q (the flow's base, N(0, I)).

    Returns:
        The new state and the :class:`GlobalMove` record (``proposed`` is True).
    """
    rng_key, key_prop, key_accept = jax.random.split(state.rng_key, 3)
    z_new = base.sample(key_prop)
    pe_new, grad_new = potential_and_grad(z_new)
    log_ratio = state.potential_energy - pe_new + base.log_prob(state.z) - base.log_prob(z_new)
    log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    accepted = jnp.log(jax.random.uniform(key_accept)) < log_ratio
    z, pe, z_grad = lax.cond(
        accepted,
        lambda: (z_new, pe_new, grad_new),
        lambda: (state.z, state.potential_energy, state.z_grad),
    )
    state = state._replace(z=z, potential_energy=pe, z_grad=z_grad, rng_key=rng_key)
    return state, GlobalMove(proposed=jnp.array(True), accepted=accepted)


def no_move(state: HMCState) -> tuple[HMCState, GlobalMove]:
    """The identity move, recorded as no proposal (the other branch of a ``lax.cond``)."""
    return state, GlobalMove(proposed=jnp.array(False), accepted=jnp.array(False))
