"""Checking the plain data the plot functions take, and flattening draws into columns.

Every plot takes numbers, not fitted objects, so it works with anything: NumPy or JAX
arrays, NumPyro sample dicts, ArviZ InferenceData. Bad input is refused here with a
message that says what was wrong, before holoviews does any work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def real_array(value: Any, name: str, *, ndim: int | None = None) -> np.ndarray:
    """``value`` as a float64 array, refusing non-numeric data and a wrong rank."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be an array of real numbers; got {type(value).__name__}"
        ) from err
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; there is nothing to plot")
    return array


def flatten_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into one level, joining keys with ``/``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_tree(value, prefix=f"{name}/"))
        else:
            flat[name] = value
    return flat


def _named_draws(samples: Any) -> dict[str, np.ndarray]:
    """Draws as ``name -> array (n, ...)``, from an array, a dict or InferenceData."""
    posterior = getattr(samples, "posterior", None)
    if posterior is not None:
        # ArviZ InferenceData: variables are (chain, draw, ...); stack the chains.
        return {
            str(name): (values := np.asarray(var.values)).reshape(-1, *values.shape[2:])
            for name, var in posterior.data_vars.items()
        }
    if isinstance(samples, Mapping):
        return {str(name): np.asarray(value) for name, value in samples.items()}
    array = np.asarray(samples)
    if array.ndim not in (1, 2):
        raise ValueError(
            f"samples as an array must be (n,) or (n, d); got shape {array.shape}. "
            "Pass a dict name -> (n, ...) array for draws of other shapes."
        )
    return {"x": array}


def columns(samples: Any, vars: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Every scalar coordinate of the draws as its own column of length n.

    ``samples`` is an (n,) or (n, d) array, a dict ``name -> (n, ...)`` (NumPyro's
    ``get_samples()`` or ``Predictive`` output) or an ArviZ InferenceData (its
    posterior group, chains stacked). A variable of shape (n, 2, 3) gives the
    columns ``name[0,0]`` ... ``name[1,2]``. ``vars`` keeps only the named
    variables or columns, in the given order.
    """
    draws = _named_draws(samples)
    if not draws:
        raise ValueError("samples hold no variables; there is nothing to plot")
    out: dict[str, np.ndarray] = {}
    for name, value in draws.items():
        value = real_array(value, f"samples[{name!r}]")
        if value.ndim == 0:
            raise ValueError(f"samples[{name!r}] is a scalar; draws must lie along axis 0")
        if value.ndim == 1:
            out[name] = value
            continue
        flat = value.reshape(value.shape[0], -1)
        for j, index in enumerate(np.ndindex(*value.shape[1:])):
            out[f"{name}[{','.join(map(str, index))}]"] = flat[:, j]
    lengths = {name: len(col) for name, col in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"all variables need the same number of draws; got {lengths}")
    if vars is None:
        return out
    if isinstance(vars, str):
        vars = [vars]
    chosen: dict[str, np.ndarray] = {}
    for var in vars:
        hits = {k: v for k, v in out.items() if k == var or k.split("[")[0] == var}
        if not hits:
            raise ValueError(f"no variable {var!r} in the samples; they hold {sorted(draws)}")
        chosen.update(hits)
    return chosen
