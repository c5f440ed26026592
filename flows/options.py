"""Typed options of a flow step, as written in a formula: ``rqs(bins=8, hidden=64)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
