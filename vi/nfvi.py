"""``NFVI``: fit a formula flow (or any NumPyro guide) by stochastic variational inference."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from numpyro.infer.elbo import ELBO
from tqdm.auto import tqdm

import flows
from flows import DEFAULT_JITTER
from guides import AutoFlow
from vi.approximation import Approximation
from vi.callbacks import Tracker, check_callback
from vi.elbo import logdensity_loss, model_log_density
from vi.loop import LoopState, init_state, make_chunk
from vi.model import Model

DEFAULT_LEARNING_RATE = 1e-2


class FitError(RuntimeError):
    """The fit could not go on (a long run of non-finite steps).

    ``approx`` holds the last finite parameters and the history so far.
    """

    def __init__(self, message: str, approx: Approximation | None):
        super().__init__(message)
        self.approx = approx


def default_optimizer(n: int) -> optax.GradientTransformation:
    """Adam, learning rate 1e-2 decayed over the ``n`` steps of the fit by a cosine
    to 1e-4: large steps to find the mass, small ones to stop the Monte-Carlo noise
    from dominating the end (lower final KL than a constant rate, REFERENCE.md)."""
    return optax.adam(optax.cosine_decay_schedule(DEFAULT_LEARNING_RATE, max(n, 1), alpha=0.01))


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class NFVI:
    """Normalizing-flow variational inference.

    ``NFVI("planar*10", model).fit(25_000)`` maximises the ELBO
    E_q[log p(x, y) - log q(x)] over the parameters of the flow q written by the
    formula (see :mod:`flows`), with an :class:`guides.AutoFlow` guide. In place of
    a formula, ``flow`` may be any NumPyro guide (an autoguide, a hand-written
    guide function): the same loop, callbacks and progress bar serve it.

    Args:
        flow: a formula, a parsed :class:`flows.Formula`, or a NumPyro guide.
        model: a :class:`vi.Model`; defaults to the innermost ``with Model(...)``.
        jitter: standard deviation of the random initial flow parameters.
        seed: seed of the initialisation and of the Monte-Carlo draws.
    """

    def __init__(self, flow: str | flows.Formula | Callable[..., Any] = "scale-loc",
                 model: Model | None = None, *, jitter: float = DEFAULT_JITTER, seed: int = 0):
        model = model if model is not None else Model.current()
        if model is None:
            raise ValueError("NFVI needs a model: pass NFVI(flow, model) or use it inside "
                             "`with Model(model_fn, *data):`")
        if not isinstance(model, Model):
            raise TypeError(f"model must be a vi.Model (wrap a NumPyro model function as "
                            f"Model(fn, *args, **kwargs)), got {type(model).__name__}")
        self.model = model
        if isinstance(flow, str | flows.Formula):
            self.guide: Callable[..., Any] = AutoFlow(
                model.fn, flow, jitter=jitter, init_loc_fn=model.init_loc_fn,
                init_scale=model.init_scale)
        elif callable(flow):
            self.guide = flow
        else:
            raise TypeError(f"flow must be a formula string or a NumPyro guide, got {flow!r}")
        self.seed = seed
        self.hist = np.zeros(0)
        self.approx: Approximation | None = None
        self._state: LoopState | None = None
        self._optimizer: optax.GradientTransformation | None = None
        self._n_grad_evals = 0

    def __repr__(self) -> str:
        guide = (str(self.guide.formula) if isinstance(self.guide, AutoFlow)
                 else type(self.guide).__name__)
        return f"NFVI({guide!r}, {self.model!r})"

    def _elbo(self, elbo: str | ELBO, n_mc: int) -> ELBO:
        if isinstance(elbo, ELBO):
            if n_mc != 1 and getattr(elbo, "num_particles", 1) != n_mc:
                raise ValueError("give the number of particles either as n_mc or in the ELBO "
                                 f"object, not both (n_mc={n_mc}, "
                                 f"ELBO num_particles={elbo.num_particles})")
            return elbo
        if elbo in ("trace", "stl"):
            if elbo == "stl" and not isinstance(self.guide, AutoFlow):
                raise ValueError("elbo='stl' (sticking the landing) needs an AutoFlow guide, "
                                 "whose log q it evaluates through the flow's inverse; got "
                                 f"{type(self.guide).__name__}: use elbo='trace'")
            return Trace_ELBO(num_particles=n_mc)
        if elbo == "meanfield":
            return TraceMeanField_ELBO(num_particles=n_mc)
        raise ValueError(f"elbo must be 'trace', 'meanfield', 'stl' or a numpyro ELBO, "
                         f"got {elbo!r}")

    def _init_params(self, keys: Array, elbo: ELBO) -> tuple[Any, Callable[[Any], Any]]:
        """Unconstrained initial parameters for each key, stacked, and the map to the
        constrained ones. The first init runs eagerly (it builds the guide's
        prototype); the rest are one vmapped call."""
        svi = SVI(self.model.fn, self.guide, optax.identity(), loss=elbo)
        args, kwargs = self.model.args, self.model.kwargs

        def unconstrained(key: Array) -> Any:
            state = svi.init(key, *args, **kwargs)
            if state.mutable_state is not None:
                raise ValueError("models with numpyro.mutable state are not supported")
            return svi.optim.get_params(state.optim_state)

        try:
            if getattr(self.guide, "prototype_trace", ()) is None:
                # Build the autoguide's prototype first, outside svi.init, so the
                # initial parameters do not depend on whether someone (the command
                # line, a user) already ran the guide once.
                with handlers.block():
                    handlers.seed(self.guide, keys[0])(*args, **kwargs)
            first = unconstrained(keys[0])
        except RuntimeError as err:
            if "valid initial parameters" not in str(err):
                raise
            raise ValueError(f"{self.model!r}: the log density or its gradient is not finite "
                             "at the initial point; check the model (or give another init "
                             "point: Model.from_logdensity(fn, dim, init=...))") from None
        if keys.shape[0] == 1:
            stacked = jax.tree.map(lambda a: a[None], first)
        else:
            stacked = jax.vmap(unconstrained)(keys)
        return stacked, svi.constrain_fn

    def fit(self, n: int = 10_000, optimizer: optax.GradientTransformation | None = None,
            n_mc: int = 1, elbo: str | ELBO = "trace", callbacks: Sequence[Any] = (),
            progress: bool = True, seed: int | None = None, restarts: int = 1,
            chunk: int = 1000, max_failures: int = 100) -> Approximation:
        """Run ``n`` optimisation steps; calling again continues (and appends to ``hist``).

        Args:
            n: number of steps.
            optimizer: an optax optimizer; default :func:`default_optimizer` (Adam
                1e-2 with a cosine decay over these ``n`` steps). A different
                optimizer on a later call starts its state afresh.
            n_mc: Monte-Carlo particles per step (vectorised).
            elbo: ``"trace"`` (Trace_ELBO), ``"meanfield"`` (TraceMeanField_ELBO,
                analytic KL terms where NumPyro has them), ``"stl"`` (the same
                estimate with the sticking-the-landing gradient, lower variance near
                a good fit; AutoFlow guides on models without ``numpyro.param`` or
                subsampling, see :mod:`vi.elbo`) or a NumPyro ELBO.
            callbacks: functions ``cb(approx, losses, i)`` called once per chunk;
                raising ``StopIteration`` stops the fit; :class:`vi.Tracker`
                records inside the compiled loop.
            progress: show a tqdm bar with the average loss of the last chunk.
            seed: overrides the seed of the Monte-Carlo draws of this call.
            restarts: fit this many independent initialisations side by side
                (vectorised) and keep the one with the best final ELBO; only on
                the first call.
            chunk: steps per compiled chunk (the host is touched once per chunk).
            max_failures: a run of this many consecutive non-finite steps stops
                the fit with :class:`FitError` (the last finite parameters are kept).

        Returns:
            The :class:`Approximation`; also kept as ``self.approx``. Ctrl-C
            returns what was fitted so far.
        """
        n = _positive_int(n, "n")
        n_mc = _positive_int(n_mc, "n_mc")
        restarts = _positive_int(restarts, "restarts")
        chunk = _positive_int(chunk, "chunk")
        max_failures = _positive_int(max_failures, "max_failures")
        elbo_obj = self._elbo(elbo, n_mc)
        particles = getattr(elbo_obj, "num_particles", 1)
        if optimizer is not None and not (hasattr(optimizer, "init")
                                          and hasattr(optimizer, "update")):
            raise TypeError(f"optimizer must be an optax GradientTransformation, "
                            f"got {type(optimizer).__name__}")
        callbacks = tuple(callbacks)
        for cb in callbacks:
            check_callback(cb)
        trackers = [cb for cb in callbacks if isinstance(cb, Tracker)]
        if len(trackers) > 1:
            raise ValueError("give at most one Tracker; it can track many quantities")
        if restarts > 1 and self._state is not None:
            raise ValueError("restarts apply to the first fit only; this NFVI continues "
                             "from its fitted state")

        tracker = trackers[0] if trackers else None
        every = tracker.every if tracker else None
        host_every = min([chunk, *(getattr(cb, "every", chunk) for cb in callbacks
                                   if not isinstance(cb, Tracker))])
        blocks, every = _chunk_shape(n, host_every, every)

        key = jax.random.key(self.seed if seed is None else seed)
        init_key, run_key = jax.random.split(key)
        optimizer = optimizer if optimizer is not None else default_optimizer(n)
        if self._state is None:
            params, constrain = self._init_params(jax.random.split(init_key, restarts), elbo_obj)
            self._constrain = constrain
            state = init_state(params, optimizer, jax.random.split(run_key, restarts))
        else:
            state = self._state
            if optimizer is not self._optimizer:
                state = init_state(state.params, optimizer, state.key)
        self._optimizer = optimizer

        model, guide, constrain = self.model, self.guide, self._constrain
        density = None
        if isinstance(guide, AutoFlow) and isinstance(elbo, str):
            # a flow has no analytic KL term, so every named ELBO is Trace_ELBO's
            # estimator; on a density over the flat latent vector it is written
            # directly and the fit loop's hot path skips NumPyro's tracing
            density = model.log_density or model_log_density(model, guide)
        if density is not None:
            loss_fn = logdensity_loss(guide, density, particles, stl=elbo == "stl")
        elif elbo == "stl":
            raise ValueError("elbo='stl' needs a model that is one density over its latent "
                             "sites: this one has a numpyro.param, a subsampled plate or "
                             "mutable state, which Trace_ELBO must trace; use elbo='trace'")
        else:
            def loss_fn(params: Any, rng: Array) -> Array:
                return elbo_obj.loss(rng, constrain(params), model.fn, guide,
                                     *model.args, **model.kwargs)

        measure = None
        if tracker is not None:
            def measure(params: Any, grads: Any) -> dict[str, Array]:
                return tracker.measure(constrain(params), grads)

        run = make_chunk(loss_fn, optimizer, blocks=blocks, every=every,
                         max_failures=max_failures, measure=measure)
        start = int(state.step[0])
        limit = jnp.asarray(start + n, jnp.int32)
        losses_all: list[np.ndarray] = []
        bar = tqdm(total=n, disable=not progress, dynamic_ncols=True)
        stop_message, failure = None, None
        length = blocks * every
        try:
            done = 0
            pending = run(state, limit)
            while done < n:
                state, losses, records = pending
                # Dispatch the next chunk before the host handles this one, so the
                # device never waits for the bar or the callbacks; if this chunk ends
                # the fit, that speculative chunk is simply dropped.
                pending = run(state, limit) if done + length < n else None
                losses = np.asarray(losses)
                steps_done = int(state.step[0]) - start
                taken = steps_done - done
                losses_all.append(losses[:, :taken])
                self._state = state
                best = _best_recent(losses_all) if restarts > 1 else 0
                if tracker is not None:
                    record_steps = start + done + every * np.arange(1, blocks + 1)
                    valid = record_steps <= start + steps_done
                    tracker.record(record_steps[valid],
                                   {k: np.asarray(v)[best][valid] for k, v in records.items()})
                done = steps_done
                bar.update(taken)
                bar.set_description(f"Average Loss = {_nanmean(losses[best, :taken]):.4g}")
                run_bad = int(np.max(np.asarray(state.run_skipped)))
                if run_bad >= max_failures:
                    raise FitError(
                        f"{run_bad} consecutive steps had a non-finite loss or gradient; "
                        f"the fit stopped at step {start + done} keeping the last finite "
                        "parameters (lower the learning rate, or check the model's density "
                        "for overflow)", None)
                if callbacks:
                    self.approx = self._approximation(state, best, losses_all, particles)
                    for cb in callbacks:
                        cb(self.approx, self.approx.hist, start + done)
                if pending is None and done < n:
                    pending = run(state, limit)
        except StopIteration as stop:
            stop_message = str(stop)
        except KeyboardInterrupt:
            stop_message = "interrupted; returning what was fitted so far"
        except FitError as err:
            failure = err
        finally:
            bar.close()
            if losses_all:
                self._finish(losses_all, particles)
        if failure is not None:
            failure.approx = self.approx
            raise failure
        if stop_message and progress:
            tqdm.write(f"NFVI stopped: {stop_message}")
        return self.approx

    def _approximation(self, state: LoopState, r: int, losses_all: list[np.ndarray],
                       particles: int) -> Approximation:
        """The approximation of restart ``r`` of ``state`` after ``losses_all``."""
        pending = np.concatenate(losses_all, axis=1)
        return Approximation(
            guide=self.guide, params=self._constrain(jax.tree.map(lambda a: a[r], state.params)),
            model=self.model, hist=np.concatenate([self.hist, pending[r]]),
            n_grad_evals=self._n_grad_evals + pending.size * particles,
            n_skipped=int(np.asarray(state.n_skipped)[r]))

    def _finish(self, losses_all: list[np.ndarray], particles: int) -> None:
        """End of a fit call: keep the best restart (by a precise ELBO when there are
        several) and fold this call's history into ``hist``."""
        state = self._state
        best = 0
        if state.step.shape[0] > 1:
            self.restart_elbos = np.array([
                Approximation(guide=self.guide, model=self.model, hist=np.zeros(0),
                              params=self._constrain(jax.tree.map(lambda a, r=r: a[r],
                                                                  state.params))
                              ).elbo(num_samples=1024, key=r)
                for r in range(state.step.shape[0])])
            best = int(np.argmax(np.where(np.isfinite(self.restart_elbos),
                                          self.restart_elbos, -np.inf)))
        self.approx = self._approximation(state, best, losses_all, particles)
        self._state = jax.tree.map(lambda a: a[best:best + 1], state)
        self.hist = self.approx.hist
        self._n_grad_evals = self.approx.n_grad_evals


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean of the finite entries; NaN (without a warning) where there are none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _best_recent(losses_all: list[np.ndarray]) -> int:
    """The restart with the lowest mean loss over its last 200 finite steps."""
    means = _nanmean(np.concatenate(losses_all, axis=1)[:, -200:], axis=1)
    return int(np.argmin(np.where(np.isnan(means), np.inf, means)))


