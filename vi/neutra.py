"""NeuTra MCMC: NUTS on the target pulled back through a fitted flow.

A fitted guide carries the base N(0, I_D) to (roughly) the posterior over the
flattened unconstrained latent vector x by a bijection T. Sampling the pulled-back
density

    p(z) ∝ pi(T(z)) |det J_T(z)|,      U(z) = U_x(T(z)) - log|det J_T(z)|,

with NUTS and mapping the draws through T is exact whatever the quality of T; a good
T only makes p nearly standard normal, so NUTS needs short trajectories and no
divergences (Hoffman et al. 2019, "NeuTra-lizing bad geometry in Hamiltonian Monte
Carlo using neural transport", arXiv:1903.03704). Optionally, every ``k`` NUTS
transitions are followed by an independence proposal z' ~ N(0, I)
(:mod:`vi.global_moves`), which lets chains jump between modes, and with ``refit`` the
flow is re-fitted to the chains' states between warm-up windows (:mod:`vi.refit`).

The chains are a ``lax.scan`` over transitions of NumPyro's NUTS kernel, vectorised
over chains with ``vmap`` (or run one after the other with ``lax.map``); the host is
touched once for warm-up and once for sampling.
"""

from __future__ import annotations

import difflib
import inspect
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from numpyro.infer import NUTS
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.hmc import HMCState
from numpyro.infer.util import constrain_fn

from flows.options import check_int, check_number
from guides import AutoFlow
from vi.devices import chain_layout, resolve_devices
from vi.divergences import warn_divergences
from vi.elbo import flat_potential
from vi.global_moves import independence_mh, no_move
from vi.refit import refit_flow

if TYPE_CHECKING:
    import arviz as az

__all__ = ["neutra", "pulled_back_potential", "to_model_space"]

_RESERVED_NUTS_KWARGS = frozenset({"model", "potential_fn", "init_strategy"})


class _Draw(NamedTuple):
    """What is kept from each transition of each chain."""

    z: Array
    num_steps: Array
    accept_prob: Array
    diverging: Array
    step_size: Array
    potential_energy: Array
    global_proposed: Array
    global_accepted: Array


REMEDIES = ("Fit the flow better (more steps, a richer formula: a divergence-free run "
            "needs T to make the pulled-back target near N(0, I) where the chains go), "
            "or raise target_accept_prob (0.9, 0.95: a smaller step size).")
"""What ``neutra``'s divergence warning suggests (:mod:`vi.divergences`)."""


def pulled_back_potential(approx: Any, params: dict[str, Any] | None = None
                          ) -> Callable[[Array], Array]:
    """The potential of the target pulled back to the flow's latent space.

    U(z) = -log pi(T(z)) - log|det J_T(z)|, where pi is the model's density over its
    flattened unconstrained latent vector (NumPyro's ``potential_energy``: the log
    joint plus the log-Jacobians of the support bijections) and T is
    ``approx.guide.get_transform(approx.params)``.

    Args:
        approx: an ``Approximation`` (``.guide``, an initialised NumPyro
            ``AutoContinuous`` guide; ``.params``; ``.model`` with ``.fn``, ``.args``,
            ``.kwargs``).
        params: the guide's parameters to use instead of ``approx.params``.

    Returns:
        A function from a latent vector of shape ``(guide.latent_dim,)`` to U(z).
    """
    _check_approximation(approx)
    guide = approx.guide
    transform = guide.get_transform(approx.params if params is None else params)
    model_potential = flat_potential(approx.model, guide)

    def potential(z: Array) -> Array:
        x, intermediates = transform.call_with_intermediates(z)
        log_det = transform.log_abs_det_jacobian(z, x, intermediates=intermediates)
        if jnp.ndim(log_det) == jnp.ndim(z):  # an elementwise transform: sum the event
            log_det = jnp.sum(log_det, axis=-1)
        return model_potential(x) - log_det

    return potential


