"""The registry of flow steps: a new flow is one :func:`register` call."""

from __future__ import annotations

from typing import TypeVar

from flows.bijection import Bijection

B = TypeVar("B", bound="type[Bijection]")

_FLOWS: dict[str, type[Bijection]] = {}
_ALIASES: dict[str, str] = {}


def register(cls: B) -> B:
    """Register a :class:`~flows.bijection.Bijection` subclass under ``cls.name``.

    Its ``aliases`` resolve to the same step (``householder`` is ``hh``). Usable as
    a class decorator. Registering a name that another class already holds is an
    error; re-registering the same class is a no-op.
    """
    if not (isinstance(cls, type) and issubclass(cls, Bijection)):
        raise TypeError(f"register takes a subclass of flows.Bijection, got {cls!r}")
    names = (cls.name, *cls.aliases)
    for name in names:
        if not name.isidentifier() or name != name.lower():
            raise ValueError(f"flow name {name!r} must be a lower-case identifier")
        holder = _FLOWS.get(_ALIASES.get(name, name))
        if holder is not None and holder is not cls:
            raise ValueError(f"flow name {name!r} is already taken by {holder.__name__}")
    _FLOWS[cls.name] = cls
    for name in names:
        _ALIASES[name] = cls.name
    return cls


def canonical_name(name: str) -> str | None:
    """The registered name for ``name`` or one of its aliases; ``None`` if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"a flow name is a string such as 'planar', got {name!r}")
    return _ALIASES.get(name.lower())


def lookup(name: str) -> type[Bijection]:
    """The step class registered as ``name`` (or an alias). Raises ``KeyError`` if unknown."""
    canonical = canonical_name(name)
    if canonical is None:
        raise KeyError(f"{name!r} is not a registered flow; available: {available()}")
    return _FLOWS[canonical]


def known_names() -> list[str]:
    """Every registered name and alias."""
    return sorted(_ALIASES)


def available() -> tuple[str, ...]:
    """The registered step names (aliases excluded), sorted."""
    return tuple(sorted(_FLOWS))
