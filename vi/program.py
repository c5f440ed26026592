"""The compiled fit program of one ``NFVI``, built once and reused by every ``fit`` call
with the same static structure.

What is static (a new value compiles a new chunk): the guide and model (one per
``NFVI``), the ELBO kind and its particle count, the optimizer's computation
(:func:`vi.optim.optimizer_signature`), the Tracker's fields, the chunk shape and
``max_failures``. Everything else is a traced input: the parameters and optimizer
state (which hold the step count, the default cosine's horizon and the learning
rate), the keys, and the step limit of the call. So ``fit(1000)`` called ten times,
or ``fit(25_000)`` again with a new ``optax.adam(1e-2)``, traces and compiles nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import optax
from jax import Array
from numpyro.infer.elbo import ELBO

from guides import AutoFlow
from vi.elbo import logdensity_loss, model_log_density
from vi.loop import Chunk, LossFn, make_chunk
from vi.model import Model
from vi.optim import optimizer_signature
from vi.plan import FitPlan


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
        self._chunks: dict[Hashable, Chunk] = {}
        self._signatures: dict[int, tuple[optax.GradientTransformation, Hashable]] = {}

    @property
    def n_chunks(self) -> int:
        """How many distinct chunks have been built (each is traced and compiled once
        for each shape of state it meets)."""
        return len(self._chunks)

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

    def chunk(self, plan: FitPlan, optimizer: optax.GradientTransformation, params: Any
              ) -> Chunk:
        """The jitted ``chunk(state, limit)`` for this plan and optimizer (``params``:
        one restart's unconstrained parameters, for the optimizer's signature)."""
        key = (_elbo_key(plan.elbo, plan.elbo_obj), self._signature(optimizer, params),
               _tracker_key(plan), plan.blocks, plan.every, plan.max_failures)
        if key not in self._chunks:
            measure = None
            tracker, constrain = plan.tracker, self.constrain
            if tracker is not None:
                def measure(params: Any, grads: Any) -> dict[str, Array]:
                    return tracker.measure(constrain(params), grads)

            self._chunks[key] = make_chunk(self.loss(plan), optimizer, blocks=plan.blocks,
                                           every=plan.every, max_failures=plan.max_failures,
                                           measure=measure)
        return self._chunks[key]
