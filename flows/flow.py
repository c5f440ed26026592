"""``Flow``: a formula made into a pure, batched, scanned bijection on R^d."""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax

from flows import registry
from flows.bijection import Bijection, Params
from flows.formula import Formula, Group, Step, parse
from flows.options import check_number, check_shape
from flows.stable import SOFTPLUS_INV_ONE

DEFAULT_JITTER = 0.1
UNROLL = 16
"""Layers a repeat's ``lax.scan`` runs per loop iteration. On small problems the loop's
own overhead dominates (planar*10 in 2-D: 26k fit steps/s rolled, 57k unrolled); up
to this many layers the code is straight-line, and compile time stops growing
beyond it whatever the count."""

_unroll = contextvars.ContextVar("flows_unroll", default=UNROLL)

RUN_ONCE = {"xla_backend_optimization_level": 0}
"""XLA compiler options for a program that runs once, such as an initialisation: LLVM's
optimisation of the machine code is skipped, which is most of the compile time of
the threefry random-number code such programs are made of (the init of
``(coupling(sigma=exp)-reverse)*4`` at d=101: 3.6 s -> 1.0 s on 2 CPU cores). What it
computes is unchanged up to rounding (normal draws differ from an optimised build's
by at most one unit in the last place, from how the polynomials are fused)."""