def neutra(
    approx: Any,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 2,
    global_every: int | None = None,
    seed: int = 0,
    *,
    init_latent: Array | None = None,
    chain_method: Literal["vectorized", "sequential"] = "vectorized",
    refit: int = 0,
    refit_steps: int = 500,
    refit_lr: float = 1e-2,
    devices: Sequence[jax.Device] | None = None,
    **nuts_kwargs: Any,
) -> az.InferenceData:
    """NeuTra NUTS: NUTS on the pulled-back target, draws returned in the model's space.

    Runs NumPyro's NUTS on U(z) = U_x(T(z)) - log|det J_T(z)| (see
    :func:`pulled_back_potential`), with the usual windowed adaptation of step size
    and diagonal mass matrix during warm-up. With ``global_every=k``, after every
    k-th NUTS transition (warm-up included) an independence Metropolis-Hastings
    proposal z' ~ N(0, I) is made, accepted with probability
    min(1, exp(-U(z') + U(z) - log q(z') + log q(z))); this keeps the chain exact
    and lets it cross between modes.

    Each draw z is mapped to x = T(z), unpacked into the model's sites and
    constrained (deterministic sites are recomputed).

    With ``refit=r`` (an :class:`~guides.AutoFlow` guide only), warm-up is split into
    r + 1 windows of equal length, each with its own adaptation; after each of the
    first r, the flow is re-fitted by maximum likelihood to all chains' states of
    that window (:func:`vi.refit.refit_flow`, flowMC's training step), the chains
    carry on from the same points of the model's space (z' = T'^{-1}(T(z))), and
    NUTS continues on the target pulled back through the new flow. This spreads a
    mode-seeking variational fit over every region the chains found, so that global
    proposals reach them. The kept draws use the last flow.

    Gradient evaluations are counted as NUTS leapfrog steps (the sum of ``n_steps``
    over chains and transitions) plus one per global proposal; training is
    ``approx.n_grad_evals`` (0 if absent). Re-fitting uses no gradient of the target.

    Args:
        approx: an ``Approximation`` with an ``AutoContinuous`` guide (see
            :func:`pulled_back_potential`).
        num_warmup: warm-up (adaptation) transitions per chain, >= 0.
        num_samples: kept transitions per chain, >= 1.
        num_chains: independent chains, >= 1.
        global_every: make an independence proposal after every ``k``-th NUTS
            transition; None for none.
        seed: seed of the chains' random keys and of their initial points.
        init_latent: initial latent points, shape ``(num_chains, latent_dim)``;
            default: draws from the base N(0, I).
        chain_method: ``"vectorized"`` (``vmap`` over chains) or ``"sequential"``.
        refit: re-fit the flow this many times during warm-up (0: never).
        refit_steps, refit_lr: full-batch Adam steps and rate of each re-fit.
        devices: the devices the chains lie across (``"vectorized"`` chains; default:
            all of them when ``num_chains`` is a multiple of their number, else one
            device); the flow is replicated (:mod:`vi.devices`).
        **nuts_kwargs: passed to ``numpyro.infer.NUTS`` (``target_accept_prob``,
            ``dense_mass``, ``max_tree_depth``, ...).

    Warns:
        vi.DivergenceWarning: if any kept transition diverged (:mod:`vi.divergences`).

    Returns:
        An ArviZ ``InferenceData`` with groups ``posterior``, ``sample_stats``
        (``diverging``, ``n_steps``, ``acceptance_rate``, ``step_size``,
        ``tree_depth``, ``global_proposed``, ``global_accepted``) and their
        ``warmup_`` twins. ``attrs`` holds ``n_grad_training``, ``n_grad_warmup``,
        ``n_grad_sampling``, ``global_acceptance_rate`` (sampling phase; NaN without
        global moves), ``n_refits`` and the wall times ``compile_time``,
        ``warmup_time`` (re-fits included), ``sampling_time`` (seconds).

    References:
        Hoffman, Sountsov, Dillon, Langmore, Tran & Vasudevan (2019), arXiv:1903.03704.
        Gabrié, Rotskoff & Vanden-Eijnden (2022), PNAS 119, e2109420119.
    """
    _check_counts(num_warmup, num_samples, num_chains, global_every)
    check_int(seed, "seed")
    if chain_method not in ("vectorized", "sequential"):
        raise ValueError(f"chain_method must be 'vectorized' or 'sequential', got {chain_method!r}")
    devices = resolve_devices(devices)
    layout = chain_layout(devices, num_chains) if chain_method == "vectorized" else None
    if chain_method == "sequential" and devices is not None and len(devices) > 1:
        raise ValueError("chain_method='sequential' runs the chains one after the other on "
                         "one device: use 'vectorized' to spread them over devices")
    _check_nuts_kwargs(nuts_kwargs)
    _check_approximation(approx)
    guide = approx.guide
    _check_refit(guide, refit, refit_steps, refit_lr, num_warmup)
    dim = guide.latent_dim
    key_init, key_chains = jax.random.split(jax.random.key(seed))
    if init_latent is None:
        init_latent = guide.get_base_dist().sample(key_init, (num_chains,))
    init_latent = jnp.asarray(init_latent)
    if init_latent.shape != (num_chains, dim):
        raise ValueError(
            f"init_latent must have shape (num_chains, latent_dim) = {(num_chains, dim)}, "
            f"got {init_latent.shape}"
        )
    if not np.all(np.isfinite(np.asarray(init_latent))):
        raise ValueError("init_latent must be finite: NUTS cannot start from NaN or inf; "
                         "give finite points or leave it None (draws from N(0, I))")

    windows = _windows(num_warmup, refit) or [0]  # one empty window without warm-up
    keys = jax.random.split(key_chains, len(windows))
    params, z = approx.params, init_latent
    times = {"compile_time": 0.0, "warmup_time": 0.0, "sampling_time": 0.0}
    warm_x: list[Array] = []
    warm_draws: list[_Draw] = []
    for w, length in enumerate(windows):
        last = w == len(windows) - 1
        init, run = _chains(approx, params, global_every, chain_method, nuts_kwargs,
                            None if layout is None else layout.spread)
        start = time.perf_counter()
        if layout is not None:
            z = layout.place(z, layout.spread)
        states = init(keys[w], z, length)
        # compiled ahead of time so that the reported phase times are sampling only
        lengths = {length, num_samples} if last else {length}
        compiled = {n: run.lower(states, n).compile() for n in lengths if n > 0}
        times["compile_time"] += time.perf_counter() - start
        if length == 0:
            continue
        start = time.perf_counter()
        states, draws = jax.block_until_ready(compiled[length](states))
        transform = _pushforward(guide, params)
        warm_x.append(transform(draws.z))
        warm_draws.append(draws)
        if not last:  # re-fit, and carry the chains over at the same x
            x_now = transform(states.z[:, None])[:, 0]
            params, _ = refit_flow(guide, params, warm_x[-1].reshape(-1, dim),
                                   refit_steps, refit_lr)
            z = guide.flow.inverse(guide.flow_params(params), x_now)[0]
        times["warmup_time"] += time.perf_counter() - start
    start = time.perf_counter()
    states, draws = jax.block_until_ready(compiled[num_samples](states))
    times["sampling_time"] = time.perf_counter() - start
    x = _pushforward(guide, params)(draws.z)

    warm = _concat(warm_draws) if warm_draws else None
    attrs = {
        "n_grad_training": int(getattr(approx, "n_grad_evals", 0) or 0),
        "n_grad_warmup": _grad_count(warm),
        "n_grad_sampling": _grad_count(draws),
        "global_every": 0 if global_every is None else global_every,
        "global_acceptance_rate": _global_rate(draws),
        "n_refits": len(warm_draws) - 1 if warm_draws else 0,
        **times,
        "inference_library": "nfvi.neutra (numpyro NUTS)",
    }
    groups: dict[str, Any] = {
        "posterior": to_model_space(approx.model, guide, x),
        "sample_stats": _sample_stats(draws),
    }
    if warm is not None:
        groups["warmup_posterior"] = to_model_space(approx.model, guide,
                                                    jnp.concatenate(warm_x, axis=1))
        groups["warmup_sample_stats"] = _sample_stats(warm)
    import arviz as az  # 1.6 s to import: only where it is used

    idata = az.from_dict(**groups, save_warmup=warm is not None, attrs=attrs)
    warn_divergences(np.asarray(draws.diverging), REMEDIES)
    return idata


