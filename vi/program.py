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
chunk's worth of steps of a program runs a rolled compile (ready sooner), and the
unrolled one compiles on a background thread, once the rolled one is done, for the
steps after. Which one runs a step depends only on the step's index, never on
timing: results are reproducible, and ``fit(500)`` twice equals ``fit(1000)``. A
light rolled chunk (:data:`LIGHT_CHUNK_FLOPS`) compiles with :data:`LIGHT_FIRST_CHUNK`,
in half the time; which options it gets depends only on the program and the chunk
length.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import Array
from numpyro.infer import Trace_ELBO, TraceMeanField_ELBO
from numpyro.infer.elbo import ELBO

from flows import scan_unroll
from flows.flow import UNROLL
from guides import AutoFlow
from vi.compiler import compile_async
from vi.data import BoundData
from vi.devices import Layout
from vi.elbo import logdensity_loss, model_log_density
from vi.loop import LoopState, LossFn, make_chunk
from vi.minibatch import draw_indices, subsampled_plates, with_indices
from vi.model import Model
from vi.optim import optimizer_signature
from vi.plan import FitPlan


def _avals(tree: Any) -> Hashable:
    """The structure, shapes and dtypes of a pytree of arrays or ``ShapeDtypeStruct``."""
    return jax.tree.structure(tree), tuple((leaf.shape, leaf.dtype)
                                           for leaf in jax.tree.leaves(tree))


LIGHT_FIRST_CHUNK = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
"""XLA options of the rolled first chunk of a light program on CPU: LLVM's
optimisation skipped, and fusions emitted by XLA's older, simpler emitters. Measured
on 2 CPU cores (fresh processes, first ``fit(1000)`` of ``planar*10``, 10 particles):
U4 2.1-2.2 s -> 1.3-1.5 s, a 10-site regression 2.6-3.5 s -> 2.0-2.6 s; the chunk
compiles in 0.4-0.5 s instead of 0.9-1.0 s and runs at about 0.6 of the speed
(9,500 against 16,000 steps/s on U4). On a 5000-row logistic regression the slower
steps cost more than the compile saves (2.9-3.5 s -> 4.1-5.2 s): see
:data:`LIGHT_CHUNK_FLOPS`."""

LIGHT_CHUNK_FLOPS = 2e8
"""A rolled first chunk is light when XLA's count of its floating-point operations
per step (each loop's body counted once) times its steps is below this: U4 4e6,
the 10-site regression 4e7, the 5000-row logistic regression 4e9 (for 1000 steps)."""


def first_chunk_options(lowered: jax.stages.Lowered, steps: int) -> dict[str, Any] | None:
    """:data:`LIGHT_FIRST_CHUNK` for a light rolled chunk of ``steps`` steps on CPU,
    else ``None`` (XLA's defaults). Static: the same program and steps always get the
    same options, so the same steps compute the same numbers."""
    if jax.default_backend() != "cpu":
        return None
    cost = lowered.cost_analysis()
    if isinstance(cost, list):  # older JAX: one dict per program
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops", math.inf)
    return LIGHT_FIRST_CHUNK if flops * steps < LIGHT_CHUNK_FLOPS else None


