r"""The automatic recipe: which formula ``"auto"`` stands for.

``AutoFlow(model, "auto")`` and ``NFVI("auto", model)`` choose the flow once the
latent dimension d is known, by a rule measured on the real-shaped posteriors of
``bench/zoo`` (``bench/zoo.py``; the figures are in ``bench/README.md``):

- ``d <= FLOW_MAX_DIM``: ``iaf(sigma=exp, hidden=max(64, d))*2-affine-loc``: a full-rank Gaussian
  (``affine``: x = L z + b, L lower triangular) after two inverse-autoregressive
  steps that bend the standardised draws (funnels, skewed scales, two modes); it
  costs O(d h) a step per draw and samples in one pass. For 10 < d <= 64
  (``SPLINE_MAX_DIM``) three iaf steps bend each coordinate with a rational-quadratic
  spline (``iaf(transformer=rqs, hidden=64)*3``, 8 bins on [-4, 4]) instead of two
  with an affine map, at about twice the time a step. Measured at 2,000 x 4 (error,
  seeds 0 / 1; two affine bends, two spline bends, three spline bends): the
  horseshoe (d = 63) 0.839 / 0.857, 0.746 / 0.724, 0.717 / 0.684 (NumPyro's BNAF
  0.661 / 0.639); the Brownian motion (d = 32) 0.610 / 0.654, 0.478 / 0.455,
  0.481 / 0.471; logistic regression (d = 26) 0.067 / 0.051, 0.059 / 0.066, 0.066
  / 0.073 (noise). Three spline bends were worse above d = 64 (seed 0: the
  varying-intercept regression, d = 84, 0.110 against 0.092; the Cox process,
  d = 82, 7.1 against 3.1; the item-response model, d = 142, 0.467 against 0.255)
  and up to d = 10 (unit start, STL: centred eight schools 4.3 against 0.074, the
  funnel 2.3 against 0.89; the two modes 0.143 against 0.196, noise). Up to d = 10
  the affine
  step starts at unit scale, above at a model guide's usual 0.1. Measured at
  2,000 x 4 (error, unit start against 0.1): the two-mode mixture (d = 2) 0.18
  against 1.09 (the narrow start collapses onto one mode), the funnel 1.25 against
  1.35, non-centred eight schools 0.10 against 0.14, centred 0.11 against 0.08;
  but logistic regression (d = 26) 0.083 against 0.067 and the varying-intercept
  regression (d = 84) 1.18 against 0.09, where the narrow posterior is not reached
  from a unit start in the budget;
- larger d: ``affine-loc``, the full-rank Gaussian alone, O(d^2) a draw, the best
  Gaussian there is and a cheap inverse (one triangular solve). The bound lies
  between the zoo's two largest models: on the 2PL item-response model (d = 142)
  the two iaf steps lower the error from 0.40 to 0.26 (seed 1: 0.43 to 0.23; NumPyro's
  ``AutoIAFNormal`` 0.33), on stochastic volatility (d = 203) they blow up (error
  535 against 1.02);

fitted (by ``NFVI.fit``'s default ELBO) with the sticking-the-landing gradient
(``elbo="stl"``) up to d = 10, from the unit start, where it lowers the error at
2,000 x 4: non-centred eight schools 0.100 -> 0.049 (NumPyro's IAF 0.042), centred
0.109 -> 0.074, the funnel 1.25 -> 0.89, the two modes 0.18 -> 0.20 (within noise;
at seed 1: 0.179 -> 0.052, 0.128 -> 0.058, 1.16 -> 0.90, 0.117 -> 0.111);
above, with the ordinary reparametrised gradient: from the narrow start, STL's
log q term adds noise of order |L^{-T} z| away from the optimum, which stalled or
broke every larger zoo model (logistic regression, d = 26: error 1.02 against
0.067; the Brownian motion 9e9 against 0.61; the varying-intercept regression and
the horseshoe: non-finite losses).

The recipe never looks at the model beyond d, so it is a default, not an oracle:
``Approximation.diagnose()`` says when it was not enough.
"""

from __future__ import annotations

from typing import NamedTuple

AUTO = "auto"
"""The formula name that asks for the recipe."""

FLOW_MAX_DIM = 150
"""Up to this latent dimension the recipe adds nonlinear steps to the Gaussian."""

SPLINE_MAX_DIM = 64
"""Above :data:`WIDE_START_MAX_DIM` and up to this latent dimension the recipe's iaf steps
bend each coordinate with a rational-quadratic spline, not an affine map."""

WIDE_START_MAX_DIM = 10
"""Up to this latent dimension the recipe's affine step starts at unit scale, and
``NFVI.fit`` uses the sticking-the-landing gradient by default."""


class Recipe(NamedTuple):
    """What ``"auto"`` resolves to for one latent dimension: the formula, the initial
    sigma of its affine step (``None``: the guide's own default), and the ELBO
    gradient ``NFVI.fit`` uses by default (``"trace"`` or ``"stl"``)."""

    formula: str
    init_scale: float | None = None
    elbo: str = "trace"


def recipe(dim: int) -> Recipe:
    """The formula ``"auto"`` stands for at latent dimension ``dim``."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"the latent dimension must be a positive integer, got {dim!r}")
    if dim == 1:
        return Recipe("scale-loc")  # every 1-d affine flow is this one
    if dim <= FLOW_MAX_DIM:  # iaf's masked network needs hidden >= d
        wide = dim <= WIDE_START_MAX_DIM
        if WIDE_START_MAX_DIM < dim <= SPLINE_MAX_DIM:
            bends = "iaf(transformer=rqs, hidden=64)*3"
        else:
            bends = f"iaf(sigma=exp, hidden={max(64, dim)})*2"
        return Recipe(f"{bends}-affine-loc",
                      init_scale=1.0 if wide else None, elbo="stl" if wide else "trace")
    return Recipe("affine-loc")


def is_auto(flow: object) -> bool:
    """Whether ``flow`` asks for the recipe (the string ``"auto"``, any case or spacing)."""
    return isinstance(flow, str) and flow.replace(" ", "").lower() == AUTO
