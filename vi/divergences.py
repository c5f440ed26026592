"""A warning where NUTS's draws diverged: the check of MCMC output that costs nothing.

A transition diverges when the leapfrog integrator's energy error grows past NumPyro's
bound (1000) inside a trajectory: the step size cannot follow the curvature there, so
the chain enters that region less often than the posterior does, and expectations
weighted toward it (the neck of a funnel, a scale near zero) are biased, however many
draws there are (Betancourt 2017, "A conceptual introduction to Hamiltonian Monte
Carlo", on divergences). The draws are still returned; the warning says how many diverged
and what to change. R-hat and effective sample sizes need the whole posterior and
cost time, so they are left to ``arviz.summary(idata)``.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["DivergenceWarning", "warn_divergences"]


class DivergenceWarning(UserWarning):
    """Some of the returned draws came from divergent transitions (see
    :func:`warn_divergences`); silence it with
    ``warnings.simplefilter("ignore", vi.DivergenceWarning)``."""


def warn_divergences(diverging: np.ndarray, remedies: str, stacklevel: int = 3) -> int:
    """Warn with :class:`DivergenceWarning` if any transition of ``diverging`` (chains x
    draws, booleans, the draws kept after warm-up) diverged: how many, of how many, in
    which chains, and ``remedies`` (what the caller's function offers against them).
    Returns the number of divergent transitions."""
    diverging = np.asarray(diverging, dtype=bool)
    total = int(diverging.sum())
    if total:
        per_chain = " / ".join(str(int(n)) for n in diverging.sum(axis=1))
        warnings.warn(
            f"{total} of the {diverging.size} draws came from divergent transitions "
            f"(per chain: {per_chain}); expectations over where the sampler diverged may "
            f"be biased. {remedies}", DivergenceWarning, stacklevel=stacklevel)
    return total
