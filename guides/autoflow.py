"""``AutoFlow``: a NumPyro autoguide whose posterior is a formula flow."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import Array
from numpyro import handlers
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.initialization import init_to_mean, init_to_median, init_to_uniform

import flows
from flows import DEFAULT_JITTER, Flow, FlowTransform
from flows.flow import check_key
from flows.options import check_number, check_shape
from guides.prototype import UNTRACEABLE, CompiledPrototype
from guides.recipe import is_auto, recipe

DEFAULT_INIT_SCALE = 0.1
"""The initial sigma of a guide's first ``scale`` (or ``affine``) step when neither the
user nor the recipe gives one (NumPyro's ``AutoNormal`` also starts at 0.1)."""

QUANTILE_SAMPLES = 10_000
"""Draws of q behind :meth:`AutoFlow.quantiles` for a flow that is not affine."""


def _path_name(path: tuple[Any, ...]) -> str:
    return "_".join(str(getattr(k, "key", k)) for k in path)


def flow_param_names(flow: Flow, prefix: str) -> list[str]:
    """Names of the ``numpyro.param`` sites of ``flow``'s parameters, in leaf order:
    ``"<prefix>_<index>_<step>_<name>"`` (e.g. ``auto_0_planar_u``)."""
    return [f"{prefix}_{_path_name(path)}"
            for path, _ in jax.tree_util.tree_flatten_with_path(flow.param_shapes)[0]]


def flow_params_from(flow: Flow, prefix: str, params: dict[str, Array]) -> Any:
    """``flow``'s parameter pytree taken out of a NumPyro param dict."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be the dict of parameter sites that svi.get_params / "
                        f"Approximation.params gives, got {type(params).__name__}")
    names = flow_param_names(flow, prefix)
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"params lack the flow's sites {missing}; pass the dict that "
                         "svi.get_params / Approximation.params gives")
    return jax.tree.unflatten(jax.tree.structure(flow.param_shapes), [params[n] for n in names])


def init_to_finite_mean(site: dict[str, Any] | None = None) -> Any:
    """NumPyro's ``init_to_mean``, with ``init_to_median`` wherever the prior mean is
    not finite (a ``HalfCauchy`` scale's mean is infinite, and starting there makes
    every site that depends on it invalid); the default of :class:`AutoFlow`."""
    if site is None:  # NumPyro's strategies are partials (it inspects .func)
        return partial(init_to_finite_mean)
    mean = init_to_mean(site)
    if mean is None:  # observed, discrete or not a sample site
        return None
    if not isinstance(mean, jax.core.Tracer) and np.all(np.isfinite(mean)):
        return mean  # the usual case, decided on the host: no median draws to compile
    return jnp.where(jnp.isfinite(mean), mean, init_to_median(site))


def _check_prefix(prefix: object) -> None:
    """The prefix of the parameter sites' names: a non-empty string."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string such as 'auto', got {prefix!r}")
    if not prefix:
        raise ValueError("prefix must be a non-empty string such as 'auto', got ''")


class AutoFlow(AutoContinuous, CompiledPrototype):
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
            a bad formula fails here, before any model is run. ``"auto"`` picks the
            formula by the latent dimension once the model is seen
            (:func:`guides.recipe.recipe`; ``formula`` is ``None`` until then).
        prefix: prefix of the ``numpyro.param`` sites (``"<prefix>_<index>_<step>_<name>"``).
        init_loc_fn: NumPyro init strategy; the last top-level ``loc`` step starts
            at that initial point. Defaults to :func:`init_to_finite_mean` (the
            prior mean where it is known and finite, else a sample median).
        jitter: standard deviation of the random initial flow parameters around
            the identity (each :func:`numpyro.param` draws its own).
        init_scale: initial sigma of the first ``scale`` step, or of the diagonal of
            the first ``affine`` step's L, whichever comes first. ``None``: the
            recipe's for ``"auto"``, else :data:`DEFAULT_INIT_SCALE` = 0.1 (NumPyro's
            ``AutoNormal`` also starts at 0.1): a posterior is usually much narrower
            than N(0, 1) in the unconstrained space.
        forward_mode_differentiation: find the model's initial point with
            forward-mode gradients, as NumPyro's guides do, for models written with
            primitives reverse mode cannot differentiate (``lax.while_loop``); pass
            the same flag to ``SVI.run``.
    """

    def __init__(self, model: Callable[..., Any], flow: str | flows.Formula = "scale-loc", *,
                 prefix: str = "auto", init_loc_fn: Callable[..., Any] | None = None,
                 jitter: float = DEFAULT_JITTER, init_scale: float | None = None,
                 forward_mode_differentiation: bool = False):
        if not callable(model):
            raise TypeError(f"AutoFlow needs a NumPyro model function, got {model!r}")
        self.auto = is_auto(flow)
        self.formula: flows.Formula | None = None if self.auto else flows.parse(flow)
        _check_prefix(prefix)
        if init_loc_fn is not None and not callable(init_loc_fn):
            raise TypeError(f"init_loc_fn must be a NumPyro init strategy such as "
                            f"init_to_median(), got {init_loc_fn!r}")
        self.jitter = check_number(jitter, "jitter", minimum=0)
        self.init_scale = (None if init_scale is None
                           else check_number(init_scale, "init_scale", positive=True))
        self.flow: Flow | None = None
        self.recipe_elbo: str | None = None
        """For ``"auto"``, once set up: the ELBO gradient the recipe chose
        (``"trace"`` or ``"stl"``), which ``NFVI.fit`` uses by default."""
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn or init_to_finite_mean(),
                         forward_mode_differentiation=forward_mode_differentiation)

    def _setup_prototype(self, *args: Any, **kwargs: Any) -> None:
        self._check_latents(*args, **kwargs)
        super()._setup_prototype(*args, **kwargs)
        if self.auto:
            chosen = recipe(int(self.latent_dim))
            self.formula = flows.parse(chosen.formula)
            self.recipe_elbo = chosen.elbo
            if self.init_scale is None:
                self.init_scale = chosen.init_scale
        if self.init_scale is None:
            self.init_scale = DEFAULT_INIT_SCALE
        self.flow = Flow(self.formula, int(self.latent_dim))
        self._init_leaves = None
        self.param_names = flow_param_names(self.flow, self.prefix)
        self._quantiles_compiled = jax.jit(self._quantiles, static_argnums=2)

    def _check_latents(self, *args: Any, **kwargs: Any) -> None:
        # NumPyro would try to enumerate discrete sites (and ask for funsor), or say
        # "use an empty guide" for a model without latents: say plainly what a flow
        # cannot represent, before any work.
        # Only the sites' kinds matter, not their values: the model runs under
        # jax.eval_shape, traced, where eagerly each of its operations would compile
        # on its own (a 10-site regression: 11 compiles, 0.46 s). A model that needs
        # concrete values with the arguments as given (NumPy data indexed by a
        # subsample's indices, X[idx]) runs eagerly instead.
        probe = handlers.substitute(handlers.seed(self.model, 0), substitute_fn=init_to_uniform)
        sites: dict[str, dict[str, Any]] = {}

        def probe_sites() -> None:
            with handlers.block():
                trace = handlers.trace(probe).get_trace(*args, **kwargs)
            sites.update({name: {"is_observed": site["is_observed"],
                                 "discrete": site["fn"].support.is_discrete}
                          for name, site in trace.items() if site["type"] == "sample"})

        try:
            jax.eval_shape(probe_sites)
        except UNTRACEABLE:
            probe_sites()  # (the failed trace added nothing: it fails before the update)
        if all(site["is_observed"] for site in sites.values()):
            name = getattr(self.model, "__name__", "model")
            what = f"its sample sites {sorted(sites)} are all observed" if sites else \
                "it has no numpyro.sample site"
            raise ValueError(f"the model {name} has no latent variable ({what}), so there is "
                             "nothing to infer: give it a numpyro.sample site without obs=, "
                             "and pass data through obs= only at the likelihood")
        discrete = [name for name, site in sites.items()
                    if not site["is_observed"] and site["discrete"]]
        if discrete:
            # the first sentence is NumPyro's own (helpful_support_errors), which user
            # code and NumPyro's tests match on
            raise ValueError(f"Continuous inference cannot handle discrete sample site "
                             f"'{discrete[0]}'. AutoFlow guide does not support discrete "
                             f"latent variables ({', '.join(discrete)}): a flow is a "
                             "continuous density. Marginalise them out of the model, or "
                             "use a guide for them.")

    def flow_params(self, params: dict[str, Array]) -> Any:
        """The flow's parameter pytree taken out of a NumPyro param dict."""
        if self.flow is None:
            raise RuntimeError("AutoFlow has not seen its model yet: run it once (SVI.init, "
                               "or numpyro.handlers.seed(guide, 0)(*model_args)) first")
        return flow_params_from(self.flow, self.prefix, params)

    def sample_posterior(self, rng_key: Array, params: dict[str, Array], *args: Any,
                         sample_shape: tuple[int, ...] = (), **kwargs: Any) -> dict[str, Array]:
        """Draws of the model's latent sites from q at ``params`` (NumPyro's contract).

        ``params`` must hold the flow's sites: NumPyro would silently draw fresh random
        parameters for any missing one.
        """
        check_key(rng_key, "rng_key")
        self.flow_params(params)
        sample_shape = check_shape(sample_shape, "sample_shape")
        return super().sample_posterior(rng_key, params, *args, sample_shape=sample_shape,
                                        **kwargs)

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

    def median(self, params: dict[str, Array], *,
               num_samples: int = QUANTILE_SAMPLES) -> dict[str, Array]:
        """Per-site marginal medians in the constrained space: ``quantiles(params, 0.5)``
        (exact for an affine flow, where it is biject_to(T(0)); see :meth:`quantiles`)."""
        return self.quantiles(params, 0.5, num_samples=num_samples)

    def quantiles(self, params: dict[str, Array], quantiles: Any, *,
                  num_samples: int = QUANTILE_SAMPLES) -> dict[str, Array]:
        r"""Per-site marginal quantiles in the constrained space.

        The result's leading shape is that of ``quantiles`` (none for a scalar), as
        in NumPyro's guides. The p-quantile u_p of each unconstrained coordinate is
        mapped through its site's bijection, ``biject_to(support)``; for a site whose
        bijection acts coordinate by coordinate and increasingly (real, positive,
        interval supports) that is the constrained marginal quantile, for the others
        (simplex, ordered, ...) it is NumPyro's convention.

        - Flows made only of affine steps (``loc``, ``scale``, ``hh``): q is
          N(T(0), J J^T), J the Jacobian of T, and exactly

          .. math:: u_{p,i} = T(0)_i + \sqrt{(J J^T)_{ii}}\, \Phi^{-1}(p).

        - Any other flow: a Monte-Carlo estimate, the empirical p-quantile of each
          coordinate of T(z_1), ..., T(z_n), z_j ~ N(0, I) drawn with the fixed key
          ``jax.random.key(0)`` (so the answer is a deterministic function of the
          parameters, monotone in p), n = ``num_samples``. Its error is
          asymptotically normal with standard deviation

          .. math:: \operatorname{sd}(\hat u_p) \approx \sqrt{p (1 - p) / n} \,/\, f(u_p),

          f the marginal density of the coordinate: at n = 10,000 and a near-Gaussian
          marginal of sd sigma, about 0.013 sigma for the median, 0.021 sigma at
          p = 0.05 and 0.037 sigma at p = 0.01; it shrinks as 1/sqrt(n).

        One compiled call (per structure of the arguments); usable under ``jax.jit``
        with traced ``params`` and concrete ``quantiles``.

        Args:
            params: the guide's parameters (``svi.get_params``, ``SVIRunResult.params``).
            quantiles: a probability or array of probabilities, each strictly in (0, 1).
            num_samples: n, the draws of the Monte-Carlo estimate (unused when the
                flow is affine).

        Raises:
            ValueError: for probabilities outside (0, 1), or n < 1, before any work.

        Reference: A. W. van der Vaart, *Asymptotic Statistics* (1998), ch. 21.
        """
        probs = _probabilities(quantiles)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        self.flow_params(params)  # a wrong dict fails here, before compiling
        return self._quantiles_compiled(params, jnp.asarray(probs, dtype=float), num_samples)

    def _quantiles(self, params: dict[str, Array], probs: Array,
                   num_samples: int) -> dict[str, Array]:
        transform = self.get_transform(params)
        if self._is_affine():
            zero = jnp.zeros(self.latent_dim)
            jac = jax.jacfwd(transform)(zero)
            sd = jnp.sqrt(jnp.sum(jac * jac, axis=1))
            latent = transform(zero) + dist.Normal().icdf(probs)[..., None] * sd
        else:
            z = jax.random.normal(jax.random.key(0), (num_samples, self.latent_dim))
            latent = jnp.quantile(transform(z), probs, axis=0)
        return self._unpack_and_constrain(latent, params)


def _probabilities(quantiles: Any) -> np.ndarray:
    """``quantiles`` as a float array of probabilities, each strictly inside (0, 1)."""
    wrong = (f"quantiles must be concrete probabilities strictly inside (0, 1), "
             f"got {quantiles!r}")
    try:
        probs = np.asarray(quantiles, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(wrong) from None
    if probs.size == 0 or not np.all((probs > 0) & (probs < 1)):
        raise ValueError(wrong)
    return probs
