"""The compiled core of the fit: many optimisation steps fused into one ``lax.scan``.

A chunk runs up to ``blocks x every`` steps on device; the host sees it once (losses,
the Tracker's records, failure counts). Steps past ``limit`` (a traced argument) are
skipped by a real branch, so one compiled chunk serves a call of any length at the
cost of the steps it takes: ``fit(500)`` and ``fit(25_000)`` run the same program.
Independent restarts are a leading axis of the state, stepped together by ``vmap``.

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

LossFn = Callable[..., Array]
"""loss(unconstrained_params, rng_key, *data) -> scalar negative ELBO; ``data`` are
the arrays the chunk is given (:mod:`vi.data`), none by default."""

Chunk = Callable[..., tuple["LoopState", Array, dict[str, Array]]]
"""chunk(state, limit, data=()) -> (state, losses (restarts, length), records)."""


class LoopState(NamedTuple):
    """Everything a chunk carries, each with a leading restart axis."""

    params: Any  # unconstrained parameters
    opt_state: Any
    key: Array
    step: Array  # steps done (attempted), int32; the same for every restart
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
               measure: Callable[[Any, Any], dict[str, Array]] | None = None,
               shardings: tuple[Any, Any] | None = None) -> Chunk:
    """Build the jitted ``chunk(state, limit, data=()) -> (state, losses, records)``.

    ``losses`` has shape (restarts, blocks * every), NaN for skipped or inactive
    steps; ``records`` maps names to arrays of shape (restarts, blocks, ...), one
    record (``measure(params, grads)`` at the block's last step) per block. After
    ``max_failures`` consecutive skipped steps a restart stops updating.
    ``data``, a tuple of arrays, is passed to every loss call after the key.
    ``shardings``, ``(state_shardings, replicated, data_shardings)``, places the
    state (its shardings kept from chunk to chunk) and the data, and gives the host
    replicated losses and records (:class:`vi.devices.Layout`).
    """
    tracked = measure is not None

    def step(state: LoopState, data: tuple[Array, ...]) -> tuple[LoopState, Array, Any]:
        key, sub = jax.random.split(state.key)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, sub, *data)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        active = state.run_skipped < max_failures
        ok = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
        keep = active & ok

        def pick(new: Any, old: Any) -> Any:
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)

        skipped = active & ~ok
        new = LoopState(
            pick(params, state.params), pick(opt_state, state.opt_state),
            jnp.where(active, key, state.key), state.step + 1,
            state.n_skipped + skipped,
            jnp.where(skipped, state.run_skipped + 1, jnp.where(keep, 0, state.run_skipped)))
        return new, jnp.where(keep, loss, jnp.nan), grads if tracked else None

    steps = jax.vmap(step, in_axes=(0, None))

    def skip(state: LoopState, data: tuple[Array, ...]) -> tuple[LoopState, Array, Any]:
        grads = jax.tree.map(jnp.zeros_like, state.params) if tracked else None
        return state, jnp.full(state.step.shape, jnp.nan), grads

    def block(state: LoopState, limit: Array, data: tuple[Array, ...]
              ) -> tuple[LoopState, tuple[Array, dict]]:
        # Only the last gradient of a block is recorded: carry it, never stack it.
        def inner(carry: tuple[LoopState, Any], _: None) -> tuple[tuple[LoopState, Any], Array]:
            s, g = carry
            # Every restart has taken the same number of steps, so this predicate is
            # not batched and the branch is real: steps past the limit cost nothing.
            s, loss, new_g = lax.cond(s.step[0] < limit, steps, skip, s, data)
            return (s, new_g if tracked else g), loss

        grads0 = jax.tree.map(jnp.zeros_like, state.params) if tracked else None
        (state, grads), losses = lax.scan(inner, (state, grads0), None, length=every)
        records = jax.vmap(measure)(state.params, grads) if tracked else {}
        return state, (losses, records)

    def chunk(state: LoopState, limit: Array, data: tuple[Array, ...] = ()
              ) -> tuple[LoopState, Array, dict]:
        state, (losses, records) = lax.scan(lambda s, _: block(s, limit, data), state, None,
                                            length=blocks)
        # losses: (blocks, every, restarts); records: (blocks, restarts, ...)
        losses = jnp.moveaxis(losses.reshape(blocks * every, -1), 0, 1)
        return state, losses, jax.tree.map(lambda r: jnp.moveaxis(r, 0, 1), records)

    if shardings is None:
        return jax.jit(chunk)
    state_shardings, replicated, data_shardings = shardings
    return jax.jit(chunk, in_shardings=(state_shardings, replicated, data_shardings),
                   out_shardings=(state_shardings, replicated, replicated))
