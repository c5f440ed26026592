"""Fitting a flow to samples by maximum likelihood (density estimation).

``fit_to_samples("(rqs-reverse)*4", x)`` finds parameters theta maximising the
average log q_theta(x_n) over a training split of the rows of ``x``, by minibatch
Adam, stopping when the log-likelihood of a held-out validation split has not
improved for ``patience`` epochs, and keeping the best parameters seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array, lax

from flows.bijection import Params
from flows.flow import DEFAULT_JITTER, Flow
from flows.formula import Formula, parse
from flows.options import check_int, check_number, check_shape


@dataclass(frozen=True)
class DensityFit:
    """A flow fitted to data, on the data's own scale.

    The flow is fitted to standardised data u = (x - mean) / std (per coordinate),
    so the model is x = mean + std * f(z), z ~ N(0, I), and
    log p(x) = log q_flow((x - mean) / std) - sum_i log std_i.

    Attributes:
        flow: the :class:`~flows.Flow` (acting on standardised data).
        params: its fitted parameters (those of the best validation epoch).
        mean, std: the standardisation, each of shape (dim,).
        history: per-epoch mean negative log-likelihoods, ``"train"`` and
            ``"validation"`` (nats per sample, on the data's scale).
        best_epoch: the epoch whose parameters were kept (0-based).
    """

    flow: Flow
    params: Params
    mean: Array
    std: Array
    history: dict[str, np.ndarray] = field(repr=False)
    best_epoch: int = 0

    def log_prob(self, x: Array) -> Array:
        """log p(x) for x of shape (..., dim)."""
        return _log_prob(self.flow, self.params, self.mean, self.std, jnp.asarray(x))

    def sample(self, key: Array, n: int | tuple[int, ...]) -> Array:
        """Draws x = mean + std * f(z), z ~ N(0, I), of shape (n, dim) (or ``n + (dim,)``)."""
        if isinstance(n, tuple | list):
            shape = check_shape(n, "n")
        else:
            shape = (check_int(n, "n", minimum=1),)
        u, _ = self.flow.sample_and_log_prob(self.params, key, shape)
        return self.mean + self.std * u


def _log_prob(flow: Flow, params: Params, mean: Array, std: Array, x: Array) -> Array:
    return flow.log_prob(params, (x - mean) / std) - jnp.sum(jnp.log(std))


def fit_to_samples(formula: str | Formula, x: Any, *, seed: int = 0,
                   max_epochs: int = 200, batch_size: int = 256,
                   learning_rate: float = 1e-3,
                   optimizer: optax.GradientTransformation | None = None,
                   validation: float = 0.1, patience: int = 10,
                   jitter: float = DEFAULT_JITTER) -> DensityFit:
    """Fit the flow ``formula`` to the rows of ``x`` (shape (n, dim)) by maximum likelihood.

    The rows are shuffled once (``seed``); a fraction ``validation`` is held out.
    Each epoch reshuffles the training rows and takes floor(n_train / batch_size)
    optimizer steps on -mean log q(batch) under one jitted ``lax.scan``; then
    the validation negative log-likelihood is computed. Fitting stops after
    ``max_epochs`` or when that has not improved for ``patience`` epochs; the
    parameters of the best validation epoch are returned (with ``validation=0``
    the training loss decides instead). A step whose loss or gradient is not
    finite is skipped (``optax.apply_if_finite``).

    Args:
        formula: a flow formula; every step needs an inverse (all built-in ones
            have one; ``maf`` is the cheap direction for density).
        x: data, shape (n, dim), finite.
        optimizer: an optax transformation; default ``optax.adam(learning_rate)``.

    Returns:
        a :class:`DensityFit` with ``log_prob``, ``sample``, ``params``, ``history``.
    """
    formula = parse(formula)
    data = np.asarray(x, dtype=np.float32)
    if data.ndim != 2 or data.shape[1] < 1:
        raise ValueError(f"x must be a 2-D array of shape (n, dim), got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("x contains NaN or infinite values; remove those rows first")
    if not 0.0 <= check_number(validation, "validation") < 1.0:
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation!r}")
    for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size),
                        ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    check_int(seed, "seed")
    check_number(learning_rate, "learning_rate", positive=True)
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer must be an optax GradientTransformation or None, "
                        f"got {type(optimizer).__name__}")
    n, dim = data.shape
    n_val = round(validation * n)
    n_train = n - n_val
    if n_train < 2 or (validation > 0 and n_val < 1):
        raise ValueError(f"{n} rows are too few to split with validation={validation}")
    flow = Flow(formula, dim)
    if not flow.has_inverse:
        raise ValueError(f"{flow!r} has a step without an inverse, so it has no log_prob")

    rng = np.random.default_rng(seed)
    data = data[rng.permutation(n)]
    train, held = jnp.asarray(data[:n_train]), jnp.asarray(data[n_train:])
    mean = jnp.mean(train, axis=0)
    std = jnp.std(train, axis=0)
    std = jnp.where(std > 0, std, 1.0)
    batch_size = min(batch_size, n_train)
    n_batches = n_train // batch_size

    opt = optax.apply_if_finite(optimizer or optax.adam(learning_rate), 20)
    key, init_key = jax.random.split(jax.random.key(seed))
    params = flow.init(init_key, jitter)
    opt_state = opt.init(params)

    def loss(p: Params, batch: Array) -> Array:
        return -jnp.mean(_log_prob(flow, p, mean, std, batch))

    @jax.jit
    def epoch(p: Params, state: Any, k: Array) -> tuple[Params, Any, Array]:
        order = jax.random.permutation(k, n_train)[:n_batches * batch_size]
        batches = train[order].reshape(n_batches, batch_size, dim)

        def step(carry: tuple[Params, Any], batch: Array) -> tuple[tuple[Params, Any], Array]:
            p, state = carry
            value, grads = jax.value_and_grad(loss)(p, batch)
            updates, state = opt.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), value

        (p, state), values = lax.scan(step, (p, state), batches)
        return p, state, jnp.mean(values)

    validate = jax.jit(loss)
    history: dict[str, list[float]] = {"train": [], "validation": []}
    best, best_params, best_epoch, waited = np.inf, params, 0, 0
    for i in range(max_epochs):
        key, k = jax.random.split(key)
        params, opt_state, train_loss = epoch(params, opt_state, k)
        history["train"].append(float(train_loss))
        score = float(validate(params, held)) if n_val else float(train_loss)
        history["validation"].append(score if n_val else np.nan)
        if score < best:
            best, best_params, best_epoch, waited = score, params, i, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return DensityFit(flow, best_params, mean, std,
                      {k: np.asarray(v) for k, v in history.items()}, best_epoch)