def _chains(
    approx: Any,
    params: dict[str, Any],
    global_every: int | None,
    chain_method: str,
    nuts_kwargs: dict[str, Any],
    spread: Any = None,
) -> tuple[Callable[[Array, Array, int], HMCState], Any]:
    """``init(key, z, num_warmup)``: the chains' NUTS states at latent points ``z``
    (chains, D); ``run(states, length)``: ``length`` transitions of every chain (jitted,
    ``length`` static), returning the new states and the :class:`_Draw` records.
    ``spread``, a sharding, lays the chain axis of both across devices."""
    potential = pulled_back_potential(approx, params)
    base = approx.guide.get_base_dist()
    kernel = NUTS(potential_fn=potential, **nuts_kwargs)
    potential_and_grad = jax.value_and_grad(potential)

    def init(key: Array, z: Array, num_warmup: int) -> HMCState:
        keys = jax.random.split(key, z.shape[0])
        return jax.jit(jax.vmap(lambda k, z0: kernel.init(k, num_warmup, z0, (), {})),
                       out_shardings=spread)(keys, z)

    def transition(state: HMCState, _: None) -> tuple[HMCState, _Draw]:
        state = kernel.sample(state, (), {})
        draw_stats = (state.num_steps, state.accept_prob, state.diverging)
        step_size = state.adapt_state.step_size
        if global_every is None:
            state, move = no_move(state)
        else:
            state, move = lax.cond(
                state.i % global_every == 0,
                lambda s: independence_mh(s, potential_and_grad, base),
                no_move,
                state,
            )
        return state, _Draw(state.z, *draw_stats, step_size, state.potential_energy, *move)

    def run_chain(state: HMCState, length: int) -> tuple[HMCState, _Draw]:
        return lax.scan(transition, state, None, length=length)

    @partial(jax.jit, static_argnums=1, out_shardings=spread)
    def run(states: HMCState, length: int) -> tuple[HMCState, _Draw]:
        one_chain = partial(run_chain, length=length)
        if chain_method == "vectorized":
            return jax.vmap(one_chain)(states)
        return lax.map(one_chain, states)

    return init, run