class Runner:
    """The compiled chunks of one structure and one state shape.

    ``runner(state, end, at)`` runs one chunk from step ``at`` (the state's step)
    towards ``end`` on the model's ``data`` arrays and returns
    ``(state, losses, records, reached)``, ``reached`` the step it stops at. Steps
    before ``rolled_until`` run the rolled compile (stopping at ``rolled_until``),
    the others the unrolled one.
    """

    def __init__(self, make: Callable[[], Any], state: LoopState, data: tuple[Array, ...],
                 length: int, rolled_until: int):
        self.length, self.rolled_until, self.data = length, rolled_until, data
        limit = jnp.asarray(0, jnp.int32)
        self._rolled: Future | None = None
        if rolled_until > 0:
            # compile the rolled chunk while the unrolled one is traced (XLA compiles
            # without holding the GIL)
            with scan_unroll(1):
                lowered = make().lower(state, limit, data)
                self._rolled = compile_async(lowered, options=first_chunk_options(
                    lowered, rolled_until))
        with scan_unroll(UNROLL):
            unrolled = make().lower(state, limit, data)
        # and the unrolled one after it: side by side on two cores the two compiles
        # slowed each other, and the first chunk waits for the rolled one (first fit of
        # planar*10 on U4, fresh process: 4.2-5.4 s against 4.7-6.4 s)
        self._unrolled: Future = compile_async(unrolled, after=self._rolled)

    def __call__(self, state: LoopState, end: int, at: int
                 ) -> tuple[LoopState, Array, dict[str, Array], int]:
        if self._rolled is not None and at < self.rolled_until:
            stop = min(end, self.rolled_until, at + self.length)
            chunk = self._rolled.result()
        else:
            stop = min(end, at + self.length)
            chunk = self._unrolled.result()
        return (*chunk(state, jnp.asarray(stop, jnp.int32), self.data), stop)



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
        self._data: dict[Hashable, BoundData] = {}
        self._runners: dict[Hashable, Runner] = {}
        self._signatures: dict[int, tuple[optax.GradientTransformation, Hashable]] = {}

    @property
    def repeats(self) -> bool:
        """Whether the guide is a flow with repeated steps (whose unrolling matters)."""
        return isinstance(self.guide, AutoFlow) and self.guide.flow.has_repeats

    def direct(self, plan: FitPlan) -> bool:
        """Whether the loss is written directly on the model's density (:mod:`vi.elbo`):
        an :class:`~guides.AutoFlow` guide, a named ELBO, and a model that is one
        density over its latents."""
        return (isinstance(self.guide, AutoFlow) and isinstance(plan.elbo, str)
                and model_log_density(self.model, self.guide) is not None)

    def can_split_particles(self, plan: FitPlan) -> bool:
        """Whether the ELBO is a mean over independent particles, which can then lie
        across devices: the direct loss, ``Trace_ELBO`` or ``TraceMeanField_ELBO``."""
        return self.direct(plan) or (
            type(plan.elbo_obj) in (Trace_ELBO, TraceMeanField_ELBO)
            and not getattr(plan.elbo_obj, "multi_sample_guide", False))

    def plate_sizes(self) -> tuple[int, ...]:
        """The sizes N of the model's subsampled plates (whose data can be spread)."""
        trace = getattr(self.guide, "prototype_trace", None) or {}
        return tuple(n for n, _ in subsampled_plates(trace).values())

    def data(self, layout: Layout | None) -> BoundData:
        """The model's data arrays for ``layout``, put on its devices once
        (:mod:`vi.data`)."""
        key = None if layout is None else layout.key
        if key not in self._data:
            self._data[key] = BoundData.of(self.model, layout)
        return self._data[key]

    def loss(self, plan: FitPlan, layout: Layout | None = None) -> LossFn:
        """``loss(params, key, *data)``, the ``plan.particles``-draw estimate of -ELBO,
        ``data`` the arrays of :meth:`data`.

        For an :class:`~guides.AutoFlow` guide with a named ELBO on a model that is
        one density over its latents, it is written directly (:mod:`vi.elbo`; a flow
        has no analytic KL term, so every named ELBO is Trace_ELBO's estimator);
        otherwise it is NumPyro's ELBO object. With a ``layout``, the particles lie
        across its devices when it splits them.
        """
        key = (_elbo_key(plan.elbo, plan.elbo_obj), None if layout is None else layout.key)
        if key not in self._losses:
            self._losses[key] = self._build_loss(plan, layout)
        return self._losses[key]

    def _build_loss(self, plan: FitPlan, layout: Layout | None) -> LossFn:
        guide, constrain, elbo_obj = self.guide, self.constrain, plan.elbo_obj
        bound = self.data(layout)
        spread = None if layout is None or layout.split != "particles" else layout.spread_batch
        if self.direct(plan):
            def direct_loss(params: Any, rng: Array, *data: Array) -> Array:
                model = bound.bind(data)
                density = model_log_density(model, guide)
                return logdensity_loss(guide, density, plan.particles, stl=plan.elbo == "stl",
                                       spread=spread)(params, rng)

            return direct_loss
        if plan.elbo == "stl":
            raise ValueError("elbo='stl' needs a model that is one density over its latent "
                             "sites: this one has a numpyro.param, a subsampled plate or "
                             "mutable state, which Trace_ELBO must trace; use elbo='trace'")
        plates = subsampled_plates(getattr(guide, "prototype_trace", None) or {})

        def minibatch(rng: Array) -> tuple[Array, Callable[..., Any], Callable[..., Any]]:
            # minibatch indices in O(B) (vi.minibatch), shared by model, guide, particles
            if not plates:
                return rng, self.model.fn, guide
            rng, sub = jax.random.split(rng)
            indices = draw_indices(sub, plates)
            return rng, with_indices(self.model.fn, indices), with_indices(guide, indices)

        if spread is None:
            def loss(params: Any, rng: Array, *data: Array) -> Array:
                model = bound.bind(data)
                rng, model_fn, guide_fn = minibatch(rng)
                return elbo_obj.loss(rng, constrain(params), model_fn, guide_fn,
                                     *model.args, **model.kwargs)

            return loss
        # NumPyro's own particle loop, written out so that its keys can lie across
        # devices: particle i of Trace_ELBO(num_particles=P) is the one-particle ELBO
        # at the i-th of P split keys, and the loss is their mean
        single = copy.copy(elbo_obj)
        single.num_particles = 1

        def spread_loss(params: Any, rng: Array, *data: Array) -> Array:
            model = bound.bind(data)
            rng, model_fn, guide_fn = minibatch(rng)
            keys = spread(jax.random.split(rng, plan.particles))
            return jnp.mean(jax.vmap(lambda k: single.loss(
                k, constrain(params), model_fn, guide_fn, *model.args, **model.kwargs))(keys))

        return spread_loss

    def _signature(self, optimizer: optax.GradientTransformation, params: Any) -> Hashable:
        # the same object has the same signature: trace its update once
        cached = self._signatures.get(id(optimizer))
        if cached is not None and cached[0] is optimizer:
            return cached[1]
        signature = optimizer_signature(optimizer, params)
        self._signatures[id(optimizer)] = (optimizer, signature)
        return signature

    def runner(self, plan: FitPlan, optimizer: optax.GradientTransformation,
               state: LoopState, start: int, layout: Layout | None = None) -> Runner:
        """The :class:`Runner` for this plan, optimizer, state shape and device
        layout, built (traced and compiled) the first time they meet. ``state``
        (arrays, or their ``jax.ShapeDtypeStruct``) gives the shapes, ``start`` the
        step the call starts from."""
        params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype),
                              state.params)
        key = (_elbo_key(plan.elbo, plan.elbo_obj), self._signature(optimizer, params),
               _tracker_key(plan), plan.blocks, plan.every, plan.max_failures, _avals(state),
               None if layout is None else layout.key)
        if key not in self._runners:
            measure = None
            tracker, constrain, loss = plan.tracker, self.constrain, self.loss(plan, layout)
            data = self.data(layout)
            shardings = None if layout is None else (layout.state_shardings(state),
                                                     layout.replicated, data.shardings)
            if tracker is not None:
                def measure(params: Any, grads: Any) -> dict[str, Array]:
                    return tracker.measure(constrain(params), grads)

            def make() -> Any:
                return make_chunk(loss, optimizer, blocks=plan.blocks, every=plan.every,
                                  max_failures=plan.max_failures, measure=measure,
                                  shardings=shardings)

            rolled_until = plan.length if self.repeats and start < plan.length else 0
            self._runners[key] = Runner(make, state, data.arrays, plan.length, rolled_until)
        return self._runners[key]
