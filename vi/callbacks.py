"""Callbacks of the fit loop: ``cb(approx, losses, i)``, called once per compiled chunk.

``losses`` is the whole loss history so far (a NumPy array, one value per step)
and ``i`` the number of steps done. Raising ``StopIteration`` stops the fit. A
callback with an ``every`` attribute is called at least every ``every`` steps
(the loop shortens its chunks to match); the :class:`Tracker` instead records
inside the compiled loop, so it never slows it down.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import numpy as np
from jax import Array

from flows.options import check_int, check_number


def check_callback(cb: object) -> None:
    """Raise ``TypeError`` unless ``cb`` can be called as ``cb(approx, losses, i)``."""
    if not callable(cb):
        raise TypeError(f"callback {cb!r} is not callable; a callback is cb(approx, losses, i)")
    try:
        inspect.signature(cb).bind(None, None, 0)
    except TypeError:
        raise TypeError(f"callback {cb!r} must accept three arguments (approx, losses, i), "
                        f"its signature is {inspect.signature(cb)}") from None
    except ValueError:  # builtins without a signature: let them be
        pass


class Tracker:
    """Record named quantities, the parameters and their gradients during a fit.

    ``Tracker(every=100, mean=lambda p: p["auto_2_loc_mu"])`` evaluates each named
    function of the (constrained) parameter dict every ``every`` steps *inside the
    compiled loop* (so the functions must be JAX-traceable), together with the
    parameters (``params=True``) and the gradients of the loss with respect to the
    unconstrained parameters at that step (``grads=True``) and their global norm
    ``grad_norm`` = sqrt(sum_j g_j^2).

    After the fit, ``tracker["mean"]`` is an array with one row per record,
    ``tracker.steps`` the step numbers, ``tracker.history`` a dict name -> array
    (``params/<site>``, ``grads/<site>``, ``grad_norm`` and the named quantities).
    With ``restarts``, the records are those of the restart that is kept.
    """

    def __init__(self, every: int = 100, *, params: bool = True, grads: bool = True,
                 **quantities: Callable[[Mapping[str, Array]], Array]):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"Tracker every must be a positive integer, got {every!r}")
        for flag, value in (("params", params), ("grads", grads)):
            if not isinstance(value, bool):
                raise TypeError(f"Tracker {flag} must be True or False, got {value!r}")
        for name, fn in quantities.items():
            if not callable(fn):
                raise TypeError(f"Tracker quantity {name!r} must be a function of the "
                                f"parameter dict, got {type(fn).__name__}")
        if grads and "grad_norm" in quantities:
            raise ValueError("Tracker quantity name 'grad_norm' is taken by the gradients' norm "
                             "(grads=True): give your quantity another name")
        self.every = every
        self.params = params
        self.grads = grads
        self.quantities = quantities
        self._steps: list[np.ndarray] = []
        self._records: list[dict[str, np.ndarray]] = []

    def __call__(self, approx: Any, losses: np.ndarray, i: int) -> None:
        """Nothing to do on the host: recording happens inside the compiled loop."""

    def measure(self, params: Mapping[str, Array], grads: Mapping[str, Array]
                ) -> dict[str, Array]:
        """What is recorded at one step (traced inside the loop)."""
        out: dict[str, Array] = {name: fn(params) for name, fn in self.quantities.items()}
        if self.params:
            out |= {f"params/{k}": v for k, v in params.items()}
        if self.grads:
            out |= {f"grads/{k}": v for k, v in grads.items()}
            out["grad_norm"] = jax.numpy.sqrt(sum(jax.numpy.sum(g * g)
                                                  for g in jax.tree.leaves(grads)))
        return out

    def record(self, steps: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
        """Append a chunk's records (called by the loop)."""
        self._steps.append(np.asarray(steps))
        self._records.append({k: np.asarray(v) for k, v in values.items()})

    @property
    def steps(self) -> np.ndarray:
        """Step numbers (1-based counts of steps done) of the records."""
        return np.concatenate(self._steps) if self._steps else np.zeros(0, int)

    @property
    def history(self) -> dict[str, np.ndarray]:
        """Every recorded quantity, stacked over records."""
        if not self._records:
            return {}
        return {k: np.concatenate([r[k] for r in self._records]) for k in self._records[0]}

    def __getitem__(self, name: str) -> np.ndarray:
        history = self.history
        if name not in history:
            raise KeyError(f"{name!r} was not tracked; tracked: {sorted(history)}")
        return history[name]


def _flat(params: Mapping[str, Any]) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(v)) for _, v in sorted(params.items())])


class CheckParametersConvergence:
    """Stop when the parameters stop moving (PyMC3's criterion).

    Every ``every`` steps, with theta the flattened parameters and theta' their
    value ``every`` steps before, it stops the fit if ||delta||_ord < tolerance, where
    delta = |theta - theta'| (``diff="absolute"``) or
    delta = (|theta - theta'| + eps) / (|theta'| + eps) (``diff="relative"``, eps = 1e-6).
    """

    def __init__(self, every: int = 100, tolerance: float = 1e-3,
                 diff: Literal["relative", "absolute"] = "relative", ord: float = np.inf):
        if diff not in ("relative", "absolute"):
            raise ValueError(f"diff must be 'relative' or 'absolute', got {diff!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        check_number(tolerance, "tolerance", positive=True)
        if isinstance(ord, bool) or not isinstance(ord, numbers.Real):
            raise TypeError(f"ord must be the order of a vector norm, a number such as 1, 2 or "
                            f"np.inf, got {ord!r}")
        if math.isnan(ord):
            raise ValueError("ord must be the order of a vector norm such as 1, 2 or np.inf, "
                             "got nan")
        self.every, self.tolerance, self.diff, self.ord = every, tolerance, diff, ord
        self._previous: np.ndarray | None = None
        self.last_norm: float | None = None

    def __call__(self, approx: Any, losses: np.ndarray, i: int) -> None:
        current = _flat(approx.params)
        previous, self._previous = self._previous, current
        if previous is None:
            return
        delta = np.abs(current - previous)
        if self.diff == "relative":
            delta = (delta + 1e-6) / (np.abs(previous) + 1e-6)
        self.last_norm = float(np.linalg.norm(delta, self.ord))
        if self.last_norm < self.tolerance:
            raise StopIteration(f"parameters converged: |delta|_{self.ord} = "
                                f"{self.last_norm:.3g} < {self.tolerance:g}")


class EarlyStopping:
    """Stop when the smoothed loss has not improved for ``patience`` steps.

    The smoothed loss at step t is the mean of the last ``window`` losses; the fit
    stops once the best smoothed loss is older than ``patience`` steps, where
    "better" means lower by more than ``min_delta``.
    """

    def __init__(self, patience: int = 2000, window: int = 200, min_delta: float = 0.0):
        self.patience = check_int(patience, "patience", minimum=1)
        self.window = check_int(window, "window", minimum=1)
        self.min_delta = check_number(min_delta, "min_delta", minimum=0)
        self.every = max(1, min(self.patience, self.window))
        self._best = np.inf
        self._best_step = 0

    def __call__(self, approx: Any, losses: np.ndarray, i: int) -> None:
        if len(losses) < self.window:
            return
        smoothed = float(np.nanmean(losses[-self.window:]))
        if smoothed < self._best - self.min_delta:
            self._best, self._best_step = smoothed, i
        elif i - self._best_step >= self.patience:
            raise StopIteration(f"no improvement of the smoothed loss for {i - self._best_step} "
                                f"steps (best {self._best:.4g})")