def _chunk_shape(n: int, host_every: int, every: int | None) -> tuple[int, int]:
    """(blocks, every) with blocks * every the chunk length: about ``host_every``
    steps (fewer if ``n`` is smaller) and a multiple of the Tracker's ``every``."""
    length = min(host_every, n)
    if every is None:
        return 1, length
    return max(1, math.ceil(length / every)), every


class ADVI(NFVI):
    """Mean-field Gaussian VI: ``NFVI("scale-loc")``, q = N(mu, diag(sigma^2))."""

    def __init__(self, model: Model | None = None, **kwargs: Any):
        super().__init__("scale-loc", model, **kwargs)


class FullRankADVI(NFVI):
    """Full-rank Gaussian VI: ``NFVI("scale-hh*d-loc")`` with d the latent dimension,
    x = mu + H_d ... H_1 diag(sigma) z, which reaches every covariance."""

    def __init__(self, model: Model | None = None, **kwargs: Any):
        model = model if model is not None else Model.current()
        if model is None:
            raise ValueError("FullRankADVI needs a model: pass it or use `with Model(...)`")
        dim = _latent_dim(model)
        super().__init__(f"scale-hh*{dim}-loc", model, **kwargs)


def _latent_dim(model: Model) -> int:
    if model.dim is not None:
        return model.dim
    probe = AutoFlow(model.fn, "loc", init_loc_fn=model.init_loc_fn)
    from numpyro import handlers

    handlers.seed(probe, 0)(*model.args, **model.kwargs)
    return int(probe.latent_dim)