def check_key(key: object, name: str = "key") -> None:
    """Raise a ``TypeError`` naming ``name`` unless ``key`` is one JAX random key: a typed
    key (``jax.random.key(0)``) or a raw ``uint32`` one (``jax.random.PRNGKey(0)``)."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is not None and shape is not None and (
            (jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ())
            or (dtype == jnp.uint32 and len(shape) == 1)):
        return
    shown = f"an array of shape {shape} and dtype {dtype}" if dtype is not None else repr(key)
    raise TypeError(f"{name} must be one JAX random key such as jax.random.key(0), "
                    f"got {shown}")


@contextlib.contextmanager
def scan_unroll(layers: int) -> Iterator[None]:
    """Trace flows inside this block with at most ``layers`` layers per scan iteration
    (default :data:`UNROLL`). ``scan_unroll(1)`` gives a rolled loop, which compiles
    several times faster and runs a few times slower: the fit loop uses it for its
    first chunk (see :mod:`vi.program`)."""
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be a positive integer, got {layers!r}")
    token = _unroll.set(layers)
    try:
        yield
    finally:
        _unroll.reset(token)


@dataclass(frozen=True)
class _Node:
    """One item of a formula: a step (``bijection``) or a group (``children``),
    repeated ``count`` times with stacked parameters."""

    key: str
    count: int
    bijection: Bijection | None = None
    children: tuple[_Node, ...] = ()
    jitter: float | None = None


def _build(formula: Formula, dim: int) -> tuple[_Node, ...]:
    nodes = []
    for i, item in enumerate(formula.items):
        if isinstance(item, Step):
            options = dict(item.options)
            bijection = registry.lookup(item.name)(dim, **options)
            nodes.append(_Node(f"{i}_{item.name}", item.count, bijection,
                               jitter=options.get("jitter")))
        else:
            assert isinstance(item, Group)
            nodes.append(_Node(f"{i}_group", item.count, children=_build(item.body, dim)))
    return tuple(nodes)


def _init(nodes: tuple[_Node, ...], key: Array, jitter: float) -> Params:
    params = {}
    for node, node_key in zip(nodes, jax.random.split(key, len(nodes)), strict=True):
        keys = jax.random.split(node_key, node.count)
        if node.bijection is not None:
            bijection = node.bijection
            own_jitter = jitter if node.jitter is None else node.jitter
            params[node.key] = jax.vmap(lambda k, b=bijection, j=own_jitter: b.init(k, j))(keys)
        else:
            params[node.key] = jax.vmap(lambda k, c=node.children: _init(c, k, jitter))(keys)
    return params


def _apply(nodes: tuple[_Node, ...], params: Params, z: Array, inverse: bool, unroll: int
           ) -> tuple[Array, Array]:
    """Run ``nodes`` on one vector; each repeated node is one ``lax.scan``."""
    log_det = jnp.zeros((), z.dtype)
    for node in reversed(nodes) if inverse else nodes:
        def one(p: Params, v: Array, node: _Node = node) -> tuple[Array, Array]:
            if node.bijection is not None:
                method = node.bijection.inverse if inverse else node.bijection.forward
                return method(p, v)
            return _apply(node.children, p, v, inverse, unroll)

        stacked = params[node.key]
        if node.count == 1:
            z, step_log_det = one(jax.tree.map(lambda a: a[0], stacked), z)
            log_det = log_det + step_log_det
        else:
            def body(carry: tuple[Array, Array], p: Params, one: Any = one
                     ) -> tuple[tuple[Array, Array], None]:
                v, total = carry
                v, step_log_det = one(p, v)
                return (v, total + step_log_det), None

            (z, log_det), _ = lax.scan(body, (z, log_det), stacked, reverse=inverse,
                                       unroll=min(node.count, unroll))
    return z, log_det


def _pull_back(nodes: tuple[_Node, ...], params: Params, x: Array, g: Array, unroll: int
               ) -> tuple[Array, Array]:
    """Run ``nodes`` backwards on one vector x and its cotangent g: each step's inverse,
    then the VJP of its forward at the point found (see :meth:`Flow.pull_back`)."""
    for node in reversed(nodes):
        def one(p: Params, v: Array, c: Array, node: _Node = node) -> tuple[Array, Array]:
            if node.bijection is None:
                return _pull_back(node.children, p, v, c, unroll)
            return node.bijection.pull_back(p, v, c)

        stacked = params[node.key]
        if node.count == 1:
            x, g = one(jax.tree.map(lambda a: a[0], stacked), x, g)
        else:
            def body(carry: tuple[Array, Array], p: Params, one: Any = one
                     ) -> tuple[tuple[Array, Array], None]:
                return one(p, *carry), None

            (x, g), _ = lax.scan(body, (x, g), stacked, reverse=True,
                                 unroll=min(node.count, unroll))
    return x, g


def _has_repeats(nodes: tuple[_Node, ...]) -> bool:
    return any(n.count > 1 or _has_repeats(n.children) for n in nodes)


def _has_inverse(nodes: tuple[_Node, ...]) -> bool:
    return all(_has_inverse(n.children) if n.bijection is None else n.bijection.has_inverse
               for n in nodes)


class Flow:
    """A normalizing flow given by a formula, in dimension ``dim``.

    ``Flow("scale-hh*3-loc", 3)`` is x = mu + H3 H2 H1 diag(sigma) z. Everything
    is a pure function of a parameter pytree (a dict keyed ``"<index>_<name>"``
    whose arrays carry a leading axis of length ``count``):

    - :meth:`init` makes parameters,
    - :meth:`forward` maps z to x with log|det dx/dz|,
    - :meth:`inverse` maps x to z with log|det dz/dx|,
    - :meth:`log_prob` is the density of x = f(z), z ~ N(0, I):
      log q(x) = log N(f^{-1}(x); 0, I) + log|det df^{-1}/dx|,
    - :meth:`transform` adapts the flow to a NumPyro ``Transform``.

    All accept any leading batch axes. A step repeated ``*k`` runs under one
    ``lax.scan`` over its k stacked parameter sets (unrolled ``UNROLL`` layers at a
    time), so compile time does not grow with k past ``UNROLL``.
    """

    def __init__(self, formula: str | Formula, dim: int):
        self.formula = parse(formula)
        if isinstance(dim, bool) or not isinstance(dim, int | jnp.integer) or dim < 1:
            raise ValueError(f"Flow dimension must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self._nodes = _build(self.formula, self.dim)

    def __repr__(self) -> str:
        return f"Flow({str(self.formula)!r}, dim={self.dim})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flow) and (self.formula, self.dim) == (other.formula, other.dim)

    def __hash__(self) -> int:
        return hash((self.formula, self.dim))

    @property
    def has_inverse(self) -> bool:
        """Whether every step can be inverted (so :meth:`log_prob` works)."""
        return _has_inverse(self._nodes)

    def init(self, key: Array, jitter: float = DEFAULT_JITTER, loc: Array | None = None,
             scale: float | None = None) -> Params:
        """Random initial parameters.

        With ``jitter = 0`` every step is the identity (``hh`` an isometry that
        leaves N(0, I) unchanged); ``jitter`` is the standard deviation of the
        noise added to that point. ``loc`` (shape ``(dim,)``) is added to the
        shift of the last top-level ``loc`` step, so that the approximation starts
        around a given point (the model's initial point, for a guide); ``scale``
        (> 0) sets the initial sigma of the first top-level ``scale`` step (or the
        diagonal of L of an ``affine`` one, whichever comes first), so it starts as
        narrow as a posterior is expected to be.
        """
        check_key(key)
        jitter = check_number(jitter, "jitter", minimum=0)
        if scale is not None:
            scale = check_number(scale, "scale", positive=True)
        # under a trace (an init inside the caller's jit) the caller's compile options hold
        traced = isinstance(key, jax.core.Tracer)
        params = (_init(self._nodes, key, jitter) if traced
                  else self._init_compiled(key, jitter))
        if loc is not None:
            loc = jnp.asarray(loc)
            if loc.shape != (self.dim,):
                raise ValueError(f"loc must have shape ({self.dim},), got {loc.shape}")
            keys = self._top_level("loc")
            if keys:
                params[keys[-1]]["mu"] = params[keys[-1]]["mu"].at[-1].add(loc)
        if scale is not None:
            keys = self._top_level("scale", "affine")
            if keys:  # softplus(rho) = scale (affine: its diagonal) at zero jitter
                shift = float(np.log(np.expm1(scale))) - SOFTPLUS_INV_ONE
                params[keys[0]]["rho"] = params[keys[0]]["rho"].at[0].add(shift)
        return params

    @functools.partial(jax.jit, static_argnums=(0, 2), compiler_options=RUN_ONCE)
    def _init_compiled(self, key: Array, jitter: float) -> Params:
        # one compiled call: eagerly, every step's initialiser would dispatch (and
        # compile, the first time) op by op
        return _init(self._nodes, key, jitter)

    @functools.cached_property
    def param_shapes(self) -> Params:
        """The parameter pytree's structure, leaves ``jax.ShapeDtypeStruct`` (traced once)."""
        return jax.eval_shape(lambda: self.init(jax.random.key(0)))

    def _top_level(self, *names: str) -> list[str]:
        return [n.key for n in self._nodes if n.bijection is not None
                and n.bijection.name in names]

    def _check(self, params: Params, value: Array, what: str) -> Array:
        try:
            value = jnp.asarray(value)
        except TypeError:
            raise TypeError(f"{what} must be a numeric array of shape (..., {self.dim}) for "
                            f"{self!r}, got {value!r}") from None
        if value.ndim == 0 or value.shape[-1] != self.dim:
            raise ValueError(f"{what} must have shape (..., {self.dim}) for {self!r}, "
                             f"got {value.shape}")
        self.check_params(params)
        return value

    def check_params(self, params: Params) -> None:
        """Raise a ``ValueError`` unless ``params`` has this flow's structure and shapes."""
        # Shapes too, not only the tree: params of "planar*3" have the tree of
        # "planar*2" and would silently run three steps.
        expected = jax.tree.map(lambda leaf: leaf.shape, self.param_shapes)
        shapes = jax.tree.map(jnp.shape, params)
        if shapes != expected:
            raise ValueError(f"params do not belong to {self!r}: expected arrays of shapes "
                             f"{expected} (as from {self!r}.init(key)), got {shapes}")

    @property
    def has_repeats(self) -> bool:
        """Whether some step or group is repeated (``*k``, k > 1): a ``lax.scan``, whose
        unrolling :func:`scan_unroll` sets."""
        return _has_repeats(self._nodes)

    @functools.partial(jax.jit, static_argnums=(0, 3, 4))
    def _batched_unrolled(self, params: Params, value: Array, inverse: bool, unroll: int
                          ) -> tuple[Array, Array]:
        # jitted so that an eager call (a guide's first draw, a plot) is one compiled
        # program, not hundreds of op-by-op dispatches; inside a trace it inlines.
        # ``unroll`` is static so that a trace under scan_unroll is never reused.
        batch = value.shape[:-1]
        flat = value.reshape((-1, self.dim))
        out, log_det = jax.vmap(lambda v: _apply(self._nodes, params, v, inverse, unroll))(flat)
        return out.reshape(value.shape), log_det.reshape(batch)

    def _batched(self, params: Params, value: Array, inverse: bool) -> tuple[Array, Array]:
        return self._batched_unrolled(params, value, inverse, _unroll.get())

    def forward(self, params: Params, z: Array) -> tuple[Array, Array]:
        """x = f(z) and log|det df/dz| for z of shape (..., dim)."""
        return self._batched(params, self._check(params, z, "z"), inverse=False)

    def inverse(self, params: Params, x: Array) -> tuple[Array, Array]:
        """z = f^{-1}(x) and log|det df^{-1}/dx| for x of shape (..., dim).

        Closed form for ``loc``, ``scale``, ``hh``, ``radial``; a safeguarded
        Newton solve for ``planar``.
        """
        if not self.has_inverse:
            raise NotImplementedError(f"{self!r} has a step without an inverse")
        return self._batched(params, self._check(params, x, "x"), inverse=True)

    def pull_back(self, params: Params, x: Array, g: Array) -> tuple[Array, Array]:
        r"""(z, s): z = f^{-1}(x) and the cotangent g at x pulled back to z with the
        log-determinant's gradient,

            s = J_f(z)^T g + \nabla_z log|det J_f(z)|,

        the score of the pulled-back density p(f(z)) |det J_f(z)| when g = grad log p(x).
        x and g have shape (..., dim).

        It runs step by step from the output side: for f = f_K o ... o f_1 with
        z_k = f_k(z_{k-1}), s_K = g and s_{k-1} = J_{f_k}^T s_k + grad log|det J_{f_k}| at
        z_{k-1} = f_k^{-1}(z_k). Each step's inverse and the VJP of its forward at the
        same point share their conditioner's values, where ``inverse`` followed by the
        VJP of the whole ``forward`` would run the network three times: with the
        gradient of a loss of s on top (the Fisher divergence of :mod:`vi.fisher`),
        0.6-0.8 of the time on coupling and spline flows (100-d, 64 draws).
        """
        if not self.has_inverse:
            raise NotImplementedError(f"{self!r} has a step without an inverse")
        x = self._check(params, x, "x")
        g = jnp.asarray(g)
        if g.shape != x.shape:
            raise ValueError(f"g must have the shape of x, {x.shape}, got {g.shape}")
        return self._pull_back_unrolled(params, x, g, _unroll.get())

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def _pull_back_unrolled(self, params: Params, x: Array, g: Array, unroll: int
                            ) -> tuple[Array, Array]:
        flat_x, flat_g = x.reshape((-1, self.dim)), g.reshape((-1, self.dim))
        z, s = jax.vmap(lambda a, b: _pull_back(self._nodes, params, a, b, unroll))(
            flat_x, flat_g)
        return z.reshape(x.shape), s.reshape(x.shape)

    def log_prob(self, params: Params, x: Array) -> Array:
        """log q(x) of x = f(z), z ~ N(0, I): log N(f^{-1}(x)) + log|det df^{-1}/dx|."""
        z, log_det = self.inverse(params, x)
        return _std_normal_log_prob(z) + log_det

    def sample_and_log_prob(self, params: Params, key: Array, shape: tuple[int, ...] = ()
                            ) -> tuple[Array, Array]:
        """Draw x = f(z), z ~ N(0, I), of shape ``shape + (dim,)``, with log q(x).

        log q(x) = log N(z) - log|det df/dz| needs no inverse.
        """
        check_key(key)
        shape = check_shape(shape, "shape")
        z = jax.random.normal(key, (*shape, self.dim))
        x, log_det = self.forward(params, z)
        return x, _std_normal_log_prob(z) - log_det

    def transform(self, params: Params) -> Any:
        """This flow at ``params`` as a NumPyro ``Transform`` (see :class:`flows.FlowTransform`)."""
        from flows.transform import FlowTransform

        return FlowTransform(self, params)


def _std_normal_log_prob(z: Array) -> Array:
    return -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * z.shape[-1] * jnp.log(2 * jnp.pi)
