"""Normalizing flows written as formula strings.

>>> import jax, flows
>>> flow = flows.Flow("scale-hh*2-loc", 2)
>>> params = flow.init(jax.random.key(0), jitter=0.1)
>>> x, log_det = flow.forward(params, jax.numpy.zeros((5, 2)))

The seed steps (``loc``, ``scale``, ``planar``, ``radial``, ``hh``) register
themselves on import; :func:`register` adds more.
"""

from flows import (  # noqa: F401  (registration)
    affine,
    autoregressive,
    coupling,
    householder,
    loc,
    permutation,
    planar,
    radial,
    sas,
    scale,
    spline,
)
from flows.bijection import Bijection, Params
from flows.density import DensityFit, fit_to_samples
from flows.flow import DEFAULT_JITTER, Flow, scan_unroll
from flows.formula import Formula, FormulaError, Group, Step, parse
from flows.options import Option
from flows.registry import available, lookup, register
from flows.transform import FlowTransform

__all__ = [
    "DEFAULT_JITTER",
    "Bijection",
    "DensityFit",
    "Flow",
    "FlowTransform",
    "Formula",
    "FormulaError",
    "Group",
    "Option",
    "Params",
    "Step",
    "available",
    "fit_to_samples",
    "lookup",
    "parse",
    "register",
    "scan_unroll",
]
