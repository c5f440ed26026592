"""The compiled core of the fit: many optimisation steps fused into one ``lax.scan``.

A chunk runs ``blocks x every`` steps on device; the host sees it once (losses,
the Tracker's records, failure counts). Steps past ``limit`` are no-ops, so one
compiled chunk serves any number of steps. Independent restarts are a leading
axis of the state, stepped together by ``vmap``.

A step whose loss, gradient or updated parameters are not finite is skipped:
parameters and optimiser state stay as they were, and the step is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array, lax

LossFn = Callable[[Any, Array], Array]
"""loss(unconstrained_params, rng_key) -> scalar negative ELBO."""


class LoopState(NamedTuple):
    """Everything a chunk carries, each with a leading restart axis."""

    params: Any  # unconstrained parameters
    opt_state: Any
    key: Array
    step: Array  # steps done (attempted), int32
    n_skipped: Array  # non-finite steps skipped so far
    run_skipped: Array  # current run of consecutive skipped steps


def init_state(params: Any, optimizer: optax.GradientTransformation, keys: Array) -> LoopState:
    """A loop state for stacked ``params`` (leading axis: restarts) and their keys."""
    restarts = keys.shape[0]
    zeros = jnp.zeros(restarts, jnp.int32)
    return LoopState(params, jax.vmap(optimizer.init)(params), keys, zeros, zeros, zeros)


def _all_finite(tree: Any) -> Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves \
        else jnp.array(True)


def make_chunk(loss_fn: LossFn, optimizer: optax.GradientTransformation, *, blocks: int,
               every: int, max_failures: int,
               measure: Callable[[Any, Any], dict[str, Array]] | None = None
               ) -> Callable[[LoopState, Array], tuple[LoopState, Array, dict[str, Array]]]:
    """Build the jitted ``chunk(state, limit) -> (state, losses, records)``.

    ``losses`` has shape (restarts, blocks * every), NaN for skipped or inactive
    steps; ``records`` maps names to arrays of shape (restarts, blocks, ...), one
    record (``measure(params, grads)`` at the block's last step) per block. After
    ``max_failures`` consecutive skipped steps a restart stops stepping.
    """

    def step(state: LoopState, limit: Array) -> tuple[LoopState, Array, Any]:
        key, sub = jax.random.split(state.key)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, sub)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        active = (state.step < limit) & (state.run_skipped < max_failures)
        ok = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
        keep = active & ok

        def pick(new: Any, old: Any) -> Any:
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)

        skipped = active & ~ok
        new = LoopState(
            pick(params, state.params), pick(opt_state, state.opt_state),
            jnp.where(active, key, state.key), state.step + active,
            state.n_skipped + skipped,
            jnp.where(skipped, state.run_skipped + 1, jnp.where(keep, 0, state.run_skipped)))
        return new, jnp.where(keep, loss, jnp.nan), grads

    def block(state: LoopState, limit: Array) -> tuple[LoopState, tuple[Array, dict]]:
        # Only the last gradient of a block is recorded: carry it, never stack it.
        def inner(carry: tuple[LoopState, Any], _: None) -> tuple[tuple[LoopState, Any], Array]:
            s, g = carry
            s, loss, new_g = step(s, limit)
            return (s, new_g if measure is not None else g), loss

        grads0 = jax.tree.map(jnp.zeros_like, state.params) if measure is not None else None
        (state, grads), losses = lax.scan(inner, (state, grads0), None, length=every)
        records = measure(state.params, grads) if measure is not None else {}
        return state, (losses, records)

    def one_restart(state: LoopState, limit: Array) -> tuple[LoopState, Array, dict]:
        def outer(s: LoopState, _: None) -> tuple[LoopState, tuple[Array, dict]]:
            return block(s, limit)

        state, (losses, records) = lax.scan(outer, state, None, length=blocks)
        return state, losses.reshape(-1), records

    return jax.jit(jax.vmap(one_restart, in_axes=(0, None)))
