"""``Model``: a NumPyro model bound to its data, or an unnormalised log density."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array
from numpyro.infer.initialization import init_to_value

from guides.autoflow import init_to_finite_mean


class Model:
    """A NumPyro model function with the arguments it is called with.

    ``Model(linear_regression, x, y=y)`` binds the data; inference then calls
    ``fn(*args, **kwargs)``. A model is also a context manager, so PyMC3's idiom
    works::

        with Model(linear_regression, x, y=y):
            approx = NFVI("scale-hh*2-loc").fit(10_000)

    Attributes:
        fn, args, kwargs: the model and its bound arguments.
        dim: the vector dimension for :meth:`from_logdensity` models, else ``None``.
        log_density: the wrapped function for :meth:`from_logdensity` models.
        init_loc_fn: the NumPyro init strategy guides start from.
        init_scale: the initial sigma of a flow's ``scale`` step: ``None`` for a
            NumPyro model (the guide's default, 0.1, as posteriors are narrow; or
            the recipe's for ``"auto"``), 1 for a log density (targets are given on
            their own scale, like the 2-D test energies).
    """

    _stack: ClassVar[list[Model]] = []

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        if not callable(fn):
            raise TypeError(f"Model needs a NumPyro model function, got {type(fn).__name__}")
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.dim: int | None = None
        self.log_density: Callable[[Array], Array] | None = None
        self.site = None
        self.init_loc_fn: Callable[..., Any] = init_to_finite_mean()
        self.init_scale: float | None = None
        self.name = getattr(fn, "__name__", "model")
        # programs ``vi.sample`` compiled for this model, by the settings they depend
        # on, for its later calls (vi.flow_adaptation: at most CACHED_SAMPLERS)
        self._samplers: dict[Hashable, Any] = {}

    @classmethod
    def from_logdensity(cls, fn: Callable[[Array], Array], dim: int, *, name: str = "x",
                        init: Array | None = None) -> Model:
        """Wrap an unnormalised log density log p(x) of a vector x in R^dim.

        The model has one improper flat site ``name`` of shape ``(dim,)`` and a
        ``numpyro.factor`` adding log p(x); its unconstrained latent space is x
        itself. Guides start at ``init`` (default: the origin). ``fn`` must return a
        scalar for a vector of shape ``(dim,)``; the model says so when it first runs.
        """
        if not callable(fn):
            raise TypeError(f"from_logdensity needs a callable log density, got {fn!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(name, str) or not name or name == "log_density":
            raise ValueError(f"name must be a non-empty string other than 'log_density' (the "
                             f"factor's site), such as 'x', got {name!r}")
        start = jnp.zeros(dim) if init is None else _init_point(init, dim)
        # One compiled call where NumPyro evaluates the density eagerly (the guide's
        # set-up, its initial-point check): op by op, a fresh process would compile
        # every operation of fn and of its gradient on its own (~30 ms each).
        compiled = jax.jit(fn)

        def logdensity_model() -> None:
            x = numpyro.sample(name, dist.ImproperUniform(dist.constraints.real_vector, (),
                                                          (dim,)))
            numpyro.factor("log_density", _scalar_log_density(compiled, x))

        model = cls(logdensity_model)
        model.dim, model.log_density, model.site = dim, fn, name
        model.init_loc_fn = init_to_value(values={name: start})
        model.init_scale = 1.0
        model.name = getattr(fn, "__name__", "log_density")
        return model

    def __repr__(self) -> str:
        if self.dim is not None:
            return f"Model.from_logdensity({self.name}, dim={self.dim})"
        return f"Model({self.name}, {len(self.args)} args, kwargs={sorted(self.kwargs)})"

    def __enter__(self) -> Model:
        Model._stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        Model._stack.remove(self)

    @classmethod
    def current(cls) -> Model | None:
        """The innermost model of an enclosing ``with Model(...)`` block, if any."""
        return cls._stack[-1] if cls._stack else None


def _scalar_log_density(fn: Callable[[Array], Array], x: Array) -> Array:
    """``fn(x)``, refused unless it is a scalar: a vector of per-coordinate terms would
    broadcast against log q in the diagnosis instead of being summed."""
    value = fn(x)
    if jnp.shape(value) != ():
        raise ValueError(f"the log density {getattr(fn, '__name__', 'fn')} must return a "
                         f"scalar for x of shape {x.shape}, got shape {jnp.shape(value)}: "
                         "sum the terms (jnp.sum) over the coordinates")
    return value


def _init_point(init: object, dim: int) -> Array:
    """``init`` as a finite point of R^dim, or a clear error."""
    try:
        point = np.asarray(init, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"init must be an array of shape ({dim},), got {init!r}") from None
    if point.shape != (dim,):
        raise ValueError(f"init must have shape ({dim},), got {point.shape}")
    if not np.all(np.isfinite(point)):
        raise ValueError(f"init must be a finite point of R^{dim}, got {init!r}")
    return jnp.asarray(point)


def check_model(model: object) -> Model:
    """``model`` itself, or a ``TypeError`` unless it is a :class:`Model`."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a vi.Model (wrap a NumPyro model function as "
                        f"Model(fn, *args, **kwargs)), got {type(model).__name__}")
    return model
