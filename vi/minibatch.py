"""Minibatch indices drawn in O(B), whatever the data's size N.

A model with ``numpyro.plate("data", N, subsample_size=B)`` scales the likelihood
of the B rows it is given by N / B, so that

    E[(N / B) sum_{j=1..B} f(x_{i_j})] = sum_{i=1..N} f(x_i)

for indices i_j uniform on {0, ..., N-1}: the ELBO estimate stays unbiased. NumPyro
draws the B indices without replacement, which costs O(N) work a step whatever B
(on CPU a scan of B swaps over an ``arange(N)``, elsewhere a permutation of N), so a
step on 10^7 rows costs far more than one on 10^4. Drawn independently (with
replacement) each index is one ``randint``: O(B). The estimate is unbiased either
way; with replacement its variance is larger by the factor (N - 1) / (N - B), at
most 1.11 where it is used (B <= N / 10). Where B > N / 10 the B rows are drawn
without replacement as the B largest of N uniform keys (``lax.top_k``), O(N log B)
with N < 10 B: the cost of a step depends on B alone in both cases. The indices go
into the model (and a guide that has the plate) through ``handlers.substitute`` on
the plate's site, inside the compiled step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax import Array
from numpyro import handlers

MAX_FRACTION = 0.1
"""Largest B / N for which indices are drawn with replacement (beyond: without)."""


def is_subsampled(site: Mapping[str, Any]) -> bool:
    """Whether a trace site (or handler message) is a plate that subsamples (B < N)."""
    return site["type"] == "plate" and site["args"][1] not in (None, site["args"][0])


def subsampled_plates(trace: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``{name: (N, B)}`` for every plate of a model trace that subsamples (B < N)."""
    return {name: (int(site["args"][0]), int(site["args"][1]))
            for name, site in trace.items() if is_subsampled(site)}


def draw_indices(key: Array, plates: Mapping[str, tuple[int, int]]) -> dict[str, Array]:
    """B uniform indices in {0, ..., N-1} for each plate ``{name: (N, B)}``:
    independent where B <= ``MAX_FRACTION`` N, otherwise B distinct ones."""
    keys = jax.random.split(key, max(len(plates), 1))
    indices = {}
    for k, (name, (n, b)) in zip(keys, plates.items(), strict=False):
        if b <= MAX_FRACTION * n:
            indices[name] = jax.random.randint(k, (b,), 0, n)
        else:
            indices[name] = jax.lax.top_k(jax.random.uniform(k, (n,)), b)[1]
    return indices


def with_indices(fn: Callable[..., Any], indices: Mapping[str, Array]) -> Callable[..., Any]:
    """``fn`` (a model or guide) whose subsampled plates use ``indices``."""
    return handlers.substitute(fn, data=dict(indices))
