"""The compiled fit program of one ``NFVI``, built once and reused by every ``fit`` call
with the same static structure.

What is static (a new value compiles a new chunk): the guide and model (one per
``NFVI``), the ELBO kind and its particle count, the optimizer's computation
(:func:`vi.optim.optimizer_signature`), the Tracker's fields, the chunk shape and
``max_failures``. Everything else is a traced input: the parameters and optimizer
state (which hold the step count, the default cosine's horizon and the learning
rate), the keys, and the step limit of the call. So ``fit(1000)`` called ten times,
or ``fit(25_000)`` again with a new ``optax.adam(1e-2)``, traces and compiles nothing.

A fast first result: a flow with repeated steps first runs a program that compiles
sooner, while its fastest one compiles on a background thread (:class:`Runner`);
which one runs a step depends only on the step's index, never on timing, so results
are reproducible and ``fit(500)`` twice equals ``fit(1000)``.
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


FAST_COMPILE = {"xla_backend_optimization_level": 1, "xla_cpu_use_fusion_emitters": False}
"""XLA options of the fit chunks on CPU: LLVM's optimisation at level 1 (of 3) and
fusions emitted by XLA's older, simpler emitters. They compile in 0.55-0.65 of the
time of XLA's defaults and run as fast or faster. Measured on 2 CPU cores
(``planar*10``, 10 particles, one chunk compiled and timed over 5 x 1000 steps; the
unrolled chunk, then the rolled one): U4 1.5-1.8 s -> 1.0 s (0.95x the steps/s of
the defaults) and 0.8 -> 0.4 s (1.0x); a 10-site regression 2.0 -> 1.2 s (1.1x) and
1.0 -> 0.5 s (1.0x); a 5000-row logistic regression 1.8 -> 1.1 s (1.25x) and
0.9 -> 0.45 s (1.2x)."""


def on_cpu(options: dict[str, Any]) -> dict[str, Any] | None:
    """``options`` (XLA options tuned on the CPU backend) where JAX runs on CPU, else
    ``None``: XLA's defaults."""
    return options if jax.default_backend() == "cpu" else None


def fast_compile() -> dict[str, Any] | None:
    """:data:`FAST_COMPILE` on CPU, else ``None`` (:func:`on_cpu`)."""
    return on_cpu(FAST_COMPILE)


LIGHT_TIER = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
"""XLA options of the light tier (:func:`light_steps`): LLVM's optimisation skipped.
The unrolled chunk compiles in about 0.6 of :data:`FAST_COMPILE`'s time and runs at
0.4-0.5 of its speed (U4: 0.6 s and 47,000 steps/s against 1.0 s and 92,000; the
10-site regression 0.7 s and 12,000 against 1.2 s and 30,000)."""

LIGHT_FLOPS = 2e8
"""The light tier's budget: XLA's count of floating-point operations over the steps
it runs (:func:`light_steps`)."""


def light_steps(lowered: jax.stages.Lowered, length: int) -> int:
    """How many first steps of a program with repeats run its light tier: as many
    whole chunks of ``length`` steps as :data:`LIGHT_FLOPS` pays for, by XLA's count of
    one step's floating-point operations (each loop body counted once), on CPU; 0
    elsewhere. U4: 9,000 per step, so the first 22,000 steps; the 10-site regression
    59,000, 3,000 steps; the 5000-row logistic regression 6 million, none. Static: the
    same program always gets the same tiers, so the same steps compute the same
    numbers."""
    if jax.default_backend() != "cpu":
        return 0
    cost = lowered.cost_analysis()
    if isinstance(cost, list):  # older JAX: one dict per program
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops") or math.inf
    return int(LIGHT_FLOPS / flops / length) * length


class Runner:
    """The compiled chunks of one structure and one state shape.

    ``runner(state, end, at)`` runs one chunk from step ``at`` (the state's step)
    towards ``end`` on the model's ``data`` arrays and returns
    ``(state, losses, records, reached)``, ``reached`` the step it stops at.

    A flow with repeats runs its scans unrolled (``flows.flow.UNROLL`` layers per
    iteration): for planar*10, 5.5x the steps per second of a rolled loop on U4 and 1.8x
    on a 10-site regression, but a longer compile. So the first steps a runner runs
    (``first_until``, counted over all the calls that use it) go to a program that is
    ready sooner, while the unrolled :data:`FAST_COMPILE` one compiles on a background
    thread for the steps after: the unrolled chunk compiled with :data:`LIGHT_TIER` for
    the steps that :func:`light_steps` gives (ten ``fit(1000)`` calls on U4 after the
    first run it at about the bare loop's speed, where waiting for the fast compile
    would cost them about 1 s), else the rolled loop for one chunk. Which program runs a
    step depends only on the calls made, never on timing: the programs' numbers differ
    in the last bits, and results must be reproducible, with ``fit(500)`` twice equal to
    ``fit(1000)``.
    """

    def __init__(self, make: Callable[[], Any], state: LoopState, data: tuple[Array, ...],
                 length: int, repeats: bool):
        self.length, self.data, self.ran = length, data, 0
        limit = jnp.asarray(0, jnp.int32)
        fast = fast_compile()
        with scan_unroll(UNROLL):
            unrolled = make().lower(state, limit, data)
        self._first: Future | None = None
        self.first_until = 0
        if repeats:
            light = light_steps(unrolled, length)
            if light:
                self._first = compile_async(unrolled, options=LIGHT_TIER)
                self.first_until = light
            else:
                with scan_unroll(1):
                    rolled = make().lower(state, limit, data)
                self._first = compile_async(rolled, options=fast)
                self.first_until = length
        # after the first: side by side on two cores the two compiles slow each other,
        # and the first chunk waits for the first program
        self._rest: Future = compile_async(unrolled, after=self._first, options=fast)

    def __call__(self, state: LoopState, end: int, at: int
                 ) -> tuple[LoopState, Array, dict[str, Array], int]:
        left = self.first_until - self.ran  # steps the first program still runs
        if left > 0:
            stop = min(end, at + left, at + self.length)
            chunk = self._first.result()
        else:
            stop = min(end, at + self.length)
            chunk = self._rest.result()
        self.ran += stop - at
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
               state: LoopState, layout: Layout | None = None) -> Runner:
        """The :class:`Runner` for this plan, optimizer, state shape and device
        layout, built (traced and compiled) the first time they meet. ``state``
        (arrays, or their ``jax.ShapeDtypeStruct``) gives the shapes."""
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

            self._runners[key] = Runner(make, state, data.arrays, plan.length, self.repeats)
        return self._runners[key]
