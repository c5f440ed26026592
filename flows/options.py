"""Typed options of a flow step, as written in a formula: ``rqs(bins=8, hidden=64)``,
and the same checks for the numbers, counts and shapes that functions take as arguments."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

KINDS = (int, float, bool, str)


@dataclass(frozen=True)
class Option:
    """One option a step accepts.

    Attributes:
        kind: ``int``, ``float``, ``bool`` or ``str``.
        default: value used when the formula does not give one.
        doc: one line for ``nfvi flows`` and error messages.
        minimum, maximum: inclusive bounds for numbers.
        choices: allowed words for ``str`` options.
    """

    kind: type
    default: Any
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TypeError(f"Option kind must be one of int, float, bool, str, "
                            f"got {self.kind!r}")

    def convert(self, raw: int | float | str) -> Any:
        """Check and convert a parsed literal; raise ``ValueError`` saying what is wrong."""
        if self.kind is bool:
            if raw in ("true", "false"):
                return raw == "true"
            if raw in (0, 1):
                return bool(raw)
            raise ValueError(f"expected true or false, got {raw!r}")
        if self.kind is str:
            if not isinstance(raw, str):
                raise ValueError(f"expected a word, got the number {raw!r}")
            if self.choices is not None and raw not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}, got {raw!r}")
            return raw
        if isinstance(raw, str):
            raise ValueError(f"expected a number, got the word {raw!r}")
        if self.kind is int:
            if isinstance(raw, float):
                raise ValueError(f"expected an integer, got {raw!r}")
            value: int | float = raw
        else:
            value = float(raw)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.minimum:g}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.maximum:g}, got {value!r}")
        return value


JITTER = Option(float, None, "standard deviation of this step's random initial parameters",
                minimum=0.0)
"""Accepted by every step: overrides the flow-wide ``jitter`` for that step."""


def _real(value: object) -> float | None:
    """``value`` as a float if it is a concrete real number (a 0-d array too), else None."""
    if isinstance(value, bool | np.bool_) or isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray | jax.Array) and value.shape == () and (
            np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
        return float(value)
    return None


def check_number(value: object, name: str, *, minimum: float | None = None,
                 positive: bool = False) -> float:
    """``value`` as a float; a ``TypeError`` naming ``name`` unless it is a real number, a
    ``ValueError`` unless it is finite and >= ``minimum`` (> 0 when ``positive``)."""
    what = ("positive number" if positive else "non-negative number" if minimum == 0
            else "number" if minimum is None else f"number >= {minimum:g}")
    number = _real(value)
    if number is None:
        raise TypeError(f"{name} must be a {what}, got {value!r} ({type(value).__name__})")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a {what}, got {value!r}; give a finite value")
    if (positive and number <= 0) or (minimum is not None and number < minimum):
        raise ValueError(f"{name} must be a {what}, got {value!r}")
    return number


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """``value`` as an int; a ``TypeError`` naming ``name`` unless it is an integer (not a
    bool), a ``ValueError`` if it is below ``minimum``."""
    what = ("an integer" if minimum is None else "a positive integer" if minimum == 1
            else f"an integer >= {minimum}")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_shape(value: object, name: str) -> tuple[int, ...]:
    """``value`` as a shape tuple: a ``TypeError`` naming ``name`` unless it is a tuple (or
    list) of non-negative integers such as ``(n,)``."""
    if not isinstance(value, tuple | list) or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0
            for n in value):
        raise TypeError(f"{name} must be a shape, a tuple of non-negative integers such as "
                        f"(1000,), got {value!r}")
    return tuple(int(n) for n in value)
