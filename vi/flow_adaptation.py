r"""``vi.sample``: NUTS whose warm-up learns its transport from the chains' draws and gradients.

With ``adapt="flow"``, NUTS runs on the target pulled back through a transport
x = T(y) (:mod:`vi.fisher`: a formula flow followed by a diagonal affine map), with an
identity mass matrix; the transport is the preconditioner, and warm-up learns it from
the chains themselves, with no variational fit (nutpie's flow adaptation, written in
our own terms):

1. *Diagonal phase*: over the first ``early_until`` draws of each chain, every
   ``early_every`` draws, T's diagonal part is set to the closed-form minimiser of the
   Fisher loss on the newer half of the draws so far (:func:`vi.fisher.diagonal_fit`).
2. *Flow phase*: then every ``every`` draws, the whole transport is re-fitted by Adam on
   the log of the Fisher loss of the chains' recent draws (at most ``window`` per
   chain, after the first half of the diagonal phase), holding out the latest
   ``holdout`` draws of each chain; the new transport is kept only if its loss on
   those held-out draws is lower than the current one's.
3. *Final phase*: the last ``final`` fraction of warm-up changes nothing but the step
   size.

The draws x_i and their scores g_i = grad log p(x_i) come from the NUTS state at no
cost: it holds the gradient of the pulled-back potential, from which g_i follows by
the flow's own Jacobian (:func:`vi.fisher.score_from_latent`). After each change of
T the chains carry on from the same points x (y' = T'^{-1}(x)), which costs one
gradient per chain, and the step size's dual averaging (Hoffman & Gelman 2014)
restarts: around 10 times the step size in the diagonal phase, around the step size
itself in the flow phase (:data:`STEP_SIZE_GAMMA`). The transport's parameters are an
argument of the one compiled sampling program, so re-fitting compiles nothing.

With ``adapt="diag"`` it is plain NUTS on the model with NumPyro's own windowed
adaptation of step size and diagonal mass matrix: the baseline, in the same format.

References:
    Seyboldt (2024), "If only my posterior were normal: introducing Fisher HMC".
    Hoffman, Sountsov, Dillon, Langmore, Tran & Vasudevan (2019), arXiv:1903.03704.
    Hoffman & Gelman (2014), JMLR 15, 1593-1623.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from numpyro import handlers
from numpyro.infer.hmc import HMCState, hmc
from numpyro.infer.hmc_util import dual_averaging

import flows
from flows.flow import RUN_ONCE
from flows.options import check_int, check_number
from guides import AutoFlow
from vi.approximation import Approximation
from vi.compiler import ONCE_COMPILE, call_async, compile_all, compile_async
from vi.devices import Layout, chain_layout
from vi.divergences import warn_divergences
from vi.elbo import flat_potential
from vi.fisher import (
    RefitData,
    Transport,
    TransportParams,
    check_invertible,
    diagonal_fit,
    make_refit,
    score_from_latent,
)
from vi.keys import sample_keys
from vi.model import Model
from vi.neutra import check_nuts_options, to_model_space
from vi.program import fast_compile, on_cpu

if TYPE_CHECKING:
    import arviz as az

__all__ = ["DEFAULT_FLOW", "Schedule", "sample"]

DEFAULT_FLOW = "(coupling(sigma=exp, depth=1)-reverse)*4-sas"
"""The transport's flow when none is given, chosen by measurement (docs/sample-record.md):
it knows nothing of the model, both its directions cost one network pass per step (an
``iaf`` inverse costs d), four coupling steps reached a
held-out Fisher loss of 0.2-0.3 on the 100-d funnel, where three stopped near 5, and
the last step, a per-coordinate sinh-arcsinh map (``sas``), gives the transport heavy
tails where the target has them (the horseshoe's log local scales: held-out Fisher
loss 36 / 30 -> 13 / 10, min ESS per 1000 gradients 14.4 / 11.6 -> 29.1 / 28.1 at
seeds 0 / 1). Each coupling's network has one hidden layer of 64 (``depth=1``): an
Adam step of the re-fit takes 1.5-1.9 ms against 2.0-2.2 with two, and the re-fits
learn more from the few hundred draws they have. Min ESS per 1000 gradients, mean
over seeds, two hidden layers -> one: the 100-d funnel (8 seeds) 42.0 -> 47.2 with
13-18 s of training against 16-18, stochastic volatility (seeds 0-3) 17.3 -> 24.2,
the horseshoe (0-3) 24.2 -> 25.4, the varying intercept (0-3) 84.6 -> 84.5; the small
funnels lost a little (8 seeds: centred eight schools 42.6 -> 37.9, the 10-d funnel
25.0 -> 22.9, one failed run in sixteen either way)."""

STEP_SIZE_GAMMA = 0.1
"""Dual averaging's gamma (its shrinkage towards the step size it restarts from) for the
step size in the flow phase of ``adapt="flow"``, where each restart (after a change of
the transport) is around the current step size. The diagonal phase, where the scale is
still unknown, keeps NumPyro's and Stan's rule: gamma 0.05 and restarts around 10 times
the step size. In the flow phase that rule kept the iterate young (at most
``Schedule.every`` updates since a restart) and swinging by 0.2-2x around its target,
and the warm-up's trees were 1.5-1.8 times as long as the sampling phase's. Min ESS
per 1000 gradients (2 chains x (1000 + 1000)), NumPyro's rule throughout -> this one:
varying intercept 65.6 / 71.0 -> 85.6 / 90.8 (seeds 0 / 1), stochastic volatility
14.6 / 15.7 -> 14.8 / 18.9 (seeds 1 / 2), horseshoe 29.1 / 28.1 -> 24.6 / 31.2 (seeds
0 / 1). The
flow phase's rule in both phases cost the stochastic volatility 10,000 gradients per
chain at draws 10-19 (1023 each, after a plunge of the step size); gamma 0.2 gave one
horseshoe seed 24 divergences."""

SAMPLING, DIAGONAL, FLOW = 0, 1, 2
"""What a chunk of transitions adapts (its ``phase`` argument): nothing; the step size by
NumPyro's dual averaging (the diagonal phase); by the flow phase's
(:data:`STEP_SIZE_GAMMA`)."""

INIT_RADIUS = 2.0
"""Chains start uniformly within this distance of the model's initial point, per
coordinate of the flat unconstrained space (NumPyro's ``init_to_uniform`` radius)."""

START_CANDIDATES = 16
"""Each chain starts at the most probable of this many candidate points (uniform within
:data:`INIT_RADIUS`, or draws of the Approximation it starts from). A single uniform
start can land where the log density is extreme: on the stochastic volatility model
(d = 203) 42% of single starts had a potential energy above twice the median (the
worst 4e28; 200 draws), against 4% / 1% / 0% for the best of 4 / 8 / 16. At seed 4
one chain started at a potential of 1.2e8 (gradient norm 2.5e9): its step size fell
to 5e-8 within 15 draws and stayed there, every tree ran to 1023 steps, the
transport's re-fits were all rejected (held-out Fisher loss 4e8) and the call took
582 s for a min ESS per 1000 gradients of 0.0006. The candidates' log densities are
counted in ``n_grad_warmup`` (as gradients: an upper bound)."""

KERNEL_OPTIONS = frozenset({"target_accept_prob", "max_tree_depth", "step_size",
                            "find_heuristic_step_size"})
"""NUTS options ``sample`` passes on in both modes."""

REFIT_COMPILE = {"xla_backend_optimization_level": 1}
"""XLA options of the re-fit on CPU: LLVM's optimisation at level 1 (of 3). On the 100-d
funnel's default flow (2 CPU cores, one process, compiled in turn and timed
interleaved over 6 x 500 steps) it compiles in 5.8 CPU seconds against the defaults'
8.9 and runs 1-2% slower a step (median 1.87 against 1.85 ms): 3.1 CPU seconds less
compiling, about 1.5 s of a call where the compiles share the two cores with the
tracing (estimated from the CPU seconds), for about 0.3 s more training; the same
draws to the bit (the funnel at seed 6, the horseshoe at seed 0). XLA's older fusion
emitters on top (:data:`vi.program.FAST_COMPILE`) save 0.4 CPU seconds more and run
5% slower."""

CACHED_SAMPLERS = 4
"""Compiled samplers a :class:`vi.Model` keeps for its later ``sample`` calls with the
same settings (:func:`_sampler_key`), the least recently used dropped first."""

REMEDIES = {
    "flow": "Raise target_accept_prob (0.9, 0.95: a smaller step size), give the transport "
            "more warm-up draws to learn from (num_warmup), or try another flow.",
    "diag": "Raise target_accept_prob (0.9, 0.95), reparameterize the model "
            "(numpyro.infer.reparam), or learn a transport: adapt='flow'.",
}
"""What ``sample``'s divergence warning suggests, by ``adapt`` (:mod:`vi.divergences`)."""

MASS_OPTIONS = frozenset({"dense_mass", "adapt_mass_matrix", "regularize_mass_matrix"})
"""NUTS options of the mass matrix: ``adapt="diag"`` only (the flow is the preconditioner)."""


@dataclass(frozen=True)
class Schedule:
    """When and how ``adapt="flow"`` changes the transport; draw counts are per chain.

    Attributes:
        early_every: during the diagonal phase, refit the diagonal every this many draws.
        early_until: length of the diagonal phase (draws).
        every: in the flow phase, re-fit the whole transport every this many draws; also
            the length of the compiled chunk of transitions (the host is touched once
            per chunk, in both modes).
        window: a re-fit trains on at most this many recent draws of each chain.
        holdout: the latest draws of each chain, left out of training, on which a new
            transport must beat the current one.
        final: fraction of warm-up at its end that adapts the step size only.
        steps: Adam steps per re-fit, a multiple of ``eval_every``.
        batch: draws per Adam step.
        learning_rate: Adam's rate at the start of each re-fit.
        decay: the rate falls along a cosine from ``learning_rate`` to ``decay *
            learning_rate`` over a re-fit's steps (1 keeps it constant).
        eval_every: evaluate the held-out loss every this many steps (the best is kept).
        patience: a re-fit stops once this many evaluations in a row have not lowered
            the lowest held-out loss of its own evaluations (the best is kept either
            way).

    The re-fit's defaults (1300 steps of 64 draws, the rate from 4e-3 down a cosine to
    4e-4, Adam on the log of the Fisher loss: :func:`vi.fisher.make_refit`) were
    measured on the 100-d funnel (2 chains x (1000 + 1000), min ESS per 1000 gradients
    at seeds 6, 7, 2, 3, 0, 1, 4, 5; 2 CPU cores): 46.2 / 48.2 / 35.2 / 50.2 / 20.6 /
    33.3 / 35.2 / 49.2 (mean 39.7, 0 divergences) with 15-18 s of training, against
    the log's 1700 steps 38.5 / 45.2 / 44.4 / 57.1 / 25.4 / 39.2 / 49.2 / 28.2 (mean
    40.9, 18-24 s) and the plain loss's 1700 steps 48.0 / 36.7 / 42.4 / 43.0 / 41.6 /
    29.4 / 35.5 / 29.3 (mean 38.2); where the plain loss lost a fifth of the effective
    draws with 1300 steps (docs/sample-record.md), the log's gradient does as well with them.
    Stochastic volatility at seeds 0-7: 18.8 / 12.7 / 16.9 / 13.8 / 18.0 / 16.2 / 18.9
    / 20.0 (mean 16.9, 1-6 divergences a run) against the plain loss's 1700 steps'
    17.6 / 19.5 / 16.7 / 18.2 / 15.3 / 7.0 / 19.9 / 12.4 (mean 15.8; 14 divergences at
    seed 5). The builds before, with the plain loss, on the 100-d funnel: 32.8 / 46.2 /
    48.5 / 27.0 / 44.5 / 29.0 / 40.0 / 25.6 (mean 36.7) with 15 s of training, against a
    constant rate's 2000 steps 49.5 / 42.5 / 24.5 / 39.9 / 31.7 / 31.6 / 49.2 / 35.0 (mean
    38.0, 17-19 s) and the cosine's 1400 steps (mean 33.5, 12 s); stochastic volatility
    (seeds 0 / 1) 12.1 / 22.1 against the constant rate's 14.4 / 13.7 (plain NUTS 5.5 /
    6.0). In an earlier build 1000 steps at a constant rate stalled at seed 6 (8.4 per
    1000 gradients, held-out Fisher loss 7.4). With the coupling steps' shared
    conditioner pass (:meth:`flows.coupling.Coupling.pull_back`: the same maths with other
    rounding, and 17% less time a step) the eight funnel seeds gave 48.3 / 41.7 / 41.8 /
    55.0 / 44.8 / 32.6 / 46.1 / 51.5 (mean 45.2, standard error 2.4, against 36.7 and 3.3:
    the seeds' trajectories moved). docs/sample-record.md has the zoo's figures.

    ``patience`` (6 evaluations, 600 steps) stops a re-fit whose held-out loss has
    stopped improving on its own best; the best evaluation is kept either way, so a
    stop after it changes nothing. Where a model's draws are too few for its flow the
    held-out loss turns up after 400-800 steps (stochastic volatility, d = 203, and
    the horseshoe, d = 63), and the stop saved 25-35% and 40-50% of their training
    with 1700 steps a re-fit (1-13% and 15-26% with this build's 1300), with the same
    draws to the last bit at seeds 0-3; on the 100-d funnel, whose
    re-fits improve to their last step, it saves 3-5% (seeds 6, 7, 2, 3: the same
    draws). Of the 25 runs checked (the five funnel-shaped zoo models at seeds 0-3,
    the centred eight schools at 4-7, the 100-d funnel at four seeds) 23 gave the same
    draws; the centred eight schools and the varying intercept at seed 0 moved (57.7
    -> 32.5 and 83.4 -> 88.1 min ESS per 1000 gradients, within their seeds' spread).
    Counted from the loss before the re-fit instead, as an earlier build tried, a
    patience of 3-5 stopped re-fits during the climb a fresh Adam often makes first,
    and lost half the ESS or more at two funnel seeds.
    """

    early_every: int = 10
    early_until: int = 100
    every: int = 128
    window: int = 600
    holdout: int = 64
    final: float = 0.1
    steps: int = 1300
    batch: int = 64
    learning_rate: float = 4e-3
    decay: float = 0.1
    eval_every: int = 100
    patience: int = 6

    def __post_init__(self) -> None:
        for name in ("early_every", "early_until", "every", "window", "holdout", "steps",
                     "batch", "eval_every", "patience"):
            check_int(getattr(self, name), f"Schedule.{name}", minimum=1)
        final = check_number(self.final, "Schedule.final", minimum=0)
        decay = check_number(self.decay, "Schedule.decay", minimum=0)
        if decay > 1:
            raise ValueError(f"Schedule.decay is the fraction of learning_rate a re-fit ends "
                             f"at, in [0, 1]; got {decay}")
        if final >= 1:
            raise ValueError(f"Schedule.final is a fraction of warm-up in [0, 1), got {final}")
        if self.steps % self.eval_every:
            raise ValueError(f"Schedule.steps ({self.steps}) must be a multiple of "
                             f"eval_every ({self.eval_every})")
        if self.window <= self.holdout:
            raise ValueError(f"Schedule.window ({self.window}) must exceed holdout "
                             f"({self.holdout}): the rest is what a re-fit trains on")

    @property
    def burn_in(self) -> int:
        """Draws of each chain never trained on: the first half of the diagonal phase."""
        return self.early_until // 2

    def points(self, num_warmup: int, diagonal: bool) -> list[tuple[int, str]]:
        """``(t, kind)``: after t warm-up draws per chain, adapt the transport; kind is
        ``"diag"`` (the diagonal phase, if ``diagonal``) or ``"flow"``."""
        last = int(np.floor(num_warmup * (1 - self.final)))
        early = [(t, "diag") for t in range(self.early_every, self.early_until + 1,
                                            self.early_every)] if diagonal else []
        flow = [(t, "flow") for t in range(self.early_until + self.every, last + 1,
                                           self.every)]
        return [(t, kind) for t, kind in early + flow if 0 < t <= last]


class _Record(NamedTuple):
    """What the compiled chunk keeps of each transition of each chain: the latent draw y
    and the gradient of the pulled-back potential there, and NUTS's statistics."""

    y: Array
    grad_y: Array
    num_steps: Array
    accept_prob: Array
    diverging: Array
    step_size: Array
    energy: Array


class _Draws(NamedTuple):
    """A :class:`_Record` on the host, with y made into x = T(y) and the gradient into
    g = grad log p(x) (zero where the adaptation does not need it)."""

    x: np.ndarray
    g: np.ndarray
    num_steps: np.ndarray
    accept_prob: np.ndarray
    diverging: np.ndarray
    step_size: np.ndarray
    energy: np.ndarray


class _Target(NamedTuple):
    """The model, its guide (for unpacking flat latents), the transport and where to start
    (``params.flow`` may be a ``Future``, the flow's initial parameters still computing:
    :func:`_started`)."""

    model: Any
    guide: AutoFlow
    transport: Transport
    params: TransportParams
    diagonal: bool
    n_grad_vi: int


class _Programs(NamedTuple):
    """The compiled pieces: ``init(keys, candidates, params)``, ``chunk(states, params, n,
    phase)``, ``scores(params, y, grad_y)`` and ``push(params, y)`` (x and g, or x
    alone, for a chunk's records), ``move(states, old, new, phase)``, ``settle(states)``,
    ``refit`` (None where there is none: ``adapt="diag"`` or no warm-up)."""

    init: Callable[..., HMCState]
    chunk: Callable[..., tuple[HMCState, _Record]]
    scores: Callable[..., tuple[Array, Array]]
    push: Callable[..., Array]
    move: Callable[..., HMCState]
    settle: Callable[..., HMCState]
    refit: Callable[..., Any] | None


class _Log:
    """Counts and wall times gathered along the run."""

    def __init__(self) -> None:
        self.times = {"compile_time": 0.0, "training_time": 0.0, "warmup_time": 0.0,
                      "sampling_time": 0.0}
        self.transport_updates = 0
        self.refits = 0
        self.refits_kept = 0
        self.refit_steps = 0  # Adam steps the re-fits ran (they may stop early)
        self.fisher_loss = float("nan")

    def timed(self, clock: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` with its device work finished, its wall time added to ``clock``
        (a key of ``times``)."""
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        self.times[clock] += time.perf_counter() - start
        return out


def sample(
    model: Model | Approximation,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 2,
    adapt: Literal["flow", "diag"] = "flow",
    flow: str | flows.Formula | None = None,
    seed: int = 0,
    *,
    schedule: Schedule | None = None,
    devices: Sequence[jax.Device] | None = None,
    **nuts_kwargs: Any,
) -> az.InferenceData:
    r"""NUTS on ``model``, its warm-up learning the transport that preconditions it.

    With ``adapt="flow"`` (see the module's text), NUTS samples the pulled-back target
    p(T(y)) |det J_T(y)| with unit mass matrix and maps each draw to x = T(y); the
    transport T(y) = loc + exp(log_scale) * F(y), F the formula ``flow``, is adapted
    during warm-up by minimising the Fisher divergence of the pulled-back draws,

    .. math:: L(T) = \frac{1}{n} \sum_i |y_i + \nabla_y [\log p(T(y)) + \log|\det J_T(y)|]_{y_i}|^2,
              \quad y_i = T^{-1}(x_i),

    and kept fixed while sampling, so the draws are exact whatever T is. With
    ``adapt="diag"`` it is NumPyro's NUTS with its own adaptation (step size and
    diagonal mass matrix), the baseline.

    Gradients of the model's log density are counted honestly in ``attrs``:
    ``n_grad_warmup`` (the log densities of the chains' candidate starting points, the
    chains' first evaluation and every warm-up leapfrog step),
    ``n_grad_training`` (one per chain after each change of T, where the chains are
    re-evaluated, plus the variational fit an ``Approximation`` came from; the Fisher
    loss itself uses the scores NUTS already computed), ``n_grad_sampling`` (leapfrog
    steps) and their sum ``n_grad``.

    A :class:`vi.Model` keeps the programs compiled for it: a later call on the same
    object with the same settings (any ``seed`` and ``num_samples``, and any
    ``num_warmup`` with ``adapt="flow"``) traces and compiles nothing, and its
    ``compile_time`` is 0. Its data are constants of those programs: bind new data as a
    new ``Model`` (or new arrays) rather than writing into the arrays in place.

    Args:
        model: a :class:`vi.Model`, or a fitted :class:`vi.Approximation` with a
            formula flow whose flow (and parameters) start the transport: then there
            is no diagonal phase, and the chains start at draws of the approximation.
        num_warmup: warm-up transitions per chain, >= 0.
        num_samples: kept transitions per chain, >= 1.
        num_chains: chains, >= 1: on CPU each on a thread of its own (the cores
            share them), elsewhere side by side in one program (``vmap``).
        adapt: ``"flow"`` or ``"diag"``.
        flow: the formula F (``adapt="flow"`` with a ``Model`` only); every step must
            have an analytic inverse. Default :data:`DEFAULT_FLOW`.
        seed: seeds the initial points, the chains and the re-fits.
        schedule: the adaptation's :class:`Schedule` (default ``Schedule()``).
        devices: the devices the chains lie across (default: all of them, when
            ``num_chains`` is a multiple of their number; otherwise one device):
            each device runs its share of the chains, the transport is replicated
            and re-fitted from every chain's draws (:mod:`vi.devices`).
        **nuts_kwargs: NUTS options: ``target_accept_prob`` (0.8), ``max_tree_depth``
            (10), ``step_size`` (initial, 1), ``find_heuristic_step_size``; with
            ``adapt="diag"`` also ``dense_mass``, ``adapt_mass_matrix``,
            ``regularize_mass_matrix``.

    Returns:
        ArviZ ``InferenceData``: ``posterior`` (the model's sites, deterministic ones
        too), ``sample_stats`` (``diverging``, ``n_steps``, ``tree_depth``,
        ``acceptance_rate``, ``step_size``, ``energy``), their ``warmup_`` twins, and
        ``attrs``: the gradient counts above, ``divergences`` and
        ``warmup_divergences``, ``n_transport_updates`` (changes of T kept),
        ``n_refits`` and ``n_refits_kept`` (flow phase), ``n_refit_steps`` (the Adam
        steps they ran: a re-fit may stop early), ``fisher_loss`` (held-out
        loss of the final transport at its last re-fit; NaN without one), and wall
        times ``compile_time``, ``training_time``, ``warmup_time``, ``sampling_time``
        and ``wall_time`` (the whole call), in seconds.

    Warns:
        vi.DivergenceWarning: if any kept transition diverged (:mod:`vi.divergences`),
            with what to change.

    Raises:
        ValueError, TypeError: for bad arguments, before any work.
    """
    start = time.perf_counter()
    schedule = _check_arguments(model, num_warmup, num_samples, num_chains, adapt, flow,
                                seed, schedule, nuts_kwargs)
    layout = chain_layout(devices, num_chains)  # bad devices fail before any work
    key_init, keys, key_refit = sample_keys(jax.random.key(seed), num_chains)
    log = _Log()
    reuse = _sampler_key(model, adapt, flow, num_warmup, num_chains, schedule, nuts_kwargs,
                         layout)
    if reuse is not None and reuse in model._samplers:
        target, programs = model._samplers[reuse] = model._samplers.pop(reuse)
        starts = _initial_points(target, model, key_init, num_chains)
    else:
        target = _target(model, adapt, flow)
        # the re-fit, the largest program, starts compiling first, while the rest is set up
        refit = _start_refit(target, num_chains, schedule, log, layout) \
            if adapt == "flow" and num_warmup else {}
        starts = _initial_points(target, model, key_init, num_chains)
        programs = _compile(target, adapt, num_warmup, num_chains, schedule, nuts_kwargs,
                            starts, log, layout, refit)
        target = _started(target)
        if reuse is not None:
            _keep(model, reuse, (target, programs))
    if layout is not None:
        keys, starts = layout.place((keys, starts), (layout.spread, layout.spread))
    states = programs.init(keys, starts, target.params)
    _check_start(states)

    points = schedule.points(num_warmup, target.diagonal) if adapt == "flow" else []
    runner = _Runner(programs, log, schedule.every, num_warmup, num_samples,
                     scores=adapt == "flow")
    states, params = runner.warm_up(states, target.params, points, schedule, key_refit,
                                    adapt == "flow" and target.diagonal)
    if adapt == "flow" and num_warmup:
        states = programs.settle(states)
    states = runner.draw(states, params)
    idata = _inference_data(target, runner, log, adapt, num_chains,
                            time.perf_counter() - start)
    warn_divergences(idata.sample_stats["diverging"].values, REMEDIES[adapt])
    return idata


def _sampler_key(model: Model | Approximation, adapt: str, flow: Any, num_warmup: int,
                 num_chains: int, schedule: Schedule, nuts_kwargs: dict[str, Any],
                 layout: Layout | None) -> Hashable | None:
    """Everything a call's compiled programs depend on besides the model object itself
    (whose data they hold as constants: its arguments by identity), or None where
    nothing is reused (an Approximation, or an option that cannot be hashed). The seed,
    ``num_samples`` and, with ``adapt="flow"``, ``num_warmup`` are inputs, not part of
    the key."""
    if not isinstance(model, Model):
        return None
    key = (adapt, str(flow or DEFAULT_FLOW) if adapt == "flow" else None, num_chains,
           num_warmup if adapt == "diag" else num_warmup > 0, schedule,
           tuple(sorted(nuts_kwargs.items())),
           jax.default_backend() if layout is None else layout.key,
           jax.config.jax_enable_x64, model.fn, model.init_loc_fn,
           tuple(map(id, model.args)),
           tuple((name, id(value)) for name, value in sorted(model.kwargs.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _keep(model: Model, key: Hashable, entry: tuple[_Target, _Programs]) -> None:
    """Keep ``entry`` for the model's later calls, the oldest dropped beyond
    :data:`CACHED_SAMPLERS`."""
    model._samplers[key] = entry
    while len(model._samplers) > CACHED_SAMPLERS:
        del model._samplers[next(iter(model._samplers))]


def _check_arguments(model: object, num_warmup: int, num_samples: int, num_chains: int,
                     adapt: object, flow: object, seed: int, schedule: object,
                     nuts_kwargs: dict[str, Any]) -> Schedule:
    """Every argument checked before any work; returns the schedule to use."""
    if adapt not in ("flow", "diag"):
        raise ValueError(f"adapt must be 'flow' (learn a transport during warm-up) or 'diag' "
                         f"(NumPyro's diagonal mass matrix), got {adapt!r}")
    check_int(num_warmup, "num_warmup", minimum=0)
    check_int(num_samples, "num_samples", minimum=1)
    check_int(num_chains, "num_chains", minimum=1)
    check_int(seed, "seed")
    if not isinstance(model, Model | Approximation):
        raise TypeError(f"model must be a vi.Model or a fitted vi.Approximation, "
                        f"got {type(model).__name__}")
    if isinstance(model, Approximation):
        if not isinstance(model.guide, AutoFlow) or model.model is None:
            raise TypeError("an Approximation starts the transport only if it was fitted to a "
                            "model with a formula flow (an AutoFlow guide)")
        if flow is not None:
            raise ValueError("flow comes from the Approximation; leave flow=None")
        if adapt == "flow":
            check_invertible(model.guide.formula)
    elif flow is not None:
        if adapt == "diag":
            raise ValueError("flow is the transport of adapt='flow'; adapt='diag' uses none")
        check_invertible(flows.parse(flow))
    if schedule is not None and not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a vi.flow_adaptation.Schedule, "
                        f"got {type(schedule).__name__}")
    _check_nuts_kwargs(nuts_kwargs, adapt)
    return schedule or Schedule()


def _check_nuts_kwargs(nuts_kwargs: dict[str, Any], adapt: str) -> None:
    known = KERNEL_OPTIONS | (MASS_OPTIONS if adapt == "diag" else frozenset())
    mass = set(nuts_kwargs) & MASS_OPTIONS
    if adapt == "flow" and mass:
        raise TypeError(f"{sorted(mass)}: with adapt='flow' the learned transport is the "
                        "preconditioner and the mass matrix is the identity; these options "
                        "are for adapt='diag'")
    check_nuts_options(nuts_kwargs, known, "sample()")


def _target(model: Model | Approximation, adapt: str, flow: Any) -> _Target:
    """The guide (set up on the model), the transport and its initial parameters."""
    if isinstance(model, Approximation):
        guide = model.guide
        transport = Transport(guide.flow if adapt == "flow" else None, guide.latent_dim)
        flow_params = guide.flow_params(model.params) if adapt == "flow" else None
        return _Target(model.model, guide, transport, transport.identity(flow_params),
                       diagonal=False, n_grad_vi=int(model.n_grad_evals))
    formula = (flow or DEFAULT_FLOW) if adapt == "flow" else "loc"
    guide = AutoFlow(model.fn, formula, init_loc_fn=model.init_loc_fn, jitter=0.0)
    with handlers.block():
        handlers.seed(guide._setup_prototype, 0)(*model.args, **model.kwargs)
    dim = int(guide.latent_dim)
    transport = Transport(guide.flow if adapt == "flow" else None, dim)
    # jitter 0: F starts as the identity (hh as an isometry), so T is the diagonal map;
    # its parameters are traced here (with the caller's JAX settings) and compile (0.5 s
    # for the default flow at d=101) and run on the pool while the programs are traced
    flow_params = None
    if adapt == "flow":
        key = jax.random.key(0)
        lowered = jax.jit(partial(guide.flow.init, jitter=0.0)).lower(key)
        flow_params = call_async(lambda: lowered.compile(RUN_ONCE)(key))
    return _Target(model, guide, transport, transport.identity(flow_params),
                   diagonal=True, n_grad_vi=0)


def _started(target: _Target) -> _Target:
    """``target`` with its flow's initial parameters, once they are computed."""
    flow = target.params.flow
    if not isinstance(flow, Future):
        return target
    return target._replace(params=target.params._replace(flow=flow.result()))


def _initial_points(target: _Target, model: Model | Approximation, key: Array,
                    num_chains: int) -> Array:
    """Latent candidate starting points (chains, :data:`START_CANDIDATES`, D), of which
    the chains' ``init`` keeps the most probable: draws of the Approximation's base, or
    the model's initial point plus uniform noise (T starts as the identity)."""
    shape = (num_chains, START_CANDIDATES, target.guide.latent_dim)
    if isinstance(model, Approximation):
        z = jax.random.normal(key, shape)
        if target.transport.flow is not None:
            return z
        return jax.vmap(target.guide.get_transform(model.params))(z)
    return _uniform_start(key, jnp.asarray(target.guide._init_latent), shape[:2])


@partial(jax.jit, static_argnums=2, compiler_options=RUN_ONCE)
def _uniform_start(key: Array, centre: Array, shape: tuple[int, ...]) -> Array:
    """Points of ``shape + centre.shape``, uniform within ``INIT_RADIUS`` of ``centre``
    per coordinate, as one program (op by op, each operation would compile on its own)."""
    return centre + jax.random.uniform(key, (*shape, centre.shape[-1]), centre.dtype,
                                       minval=-INIT_RADIUS, maxval=INIT_RADIUS)


def _check_start(states: HMCState) -> None:
    energy = np.asarray(states.potential_energy)
    grads = np.asarray(states.z_grad)
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(grads))):
        raise ValueError("the log density or its gradient is not finite at the chains' "
                         "initial points; check the model or its initial point")


def _jit(fn: Callable[..., Any], layout: Layout | None, ins: tuple[Any, ...], out: Any
         ) -> Any:
    """``jax.jit(fn)``; with a ``layout``, its inputs and outputs placed by the shardings
    ``ins`` and ``out`` (the chains, the leading axis of states and records, across the
    layout's devices)."""
    if layout is None:
        return jax.jit(fn)
    return jax.jit(fn, in_shardings=ins, out_shardings=out)


def _param_shapes(target: _Target) -> TransportParams:
    """The transport's parameters, or their shapes while the flow's are still computing
    (lowering needs shapes only)."""
    if isinstance(target.params.flow, Future):
        return target.params._replace(flow=target.transport.flow.param_shapes)
    return target.params


def _start_refit(target: _Target, num_chains: int, schedule: Schedule, log: _Log,
                 layout: Layout | None) -> dict[str, Future]:
    """``{"refit": future}``: the re-fit (the largest program) lowered here and compiling
    on the pool, before the initial points are drawn and the NUTS programs traced: it
    needs the transport's shapes only. Lowering is timed as ``compile_time``."""
    start = time.perf_counter()
    refit = make_refit(target.transport, schedule.steps, schedule.batch,
                       schedule.learning_rate, schedule.eval_every, schedule.decay,
                       schedule.patience)
    one = None if layout is None else layout.replicated
    key = jax.eval_shape(lambda: jax.random.key(0))
    lowered = _jit(refit, layout, (one, one, one), one).lower(
        _param_shapes(target), _refit_shapes(schedule, num_chains, target.guide.latent_dim),
        key)
    log.times["compile_time"] += time.perf_counter() - start
    return {"refit": compile_async(lowered, options=on_cpu(REFIT_COMPILE))}


def _compile(target: _Target, adapt: str, num_warmup: int, num_chains: int,
             schedule: Schedule, nuts_kwargs: dict[str, Any], starts: Array, log: _Log,
             layout: Layout | None = None, started: dict[str, Future] | None = None
             ) -> _Programs:
    """Build and compile (ahead of time, timed as ``compile_time``) every program;
    with a ``layout``, the chains lie across its devices (everything else is
    replicated). ``started``: programs already compiling (:func:`_start_refit`),
    waited for with the others."""
    start = time.perf_counter()
    programs = _programs(target, adapt, num_warmup, schedule, nuts_kwargs)
    params = _param_shapes(target)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), num_chains))
    spread, one = (None, None) if layout is None else (layout.spread, layout.replicated)

    def jit(fn: Callable[..., Any], ins: tuple[Any, ...], out: Any) -> Any:
        return _jit(fn, layout, ins, out)

    # each program is traced once: its trace gives the shapes the next ones need
    init = jit(programs.init, (spread, spread, one), spread).trace(keys, starts, params)
    states = init.out_info
    threads = layout is None and jax.default_backend() == "cpu"
    if threads:  # one chain's program, run on a thread per chain (_ChainsOnThreads)
        chunk = jax.jit(programs.chunk).trace(jax.tree.map(_drop_chains, states), params,
                                              jnp.array(0), jnp.array(FLOW))
        records = jax.tree.map(partial(_add_chains, num_chains), chunk.out_info[1])
        split = jax.jit(partial(_split_chains, num_chains)).trace(states)
        stack = jax.jit(_stack_chains).trace((chunk.out_info,) * num_chains)
    else:
        chunk = jit(jax.vmap(programs.chunk, in_axes=(0, None, None, None)),
                    (spread, one, one, one), (spread, one)).trace(
            states, params, jnp.array(0), jnp.array(FLOW))
        records = chunk.out_info[1]
    lowered = {
        "init": init.lower,
        "chunk": chunk.lower,
        "push": lambda: jit(programs.push, (one, one), one).lower(params, records.y),
    }
    if threads:
        lowered.update(split=split.lower, stack=stack.lower)
    if adapt == "flow":
        lowered["move"] = lambda: jit(programs.move, (spread, one, one, one), spread).lower(
            states, params, params, jnp.array(FLOW))
        lowered["settle"] = lambda: jit(programs.settle, (spread,), spread).lower(states)
        if num_warmup:
            lowered["scores"] = lambda: jit(programs.scores, (one, one, one), one).lower(
                params, records.y, records.grad_y)
    # the biggest programs first, so that the two compile threads finish together
    order = ("chunk", "init", "move", "scores", "push", "split", "stack", "settle")
    # those that run once, or once a window, compile quicker without LLVM's
    # optimisations; the NUTS chunk runs long and gets lighter ones (on the 100-d
    # funnel: compiled in 1.3 s against 2.2 s, as fast), the re-fit has options of
    # its own (:data:`REFIT_COMPILE`)
    options = {name: on_cpu(ONCE_COMPILE) or RUN_ONCE
               for name in ("init", "move", "settle", "scores", "push", "split", "stack")}
    options["chunk"] = fast_compile()
    compiled = compile_all({name: lowered[name] for name in order if name in lowered},
                           options, started)
    if threads:
        compiled["chunk"] = _ChainsOnThreads(compiled["chunk"], compiled.pop("split"),
                                             compiled.pop("stack"))
    programs = programs._replace(**compiled)
    log.times["compile_time"] += time.perf_counter() - start
    return programs


def _drop_chains(shape: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
    """One chain's shape of a leaf whose leading axis is the chains."""
    return jax.ShapeDtypeStruct(shape.shape[1:], shape.dtype)


def _add_chains(num_chains: int, shape: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
    """The shape of ``num_chains`` chains' leaves stacked on a leading axis."""
    return jax.ShapeDtypeStruct((num_chains, *shape.shape), shape.dtype)


def _split_chains(num_chains: int, tree: Any) -> tuple[Any, ...]:
    """The chains of ``tree`` (leading axis) apart, as one program."""
    return tuple(jax.tree.map(lambda a, i=i: a[i], tree) for i in range(num_chains))


def _stack_chains(chains: tuple[Any, ...]) -> Any:
    """The chains' trees stacked on a leading axis, as one program."""
    return jax.tree.map(lambda *a: jnp.stack(a), *chains)


_CHAIN_THREADS = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                    thread_name_prefix="nfvi-chain")


class _ChainsOnThreads:
    """``chunk(states, params, n, phase)`` for the chains stacked on the leading axis,
    from a program compiled for one chain: each chain runs on a thread of its own, and
    the results are stacked again (``split`` and ``stack``: compiled programs, where
    indexing and stacking op by op compiled 0.7 s of small programs in a first call).

    On CPU the chains then run on as many cores, each as fast as alone, where the
    chains side by side in one program (``vmap``) run on one core in lockstep: each
    NUTS iteration waits for the chain with the longest tree, and both branches of
    every ``lax.cond`` run for both. On the 100-d funnel (2 chains x 128 draws, 2 CPU
    cores) a chunk took 0.09-0.22 s on threads against 0.26-0.59 s side by side, and
    the one-chain program traced in 0.06-0.08 s against 0.97-1.02 s (the batching of
    NUTS's loops and conds) and compiled in 2.6-3.0 CPU seconds against 3.1-3.4. The
    draws are the same as side by side's up to rounding: the chains share nothing. On
    an accelerator the chains stay side by side, one program for all of them.
    """

    def __init__(self, program: Callable[..., tuple[HMCState, _Record]],
                 split: Callable[[HMCState], tuple[HMCState, ...]],
                 stack: Callable[[tuple[Any, ...]], tuple[HMCState, _Record]]):
        self.program = program
        self.split = split
        self.stack = stack

    def __call__(self, states: HMCState, params: TransportParams, n: Array, phase: Array
                 ) -> tuple[HMCState, _Record]:
        def one(state: HMCState) -> tuple[HMCState, _Record]:
            return jax.block_until_ready(self.program(state, params, n, phase))

        return self.stack(tuple(_CHAIN_THREADS.map(one, self.split(states))))


def _programs(target: _Target, adapt: str, num_warmup: int, schedule: Schedule,
              nuts_kwargs: dict[str, Any]) -> _Programs:
    """The uncompiled programs (see :class:`_Programs`); ``chunk`` is one chain's
    (:func:`_compile` runs it on threads or maps it over the chains)."""
    transport = target.transport
    potential_x = flat_potential(target.model, target.guide)

    def potential_of(params: TransportParams) -> Callable[[Array], Array]:
        def potential(y: Array) -> Array:
            x, log_det = transport.forward(params, y)
            return potential_x(x) - log_det
        return potential

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_of, algo="NUTS")
    ss_init, ss_update = dual_averaging()
    ss_update_flow = dual_averaging(gamma=STEP_SIZE_GAMMA)[1]
    accept_target = float(nuts_kwargs.get("target_accept_prob", 0.8))
    own_step_size = adapt == "flow"
    kernel_options = dict(nuts_kwargs)
    if own_step_size:  # NumPyro adapts nothing; the step size is adapted below
        kernel_options.update(adapt_mass_matrix=False)

    def init(keys: Array, candidates: Array, params: TransportParams) -> HMCState:
        potential = potential_of(params)

        def one(key: Array, ys: Array) -> HMCState:
            # the candidate of lowest potential (NaN counts as +inf: never chosen first)
            energies = jax.vmap(potential)(ys)
            y = ys[jnp.argmin(jnp.where(jnp.isnan(energies), jnp.inf, energies))]
            return init_kernel(y, 0 if own_step_size else num_warmup, model_args=(params,),
                               rng_key=key, **kernel_options)
        return jax.vmap(one)(keys, candidates)

    def adapt_step_size(state: HMCState, phase: Array) -> HMCState:
        ss_state = lax.cond(phase == DIAGONAL, ss_update, ss_update_flow,
                            accept_target - state.accept_prob, state.adapt_state.ss_state)
        step_size = _clip_step(jnp.exp(ss_state[0]))
        return state._replace(adapt_state=state.adapt_state._replace(
            ss_state=ss_state, step_size=step_size))

    def transition(state: HMCState, params: TransportParams, phase: Array
                   ) -> tuple[HMCState, _Record]:
        state = sample_kernel(state, model_args=(params,))
        if own_step_size:
            state = lax.cond(phase != SAMPLING, lambda s: adapt_step_size(s, phase),
                             lambda s: s, state)
        return state, _record(state)

    def chunk(state: HMCState, params: TransportParams, n: Array, phase: Array
              ) -> tuple[HMCState, _Record]:
        # one chain: the first n of a chunk's transitions (the rest record blanks)
        def step(s: HMCState) -> tuple[HMCState, _Record]:
            return transition(s, params, phase)

        # a transition's record has the shapes of the state it records
        blank = jax.tree.map(jnp.zeros_like, _record(state))

        def body(s: HMCState, i: Array) -> tuple[HMCState, _Record]:
            return lax.cond(i < n, step, lambda s: (s, blank), s)

        return lax.scan(body, state, jnp.arange(schedule.every))

    def move(states: HMCState, old: TransportParams, new: TransportParams, phase: Array
             ) -> HMCState:
        def one(state: HMCState) -> HMCState:
            y = transport.inverse(new, transport.forward(old, state.z)[0])[0]
            energy, grad = jax.value_and_grad(potential_of(new))(y)
            # dual averaging restarts around 10x the step size in the diagonal phase
            # (Stan's rule), around the step size itself in the flow phase
            restart = jnp.where(phase == DIAGONAL, 10.0, 1.0) * state.adapt_state.step_size
            ss_state = ss_init(jnp.log(restart))
            return state._replace(z=y, potential_energy=energy, z_grad=grad,
                                  adapt_state=state.adapt_state._replace(ss_state=ss_state))
        return jax.vmap(one)(states)

    def settle(states: HMCState) -> HMCState:
        # the end of warm-up: the dual averaging's averaged step size (NumPyro's rule)
        step_size = _clip_step(jnp.exp(states.adapt_state.ss_state[1]))
        return states._replace(adapt_state=states.adapt_state._replace(step_size=step_size))

    def scores(params: TransportParams, y: Array, grad_y: Array) -> tuple[Array, Array]:
        one = partial(score_from_latent, transport, params)
        return jax.vmap(jax.vmap(one))(y, grad_y)

    def push(params: TransportParams, y: Array) -> Array:
        return jax.vmap(jax.vmap(lambda v: transport.forward(params, v)[0]))(y)

    return _Programs(init, chunk, scores, push, move, settle, None)


def _record(state: HMCState) -> _Record:
    """What a chunk keeps of the transition that ended at ``state``."""
    return _Record(state.z, state.z_grad, state.num_steps, state.accept_prob,
                   state.diverging, state.adapt_state.step_size, state.energy)


def _clip_step(step_size: Array) -> Array:
    finfo = jnp.finfo(jnp.result_type(step_size))
    return jnp.clip(step_size, finfo.tiny, finfo.max)


def _refit_shapes(schedule: Schedule, num_chains: int, dim: int) -> RefitData:
    """The fixed shapes of a re-fit's data, so that one compiled program serves all."""
    real = jax.dtypes.canonicalize_dtype(np.float64)  # float32 unless x64 is on
    train = jax.ShapeDtypeStruct((num_chains * (schedule.window - schedule.holdout), dim), real)
    held_out = jax.ShapeDtypeStruct((num_chains * schedule.holdout, dim), real)
    count = jax.ShapeDtypeStruct((), jax.dtypes.canonicalize_dtype(np.int64))
    return RefitData(train, train, count, held_out, held_out)


class _Runner:
    """Runs the chains window by window, keeping every record on the host."""

    def __init__(self, programs: _Programs, log: _Log, chunk_length: int, num_warmup: int,
                 num_samples: int, scores: bool):
        self.programs = programs
        self.log = log
        self.chunk_length = chunk_length
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.scores = scores
        self.warm: list[_Draws] = []
        self.kept: list[_Draws] = []

    def run(self, states: HMCState, params: TransportParams, n: int, phase: int
            ) -> HMCState:
        """n transitions of every chain, in chunks of the compiled length, adapting what
        ``phase`` says (:data:`SAMPLING`, :data:`DIAGONAL`, :data:`FLOW`); records hold
        x = T(y), and g = grad log p(x) in a warm-up that adapts the transport."""
        warm = phase != SAMPLING
        records = self.warm if warm else self.kept
        clock = "warmup_time" if warm else "sampling_time"
        for length in _chunks(n, self.chunk_length):
            states, record = self.log.timed(clock, self.programs.chunk, states, params,
                                            jnp.array(length), jnp.array(phase))
            if warm and self.scores:
                x, g = self.log.timed("training_time", self.programs.scores, params,
                                      record.y, record.grad_y)
            else:
                x = self.log.timed(clock, self.programs.push, params, record.y)
                g = jnp.zeros_like(x)
            draws = _Draws(x, g, *record[2:])
            records.append(jax.tree.map(lambda a, k=length: np.asarray(a[:, :k]), draws))
        return states

    def warm_up(self, states: HMCState, params: TransportParams,
                points: list[tuple[int, str]], schedule: Schedule, key: Array,
                diagonal: bool) -> tuple[HMCState, TransportParams]:
        """Warm-up, adapting the transport after t draws for each (t, kind) of ``points``:
        the draws before a diagonal adaptation are the diagonal phase (it starts the
        warm-up if ``diagonal``), the others the flow phase."""
        done = 0
        phase = DIAGONAL if diagonal else FLOW
        for (t, kind), sub in zip(points, jax.random.split(key, max(len(points), 1)),
                                  strict=False):
            phase = DIAGONAL if kind == "diag" else FLOW
            states = self.run(states, params, t - done, phase)
            done = t
            new = self._adapted(params, kind, t, schedule, sub)
            if new is not params:
                states = self.log.timed("training_time", self.programs.move, states, params,
                                        new, jnp.array(phase))
                params = new
                self.log.transport_updates += 1
        states = self.run(states, params, self.num_warmup - done, phase)
        return states, params

    def draw(self, states: HMCState, params: TransportParams) -> HMCState:
        return self.run(states, params, self.num_samples, SAMPLING)

    def _adapted(self, params: TransportParams, kind: str, t: int, schedule: Schedule,
                 key: Array) -> TransportParams:
        """The transport after the adaptation at draw t, or ``params`` itself if unchanged."""
        x, g = (np.concatenate(a, axis=1) for a in zip(*((d.x, d.g) for d in self.warm),
                                                          strict=True))
        if kind == "diag":
            start = time.perf_counter()
            loc, log_scale = diagonal_fit(_pool(x[:, t // 2:t]), _pool(g[:, t // 2:t]))
            self.log.times["training_time"] += time.perf_counter() - start
            if not (np.all(np.isfinite(loc)) and np.all(np.isfinite(log_scale))):
                return params
            return params._replace(loc=jnp.asarray(loc), log_scale=jnp.asarray(log_scale))
        data = _refit_data(x, g, t, schedule)
        if data is None:
            return params
        self.log.refits += 1
        best, before, after, held_out = self.log.timed("training_time", self.programs.refit,
                                                       params, data, key)
        self.log.refit_steps += schedule.eval_every * int((~np.isnan(held_out)).sum())
        self.log.fisher_loss = float(after)
        if not after < before:
            return params
        self.log.refits_kept += 1
        return best


def _chunks(n: int, length: int) -> Iterator[int]:
    """n split into pieces of at most ``length``."""
    while n > 0:
        yield min(n, length)
        n -= length


def _pool(a: np.ndarray) -> np.ndarray:
    """(chains, draws, D) -> (chains * draws, D)."""
    return a.reshape(-1, a.shape[-1])


def _refit_data(x: np.ndarray, g: np.ndarray, t: int, schedule: Schedule) -> RefitData | None:
    """Training and held-out draws of a re-fit after t draws per chain (None if there are
    fewer training draws per chain than held-out ones), padded to the compiled shapes."""
    start = max(schedule.burn_in, t - schedule.window)
    stop = t - schedule.holdout
    if stop - start < schedule.holdout:
        return None
    chains, _, dim = x.shape
    size = chains * (schedule.window - schedule.holdout)
    train_x, train_g = _pool(x[:, start:stop]), _pool(g[:, start:stop])
    pad = np.zeros((size - len(train_x), dim), train_x.dtype)
    return RefitData(jnp.asarray(np.concatenate([train_x, pad])),
                     jnp.asarray(np.concatenate([train_g, pad])), jnp.array(len(train_x)),
                     jnp.asarray(_pool(x[:, stop:t])), jnp.asarray(_pool(g[:, stop:t])))


def _concat(parts: list[_Draws]) -> _Draws:
    return _Draws(*(np.concatenate(a, axis=1) for a in zip(*parts, strict=True)))


def _stats(draws: _Draws) -> dict[str, np.ndarray]:
    num_steps = draws.num_steps
    return {
        "diverging": draws.diverging,
        "n_steps": num_steps,
        "tree_depth": np.floor(np.log2(np.maximum(num_steps, 1))).astype(int) + 1,
        "acceptance_rate": draws.accept_prob,
        "step_size": draws.step_size,
        "energy": draws.energy,
    }


def _inference_data(target: _Target, runner: _Runner, log: _Log, adapt: str,
                    num_chains: int, wall_time: float) -> az.InferenceData:
    kept = _concat(runner.kept)
    warm = _concat(runner.warm) if runner.warm else None
    leapfrog_warm = 0 if warm is None else int(warm.num_steps.sum(dtype=np.int64))
    n_grad = {
        "n_grad_warmup": num_chains * (1 + START_CANDIDATES) + leapfrog_warm,
        "n_grad_training": target.n_grad_vi + num_chains * log.transport_updates,
        "n_grad_sampling": int(kept.num_steps.sum(dtype=np.int64)),
    }
    attrs = {
        "adapt": adapt,
        "flow": "" if target.transport.flow is None else str(target.transport.flow.formula),
        **n_grad,
        "n_grad": sum(n_grad.values()),
        "divergences": int(kept.diverging.sum()),
        "warmup_divergences": 0 if warm is None else int(warm.diverging.sum()),
        "n_transport_updates": log.transport_updates,
        "n_refits": log.refits,
        "n_refits_kept": log.refits_kept,
        "n_refit_steps": log.refit_steps,
        "fisher_loss": log.fisher_loss,
        **log.times,
        "wall_time": wall_time,
        "inference_library": "nfvi.sample (numpyro NUTS)",
    }
    groups: dict[str, Any] = {
        "posterior": to_model_space(target.model, target.guide, kept.x),
        "sample_stats": _stats(kept),
    }
    if warm is not None:
        groups["warmup_posterior"] = to_model_space(target.model, target.guide, warm.x)
        groups["warmup_sample_stats"] = _stats(warm)
    import arviz as az  # 1.6 s to import: only where it is used

    return az.from_dict(**groups, save_warmup=warm is not None, attrs=attrs)
