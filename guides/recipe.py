r"""The automatic recipe: which formula ``"auto"`` stands for.

``AutoFlow(model, "auto")`` and ``NFVI("auto", model)`` choose the flow once the
latent dimension d is known, by a rule measured on the real-shaped posteriors of
``bench/zoo`` (``bench/zoo.py``; the figures are in ``bench/README.md``):

- ``d <= FLOW_MAX_DIM``: ``iaf(sigma=exp, hidden=max(64, d))*2-affine-loc``: a full-rank Gaussian
  (``affine``: x = L z + b, L lower triangular) after two inverse-autoregressive
  steps that bend the standardised draws (funnels, skewed scales, two modes); it
  costs O(d h) a step per draw and samples in one pass. Its affine step starts at
  unit scale: started at a model guide's usual 0.1, the fit of the zoo's two-mode
  mixture collapsed onto one mode (error 1.09 against 0.18 at 2,000 x 4), and the
  funnel and non-centred eight schools fitted slightly worse, for a small gain on
  near-Gaussian posteriors (logistic regression 0.067 against 0.083);
- larger d: ``affine-loc``, the full-rank Gaussian alone, O(d^2) a draw, the best
  Gaussian there is and a cheap inverse (one triangular solve);

fitted with the ordinary reparametrised gradient: the sticking-the-landing one
(``elbo="stl"``) stalled the full-rank Gaussian on the zoo's logistic regression
(d = 26, 2,000 x 4: error 9.3 against 0.05), because away from the optimum its
log q term adds noise of order |L^{-T} z| that the ordinary gradient does not have.

The recipe never looks at the model beyond d, so it is a default, not an oracle:
``Approximation.diagnose()`` says when it was not enough.
"""

from __future__ import annotations

from typing import NamedTuple

AUTO = "auto"
"""The formula name that asks for the recipe."""

FLOW_MAX_DIM = 100
"""Up to this latent dimension the recipe adds nonlinear steps to the Gaussian."""


class Recipe(NamedTuple):
    """What ``"auto"`` resolves to for one latent dimension: the formula, and the
    initial sigma of its affine step (``None``: the guide's own default)."""

    formula: str
    init_scale: float | None = None


def recipe(dim: int) -> Recipe:
    """The formula ``"auto"`` stands for at latent dimension ``dim``."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"the latent dimension must be a positive integer, got {dim!r}")
    if dim == 1:
        return Recipe("scale-loc")  # every 1-d affine flow is this one
    if dim <= FLOW_MAX_DIM:  # iaf's masked network needs hidden >= d
        return Recipe(f"iaf(sigma=exp, hidden={max(64, dim)})*2-affine-loc", init_scale=1.0)
    return Recipe("affine-loc")


def is_auto(flow: object) -> bool:
    """Whether ``flow`` asks for the recipe (the string ``"auto"``, any case or spacing)."""
    return isinstance(flow, str) and flow.replace(" ", "").lower() == AUTO
