"""The random keys of a ``fit`` or ``vi.sample`` call, derived from its seed in one
compiled program.

Derived eagerly, the same keys cost three XLA compiles of threefry code (about 0.2 s
on 2 CPU cores) on the way to every first chunk; as one program, one compile, once
per process and restart count. The keys are exactly the ones the eager splits give:
from ``key(seed)``, ``init_key, run_key = split(key)``; the restarts' initialisation
keys ``split(init_key, R)`` and run keys ``split(run_key, R)``; and the guide set-up's
keys, attempt i taking the second half of the i-th split in the chain
``k_0 = init_keys[0]``, ``k_{i+1}, s_i = split(k_i)``. ``vi.sample``'s keys
(:func:`sample_keys`) are likewise those of its eager splits.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
from jax import Array

from vi.compiler import ONCE_COMPILE


class CallKeys(NamedTuple):
    """The keys of one ``fit`` call."""

    init: Array  # (R,) keys of the restarts' initial parameters
    run: Array  # (R,) keys of the restarts' Monte-Carlo draws
    setup: tuple[Array, ...]  # one key per attempt at the guide's initial point


@functools.partial(jax.jit, static_argnums=(1, 2), compiler_options=ONCE_COMPILE)
def call_keys(key: Array, restarts: int, attempts: int) -> CallKeys:
    """The :class:`CallKeys` of a call seeded with ``key`` (``jax.random.key(seed)``)
    with ``restarts`` restarts and ``attempts`` tries at the guide's initial point."""
    init_key, run_key = jax.random.split(key)
    init = jax.random.split(init_key, restarts)
    chain, setup = init[0], []
    for _ in range(attempts):
        chain, sub = jax.random.split(chain)
        setup.append(sub)
    return CallKeys(init, jax.random.split(run_key, restarts), tuple(setup))


class SampleKeys(NamedTuple):
    """The keys of one ``vi.sample`` call."""

    init: Array  # the chains' initial points
    chains: Array  # (C,) one per chain
    refit: Array  # the re-fits


@functools.partial(jax.jit, static_argnums=1, compiler_options=ONCE_COMPILE)
def sample_keys(key: Array, num_chains: int) -> SampleKeys:
    """The :class:`SampleKeys` of a ``vi.sample`` call seeded with ``key``:
    ``init, chains, refit = split(key, 3)``, the chains' key split ``num_chains`` ways."""
    init, chains, refit = jax.random.split(key, 3)
    return SampleKeys(init, jax.random.split(chains, num_chains), refit)
