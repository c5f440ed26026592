"""The negative ELBO of a flow guide on a density over its flat latent vector, without
NumPyro's tracing, with the standard or the sticking-the-landing gradient.

When the model is one density log p(x) over the guide's flattened unconstrained
latent vector (a ``Model.from_logdensity`` target, or a NumPyro model whose only
unknowns are its continuous latent sites: then log p(x) = -U(x), NumPyro's
``potential_energy``, log joint plus the log-Jacobians of the support bijections),
NumPyro's ``Trace_ELBO`` computes, per particle, exactly

    log q(x) - log p(x) = log N(z; 0, I) - log|det dT/dz| - log p(T(z)),  z ~ N(0, I),

at the cost of tracing the model and the guide for every particle. Writing it
directly removes that overhead from the fit loop's hot path (the same estimator,
with the same number of particles).

The sticking-the-landing gradient (Roeder, Wu & Duvenaud 2017, "Sticking the
landing: simple, lower-variance gradient estimators for variational inference")
differentiates log q_phi(T_theta(z)) - log p(T_theta(z)) with phi = theta held fixed:
it drops the score term E[d log q_theta(x) / d theta] (whose mean is zero), so at a
q equal to the target every draw's gradient is exactly zero. It needs log q at a
given x, hence the flow's inverse.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from numpyro.infer.autoguide import AutoContinuous
from numpyro.infer.util import potential_energy

from guides import AutoFlow
from vi.minibatch import is_subsampled


def logdensity_loss(guide: AutoFlow, log_density: Callable[[Array], Array], num_particles: int,
                    stl: bool = False, spread: Callable[[Array], Array] | None = None
                    ) -> Callable[[dict[str, Array], Array], Array]:
    """``loss(params, key)``: the ``num_particles``-sample estimate of -ELBO for an
    :class:`~guides.AutoFlow` guide (already set up) on the density ``log_density``
    of one vector; ``params`` is the guide's NumPyro param dict.

    With ``stl=True`` the value is the same estimate and the gradient is the
    sticking-the-landing one: log q is also computed as log q_phi(x) through the
    flow's inverse, with phi a gradient-stopped copy of the parameters, and only its
    gradient is kept. ``spread`` constrains the base draws (leading axis: particles)
    to lie across devices (:meth:`vi.devices.Layout.spread_batch`).
    """
    flow, dim = guide.flow, guide.latent_dim
    log_p = jax.vmap(log_density)

    def loss(params: dict[str, Any], key: Array) -> Array:
        z = jax.random.normal(key, (num_particles, dim))
        if spread is not None:
            z = spread(z)
        flow_params = guide.flow_params(params)
        x, log_det = flow.forward(flow_params, z)
        log_q = -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * dim * jnp.log(2 * jnp.pi) - log_det
        if stl:
            fixed = flow.log_prob(jax.lax.stop_gradient(flow_params), x)
            log_q = fixed + jax.lax.stop_gradient(log_q - fixed)
        return jnp.mean(log_q - log_p(x))

    return loss


def flat_potential(model: Any, guide: AutoContinuous) -> Callable[[Array], Array]:
    """U(x) = -log p(x): NumPyro's ``potential_energy`` of a model (``.fn``, ``.args``,
    ``.kwargs``) at the flat unconstrained latent vector x of an (already set up)
    ``AutoContinuous`` guide; the log joint plus the support bijections' log-Jacobians."""
    energy = partial(potential_energy, model.fn, tuple(model.args), dict(model.kwargs))

    def potential(x: Array) -> Array:
        return energy(guide._unpack_latent(x))

    return potential


def model_log_density(model: Any, guide: AutoFlow) -> Callable[[Array], Array] | None:
    """log p(x) of the flat unconstrained latent vector: the model's own
    ``log_density`` where it has one (:meth:`vi.Model.from_logdensity`), else
    -U(x) (:func:`flat_potential`), or None when the model holds something the ELBO
    must trace: a ``numpyro.param`` (learned with the guide), a subsampled plate
    (whose indices are random), or mutable state."""
    if getattr(model, "log_density", None) is not None:
        return model.log_density
    for site in guide.prototype_trace.values():
        if site["type"] in ("param", "mutable"):
            return None
        if is_subsampled(site):
            return None
    potential = flat_potential(model, guide)

    def log_density(x: Array) -> Array:
        return -potential(x)

    return log_density
