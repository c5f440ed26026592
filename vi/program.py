"""The compiled fit program of one ``NFVI``, built once and reused by every ``fit`` call
with the same static structure.

What is static (a new value compiles a new chunk): the guide and model (one per
``NFVI``), the ELBO kind and its particle count, the optimizer's computation
(:func:`vi.optim.optimizer_signature`), the Tracker's fields, the chunk shape and
``max_failures``. Everything else is a traced input: the parameters and optimizer
state (which hold the step count, the default cosine's horizon and the learning
rate), the keys, and the step limit of the call. So ``fit(1000)`` called ten times,
or ``fit(25_000)`` again with a new ``optax.adam(1e-2)``, traces and compiles nothing.

A fast first chunk: a flow with repeated steps runs its scans unrolled
(``flows.flow.UNROLL`` layers per iteration; 2-3x the steps per second of a rolled
loop on small problems), which takes several times longer to compile. So the first
chunk's worth of steps of a program runs a rolled compile (ready sooner), while the
unrolled one compiles on a background thread for the steps after. Which one runs a
step depends only on the step's index, never on timing: results are reproducible,
and ``fit(500)`` twice equals ``fit(1000)``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import Array
from numpyro.infer.elbo import ELBO

from flows import scan_unroll
from flows.flow import UNROLL
from guides import AutoFlow
from vi.elbo import logdensity_loss, model_log_density
from vi.loop import LoopState, LossFn, make_chunk
from vi.model import Model
from vi.optim import optimizer_signature
from vi.plan import FitPlan

_COMPILER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nfvi-compile")


def _avals(tree: Any) -> Hashable:
    return jax.tree.structure(tree), tuple(jax.typeof(leaf) for leaf in jax.tree.leaves(tree))


class Runner:
    """The compiled chunks of one structure and one state shape.

    ``runner(state, end, at)`` runs one chunk from step ``at`` (the state's step)
    towards ``end`` and returns ``(state, losses, records, reached)``, ``reached``
    the step it stops at. Steps before ``rolled_until`` run the rolled compile
    (stopping at ``rolled_until``), the others the unrolled one.
    """

    def __init__(self, make: Callable[[], Any], state: LoopState, length: int,
                 rolled_until: int):
        self.length, self.rolled_until = length, rolled_until
        limit = jnp.asarray(0, jnp.int32)
        self._rolled: Future | None = None
        if rolled_until > 0:
            # compile the rolled chunk while the unrolled one is traced (XLA compiles
            # without holding the GIL), then compile the unrolled one beside it
            with scan_unroll(1):
                self._rolled = _COMPILER.submit(make().lower(state, limit).compile)
        with scan_unroll(UNROLL):
            self._unrolled: Future = _COMPILER.submit(make().lower(state, limit).compile)

    def __call__(self, state: LoopState, end: int, at: int
                 ) -> tuple[LoopState, Array, dict[str, Array], int]:
        if self._rolled is not None and at < self.rolled_until:
            stop = min(end, self.rolled_until, at + self.length)
            return (*self._rolled.result()(state, jnp.asarray(stop, jnp.int32)), stop)
        stop = min(end, at + self.length)
        return (*self._unrolled.result()(state, jnp.asarray(stop, jnp.int32)), stop)



def _elbo_key(elbo: str | ELBO, elbo_obj: ELBO) -> Hashable:
    """Equal for ELBO objects of one class with equal settings (a new
    ``Trace_ELBO(num_particles=8)`` reuses the loss of an earlier one)."""
    if isinstance(elbo, str):
        return elbo, elbo_obj.num_particles
    try:
        settings = tuple(sorted(vars(elbo_obj).items()))
        hash(settings)
    except TypeError:
        return type(elbo_obj), id(elbo_obj)
    return type(elbo_obj), settings


def _tracker_key(plan: FitPlan) -> Hashable:
    tracker = plan.tracker
    if tracker is None:
        return None
    return tracker.every, tracker.params, tracker.grads, tuple(tracker.quantities.items())


class FitProgram:
    """Losses and compiled chunks for one model and guide, cached by structure.

    Args:
        model: the :class:`vi.Model`.
        guide: its guide, already set up (its prototype built).
        constrain: maps the unconstrained parameter dict to the constrained one.
    """

    def __init__(self, model: Model, guide: Callable[..., Any],
                 constrain: Callable[[Any], Any]):
        self.model, self.guide, self.constrain = model, guide, constrain
        self._losses: dict[Hashable, LossFn] = {}
        self._runners: dict[Hashable, Runner] = {}
        self._signatures: dict[int, tuple[optax.GradientTransformation, Hashable]] = {}

    @property
    def repeats(self) -> bool:
        """Whether the guide is a flow with repeated steps (whose unrolling matters)."""
        return isinstance(self.guide, AutoFlow) and self.guide.flow.has_repeats

    def loss(self, plan: FitPlan) -> LossFn:
        """``loss(params, key)``, the ``plan.particles``-draw estimate of -ELBO.

        For an :class:`~guides.AutoFlow` guide with a named ELBO on a model that is
        one density over its latents, it is written directly (:mod:`vi.elbo`; a flow
        has no analytic KL term, so every named ELBO is Trace_ELBO's estimator);
        otherwise it is NumPyro's ELBO object.
        """
        key = _elbo_key(plan.elbo, plan.elbo_obj)
        if key not in self._losses:
            self._losses[key] = self._build_loss(plan)
        return self._losses[key]

    def _build_loss(self, plan: FitPlan) -> LossFn:
        model, guide, constrain, elbo_obj = self.model, self.guide, self.constrain, plan.elbo_obj
        density = None
        if isinstance(guide, AutoFlow) and isinstance(plan.elbo, str):
            density = model.log_density or model_log_density(model, guide)
        if density is not None:
            return logdensity_loss(guide, density, plan.particles, stl=plan.elbo == "stl")
        if plan.elbo == "stl":
            raise ValueError("elbo='stl' needs a model that is one density over its latent "
                             "sites: this one has a numpyro.param, a subsampled plate or "
                             "mutable state, which Trace_ELBO must trace; use elbo='trace'")

        def loss(params: Any, rng: Array) -> Array:
            return elbo_obj.loss(rng, constrain(params), model.fn, guide,
                                 *model.args, **model.kwargs)

        return loss

    def _signature(self, optimizer: optax.GradientTransformation, params: Any) -> Hashable:
        # the same object has the same signature: trace its update once
        cached = self._signatures.get(id(optimizer))
        if cached is not None and cached[0] is optimizer:
            return cached[1]
        signature = optimizer_signature(optimizer, params)
        self._signatures[id(optimizer)] = (optimizer, signature)
        return signature

    def runner(self, plan: FitPlan, optimizer: optax.GradientTransformation,
               state: LoopState) -> Runner:
        """The :class:`Runner` for this plan, optimizer and state shape, built (traced
        and compiled) the first time they meet."""
        params = jax.tree.map(lambda a: a[0], state.params)
        key = (_elbo_key(plan.elbo, plan.elbo_obj), self._signature(optimizer, params),
               _tracker_key(plan), plan.blocks, plan.every, plan.max_failures, _avals(state))
        if key not in self._runners:
            measure = None
            tracker, constrain, loss = plan.tracker, self.constrain, self.loss(plan)
            if tracker is not None:
                def measure(params: Any, grads: Any) -> dict[str, Array]:
                    return tracker.measure(constrain(params), grads)

            def make() -> Any:
                return make_chunk(loss, optimizer, blocks=plan.blocks, every=plan.every,
                                  max_failures=plan.max_failures, measure=measure)

            start = int(state.step[0])
            rolled_until = plan.length if self.repeats and start < plan.length else 0
            self._runners[key] = Runner(make, state, plan.length, rolled_until)
        return self._runners[key]
