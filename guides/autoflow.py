"""``AutoFlow``: a NumPyro autoguide whose posterior is a formula flow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax import Array
from numpyro import handlers
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_mean, init_to_uniform

import flows
from flows import DEFAULT_JITTER, Flow, FlowTransform


def _path_name(path: tuple[Any, ...]) -> str:
    return "_".join(str(getattr(k, "key", k)) for k in path)


def flow_param_names(flow: Flow, prefix: str) -> list[str]:
    """Names of the ``numpyro.param`` sites of ``flow``'s parameters, in leaf order:
    ``"<prefix>_<index>_<step>_<name>"`` (e.g. ``auto_0_planar_u``)."""
    return [f"{prefix}_{_path_name(path)}"
            for path, _ in jax.tree_util.tree_flatten_with_path(flow.param_shapes)[0]]


def flow_params_from(flow: Flow, prefix: str, params: dict[str, Array]) -> Any:
    """``flow``'s parameter pytree taken out of a NumPyro param dict."""
    names = flow_param_names(flow, prefix)
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"params lack the flow's sites {missing}; pass the dict that "
                       "svi.get_params / Approximation.params gives")
    return jax.tree.unflatten(jax.tree.structure(flow.param_shapes), [params[n] for n in names])


class AutoFlow(AutoContinuous):
    r"""Normalizing-flow guide: q(theta) is the law of biject_to(T(z)), z ~ N(0, I_D).

    D is the size of the model's flattened unconstrained latent space, T the flow
    written by ``flow`` (``"scale-loc"``, ``"planar*8"``, ``"scale-hh*10-loc"``,
    see :mod:`flows`), and biject_to maps each site to its support. Its density is

    .. math:: \log q(u) = \log N(T^{-1}(u); 0, I) - \log|\det J_T(T^{-1}(u))|

    in the unconstrained space. It is an ``AutoContinuous`` guide, so it works
    with ``SVI``, ``Predictive``, ``sample_posterior`` and ``NeuTraReparam``
    (through :meth:`get_transform`), and refuses discrete or local latent
    variables with NumPyro's messages.

    Args:
        model: a NumPyro model.
        flow: a formula string or parsed :class:`flows.Formula`; parsed at once so
            a bad formula fails here, before any model is run.
        prefix: prefix of the ``numpyro.param`` sites (``"<prefix>_<index>_<step>_<name>"``).
        init_loc_fn: NumPyro init strategy; the last top-level ``loc`` step starts
            at that initial point. Defaults to ``init_to_mean`` (the prior mean
            where NumPyro knows it, else a sample median).
        jitter: standard deviation of the random initial flow parameters around
            the identity (each :func:`numpyro.param` draws its own).
        init_scale: initial sigma of the first ``scale`` step (NumPyro's
            ``AutoNormal`` also starts at 0.1): a posterior is usually much
            narrower than N(0, 1) in the unconstrained space.
    """

    def __init__(self, model: Callable[..., Any], flow: str | flows.Formula = "scale-loc", *,
                 prefix: str = "auto", init_loc_fn: Callable[..., Any] | None = None,
                 jitter: float = DEFAULT_JITTER, init_scale: float = 0.1):
        self.formula = flows.parse(flow)
        if not (isinstance(jitter, int | float) and jitter >= 0):
            raise ValueError(f"jitter must be a non-negative number, got {jitter!r}")
        self.jitter = float(jitter)
        if not (isinstance(init_scale, int | float) and init_scale > 0):
            raise ValueError(f"init_scale must be a positive number, got {init_scale!r}")
        self.init_scale = float(init_scale)
        self.flow: Flow | None = None
        super().__init__(model, prefix=prefix,
                         init_loc_fn=init_loc_fn or init_to_mean())

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        self._refuse_discrete(*args, **kwargs)
        super()._setup_prototype(*args, **kwargs)
        self.flow = Flow(self.formula, int(self.latent_dim))
        self._init_leaves = None
        self.param_names = flow_param_names(self.flow, self.prefix)

    def _refuse_discrete(self, *args: Any, **kwargs: Any) -> None:
        # NumPyro would try to enumerate discrete sites (and ask for funsor): say
        # plainly that a continuous flow cannot represent them, before any work.
        probe = handlers.substitute(handlers.seed(self.model, 0), substitute_fn=init_to_uniform)
        with handlers.block():
            trace = handlers.trace(probe).get_trace(*args, **kwargs)
        discrete = [name for name, site in trace.items() if site["type"] == "sample"
                    and not site["is_observed"] and site["fn"].support.is_discrete]
        if discrete:
            raise ValueError(f"AutoFlow guide does not support discrete latent variables "
                             f"({', '.join(discrete)}): a flow is a continuous density. "
                             "Marginalise them out of the model, or use a guide for them.")

    def flow_params(self, params: dict[str, Array]) -> Any:
        """The flow's parameter pytree taken out of a NumPyro param dict."""
        return flow_params_from(self.flow, self.prefix, params)

    def _init_leaf(self, index: int) -> Callable[[Array], Array]:
        # one compiled initialiser serves every leaf's numpyro.param (eagerly, each
        # would otherwise run the whole flow's init op by op)
        if self._init_leaves is None:
            self._init_leaves = jax.jit(lambda key: jax.tree.leaves(self.flow.init(
                key, self.jitter, loc=self._init_latent, scale=self.init_scale)))
        init_leaves = self._init_leaves

        def init(key: Array) -> Array:
            return init_leaves(key)[index]
        return init

    def _flow_params_from_sites(self) -> Any:
        leaves = [numpyro.param(name, self._init_leaf(i))
                  for i, name in enumerate(self.param_names)]
        return jax.tree.unflatten(jax.tree.structure(self.flow.param_shapes), leaves)

    def _get_posterior(self) -> dist.Distribution:
        transform = FlowTransform(self.flow, self._flow_params_from_sites())
        return dist.TransformedDistribution(self.get_base_dist(), transform)

    def get_base_dist(self) -> dist.Distribution:
        """N(0, I_D), the flow's base distribution."""
        return dist.Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1)

    def get_transform(self, params: dict[str, Array]) -> FlowTransform:
        """The learned map T from the base N(0, I) to the unconstrained latent space."""
        return FlowTransform(self.flow, self.flow_params(params))

    def get_posterior(self, params: dict[str, Array]) -> dist.Distribution:
        """q in the flattened unconstrained latent space."""
        return dist.TransformedDistribution(self.get_base_dist(), self.get_transform(params))

    def _is_affine(self) -> bool:
        return all(flows.lookup(step.name).affine for step in self.formula.steps())

    def median(self, params: dict[str, Array]) -> dict[str, Array]:
        """Per-site marginal medians in the constrained space (see :meth:`quantiles`)."""
        return jax.tree.map(lambda v: v[0], self.quantiles(params, [0.5]))

    def quantiles(self, params: dict[str, Array], quantiles: Any) -> dict[str, Array]:
        """Per-site marginal quantiles (leading axis: ``quantiles``).

        Exact for flows made only of affine steps (``loc``, ``scale``, ``hh``, ...),
        where q is Gaussian, N(T(0), J J^T), and the q-quantile of coordinate i is
        T(0)_i + sqrt((J J^T)_ii) Phi^{-1}(q), mapped through each site's
        (monotone) bijection. Other flows mix coordinates non-linearly: estimate
        their quantiles from :meth:`sample_posterior`.
        """
        if not self._is_affine():
            raise NotImplementedError(
                f"marginal quantiles of flow {str(self.formula)!r} have no closed form; "
                "estimate them from guide.sample_posterior(key, params, sample_shape=(n,))")
        transform = self.get_transform(params)
        zero = jnp.zeros(self.latent_dim)
        jac = jax.jacfwd(transform)(zero)
        sd = jnp.sqrt(jnp.sum(jac * jac, axis=1))
        q = dist.Normal().icdf(jnp.atleast_1d(jnp.asarray(quantiles, dtype=zero.dtype)))
        latent = transform(zero) + q[:, None] * sd
        return self._unpack_and_constrain(latent, params)