def _pushforward(guide: AutoContinuous, params: dict[str, Any]) -> Callable[[Array], Array]:
    """z -> x = T(z) for latent draws of shape (chains, draws, D), compiled."""
    return jax.jit(jax.vmap(jax.vmap(guide.get_transform(params))))


def _windows(num_warmup: int, refit: int) -> list[int]:
    """Warm-up split into refit + 1 windows, as equal as can be ([] without warm-up)."""
    if num_warmup == 0:
        return []
    n = refit + 1
    return [num_warmup // n + (i < num_warmup % n) for i in range(n)]


def _concat(parts: list[_Draw]) -> _Draw:
    """Records of consecutive windows, joined along the draw axis."""
    return jax.tree.map(lambda *a: jnp.concatenate(a, axis=1), *parts)


def _grad_count(draws: _Draw | None) -> int:
    """Leapfrog steps plus one gradient per global proposal, over all chains."""
    if draws is None:
        return 0
    leapfrog = np.asarray(draws.num_steps).sum(dtype=np.int64)
    return int(leapfrog + np.asarray(draws.global_proposed).sum())


def _global_rate(draws: _Draw) -> float:
    proposed = int(np.sum(draws.global_proposed))
    return float(np.sum(draws.global_accepted) / proposed) if proposed else float("nan")


def _sample_stats(draws: _Draw) -> dict[str, np.ndarray]:
    num_steps = np.asarray(draws.num_steps)
    return {
        "diverging": np.asarray(draws.diverging),
        "n_steps": num_steps,
        "tree_depth": np.floor(np.log2(np.maximum(num_steps, 1))).astype(int) + 1,
        "acceptance_rate": np.asarray(draws.accept_prob),
        "step_size": np.asarray(draws.step_size),
        "global_proposed": np.asarray(draws.global_proposed),
        "global_accepted": np.asarray(draws.global_accepted),
    }


def to_model_space(model: Any, guide: AutoContinuous, x: Array) -> dict[str, np.ndarray]:
    """Flat unconstrained latents x (chains, draws, D) of an (already set up) guide -> the
    constrained sites of ``model`` (``.fn``, ``.args``, ``.kwargs``), deterministic ones too."""
    values = constrain_fn(
        model.fn,
        tuple(model.args),
        dict(model.kwargs),
        guide._unpack_latent(x),
        return_deterministic=True,
        batch_ndims=2,
    )
    return {name: np.asarray(v) for name, v in values.items()}


def _check_counts(
    num_warmup: int, num_samples: int, num_chains: int, global_every: int | None
) -> None:
    for name, value, least in (
        ("num_warmup", num_warmup, 0),
        ("num_samples", num_samples, 1),
        ("num_chains", num_chains, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if global_every is not None and (
        isinstance(global_every, bool)
        or not isinstance(global_every, int | np.integer)
        or global_every < 1
    ):
        raise ValueError(
            f"global_every must be None (no global moves) or an integer >= 1, got {global_every!r}"
        )


def check_nuts_options(nuts_kwargs: dict[str, Any], known: set[str] | frozenset[str],
                       caller: str) -> None:
    """Refuse names outside ``known`` (a typo, or an option of another function such as
    fit's ``n_mc``; with a did-you-mean) and a ``target_accept_prob`` outside (0, 1),
    before any work. ``caller`` names the function in the message."""
    unknown = sorted(set(nuts_kwargs) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"{caller} got unknown argument(s) {unknown}: besides its own, it "
                        f"takes only the NUTS options {sorted(known)}{hint}")
    accept = check_number(nuts_kwargs.get("target_accept_prob", 0.8), "target_accept_prob")
    if not 0 < accept < 1:
        raise ValueError(f"target_accept_prob must be a probability strictly between 0 and 1 "
                         f"(NUTS's default is 0.8), got {accept!r}")


def _check_nuts_kwargs(nuts_kwargs: dict[str, Any]) -> None:
    """Refuse what neutra() sets itself, and anything NUTS does not take."""
    reserved = _RESERVED_NUTS_KWARGS.intersection(nuts_kwargs)
    if reserved:
        raise TypeError(f"neutra() builds the NUTS target itself; do not pass {sorted(reserved)}")
    known = set(inspect.signature(NUTS.__init__).parameters) - {"self"} - _RESERVED_NUTS_KWARGS
    check_nuts_options(nuts_kwargs, known, "neutra()")


def _check_refit(guide: Any, refit: int, steps: int, lr: float, num_warmup: int) -> None:
    if isinstance(refit, bool) or not isinstance(refit, int | np.integer) or refit < 0:
        raise ValueError(f"refit must be an integer >= 0, got {refit!r}")
    if not refit:
        return
    if not isinstance(guide, AutoFlow):
        raise ValueError("refit needs an AutoFlow guide (a flow it can fit by maximum "
                         f"likelihood, with an inverse); got {type(guide).__name__}")
    if num_warmup < 2 * (refit + 1):
        raise ValueError(f"refit={refit} splits warm-up into {refit + 1} windows: give "
                         f"num_warmup >= {2 * (refit + 1)}, got {num_warmup}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"refit_steps must be an integer >= 1, got {steps!r}")
    if not (isinstance(lr, int | float) and lr > 0):
        raise ValueError(f"refit_lr must be a positive number, got {lr!r}")


def _check_approximation(approx: Any) -> None:
    missing = [a for a in ("guide", "params", "model") if not hasattr(approx, a)]
    if missing:
        raise TypeError(
            "expected a fitted Approximation (with .guide, .params, .model); "
            f"{type(approx).__name__} lacks {missing}"
        )
    guide = approx.guide
    if not isinstance(guide, AutoContinuous):
        raise TypeError(
            "NeuTra needs an AutoContinuous guide (a transform of N(0, I) over the flattened "
            f"latent vector, e.g. AutoFlow, AutoIAFNormal); got {type(guide).__name__}"
        )
    if not hasattr(guide, "latent_dim"):
        raise ValueError(
            "the guide has not been initialised: fit it (or run SVI.init) before neutra()"
        )
    for a in ("fn", "args", "kwargs"):
        if not hasattr(approx.model, a):
            raise TypeError(f"approx.model must have .fn, .args and .kwargs; it lacks .{a}")
