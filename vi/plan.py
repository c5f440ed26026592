"""What a ``fit`` call will do, checked before any work: ``plan_fit`` turns the
arguments of :meth:`vi.NFVI.fit` into a :class:`FitPlan` or raises a clear error."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import Trace_ELBO, TraceMeanField_ELBO
from numpyro.infer.elbo import ELBO

from flows.options import check_number
from guides import AutoFlow
from vi.callbacks import Tracker, check_callback
from vi.devices import resolve_devices
from vi.optim import settable_learning_rate

ELBO_NAMES = ("trace", "meanfield", "stl")


@dataclass(frozen=True)
class FitPlan:
    """The checked arguments of one ``fit`` call and the chunk shape they imply.

    A chunk is ``blocks x every`` steps: about ``chunk`` steps (shorter when a
    callback asks to be called more often), a multiple of the Tracker's ``every``.
    It does not depend on ``n``, so calls of any length share one compiled chunk.
    """

    n: int
    n_mc: int
    restarts: int
    max_failures: int
    elbo: str | ELBO
    elbo_obj: ELBO
    particles: int
    optimizer: optax.GradientTransformation | None
    learning_rate: float | None
    callbacks: tuple[Callable[..., Any], ...]
    tracker: Tracker | None
    blocks: int
    every: int
    progress: bool
    seed: int | None
    devices: list[Any] | None = None

    @property
    def length(self) -> int:
        """Steps per chunk."""
        return self.blocks * self.every


def positive_int(value: object, name: str) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def make_elbo(elbo: str | ELBO, n_mc: int, guide: Any) -> ELBO:
    """The NumPyro ELBO object for ``elbo`` (a name or an ELBO) with ``n_mc`` particles."""
    if isinstance(elbo, ELBO):
        if n_mc != 1 and getattr(elbo, "num_particles", 1) != n_mc:
            raise ValueError("give the number of particles either as n_mc or in the ELBO "
                             f"object, not both (n_mc={n_mc}, "
                             f"ELBO num_particles={elbo.num_particles})")
        return elbo
    if elbo in ("trace", "stl"):
        if elbo == "stl" and not isinstance(guide, AutoFlow):
            raise ValueError("elbo='stl' (sticking the landing) needs an AutoFlow guide, "
                             "whose log q it evaluates through the flow's inverse; got "
                             f"{type(guide).__name__}: use elbo='trace'")
        return Trace_ELBO(num_particles=n_mc)
    if elbo == "meanfield":
        return TraceMeanField_ELBO(num_particles=n_mc)
    raise ValueError(f"elbo must be 'trace', 'meanfield', 'stl' or a numpyro ELBO, "
                     f"got {elbo!r}")


def callback_tuple(callbacks: object) -> tuple[Any, ...]:
    """``callbacks`` as a tuple; a ``TypeError`` for one callback given bare (a Tracker
    would even iterate, as it has ``__getitem__``) or anything else not a collection."""
    if callable(callbacks) or isinstance(callbacks, str | bytes) or not isinstance(
            callbacks, Iterable):
        raise TypeError(f"callbacks must be a list of callbacks, got {callbacks!r}; "
                        "wrap a single one as callbacks=[cb]")
    return tuple(callbacks)


def chunk_shape(host_every: int, every: int | None) -> tuple[int, int]:
    """(blocks, every) with blocks * every the chunk length: ``host_every`` steps,
    rounded up to a multiple of the Tracker's ``every``."""
    if every is None:
        return 1, host_every
    return max(1, math.ceil(host_every / every)), every


def plan_fit(guide: Any, *, n: int, optimizer: Any, learning_rate: Any, n_mc: int,
             elbo: str | ELBO, callbacks: Sequence[Any], progress: bool, seed: int | None,
             restarts: int, chunk: int, max_failures: int, continuing: bool,
             devices: object = None) -> FitPlan:
    """Check every argument of a ``fit`` call (see :meth:`vi.NFVI.fit`) and plan it."""
    n = positive_int(n, "n")
    n_mc = positive_int(n_mc, "n_mc")
    restarts = positive_int(restarts, "restarts")
    chunk = positive_int(chunk, "chunk")
    max_failures = positive_int(max_failures, "max_failures")
    devices = resolve_devices(devices)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise TypeError(f"seed must be an integer or None, got {seed!r}")
    elbo_obj = make_elbo(elbo, n_mc, guide)
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer must be an optax GradientTransformation, "
                        f"got {type(optimizer).__name__}")
    if learning_rate is not None:
        learning_rate = check_number(learning_rate, "learning_rate", positive=True)
        if optimizer is not None and not settable_learning_rate(
                jax.eval_shape(optimizer.init, {"x": jnp.zeros(1)})):
            raise ValueError("learning_rate sets the rate of the default optimizer or of an "
                             "optax.inject_hyperparams optimizer; this optimizer has it built "
                             "in: give the rate to the optimizer itself, or wrap it as "
                             "optax.inject_hyperparams(optax.adam)(learning_rate=...)")
    callbacks = callback_tuple(callbacks)
    for cb in callbacks:
        check_callback(cb)
    trackers = [cb for cb in callbacks if isinstance(cb, Tracker)]
    if len(trackers) > 1:
        raise ValueError("give at most one Tracker; it can track many quantities")
    if restarts > 1 and continuing:
        raise ValueError("restarts apply to the first fit only; this NFVI continues "
                         "from its fitted state")
    tracker = trackers[0] if trackers else None
    host_every = min([chunk, *(getattr(cb, "every", chunk) for cb in callbacks
                               if not isinstance(cb, Tracker))])
    blocks, every = chunk_shape(host_every, tracker.every if tracker else None)
    return FitPlan(n=n, n_mc=n_mc, restarts=restarts, max_failures=max_failures, elbo=elbo,
                   elbo_obj=elbo_obj, particles=getattr(elbo_obj, "num_particles", 1),
                   optimizer=optimizer, learning_rate=learning_rate, callbacks=callbacks,
                   tracker=tracker, blocks=blocks, every=every, progress=bool(progress),
                   seed=None if seed is None else int(seed), devices=devices)
