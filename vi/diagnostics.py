r"""A fit that grades itself: Pareto-smoothed importance sampling (PSIS) of q against p.

For draws x_i ~ q, i = 1..S, the log importance ratios are

.. math:: \log w_i = \log p(x_i, y) - \log q(x_i),

whose mean is the ELBO. The right tail of the ratios w_i tells how well q covers
the posterior: PSIS fits a generalised Pareto distribution to the largest ratios,
and its shape k-hat estimates how many moments w has (1/k of them). With
k-hat < 0.5 the weights have finite variance and q is close to p; below the
threshold min(1 - 1/log10 S, 0.7) (0.7 for S >= 2,154 draws) importance
resampling with the smoothed weights gives usable posterior expectations; above
it the tail is so heavy that no reweighting of q can be trusted, and q must be
improved (or replaced by exact MCMC). ``arviz.psislw`` computes k-hat and the
smoothed weights.

References:
    Yao, Vehtari, Simpson & Gelman (2018), "Yes, but did it work?: evaluating
    variational inference", ICML.
    Vehtari, Simpson, Gelman, Yao & Gabry (2024), "Pareto smoothed importance
    sampling", JMLR 25(72) (first circulated 2015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from jax import Array

# Below this many draws the Pareto fit of the tail is meaningless (the threshold
# 1 - 1/log10 S falls to 0.5 at S = 100).
MIN_SAMPLES = 100


def khat_threshold(num_samples: int) -> float:
    r"""The largest k-hat at which PSIS estimates are reliable with S draws:
    min(1 - 1 / log10 S, 0.7) (Vehtari et al. 2024, section 3)."""
    return min(1.0 - 1.0 / math.log10(num_samples), 0.7)


@dataclass(frozen=True, repr=False)
class Diagnosis:
    r"""How good a variational approximation q is, from S fresh draws x_i ~ q.

    Attributes:
        khat: PSIS k-hat, the Pareto shape of the ratios w_i = p(x_i, y) / q(x_i)
            (``arviz.psislw``); ``inf`` when no tail could be fitted.
        elbo, elbo_se: the mean of log w_i over the finite terms, and its
            Monte-Carlo standard error sd / sqrt(n).
        ess: the effective sample size of the smoothed normalised weights w~,
            1 / sum(w~_i^2), out of the ``num_samples`` draws.
        num_samples: S, the draws made.
        n_nonfinite: draws whose log w was not finite (left out of everything).
        usable: k-hat below :func:`khat_threshold` (0.7 for S >= 2,154).
        verdict: one sentence: k-hat against the threshold, and what to do.
        log_weights: the PSIS-smoothed normalised log weights of the finite draws.
        draws: those draws (an array (n, dim), or a dict site -> (n, ...)), or
            ``None`` when the weights came without them (a guide that is not a flow).

    References:
        Yao et al. (2018), "Yes, but did it work?: evaluating variational inference";
        Vehtari et al. (2024), "Pareto smoothed importance sampling".
    """

    khat: float
    elbo: float
    elbo_se: float
    ess: float
    num_samples: int
    n_nonfinite: int
    usable: bool
    verdict: str
    log_weights: np.ndarray = field(compare=False)
    draws: Array | dict[str, Array] | None = field(default=None, compare=False)

    @classmethod
    def from_log_weights(cls, log_weights: np.ndarray, draws: Array | dict[str, Array] | None
                         = None, *, formula: str | None = None, dim: int | None = None
                         ) -> Diagnosis:
        r"""Grade q from the log ratios log w_i = log p(x_i, y) - log q(x_i), x_i ~ q.

        Non-finite log w_i are left out (and counted); k-hat and the smoothed
        weights come from ``arviz.psislw`` on the rest. ``draws`` (leading axis S)
        are kept for :meth:`resample`; ``formula`` and ``dim`` (the flow's) make
        the advice of a failed verdict concrete.
        """
        log_weights = np.asarray(log_weights, dtype=np.float64)
        if log_weights.ndim != 1 or len(log_weights) < MIN_SAMPLES:
            raise ValueError(f"need a vector of at least {MIN_SAMPLES} log weights, got shape "
                             f"{log_weights.shape}")
        finite = np.isfinite(log_weights)
        kept = log_weights[finite]
        num_samples, n_kept = len(log_weights), len(kept)
        if n_kept >= 2:
            import arviz as az  # 1.6 s to import: only where it is used

            with np.errstate(over="ignore"):  # arviz's Pareto fit overflows harmlessly
                smoothed, khat = az.psislw(kept)
            khat = float(khat)
            elbo, se = float(kept.mean()), float(kept.std(ddof=1) / math.sqrt(n_kept))
            ess = float(1.0 / np.sum(np.exp(2.0 * smoothed)))
        else:
            smoothed, khat, elbo, se, ess = np.zeros(n_kept), math.inf, math.nan, math.nan, 0.0
        threshold = khat_threshold(num_samples)
        usable = khat < threshold
        verdict = _verdict(khat, threshold, formula, dim, can_resample=draws is not None)
        if n_kept < num_samples:
            verdict += (f" {num_samples - n_kept:,} of {num_samples:,} draws had a non-finite "
                        "log p - log q and were left out.")
        if draws is not None and n_kept < num_samples:
            draws = jax.tree.map(lambda a: a[finite], draws)
        return cls(khat=khat, elbo=elbo, elbo_se=se, ess=ess, num_samples=num_samples,
                   n_nonfinite=num_samples - n_kept, usable=usable, verdict=verdict,
                   log_weights=smoothed, draws=draws)

    def resample(self, n: int, key: Array | int) -> Array | dict[str, Array]:
        r"""n draws with replacement from the stored draws, with probabilities the
        smoothed weights w~_i (sampling-importance-resampling): approximately draws
        from p, as far as :attr:`usable` says."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if self.draws is None:
            raise ValueError("this diagnosis kept no draws to resample (its weights came "
                             "from Trace_ELBO, for a guide that is not a flow)")
        if len(self.log_weights) == 0:
            raise ValueError("no draw has a finite weight: nothing to resample")
        key = jax.random.key(key) if isinstance(key, int) else key
        p = np.exp(self.log_weights)
        index = jax.random.choice(key, len(p), (n,), replace=True, p=p / p.sum())
        return jax.tree.map(lambda a: a[index], self.draws)

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs, as :meth:`__str__` prints them."""
        return [
            ("k-hat", f"{self.khat:.2f}  (PSIS Pareto shape of p/q; usable below "
                      f"{khat_threshold(self.num_samples):.2g})"),
            ("ELBO", f"{self.elbo:.4f} ± {self.elbo_se:.4f}  (Monte-Carlo s.e.)"),
            ("ESS", f"{self.ess:,.0f} of {self.num_samples:,} draws  (importance weights)"),
            ("verdict", self.verdict),
        ]

    def __str__(self) -> str:
        width = max(len(label) for label, _ in self.rows())
        return "\n".join(f"{label:<{width}}  {value}" for label, value in self.rows())

    def __repr__(self) -> str:
        state = "usable" if self.usable else "not usable"
        return (f"<Diagnosis k-hat {self.khat:.2f}, ELBO {self.elbo:.4f} ± {self.elbo_se:.4f}, "
                f"ESS {self.ess:,.0f}/{self.num_samples:,}: {state}>")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython and Jupyter show the table rather than the one-line repr
        printer.text(str(self))


def _verdict(khat: float, threshold: float, formula: str | None, dim: int | None, *,
             can_resample: bool) -> str:
    """The verdict sentence (Yao et al. 2018, section 2: k < 0.5 good, k < 0.7 usable
    with PSIS, above: q is not close enough for importance sampling to repair it).
    The threshold is at least 0.5, as S >= MIN_SAMPLES."""
    how = " (sample(n, resample=True))" if can_resample else ""
    if khat < 0.5:
        return (f"k-hat {khat:.2f} < {threshold:.2g}: usable; q is close to the posterior "
                f"(k-hat < 0.5), and importance resampling{how} removes most of its "
                "remaining bias.")
    if khat < threshold:
        return (f"k-hat {khat:.2f} < {threshold:.2g}: usable with importance resampling{how}; "
                "raw draws from q are biased (k-hat > 0.5).")
    if formula is None:
        richer = "a richer guide"
    elif formula == "scale-loc" and dim is not None and dim > 1:
        richer = "a richer formula (e.g. 'affine-loc', full rank, or 'auto')"
    else:
        richer = f"a richer formula than '{formula}' (more or more flexible steps)"
    return (f"k-hat {khat:.2f} >= {threshold:.2g}: not usable; q misses posterior mass that "
            f"importance weights cannot restore. Fit {richer}, fit more steps, or draw exact "
            "samples with vi.neutra(approx), NUTS on the target pulled back through q.")
